//! Search latency and match throughput of the market index with 10^4, 10^5 and 10^6 offers,
//! printed as a table (no assertion on time). Run: `cargo bench -p idlegrid-market`.
//! `MARKET_BENCH_OFFERS=10000,100000` picks the sizes.
//!
//! Offers and requests come from the market simulation's generators (seven categories, 30% of
//! offers with a requirement on the requester, half the requests with a budget requirement).
//! Three kinds of query: the closest offer in value with both requirements (the match, page of
//! 20), the same with a rank expression (reads up to `scan_max` candidates), and `best_match`.
//! Each query runs three times: the table gives p50 and p99 of the first run, and p99 of the
//! fastest run of each query, which leaves out most of what other processes on a shared
//! machine take.

use std::hint::black_box;
use std::time::Instant;

use idlegrid_market::expr::Expr;
use idlegrid_market::offer::{OfferId, Request};
use idlegrid_market::random::Xoshiro256StarStar;
use idlegrid_market::search::Index;
use idlegrid_market::sim::{random_offer, random_request};
use idlegrid_market::valuation::ValuationConfig;
use idlegrid_types::PartyId;

const QUERIES: usize = 2000;
const OWNERS: u32 = 10_000;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// p50 and p99 of one run of each request, p99 of the fastest of three runs of each (which
/// leaves out most of the time the shared machine's other processes take), results per page.
fn latencies_ms(index: &Index, requests: &[Request]) -> (f64, f64, f64, usize) {
    let mut first = Vec::with_capacity(requests.len());
    let mut fastest = Vec::with_capacity(requests.len());
    let mut found = 0;
    for request in requests {
        let mut times = [0.0; 3];
        for time in &mut times {
            let started = Instant::now();
            let page = index.search(request, 0).expect("valid request");
            *time = started.elapsed().as_secs_f64() * 1000.0;
            found += page.candidates.len();
            black_box(page);
        }
        first.push(times[0]);
        fastest.push(times.into_iter().fold(f64::MAX, f64::min));
    }
    first.sort_by(f64::total_cmp);
    fastest.sort_by(f64::total_cmp);
    (percentile(&first, 0.5), percentile(&first, 0.99), percentile(&fastest, 0.99), found / (3 * requests.len().max(1)))
}

fn main() {
    let sizes: Vec<usize> = std::env::var("MARKET_BENCH_OFFERS")
        .ok()
        .map(|text| text.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000, 1_000_000]);
    let owners: Vec<PartyId> = (0..OWNERS)
        .map(|n| {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&n.to_le_bytes());
            PartyId::from_public_key(&key)
        })
        .collect();
    let config = ValuationConfig::default();
    let rank = Expr::parse("if_defined(other.availability, 1) * 100 - other.price").unwrap();
    println!(
        "| offers | insert/s | search p50 ms | p99 ms | p99 best of 3 ms | ranked p50 ms | p99 ms | p99 best of 3 ms | results/page | matches/s |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for size in sizes {
        let mut random = Xoshiro256StarStar::from_seed(size as u64);
        let offers: Vec<_> = (0..size)
            .map(|n| random_offer(OfferId(n as u64 + 1), &owners[n % owners.len()], &mut random, &config))
            .collect();
        let mut index = Index::new();
        let started = Instant::now();
        for offer in offers {
            index.insert(offer);
        }
        let insert_rate = size as f64 / started.elapsed().as_secs_f64();
        let requester = PartyId::from_public_key(&[0xee; 32]);
        let requests: Vec<Request> = (0..QUERIES).map(|_| random_request(&requester, &mut random)).collect();
        let ranked: Vec<Request> = requests.iter().map(|r| Request { rank: Some(rank.clone()), ..r.clone() }).collect();
        let (p50, p99, p99_best, per_page) = latencies_ms(&index, &requests);
        let (ranked_p50, ranked_p99, ranked_p99_best, _) = latencies_ms(&index, &ranked);
        let started = Instant::now();
        let mut matched = 0;
        for request in &requests {
            matched += index.best_match(request, 0).expect("valid request").is_some() as usize;
        }
        let match_rate = requests.len() as f64 / started.elapsed().as_secs_f64();
        black_box(matched);
        println!(
            "| {size} | {insert_rate:.0} | {p50:.3} | {p99:.3} | {p99_best:.3} | {ranked_p50:.3} | {ranked_p99:.3} | {ranked_p99_best:.3} | {per_page} | {match_rate:.0} |"
        );
    }
}
