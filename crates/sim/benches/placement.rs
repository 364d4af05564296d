//! Time per placement decision with 10,000, 100,000 and 1,000,000 registered providers:
//! `cargo bench -p idlegrid-sim --bench placement`.
//!
//! A decision is `plan` + `apply` of one virtual node (r = 0.99, so several members) for a job
//! whose candidates are a few percent of the providers; the task then finishes at once, so the
//! pool of free providers stays the same size. Also timed: one rating update (a provider's
//! availability changed: re-index) and one contact change. Prints a Markdown table; the cost
//! should grow like log(n), not like n.

use std::hint::black_box;
use std::time::Instant;

use idlegrid_random::{RandomSource, Xoshiro256StarStar};
use idlegrid_scheduler::placement::{JobSpec, NodeRequirements, ProviderUpdate, Scheduler, SchedulerConfig, TaskSpec};
use idlegrid_scheduler::{AvailabilityRatings, Connectivity, JobKey, ProviderId, ProviderProfile, TaskKey, TaskShape};

const NOW: u64 = 1_704_067_200_000;
const DECISIONS: u64 = 20_000;
const UPDATES: u64 = 200_000;

fn build(providers: u64, rng: &mut Xoshiro256StarStar) -> Scheduler {
    let config = SchedulerConfig { nodes_per_plan_max: 1, ..SchedulerConfig::default() };
    let mut s = Scheduler::new(config).expect("valid configuration");
    for i in 0..providers {
        let a = rng.uniform(0.2, 1.0);
        let update = ProviderUpdate {
            profile: ProviderProfile {
                cpu_gflops: rng.log_normal(4.0, 0.6),
                bandwidth_mb_per_s: rng.log_normal(3.0, 0.7),
                memory_mb: 8000,
                disk_mb: 100_000,
                cores: 1,
                connectivity: Connectivity::Intermittent,
            },
            ratings: Some(AvailabilityRatings::new(a, a, 10_080)),
            slots: 1,
        };
        s.upsert_provider(ProviderId(i), update).expect("valid provider");
        s.provider_connected(ProviderId(i), NOW).expect("registered");
    }
    let job = JobSpec {
        reliability: Some(0.99),
        shape: Some(TaskShape { work_gflop: 2.0 * 1200.0, data_in_mb: 5.0, data_out_mb: 1.0 }),
        ..JobSpec::new(NodeRequirements {
            cpu_gflops: 2.0,
            bandwidth_mb_per_s: 1.0,
            memory_mb: 0,
            disk_mb: 0,
            connectivity: Connectivity::Intermittent,
        })
    };
    s.add_job(JobKey(1), job).expect("valid job");
    for t in 0..DECISIONS {
        s.add_task(JobKey(1), TaskKey(t), TaskSpec::default()).expect("valid task");
    }
    s
}

fn main() {
    // `cargo bench` passes --bench; any other argument is a filter we do not need.
    println!(
        "| providers | free candidates | decisions | µs per decision (plan + apply) | members per node | µs per rating update | µs per contact change |"
    );
    println!("|---|---|---|---|---|---|---|");
    for providers in [10_000u64, 100_000, 1_000_000] {
        let mut rng = Xoshiro256StarStar::from_seed(providers);
        let mut s = build(providers, &mut rng);
        let candidates = s.explain(TaskKey(0), NOW).expect("task exists").providers_matching;
        // Warm up the caches.
        for _ in 0..100 {
            let plan = s.plan(NOW, rng.next_u64());
            black_box(s.apply(&plan));
            for node in &plan.nodes {
                let winner = node.members[0].provider;
                black_box(s.task_finished(node.task, winner).expect("running"));
            }
        }
        let mut members = 0u64;
        let mut decisions = 0u64;
        let mut elapsed = 0.0;
        while decisions + 100 < DECISIONS {
            let started = Instant::now();
            let plan = s.plan(NOW, rng.next_u64());
            let report = s.apply(&plan);
            elapsed += started.elapsed().as_secs_f64();
            black_box(report);
            decisions += 1;
            for node in &plan.nodes {
                members += node.members.len() as u64;
                let winner = node.members[0].provider;
                black_box(s.task_finished(node.task, winner).expect("running"));
            }
        }
        let per_decision = elapsed / decisions as f64 * 1e6;
        let started = Instant::now();
        for _ in 0..UPDATES {
            let id = ProviderId(rng.below(providers));
            let a = rng.uniform(0.2, 1.0);
            s.update_ratings(id, AvailabilityRatings::new(a, a, 10_080)).expect("registered");
        }
        let per_update = started.elapsed().as_secs_f64() / UPDATES as f64 * 1e6;
        let started = Instant::now();
        for i in 0..UPDATES {
            let id = ProviderId(rng.below(providers));
            if i % 2 == 0 {
                s.provider_disconnected(id, NOW).expect("registered");
            } else {
                s.provider_connected(id, NOW).expect("registered");
            }
        }
        let per_contact = started.elapsed().as_secs_f64() / UPDATES as f64 * 1e6;
        println!(
            "| {providers} | {candidates} | {decisions} | {per_decision:.2} | {:.2} | {per_update:.3} | {per_contact:.3} |",
            members as f64 / decisions.max(1) as f64
        );
    }
}
