//! Cache-aware placement (P5.6): an engine that already holds a task's elements (as its last
//! `CacheContents` said) need not download them, so the task starts sooner there. Each engine
//! is scored, in seconds, by what the task would cost it: the time to download what it misses
//! at its measured bandwidth, weighed against its load (each free slot counts as
//! [`ROOM_WEIGHT_SECS`] in its favour, so a busy engine holding the data does not take every
//! task from idle ones). The score becomes the task's rank of the engines in the pass
//! (`ReplicaDemand::rank`); when no engine holds [`MIN_HELD_BYTES`] of the task, the cache
//! makes no difference worth a preference and the pass places by room as before. Pure.

use std::collections::HashSet;

use idlegrid_types::ElementHash;

/// Bandwidth assumed for an engine whose downloads were never measured (MB/s).
pub const DEFAULT_BANDWIDTH_MB_PER_S: f64 = 1.0;
/// What one free slot of an engine is worth against download time (seconds).
pub const ROOM_WEIGHT_SECS: f64 = 2.0;
/// The least an engine must hold of a task's elements (bytes) for the cache to rank engines.
pub const MIN_HELD_BYTES: u64 = 1 << 20;

/// What the pass knows of one engine with room.
#[derive(Debug, Clone, Default)]
pub struct EngineSupply {
    /// The elements its cache holds.
    pub holds: HashSet<ElementHash>,
    /// Its measured download bandwidth (MB/s), if any.
    pub bandwidth_mb_per_s: Option<f64>,
    /// Tasks it can still take.
    pub room: u32,
}

/// Seconds to download `bytes` at `bandwidth_mb_per_s` (the default when unmeasured or not a
/// positive, finite number).
pub fn transfer_secs(bytes: u64, bandwidth_mb_per_s: Option<f64>) -> f64 {
    let bandwidth = bandwidth_mb_per_s.filter(|b| b.is_finite() && *b > 0.0).unwrap_or(DEFAULT_BANDWIDTH_MB_PER_S);
    bytes as f64 / (bandwidth * 1_000_000.0)
}

/// Bytes of `elements` (hash, size; a hash listed twice counts once) that `engine` holds.
pub fn held_bytes(elements: &[(ElementHash, u64)], engine: &EngineSupply) -> u64 {
    let mut seen = HashSet::new();
    elements.iter().filter(|(hash, _)| seen.insert(*hash) && engine.holds.contains(hash)).map(|(_, size)| *size).sum()
}

/// An engine's score for a task: higher is better.
pub fn score(elements: &[(ElementHash, u64)], engine: &EngineSupply) -> f64 {
    let mut seen = HashSet::new();
    let total: u64 = elements.iter().filter(|(hash, _)| seen.insert(*hash)).map(|(_, size)| *size).sum();
    let missing = total - held_bytes(elements, engine);
    f64::from(engine.room) * ROOM_WEIGHT_SECS - transfer_secs(missing, engine.bandwidth_mb_per_s)
}

/// The task's rank of `engines` (one score each, in their order), or `None` when no engine
/// holds enough of its elements for the cache to matter.
pub fn rank(elements: &[(ElementHash, u64)], engines: &[EngineSupply]) -> Option<Vec<f64>> {
    if !engines.iter().any(|engine| held_bytes(elements, engine) >= MIN_HELD_BYTES) {
        return None;
    }
    Some(engines.iter().map(|engine| score(elements, engine)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: u64 = 1_000_000;

    fn hash(n: u8) -> ElementHash {
        ElementHash::of(&[n])
    }

    fn engine(holds: &[u8], bandwidth: Option<f64>, room: u32) -> EngineSupply {
        EngineSupply { holds: holds.iter().map(|n| hash(*n)).collect(), bandwidth_mb_per_s: bandwidth, room }
    }

    #[test]
    fn transfer_time_uses_the_measured_bandwidth_or_the_default() {
        assert_eq!(transfer_secs(10 * MB, Some(5.0)), 2.0);
        assert_eq!(transfer_secs(3 * MB, None), 3.0 / DEFAULT_BANDWIDTH_MB_PER_S);
        for nonsense in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert_eq!(transfer_secs(MB, Some(nonsense)), transfer_secs(MB, None), "{nonsense}");
        }
        assert_eq!(transfer_secs(0, Some(1.0)), 0.0);
    }

    #[test]
    fn held_bytes_count_each_element_once() {
        let elements = [(hash(1), 5 * MB), (hash(2), MB), (hash(1), 5 * MB)];
        assert_eq!(held_bytes(&elements, &engine(&[1], None, 1)), 5 * MB);
        assert_eq!(held_bytes(&elements, &engine(&[1, 2], None, 1)), 6 * MB);
        assert_eq!(held_bytes(&elements, &engine(&[3], None, 1)), 0);
        assert_eq!(score(&elements, &engine(&[1, 2], None, 1)), ROOM_WEIGHT_SECS);
    }

    #[test]
    fn no_rank_when_no_engine_holds_enough() {
        let elements = [(hash(1), MIN_HELD_BYTES - 1), (hash(2), 50 * MB)];
        assert_eq!(rank(&elements, &[engine(&[1], None, 1), engine(&[], None, 1)]), None);
        assert_eq!(rank(&elements, &[]), None);
        assert!(rank(&[(hash(1), MIN_HELD_BYTES)], &[engine(&[1], None, 1)]).is_some());
    }

    #[test]
    fn the_engine_holding_a_large_element_ranks_first_at_equal_load() {
        let elements = [(hash(1), 4 * MB), (hash(2), 100_000)];
        let ranks = rank(&elements, &[engine(&[], None, 2), engine(&[1], None, 2), engine(&[2], None, 2)]).unwrap();
        assert!(ranks[1] > ranks[2] && ranks[2] > ranks[0], "{ranks:?}");
    }

    #[test]
    fn load_and_bandwidth_weigh_against_the_cache() {
        let elements = [(hash(1), 4 * MB)];
        // Holding 4 s of download is worth less than three more free slots (6 s).
        let ranks = rank(&elements, &[engine(&[1], None, 1), engine(&[], None, 4)]).unwrap();
        assert!(ranks[1] > ranks[0], "{ranks:?}");
        // But more than one more free slot (2 s).
        let ranks = rank(&elements, &[engine(&[1], None, 1), engine(&[], None, 2)]).unwrap();
        assert!(ranks[0] > ranks[1], "{ranks:?}");
        // A fast link makes the missing element cheap: room decides again.
        let ranks = rank(&elements, &[engine(&[1], None, 1), engine(&[], Some(100.0), 2)]).unwrap();
        assert!(ranks[1] > ranks[0], "{ranks:?}");
    }

    #[test]
    fn scores_fall_with_missing_bytes_and_rise_with_room() {
        // Exhaustive over small cases: holding more, or having more room, never scores lower.
        let elements = [(hash(1), 3 * MB), (hash(2), 2 * MB), (hash(3), MB)];
        let subsets: Vec<Vec<u8>> =
            (0..8u8).map(|mask| (1..=3).filter(|n| mask & (1 << (n - 1)) != 0).collect()).collect();
        for holds in &subsets {
            for more in &subsets {
                let superset: Vec<u8> = holds.iter().chain(more).copied().collect();
                for room in 0..4 {
                    for bandwidth in [None, Some(0.5), Some(10.0)] {
                        let base = score(&elements, &engine(holds, bandwidth, room));
                        assert!(score(&elements, &engine(&superset, bandwidth, room)) >= base);
                        assert!(score(&elements, &engine(holds, bandwidth, room + 1)) > base);
                    }
                }
            }
        }
    }
}
