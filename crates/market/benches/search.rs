//! Search latency and match throughput of the market index with 10^4, 10^5 and 10^6 offers,
//! printed as a table (no assertion on time). Run: `cargo bench -p idlegrid-market`.
//! `MARKET_BENCH_OFFERS=10000,100000` picks the sizes.
//!
//! Offers and requests come from the market simulation's generators (seven categories, 30% of
//! offers with a requirement on the requester, half the requests with a budget requirement).
//! Three kinds of query: the closest offer in value with both requirements (the match, page of
//! 20), the same with a rank expression (reads up to `scan_max` candidates), and `best_match`.
//! Latencies are wall time (p50, p99) and the thread's CPU time (p99), which leaves out the time
//! other processes of a shared machine take from the benchmark.

use std::hint::black_box;
use std::time::Instant;

use idlegrid_market::expr::Expr;
use idlegrid_market::offer::{OfferId, Request};
use idlegrid_market::search::Index;
use idlegrid_market::sim::{random_offer, random_request};
use idlegrid_market::valuation::ValuationConfig;
use idlegrid_random::Xoshiro256StarStar;
use idlegrid_types::PartyId;

const QUERIES: usize = 2000;
const OWNERS: u32 = 10_000;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The calling thread's CPU time: what a query costs, without the time other processes of a
/// shared machine take from it.
fn thread_cpu_ms() -> f64 {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now) };
    now.tv_sec as f64 * 1000.0 + now.tv_nsec as f64 / 1e6
}

/// p50 and p99 of wall time, p99 of CPU time, results per page.
fn latencies_ms(index: &Index, requests: &[Request]) -> (f64, f64, f64, usize) {
    let mut wall = Vec::with_capacity(requests.len());
    let mut cpu = Vec::with_capacity(requests.len());
    let mut found = 0;
    for request in requests {
        let (started, cpu_started) = (Instant::now(), thread_cpu_ms());
        let page = index.search(request, 0).expect("valid request");
        cpu.push(thread_cpu_ms() - cpu_started);
        wall.push(started.elapsed().as_secs_f64() * 1000.0);
        found += page.candidates.len();
        black_box(page);
    }
    wall.sort_by(f64::total_cmp);
    cpu.sort_by(f64::total_cmp);
    (percentile(&wall, 0.5), percentile(&wall, 0.99), percentile(&cpu, 0.99), found / requests.len().max(1))
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
        "| offers | insert/s | search p50 ms | p99 ms | p99 CPU ms | ranked p50 ms | p99 ms | p99 CPU ms | results/page | matches/s |"
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
        let (p50, p99, p99_cpu, per_page) = latencies_ms(&index, &requests);
        let (ranked_p50, ranked_p99, ranked_p99_cpu, _) = latencies_ms(&index, &ranked);
        let started = Instant::now();
        let mut matched = 0;
        for request in &requests {
            matched += index.best_match(request, 0).expect("valid request").is_some() as usize;
        }
        let match_rate = requests.len() as f64 / started.elapsed().as_secs_f64();
        black_box(matched);
        println!(
            "| {size} | {insert_rate:.0} | {p50:.3} | {p99:.3} | {p99_cpu:.3} | {ranked_p50:.3} | {ranked_p99:.3} | {ranked_p99_cpu:.3} | {per_page} | {match_rate:.0} |"
        );
    }
}
