//! The index against a brute-force scan of the same offers, plus the behaviours a user sees:
//! two-sided requirements, ranks, pages, updates, expiry.

use proptest::prelude::*;

use super::*;
use crate::expr::{AttributeMap, Expr, Value};
use crate::resource::{Measurements, ResourceDeclaration, classify};
use crate::valuation::Method;

pub(crate) fn party(n: u8) -> PartyId {
    PartyId::from_public_key(&[n; 32])
}

/// A memory offer of `memory_mb` valued at `value` micro-credits.
pub(crate) fn memory_offer(id: u64, owner: u8, memory_mb: f64, value: i64) -> Offer {
    let declaration = ResourceDeclaration {
        category: "memory".into(),
        attributes: [("memory_mb", memory_mb), ("read_ns", 80.0), ("write_ns", 90.0), ("duration_s", 3600.0)]
            .into_iter()
            .map(|(name, v)| (name.to_string(), Value::Number(v)))
            .collect(),
        private_share: 0.0,
    };
    let (resource, _) = classify(&declaration, &Measurements::new()).unwrap();
    Offer {
        id: OfferId(id),
        owner: party(owner),
        resource,
        value: Micros::new(value),
        method: Method::Formula,
        price: Micros::new(value),
        requirements: None,
        rank: None,
        owner_attributes: AttributeMap::new(),
        expires_ms: None,
    }
}

fn request() -> Request {
    Request::new(party(0), Category::Memory)
}

fn ids(page: &SearchPage) -> Vec<u64> {
    page.candidates.iter().map(|c| c.offer.0).collect()
}

#[test]
fn closest_value_comes_first_and_the_match_is_the_closest_pair() {
    let mut index = Index::new();
    for (id, value) in [(1, 100), (2, 250), (3, 290), (4, 400), (5, 310)] {
        index.insert(memory_offer(id, 1, 1024.0, value));
    }
    let request = Request { value_target: Some(Micros::new(300)), ..request() };
    let page = index.search(&request, 0).unwrap();
    assert_eq!(ids(&page), vec![3, 5, 2, 4, 1], "by distance to 300, ties to the lower value");
    assert_eq!(page.candidates[0].distance, Micros::new(10));
    assert!(page.complete);
    assert_eq!(index.best_match(&request, 0).unwrap().unwrap().offer, OfferId(3));
    let cheapest = index.search(&request_with_limit(2), 0).unwrap();
    assert_eq!(ids(&cheapest), vec![1, 2]);
    assert!(!cheapest.complete, "a full page without a rank stops the walk");
}

fn request_with_limit(limit: usize) -> Request {
    Request { limit, ..request() }
}

#[test]
fn requirements_hold_on_both_sides() {
    let mut index = Index::new();
    index.insert(memory_offer(1, 1, 1024.0, 100));
    index.insert(memory_offer(2, 1, 8192.0, 200));
    let mut picky = memory_offer(3, 2, 8192.0, 300);
    picky.requirements = Some(Expr::parse("other.region == 'eu'").unwrap());
    index.insert(picky);
    let wants_big = Request { requirements: Some(Expr::parse("other.memory_mb >= 4096").unwrap()), ..request() };
    assert_eq!(ids(&index.search(&wants_big, 0).unwrap()), vec![2]);
    let from_eu = Request { attributes: AttributeMap::new().with("region", "eu"), ..wants_big.clone() };
    assert_eq!(ids(&index.search(&from_eu, 0).unwrap()), vec![2, 3]);
    // The requester never sees its own offers.
    let own = Request { requester: party(1), ..request() };
    assert_eq!(ids(&index.search(&own, 0).unwrap()), Vec::<u64>::new());
}

#[test]
fn rank_orders_results_and_pages_follow_it() {
    let mut index = Index::new();
    for id in 1..=10 {
        index.insert(memory_offer(id, 1, 512.0 * id as f64, 1000 - id as i64));
    }
    let ranked = Request { rank: Some(Expr::parse("other.memory_mb").unwrap()), limit: 3, ..request() };
    let first = index.search(&ranked, 0).unwrap();
    assert_eq!(ids(&first), vec![10, 9, 8]);
    assert_eq!(first.candidates[0].rank, Some(5120.0));
    assert!(first.complete, "a ranked search reads every candidate in range");
    let second = index.search(&Request { offset: 3, ..ranked.clone() }, 0).unwrap();
    assert_eq!(ids(&second), vec![7, 6, 5]);
    let last = index.search(&Request { offset: 9, ..ranked }, 0).unwrap();
    assert_eq!(ids(&last), vec![1]);
}

#[test]
fn filters_quantities_prices_and_expiry() {
    let mut index = Index::new();
    for id in 1..=6 {
        index.insert(memory_offer(id, 1, 1024.0 * id as f64, 100 * id as i64));
    }
    let mut expiring = memory_offer(7, 1, 3000.0, 50);
    expiring.expires_ms = Some(1000);
    index.insert(expiring);
    let ranged = Request { quantity_min: Some(2048.0), quantity_max: Some(4096.0), ..request() };
    assert_eq!(ids(&index.search(&ranged, 0).unwrap()), vec![2, 7, 3, 4]);
    assert_eq!(ids(&index.search(&ranged, 1000).unwrap()), vec![2, 3, 4], "expired offers are not found");
    assert_eq!(index.expired(999), vec![]);
    assert_eq!(index.expired(1000), vec![OfferId(7)]);
    let cheap = Request { price_max: Some(Micros::new(300)), ..request() };
    assert_eq!(ids(&index.search(&cheap, 2000).unwrap()), vec![1, 2, 3]);
    let wrong_category = Request::new(party(0), Category::Storage);
    assert!(index.search(&wrong_category, 0).unwrap().candidates.is_empty());
    let bad = Request { limit: 0, ..request() };
    assert_eq!(index.search(&bad, 0).unwrap_err(), RequestError::Page);
}

#[test]
fn updates_and_removals_are_incremental() {
    let mut index = Index::new();
    index.insert(memory_offer(1, 1, 1024.0, 100));
    index.insert(memory_offer(2, 1, 1024.0, 200));
    let previous = index.insert(memory_offer(1, 1, 1024.0, 300)).unwrap();
    assert_eq!(previous.value, Micros::new(100));
    assert_eq!(index.len(), 2);
    assert_eq!(ids(&index.search(&request(), 0).unwrap()), vec![2, 1]);
    assert_eq!(index.remove(OfferId(2)).unwrap().id, OfferId(2));
    assert!(index.remove(OfferId(2)).is_none());
    index.insert(memory_offer(3, 1, 1024.0, 50));
    assert_eq!(ids(&index.search(&request(), 0).unwrap()), vec![3, 1]);
    assert_eq!(index.count(Category::Memory), 2);
    assert_eq!(index.get(OfferId(3)).unwrap().value, Micros::new(50));
}

#[test]
fn the_scan_bound_stops_a_search_and_says_so() {
    let mut index = Index::new();
    index.scan_max = 5;
    for id in 1..=20 {
        index.insert(memory_offer(id, 1, 1024.0, id as i64));
    }
    let never = Request { requirements: Some(Expr::parse("other.memory_mb > 1e6").unwrap()), ..request() };
    let page = index.search(&never, 0).unwrap();
    assert_eq!((page.scanned, page.matched, page.complete), (5, 0, false));
}

/// The order the index promises, computed by brute force over every offer.
fn brute_force(offers: &[Offer], request: &Request, now_ms: u64) -> Vec<u64> {
    let mut matching: Vec<(f64, (u64, i64, u64), u64)> = offers
        .iter()
        .filter(|offer| offer.category() == request.category)
        .filter(|offer| passes_filters(offer, request, now_ms) && matches_both_ways(offer, request))
        .map(|offer| {
            let rank = request.rank.as_ref().map_or(0.0, |rank| finite_or_zero(rank.rank(request, offer)));
            let value = offer.value.as_i64();
            let walk = match request.value_target {
                // Below the target the walk goes downwards, so equal values come by descending ID.
                Some(target) if value < target.as_i64() => {
                    ((target.as_i64() - value) as u64, value, u64::MAX - offer.id.0)
                }
                Some(target) => ((value - target.as_i64()) as u64, value, offer.id.0),
                None if request.quantity_min.is_some() => (offer.resource.quantity().to_bits(), 0, offer.id.0),
                None => (value as u64, 0, offer.id.0),
            };
            (rank, walk, offer.id.0)
        })
        .collect();
    matching.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    matching.into_iter().skip(request.offset).take(request.limit).map(|m| m.2).collect()
}

fn offers() -> impl Strategy<Value = Vec<Offer>> {
    proptest::collection::vec((1u8..4, 1u32..64, 0i64..50, any::<bool>(), proptest::option::of(0u64..100)), 0..60)
        .prop_map(|specs| {
            specs
                .into_iter()
                .enumerate()
                .map(|(n, (owner, mb, value, picky, expires))| {
                    let mut offer = memory_offer(n as u64 + 1, owner, mb as f64 * 256.0, value * 10);
                    if picky {
                        offer.requirements = Some(Expr::parse("other.region == 'eu'").unwrap());
                    }
                    offer.expires_ms = expires;
                    offer
                })
                .collect()
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn the_index_returns_what_a_brute_force_scan_returns(
        offers in offers(),
        removed in proptest::collection::vec(1u64..60, 0..10),
        target in proptest::option::of(0i64..600),
        min_mb in proptest::option::of(0u32..8000),
        ranked in any::<bool>(),
        eu in any::<bool>(),
        offset in 0usize..5,
        limit in 1usize..8,
        now in 0u64..100,
    ) {
        let mut index = Index::new();
        for offer in &offers {
            index.insert(offer.clone());
        }
        for id in &removed {
            index.remove(OfferId(*id));
        }
        let live: Vec<Offer> = offers.into_iter().filter(|o| !removed.contains(&o.id.0)).collect();
        prop_assert_eq!(index.len(), live.len());
        let request = Request {
            value_target: target.map(Micros::new),
            quantity_min: min_mb.map(f64::from),
            rank: ranked.then(|| Expr::parse("other.memory_mb / 1024").unwrap()),
            requirements: Some(Expr::parse("other.memory_mb >= 512").unwrap()),
            attributes: if eu { AttributeMap::new().with("region", "eu") } else { AttributeMap::new() },
            offset,
            limit,
            ..request()
        };
        let page = index.search(&request, now).unwrap();
        prop_assert_eq!(ids(&page), brute_force(&live, &request, now));
    }
}
