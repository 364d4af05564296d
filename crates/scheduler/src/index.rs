//! The index of free providers by effective speed `C a_c`, kept up to date incrementally.
//!
//! Speeds are grouped in 2,048 geometric buckets of 1% width from 0.001 to about 700,000 GFLOPS;
//! each bucket is a vector of provider slots (order irrelevant, removal by swap), and a Fenwick
//! tree over the bucket sizes gives, in O(log buckets), the number of providers in a speed range
//! and the k-th of them, so a uniformly random provider of a range costs O(log buckets) whatever
//! the number of providers. Insertion and removal cost the same. Every removal can be undone
//! exactly (same positions), which lets a placement pass take providers out as they fill up and
//! put everything back afterwards.

pub(crate) const SPEED_BUCKETS: usize = 2048;
const SPEED_MIN_GFLOPS: f64 = 1e-3;
/// ln(1.01): each bucket is 1% wider than the previous.
const BUCKET_GROWTH_LN: f64 = 0.009_950_330_853_168_083;

/// The bucket of an effective speed (speeds at or below the minimum share bucket 0).
pub(crate) fn speed_bucket(speed: f64) -> u16 {
    if !(speed > SPEED_MIN_GFLOPS) {
        return 0;
    }
    let bucket = ((speed / SPEED_MIN_GFLOPS).ln() / BUCKET_GROWTH_LN).floor();
    if bucket.is_nan() { 0 } else { bucket.clamp(0.0, (SPEED_BUCKETS - 1) as f64) as u16 }
}

/// Buckets that may hold a speed in `[low, high]` (inclusive).
pub(crate) fn bucket_range(low: f64, high: f64) -> (u16, u16) {
    let low = if low.is_nan() { 0.0 } else { low };
    let high = if high.is_nan() { f64::INFINITY } else { high };
    (speed_bucket(low), speed_bucket(high))
}

#[derive(Debug, Clone)]
struct Fenwick {
    tree: Vec<u32>,
}

impl Fenwick {
    fn new(size: usize) -> Fenwick {
        Fenwick { tree: vec![0; size + 1] }
    }

    fn add(&mut self, index: usize, delta: i64) {
        let mut i = index + 1;
        while i < self.tree.len() {
            self.tree[i] = (self.tree[i] as i64 + delta) as u32;
            i += i & i.wrapping_neg();
        }
    }

    /// Sum of the sizes of buckets `0..end`.
    fn prefix(&self, end: usize) -> u32 {
        let mut i = end.min(self.tree.len() - 1);
        let mut sum = 0;
        while i > 0 {
            sum += self.tree[i];
            i -= i & i.wrapping_neg();
        }
        sum
    }

    /// The bucket holding the element of rank `k` (0-based) and the rank within that bucket.
    fn find(&self, mut k: u32) -> (usize, u32) {
        let mut position = 0;
        let mut step = (self.tree.len() - 1).next_power_of_two();
        while step > 0 {
            let next = position + step;
            if next < self.tree.len() && self.tree[next] <= k {
                position = next;
                k -= self.tree[next];
            }
            step >>= 1;
        }
        (position, k)
    }
}

/// Where a provider sits in the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexPosition {
    pub bucket: u16,
    pub position: u32,
}

/// A provider moved by a removal (it filled the hole), with its new position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Moved {
    pub slot: u32,
    pub to: IndexPosition,
}

#[derive(Debug, Clone)]
pub(crate) struct SpeedIndex {
    buckets: Vec<Vec<u32>>,
    counts: Fenwick,
    len: usize,
}

impl SpeedIndex {
    pub fn new() -> SpeedIndex {
        SpeedIndex { buckets: vec![Vec::new(); SPEED_BUCKETS], counts: Fenwick::new(SPEED_BUCKETS), len: 0 }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn insert(&mut self, bucket: u16, slot: u32) -> IndexPosition {
        let list = &mut self.buckets[bucket as usize];
        list.push(slot);
        self.counts.add(bucket as usize, 1);
        self.len += 1;
        IndexPosition { bucket, position: (list.len() - 1) as u32 }
    }

    /// Remove the provider at `at`; the last of its bucket takes its place (returned).
    pub fn remove(&mut self, at: IndexPosition) -> Option<Moved> {
        let list = &mut self.buckets[at.bucket as usize];
        let position = at.position as usize;
        if position >= list.len() {
            return None;
        }
        list.swap_remove(position);
        self.counts.add(at.bucket as usize, -1);
        self.len -= 1;
        list.get(position).map(|slot| Moved { slot: *slot, to: at })
    }

    /// Undo `remove(at)` of `slot`, provided everything since has been undone: `slot` goes back
    /// to `at` and the provider that filled the hole (returned) back to the end.
    pub fn restore(&mut self, at: IndexPosition, slot: u32) -> Option<Moved> {
        let list = &mut self.buckets[at.bucket as usize];
        let position = at.position as usize;
        self.counts.add(at.bucket as usize, 1);
        self.len += 1;
        if position >= list.len() {
            list.push(slot);
            return None;
        }
        let filler = list[position];
        list[position] = slot;
        list.push(filler);
        Some(Moved { slot: filler, to: IndexPosition { bucket: at.bucket, position: (list.len() - 1) as u32 } })
    }

    /// Providers in buckets `low..=high`.
    pub fn count(&self, low: u16, high: u16) -> u32 {
        if low > high {
            return 0;
        }
        self.counts.prefix(high as usize + 1) - self.counts.prefix(low as usize)
    }

    /// The provider of rank `k` among buckets `low..` (k below `count(low, high)`).
    pub fn nth(&self, low: u16, k: u32) -> Option<(IndexPosition, u32)> {
        let rank = self.counts.prefix(low as usize) + k;
        if rank as usize >= self.len {
            return None;
        }
        let (bucket, within) = self.counts.find(rank);
        let slot = *self.buckets.get(bucket)?.get(within as usize)?;
        Some((IndexPosition { bucket: bucket as u16, position: within }, slot))
    }

    #[cfg(test)]
    pub fn slot_at(&self, at: IndexPosition) -> Option<u32> {
        self.buckets.get(at.bucket as usize)?.get(at.position as usize).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[test]
    fn buckets_are_one_percent_wide() {
        assert_eq!(speed_bucket(0.0), 0);
        assert_eq!(speed_bucket(-5.0), 0);
        assert_eq!(speed_bucket(f64::NAN), 0);
        assert_eq!(speed_bucket(f64::INFINITY), (SPEED_BUCKETS - 1) as u16);
        let b = speed_bucket(1.0);
        assert_eq!(speed_bucket(1.0 * 1.0101), b + 1);
        assert!(speed_bucket(2.0) > speed_bucket(1.97));
        assert!(speed_bucket(500_000.0) < (SPEED_BUCKETS - 1) as u16);
        assert_eq!(bucket_range(1.0, 1.0), (b, b));
    }

    proptest! {
        /// A model: slot -> position, checked against the index after random operations,
        /// including undoing removals in reverse order.
        #[test]
        fn index_counts_finds_and_undoes_exactly(
            speeds in proptest::collection::vec(0.001f64..1000.0, 1..300),
            removals in proptest::collection::vec(any::<prop::sample::Index>(), 0..100),
            range in (0.001f64..1000.0, 0.001f64..1000.0),
        ) {
            let mut index = SpeedIndex::new();
            let mut positions: HashMap<u32, IndexPosition> = HashMap::new();
            for (slot, speed) in speeds.iter().enumerate() {
                positions.insert(slot as u32, index.insert(speed_bucket(*speed), slot as u32));
            }
            let snapshot: Vec<(u32, IndexPosition)> = {
                let mut v: Vec<_> = positions.iter().map(|(s, p)| (*s, *p)).collect();
                v.sort_by_key(|(s, _)| *s);
                v
            };
            let mut undo = Vec::new();
            let mut present: Vec<u32> = (0..speeds.len() as u32).collect();
            for r in removals {
                if present.is_empty() { break; }
                let slot = present.swap_remove(r.index(present.len()));
                let at = positions.remove(&slot).unwrap();
                if let Some(moved) = index.remove(at) {
                    positions.insert(moved.slot, moved.to);
                }
                undo.push((at, slot));
            }
            // Every present provider is where the model says.
            for (slot, at) in &positions {
                prop_assert_eq!(index.slot_at(*at), Some(*slot));
            }
            // Range counts and k-th lookups agree with a direct count.
            let (low, high) = bucket_range(range.0.min(range.1), range.0.max(range.1));
            let expected: Vec<u32> = present.iter().copied()
                .filter(|s| { let b = speed_bucket(speeds[*s as usize]); b >= low && b <= high })
                .collect();
            prop_assert_eq!(index.count(low, high) as usize, expected.len());
            let mut found: Vec<u32> = (0..index.count(low, high)).map(|k| index.nth(low, k).unwrap().1).collect();
            found.sort();
            let mut expected_sorted = expected.clone();
            expected_sorted.sort();
            prop_assert_eq!(found, expected_sorted);
            // Undo in reverse: positions are exactly as before.
            while let Some((at, slot)) = undo.pop() {
                if let Some(moved) = index.restore(at, slot) {
                    positions.insert(moved.slot, moved.to);
                }
                positions.insert(slot, at);
            }
            let mut after: Vec<(u32, IndexPosition)> = positions.iter().map(|(s, p)| (*s, *p)).collect();
            after.sort_by_key(|(s, _)| *s);
            prop_assert_eq!(after, snapshot);
            prop_assert_eq!(index.len(), speeds.len());
        }
    }
}
