//! The search engine over the market database (D4; the seed's FIG.-9C) and the bartering
//! engine's match step (D5, FIG.-9D: "the closest matched pair"), over an in-memory index that
//! the server rebuilds from the store at start and updates with every offer it writes (D8: the
//! same structure at any size, measured to a million offers by `cargo bench -p idlegrid-market`).
//!
//! **Index.** Offers live in a slab; per category, two ordered sets hold `(key, offer id)`: one
//! by value (micro-credits), one by quantity; a third orders offers by expiry. Insert, update and
//! remove are O(log n).
//!
//! **Search.** A request names its category, so only that category's sets are read. The walk
//! order is: outward from `value_target` (closest value first) when the request gives one; else
//! by quantity from `quantity_min` upwards when it gives one; else by value from the cheapest.
//! Each offer first passes cheap numeric filters (not the requester's own, not expired, price,
//! quantity range), then both requirements (the request's over the offer, the offer's over the
//! requester: two-sided). At most `scan_max` offers are evaluated, and at most `16 x scan_max`
//! visited, so a search costs a bounded amount whatever the market's size; `complete` says
//! whether the walk reached the end. Without a rank the walk order is the result order, so the
//! search stops as soon as the page is full; with a rank, a top-k heap keeps the best
//! `offset + limit` (rank descending, then walk order).

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::ops::Bound;

use idlegrid_ledger::Micros;
use idlegrid_types::PartyId;
use serde::{Deserialize, Serialize};

use crate::offer::{Offer, OfferId, Request, RequestError};
use crate::schema::Category;

/// Default for [`Index::scan_max`]: a ranked search ranks the 2,000 offers nearest the
/// request's value (or cheapest) that pass its filters, which costs about a millisecond; the
/// page says `complete: false` when more were left.
pub const SCAN_MAX_DEFAULT: usize = 2_000;

/// One result of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub offer: OfferId,
    pub owner: PartyId,
    pub value: Micros,
    pub price: Micros,
    pub quantity: f64,
    /// |value - value_target| (the value itself without a target).
    pub distance: Micros,
    /// The request's rank of the offer, when it has one.
    pub rank: Option<f64>,
}

/// A page of results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchPage {
    pub candidates: Vec<Candidate>,
    /// Offers whose requirements were evaluated.
    pub scanned: usize,
    /// Offers that matched both ways among them.
    pub matched: usize,
    /// Whether every offer of the category in range was considered (false when the scan bound
    /// or a full page without rank stopped the walk).
    pub complete: bool,
}

/// Keys are `(key, offer id, slot)`: ordered by key then ID (deterministic), and carrying
/// the slot so that a walk reads the offer without a hash lookup.
#[derive(Default)]
struct CategoryIndex {
    by_value: BTreeSet<(u64, u64, u32)>,
    by_quantity: BTreeSet<(u64, u64, u32)>,
}

/// The offers of the market, indexed for search.
pub struct Index {
    slots: Vec<Option<Offer>>,
    free: Vec<u32>,
    by_id: HashMap<OfferId, u32>,
    categories: [CategoryIndex; 7],
    by_expiry: BTreeSet<(u64, u64)>,
    /// Most offers whose requirements one search evaluates.
    pub scan_max: usize,
}

impl Default for Index {
    fn default() -> Index {
        Index::new()
    }
}

/// Quantities are finite and not negative, so their IEEE bits order as the numbers do.
fn quantity_key(quantity: f64) -> u64 {
    if quantity.is_finite() && quantity > 0.0 { quantity.to_bits() } else { 0 }
}

fn value_key(value: Micros) -> u64 {
    value.as_i64().max(0) as u64
}

impl Index {
    pub fn new() -> Index {
        Index {
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            categories: Default::default(),
            by_expiry: BTreeSet::new(),
            scan_max: SCAN_MAX_DEFAULT,
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    pub fn get(&self, id: OfferId) -> Option<&Offer> {
        self.by_id.get(&id).and_then(|&slot| self.slots[slot as usize].as_ref())
    }

    /// Add an offer, or replace the one with the same ID (an update); returns the old one.
    pub fn insert(&mut self, offer: Offer) -> Option<Offer> {
        let previous = self.remove(offer.id);
        let id = offer.id.0;
        let slot = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            (self.slots.len() - 1) as u32
        });
        let category = &mut self.categories[offer.category().index()];
        category.by_value.insert((value_key(offer.value), id, slot));
        category.by_quantity.insert((quantity_key(offer.resource.quantity()), id, slot));
        if let Some(expires) = offer.expires_ms {
            self.by_expiry.insert((expires, id));
        }
        self.slots[slot as usize] = Some(offer);
        self.by_id.insert(OfferId(id), slot);
        previous
    }

    /// Take an offer out (withdrawn, sold, expired).
    pub fn remove(&mut self, id: OfferId) -> Option<Offer> {
        let slot = self.by_id.remove(&id)?;
        let offer = self.slots[slot as usize].take()?;
        self.free.push(slot);
        let category = &mut self.categories[offer.category().index()];
        category.by_value.remove(&(value_key(offer.value), id.0, slot));
        category.by_quantity.remove(&(quantity_key(offer.resource.quantity()), id.0, slot));
        if let Some(expires) = offer.expires_ms {
            self.by_expiry.remove(&(expires, id.0));
        }
        Some(offer)
    }

    /// The offers that expired by `now_ms`, for the caller to remove (and mark in the store).
    pub fn expired(&self, now_ms: u64) -> Vec<OfferId> {
        self.by_expiry.range(..=(now_ms, u64::MAX)).map(|&(_, id)| OfferId(id)).collect()
    }

    /// Offers per category, for statistics.
    pub fn count(&self, category: Category) -> usize {
        self.categories[category.index()].by_value.len()
    }

    /// Ranked candidates for `request`, one page (see the module's description).
    pub fn search(&self, request: &Request, now_ms: u64) -> Result<SearchPage, RequestError> {
        request.validate()?;
        let wanted = request.offset + request.limit;
        let mut heap: BinaryHeap<Ranked> = BinaryHeap::new();
        let mut scanned = 0;
        let mut matched = 0;
        let mut stopped = false;
        let mut walk = self.walk(request);
        let mut visited = 0usize;
        let mut sequence = 0u64;
        while let Some((offer, distance)) = walk.next() {
            visited += 1;
            if scanned >= self.scan_max || visited > self.scan_max.saturating_mul(16) {
                stopped = true;
                break;
            }
            if !passes_filters(offer, request, now_ms) {
                continue;
            }
            scanned += 1;
            if !matches_both_ways(offer, request) {
                continue;
            }
            matched += 1;
            let rank = request.rank.as_ref().map(|rank| finite_or_zero(rank.rank(request, offer)));
            sequence += 1;
            heap.push(Ranked { rank: rank.unwrap_or(0.0), sequence, offer, distance, ranked: rank });
            if heap.len() > wanted {
                heap.pop();
            }
            if request.rank.is_none() && heap.len() == wanted {
                stopped = walk.next().is_some();
                break;
            }
        }
        let mut best = heap.into_sorted_vec();
        let candidates = best.drain(..).skip(request.offset).map(Ranked::candidate).collect();
        Ok(SearchPage { candidates, scanned, matched, complete: !stopped })
    }

    /// The bartering engine's match (D5): the offer closest in value to what the requester
    /// gives (`value_target`; cheapest without one) whose requirements and the request's both
    /// hold. The request's rank is not used: distance decides, as in the seed.
    pub fn best_match(&self, request: &Request, now_ms: u64) -> Result<Option<Candidate>, RequestError> {
        let closest = Request { rank: None, offset: 0, limit: 1, ..request.clone() };
        Ok(self.search(&closest, now_ms)?.candidates.into_iter().next())
    }

    fn slot(&self, slot: u32) -> Option<&Offer> {
        self.slots.get(slot as usize).and_then(Option::as_ref)
    }

    /// The offers of the request's category in walk order, each with its distance.
    fn walk<'a>(&'a self, request: &Request) -> Box<dyn Iterator<Item = (&'a Offer, Micros)> + 'a> {
        let category = &self.categories[request.category.index()];
        if let Some(target) = request.value_target {
            let target_key = value_key(target);
            let below = category.by_value.range(..(target_key, 0, 0)).rev();
            let above = category.by_value.range((target_key, 0, 0)..);
            let outward = Outward { below: below.peekable(), above: above.peekable(), target: target_key };
            return Box::new(outward.filter_map(move |(key, slot)| {
                self.slot(slot).map(|offer| (offer, Micros::new(key.abs_diff(target_key).min(i64::MAX as u64) as i64)))
            }));
        }
        if let Some(min) = request.quantity_min {
            let end = request
                .quantity_max
                .map_or(Bound::Unbounded, |max| Bound::Included((quantity_key(max), u64::MAX, u32::MAX)));
            let range = category.by_quantity.range((Bound::Included((quantity_key(min), 0, 0)), end));
            return Box::new(range.filter_map(move |&(_, _, slot)| self.slot(slot).map(|offer| (offer, offer.value))));
        }
        Box::new(
            category.by_value.iter().filter_map(move |&(_, _, slot)| self.slot(slot).map(|offer| (offer, offer.value))),
        )
    }
}

/// Merge of the values below and above a target, closest first (ties: the lower value).
struct Outward<'a, B: Iterator<Item = &'a (u64, u64, u32)>, A: Iterator<Item = &'a (u64, u64, u32)>> {
    below: std::iter::Peekable<B>,
    above: std::iter::Peekable<A>,
    target: u64,
}

impl<'a, B, A> Iterator for Outward<'a, B, A>
where
    B: Iterator<Item = &'a (u64, u64, u32)>,
    A: Iterator<Item = &'a (u64, u64, u32)>,
{
    /// The key and the slot.
    type Item = (u64, u32);
    fn next(&mut self) -> Option<(u64, u32)> {
        let below = self.below.peek().map(|&&(key, _, _)| self.target - key);
        let above = self.above.peek().map(|&&(key, _, _)| key - self.target);
        let take_below = match (below, above) {
            (Some(b), Some(a)) => b <= a,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (None, None) => return None,
        };
        let next = if take_below { self.below.next() } else { self.above.next() };
        next.map(|&(key, _, slot)| (key, slot))
    }
}

fn finite_or_zero(x: f64) -> f64 {
    if x.is_finite() { x } else { 0.0 }
}

fn passes_filters(offer: &Offer, request: &Request, now_ms: u64) -> bool {
    if offer.owner == request.requester || offer.expires_ms.is_some_and(|expires| expires <= now_ms) {
        return false;
    }
    if request.price_max.is_some_and(|max| offer.price > max) {
        return false;
    }
    let quantity = offer.resource.quantity();
    request.quantity_min.is_none_or(|min| quantity >= min) && request.quantity_max.is_none_or(|max| quantity <= max)
}

/// Both requirements hold: the request's over the offer and the offer's over the requester.
pub fn matches_both_ways(offer: &Offer, request: &Request) -> bool {
    request.requirements.as_ref().is_none_or(|requirement| requirement.holds(request, offer))
        && offer.requirements.as_ref().is_none_or(|requirement| requirement.holds(offer, request))
}

/// A matched offer in the top-k heap. Ordered so that the *worst* is the greatest: the heap's
/// top is what to drop, and `into_sorted_vec` gives the best first.
struct Ranked<'a> {
    rank: f64,
    sequence: u64,
    offer: &'a Offer,
    distance: Micros,
    ranked: Option<f64>,
}

impl Ranked<'_> {
    fn candidate(self) -> Candidate {
        Candidate {
            offer: self.offer.id,
            owner: self.offer.owner.clone(),
            value: self.offer.value,
            price: self.offer.price,
            quantity: self.offer.resource.quantity(),
            distance: self.distance,
            rank: self.ranked,
        }
    }
}

impl Ord for Ranked<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        other.rank.total_cmp(&self.rank).then(self.sequence.cmp(&other.sequence))
    }
}

impl PartialOrd for Ranked<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ranked<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ranked<'_> {}

#[cfg(test)]
mod tests;
