//! Tests of placement: fixed cases and properties over random snapshots.

use super::*;
use crate::explain::{Blocker, ExplainedState, Requirement};
use crate::full::{ProviderModel, completion_curve};
use crate::vnode::duplication_for;
use proptest::prelude::*;

const NOW: u64 = 1_700_000_000_000;

fn profile(cpu: f64) -> ProviderProfile {
    ProviderProfile {
        cpu_gflops: cpu,
        bandwidth_mb_per_s: 10.0,
        memory_mb: 4000,
        disk_mb: 100_000,
        cores: 1,
        connectivity: Connectivity::Intermittent,
    }
}

fn update(cpu: f64, availability: f64, slots: u32) -> ProviderUpdate {
    ProviderUpdate {
        profile: profile(cpu),
        ratings: Some(AvailabilityRatings::new(availability, availability, 10_080)),
        slots,
    }
}

fn node(cpu: f64) -> NodeRequirements {
    NodeRequirements {
        cpu_gflops: cpu,
        bandwidth_mb_per_s: 1.0,
        memory_mb: 0,
        disk_mb: 0,
        connectivity: Connectivity::Intermittent,
    }
}

/// A job of compute tasks with T_R = 1800 s on nodes of `cpu` GFLOPS: candidates have an
/// effective speed in [cpu, cpu / 0.75].
fn job(cpu: f64, reliability: f64, nodes_max: Option<u32>) -> JobSpec {
    JobSpec {
        reliability: Some(reliability),
        shape: Some(TaskShape { work_gflop: cpu * 1800.0, data_in_mb: 0.0, data_out_mb: 0.0 }),
        nodes_max,
        ..JobSpec::new(node(cpu))
    }
}

fn scheduler() -> Scheduler {
    Scheduler::new(SchedulerConfig::default()).unwrap()
}

fn add_providers(s: &mut Scheduler, first: u64, count: u64, cpu: f64, availability: f64, slots: u32) {
    for i in first..first + count {
        s.upsert_provider(ProviderId(i), update(cpu, availability, slots)).unwrap();
        s.provider_connected(ProviderId(i), NOW).unwrap();
    }
}

fn add_tasks(s: &mut Scheduler, job: u64, first: u64, count: u64) {
    for t in first..first + count {
        s.add_task(JobKey(job), TaskKey(t), TaskSpec::default()).unwrap();
    }
}

fn plan_apply(s: &mut Scheduler, now: u64, seed: u64) -> Plan {
    let plan = s.plan(now, seed);
    s.check_invariants().unwrap();
    let report = s.apply(&plan);
    assert_eq!(report.nodes_skipped, 0, "{report:?}");
    assert_eq!(report.members_skipped, 0, "{report:?}");
    s.check_invariants().unwrap();
    plan
}

fn ids(node: &PlannedNode) -> Vec<u64> {
    node.members.iter().map(|m| m.provider.0).collect()
}

#[test]
fn groups_candidates_until_the_requested_reliability() {
    let mut s = scheduler();
    // Effective speed 2 x 0.55 = 1.1, in [1, 1.33]; pi = 0.55 (CPU and bandwidth equally available).
    add_providers(&mut s, 0, 100, 2.0, 0.55, 1);
    s.add_job(JobKey(1), job(1.0, 0.9, None)).unwrap();
    add_tasks(&mut s, 1, 0, 10);
    let plan = plan_apply(&mut s, NOW, 7);
    assert_eq!(plan.nodes.len(), 10);
    let mut members = 0;
    for node in &plan.nodes {
        let pis: Vec<f64> = node.members.iter().map(|m| m.pi).collect();
        assert!(pis.iter().all(|pi| (pi - 0.55).abs() < 1e-12), "{pis:?}");
        assert!((node.reliability - node_reliability(&pis)).abs() < 1e-12);
        let mut distinct = ids(node);
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), node.members.len());
        assert!((2..=4).contains(&node.members.len()), "{node:?}");
        assert!((node.requested_seconds - 1800.0).abs() < 1e-9);
        members += node.members.len();
    }
    // N = ln 0.1 / ln 0.45 = 2.88: ten nodes hold 28.8 members, give or take the carried error.
    let n = duplication_for(0.9, 0.55);
    assert!((members as f64 - 10.0 * n).abs() <= 1.0, "{members} vs {}", 10.0 * n);
    assert_eq!(s.stats().copies_running, members as u64);
    assert_eq!(s.stats().tasks_waiting, 0);
}

#[test]
fn only_providers_within_the_band_are_candidates() {
    let mut s = scheduler();
    add_providers(&mut s, 0, 20, 4.0, 0.9, 1); // 3.6 GFLOPS effective: too fast for 1 GFLOPS nodes
    add_providers(&mut s, 20, 20, 1.0, 0.5, 1); // 0.5: too slow
    add_providers(&mut s, 40, 20, 2.0, 0.6, 1); // 1.2: within
    s.add_job(JobKey(1), job(1.0, 0.9, None)).unwrap();
    add_tasks(&mut s, 1, 0, 5);
    let plan = plan_apply(&mut s, NOW, 1);
    assert!(!plan.nodes.is_empty());
    for node in &plan.nodes {
        assert!(ids(node).iter().all(|id| (40..60).contains(id)), "{node:?}");
    }
    // Fast nodes get the fast providers.
    s.add_job(JobKey(2), job(3.0, 0.9, None)).unwrap();
    add_tasks(&mut s, 2, 100, 3);
    let plan = plan_apply(&mut s, NOW, 2);
    assert_eq!(plan.nodes.len(), 3);
    for node in &plan.nodes {
        assert!(ids(node).iter().all(|id| *id < 20), "{node:?}");
    }
}

#[test]
fn node_limit_follows_the_requested_power() {
    assert_eq!(node_limit(None, Some(12.0), None, 5.0), Some(2));
    assert_eq!(node_limit(Some(10), None, Some(20.0), 4.0), Some(5));
    assert_eq!(node_limit(None, Some(1.0), None, 5.0), Some(1));
    assert_eq!(node_limit(None, None, None, 1.0), None);
    assert_eq!(node_limit(None, Some(f64::NAN), None, 1.0), None);
    assert_eq!(node_limit(None, None, Some(9.0), 2.0), Some(4));
}

#[test]
fn power_delivered_is_the_power_requested() {
    let mut s = scheduler();
    add_providers(&mut s, 0, 200, 2.0, 0.6, 1);
    // 10 GFLOPS requested on nodes of 2.5: four nodes.
    let limit = node_limit(None, Some(10.0), None, 2.5);
    assert_eq!(limit, Some(4));
    let mut spec = job(2.5, 0.9, limit);
    spec.shape = Some(TaskShape { work_gflop: 2.5 * 1800.0, data_in_mb: 0.0, data_out_mb: 0.0 });
    s.add_job(JobKey(1), spec).unwrap();
    // Providers of 1.2 effective are too slow for 2.5; add fitting ones (2.8 effective).
    add_providers(&mut s, 1000, 100, 4.0, 0.7, 1);
    add_tasks(&mut s, 1, 0, 50);
    plan_apply(&mut s, NOW, 3);
    let power = s.job_power(JobKey(1)).unwrap();
    assert_eq!(power.nodes_running, 4);
    assert_eq!(power.power_delivered_gflops, 10.0);
    assert_eq!(power.power_requested_gflops, Some(10.0));
    // More providers do not mean more power.
    add_providers(&mut s, 2000, 100, 4.0, 0.7, 1);
    assert!(s.plan(NOW, 4).nodes.is_empty());
    // A finished task frees one node's worth; the others' copies are to be removed.
    let members = s.members_of(TaskKey(0)).unwrap();
    let others = s.task_finished(TaskKey(0), members[0]).unwrap();
    assert_eq!(others.len(), members.len() - 1);
    assert!(!others.contains(&members[0]));
    for provider in &members {
        assert!(s.provider_copies(*provider).unwrap().is_empty());
    }
    let plan = plan_apply(&mut s, NOW, 5);
    assert_eq!(plan.nodes.len(), 1);
    assert_eq!(s.job_power(JobKey(1)).unwrap().nodes_running, 4);
}

#[test]
fn higher_priority_goes_first_across_jobs() {
    let mut s = scheduler();
    add_providers(&mut s, 0, 10, 2.0, 0.6, 1);
    let mut low = job(1.0, 0.9, None);
    low.priority = 0;
    let mut high = job(1.0, 0.9, None);
    high.priority = 5;
    s.add_job(JobKey(1), low).unwrap();
    s.add_job(JobKey(2), high).unwrap();
    add_tasks(&mut s, 1, 0, 10);
    add_tasks(&mut s, 2, 100, 10);
    // One task of the low job overrides its priority above everything.
    s.add_task(JobKey(1), TaskKey(50), TaskSpec { priority: Some(10), elements: vec![] }).unwrap();
    let plan = s.plan(NOW, 9);
    assert_eq!(plan.nodes[0].task, TaskKey(50));
    assert!(plan.nodes[1..].iter().all(|n| n.job == JobKey(2)), "{:?}", plan.nodes);
    // Within a job, oldest first.
    let order: Vec<u64> = plan.nodes[1..].iter().map(|n| n.task.0).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
}

#[test]
fn higher_priority_preempts_lower_priority_copies() {
    let mut s = scheduler();
    add_providers(&mut s, 0, 6, 2.0, 0.6, 1);
    s.add_job(JobKey(1), job(1.0, 0.9, None)).unwrap();
    add_tasks(&mut s, 1, 0, 10);
    plan_apply(&mut s, NOW, 1);
    let used_before = s.stats().copies_running;
    assert!(used_before >= 5, "{used_before}");
    let mut urgent = job(1.0, 0.9, None);
    urgent.priority = 5;
    s.add_job(JobKey(2), urgent).unwrap();
    add_tasks(&mut s, 2, 100, 1);
    let mut without = s.clone();
    let plan = s.plan(NOW, 2);
    assert_eq!(plan.nodes.len(), 1);
    let node = &plan.nodes[0];
    assert_eq!(node.task, TaskKey(100));
    let preempting: Vec<&PlannedMember> = node.members.iter().filter(|m| m.preempts.is_some()).collect();
    assert!(!preempting.is_empty());
    assert_eq!(preempting.len(), plan.preemptions.len());
    for p in &plan.preemptions {
        assert_eq!(p.by, TaskKey(100));
        assert!(p.task.0 < 10);
        assert!(s.provider_copies(p.provider).unwrap().contains(&p.task));
    }
    let report = s.apply(&plan);
    assert_eq!(report.copies_preempted as usize, plan.preemptions.len());
    s.check_invariants().unwrap();
    assert!(s.members_of(TaskKey(100)).unwrap().len() >= 2);
    for t in &report.tasks_requeued {
        assert!(s.members_of(*t).unwrap().is_empty());
    }
    // Without preemption the urgent task waits.
    without.config.preemption = false;
    let plan = without.plan(NOW, 2);
    assert!(plan.nodes.is_empty() && plan.preemptions.is_empty());
    assert_eq!(plan.unplaced.len(), 2, "{:?}", plan.unplaced);
}

#[test]
fn paying_work_preempts_work_that_does_not_pay() {
    let mut s = scheduler();
    add_providers(&mut s, 0, 6, 2.0, 0.6, 1);
    let mut free = job(1.0, 0.9, None);
    free.paying = false;
    free.priority = 100;
    s.add_job(JobKey(1), free).unwrap();
    add_tasks(&mut s, 1, 0, 10);
    plan_apply(&mut s, NOW, 1);
    s.add_job(JobKey(2), job(1.0, 0.9, None)).unwrap();
    add_tasks(&mut s, 2, 100, 1);
    let plan = plan_apply(&mut s, NOW, 2);
    assert!(!plan.preemptions.is_empty());
    assert_eq!(plan.nodes[0].task, TaskKey(100));
    // The reverse does not happen: work that does not pay never preempts paying work of
    // lower priority.
    let mut s = scheduler();
    add_providers(&mut s, 0, 3, 2.0, 0.6, 1);
    s.add_job(JobKey(1), job(1.0, 0.9, None)).unwrap();
    add_tasks(&mut s, 1, 0, 1);
    plan_apply(&mut s, NOW, 1);
    let mut free = job(1.0, 0.9, None);
    free.paying = false;
    free.priority = 100;
    s.add_job(JobKey(2), free).unwrap();
    add_tasks(&mut s, 2, 100, 1);
    let plan = s.plan(NOW, 2);
    assert!(plan.preemptions.is_empty());
}

#[test]
fn a_silent_node_is_replaced() {
    let mut s = scheduler();
    add_providers(&mut s, 0, 30, 2.0, 0.6, 1);
    s.add_job(JobKey(1), job(1.0, 0.9, None)).unwrap();
    add_tasks(&mut s, 1, 0, 1);
    let first = plan_apply(&mut s, NOW, 1);
    let members = ids(&first.nodes[0]);
    let silence = s.config().silence_ms_max;
    // One member silent: the node lives on.
    s.provider_disconnected(ProviderId(members[0]), NOW + 1000).unwrap();
    let plan = s.plan(NOW + 1000 + silence + 1, 2);
    assert!(plan.failed_nodes.is_empty());
    // All silent, but not yet for long enough.
    for id in &members[1..] {
        s.provider_disconnected(ProviderId(*id), NOW + 2000).unwrap();
    }
    s.check_invariants().unwrap();
    assert!(s.plan(NOW + 2000 + silence / 2, 3).failed_nodes.is_empty());
    // Silent past the limit: replaced by a node of other providers.
    let plan = plan_apply(&mut s, NOW + 2000 + silence, 4);
    assert_eq!(plan.failed_nodes.len(), 1);
    assert_eq!(plan.failed_nodes[0].task, TaskKey(0));
    let mut abandoned: Vec<u64> = plan.failed_nodes[0].abandoned.iter().map(|p| p.0).collect();
    abandoned.sort();
    let mut sorted = members.clone();
    sorted.sort();
    assert_eq!(abandoned, sorted);
    assert_eq!(plan.nodes.len(), 1);
    assert!(plan.nodes[0].relaunch);
    assert!(ids(&plan.nodes[0]).iter().all(|id| !members.contains(id)));
    let now_members: Vec<u64> = s.members_of(TaskKey(0)).unwrap().iter().map(|p| p.0).collect();
    assert_eq!(now_members.len(), plan.nodes[0].members.len());
    // The silent providers hold nothing any more; back in contact, they are candidates again.
    for id in &members {
        assert!(s.provider_copies(ProviderId(*id)).unwrap().is_empty());
        s.provider_connected(ProviderId(*id), NOW + 10 * silence).unwrap();
    }
    s.check_invariants().unwrap();
}

#[test]
fn a_node_left_with_only_silent_members_fails() {
    let mut s = scheduler();
    add_providers(&mut s, 0, 30, 2.0, 0.6, 1);
    s.add_job(JobKey(1), job(1.0, 0.9, None)).unwrap();
    add_tasks(&mut s, 1, 0, 1);
    let first = plan_apply(&mut s, NOW, 1);
    let members = first.nodes[0].members.iter().map(|m| m.provider).collect::<Vec<_>>();
    assert!(members.len() >= 2);
    let silence = s.config().silence_ms_max;
    // One member falls silent; a plan past the limit examines it, but the others live.
    s.provider_disconnected(members[0], NOW).unwrap();
    assert!(plan_apply(&mut s, NOW + silence + 1000, 2).failed_nodes.is_empty());
    // The living members hand the task back: only the silent one is left.
    for provider in &members[1..] {
        assert!(!s.copy_ended(TaskKey(0), *provider).unwrap());
    }
    let plan = plan_apply(&mut s, NOW + silence + 2000, 3);
    assert_eq!(plan.failed_nodes.len(), 1, "{plan:?}");
    assert_eq!(plan.failed_nodes[0].abandoned, vec![members[0]]);
    assert!(plan.nodes[0].relaunch);
    assert!(plan_apply(&mut s, NOW + silence + 3000, 4).failed_nodes.is_empty());
}

#[test]
fn a_configurable_number_of_silent_members_fails_a_node() {
    let config = SchedulerConfig { silent_members_for_failure: 1, ..SchedulerConfig::default() };
    let mut s = Scheduler::new(config).unwrap();
    add_providers(&mut s, 0, 30, 2.0, 0.6, 1);
    s.add_job(JobKey(1), job(1.0, 0.9, None)).unwrap();
    add_tasks(&mut s, 1, 0, 1);
    let first = plan_apply(&mut s, NOW, 1);
    let members = ids(&first.nodes[0]);
    s.provider_disconnected(ProviderId(members[0]), NOW).unwrap();
    let silence = s.config().silence_ms_max;
    let plan = plan_apply(&mut s, NOW + silence, 2);
    assert_eq!(plan.failed_nodes.len(), 1);
    assert!(plan.nodes[0].relaunch);
}

#[test]
fn a_node_that_loses_every_copy_waits_again() {
    let mut s = scheduler();
    add_providers(&mut s, 0, 30, 2.0, 0.6, 1);
    s.add_job(JobKey(1), job(1.0, 0.9, None)).unwrap();
    add_tasks(&mut s, 1, 0, 1);
    plan_apply(&mut s, NOW, 1);
    let members = s.members_of(TaskKey(0)).unwrap();
    for (i, provider) in members.iter().enumerate() {
        let last = i == members.len() - 1;
        assert_eq!(s.copy_ended(TaskKey(0), *provider).unwrap(), last);
        s.check_invariants().unwrap();
    }
    assert!(matches!(s.copy_ended(TaskKey(0), members[0]), Err(SchedulerError::NotRunningThere { .. })));
    assert_eq!(s.stats().tasks_waiting, 1);
    // Removing a provider requeues its tasks too.
    plan_apply(&mut s, NOW, 2);
    let members = s.members_of(TaskKey(0)).unwrap();
    for provider in &members {
        assert_eq!(s.remove_provider(*provider).unwrap(), vec![TaskKey(0)]);
        s.check_invariants().unwrap();
    }
    assert_eq!(s.stats().tasks_waiting, 1);
    assert_eq!(s.stats().providers, 30 - members.len() as u64);
}

#[test]
fn engines_that_hold_the_elements_are_preferred() {
    let mut s = scheduler();
    add_providers(&mut s, 0, 300, 2.0, 0.6, 1);
    let executable = ElementKey(0xABCD);
    for id in [7, 77, 177, 277, 299] {
        s.set_cache_contents(ProviderId(id), &[executable, ElementKey(id)]).unwrap();
    }
    let mut spec = job(1.0, 0.9, None);
    spec.shared_elements = vec![ElementRef { key: executable, size_mb: 50.0 }];
    s.add_job(JobKey(1), spec).unwrap();
    add_tasks(&mut s, 1, 0, 1);
    let plan = plan_apply(&mut s, NOW, 3);
    let node = &plan.nodes[0];
    assert!(node.members.iter().all(|m| m.holds_elements), "{node:?}");
    assert!(ids(node).iter().all(|id| [7, 77, 177, 277, 299].contains(id)));
    // T_R counts the 50 MB at 1 MB/s; holders expect less than the others would.
    assert!((node.requested_seconds - 1850.0).abs() < 1e-9);
    let cached = node.members[0].expected_seconds;
    assert!((cached - 1800.0 / 1.2).abs() < 1e-6, "{cached}");
    // Forgetting the cache works, and the holder list follows.
    s.set_cache_contents(ProviderId(7), &[]).unwrap();
    assert!(!s.holders[&executable].position.contains_key(&s.provider_slots[&ProviderId(7)]));
    assert_eq!(s.holders[&executable].list.len(), 4);
}

#[test]
fn planning_leaves_the_model_unchanged_and_is_deterministic() {
    let mut s = scheduler();
    add_providers(&mut s, 0, 50, 2.0, 0.6, 2);
    add_providers(&mut s, 50, 50, 1.5, 0.8, 1);
    s.add_job(JobKey(1), job(1.0, 0.95, Some(30))).unwrap();
    add_tasks(&mut s, 1, 0, 100);
    let stats = s.stats();
    let first = s.plan(NOW, 11);
    s.check_invariants().unwrap();
    assert_eq!(s.stats(), stats);
    let second = s.plan(NOW, 11);
    assert_eq!(first, second);
    assert_eq!(first.nodes.len(), 30);
    // Capacity: a provider of two slots may serve two nodes, never more.
    let mut uses: HashMap<u64, u32> = HashMap::new();
    for node in &first.nodes {
        for id in ids(node) {
            *uses.entry(id).or_default() += 1;
        }
    }
    assert!(uses.iter().all(|(id, n)| *n <= if *id < 50 { 2 } else { 1 }), "{uses:?}");
    assert!(uses.values().any(|n| *n == 2));
}

#[test]
fn stale_parts_of_a_plan_are_skipped() {
    let mut s = scheduler();
    add_providers(&mut s, 0, 20, 2.0, 0.6, 1);
    s.add_job(JobKey(1), job(1.0, 0.9, None)).unwrap();
    add_tasks(&mut s, 1, 0, 2);
    let plan = s.plan(NOW, 1);
    let gone = plan.nodes[0].members[0].provider;
    s.remove_provider(gone).unwrap();
    s.remove_task(plan.nodes[1].task).unwrap();
    let report = s.apply(&plan);
    assert_eq!(report.members_skipped as usize, 1 + plan.nodes[1].members.len());
    assert_eq!(report.nodes_skipped, 1);
    s.check_invariants().unwrap();
}

#[test]
fn young_and_unmeasured_providers_are_not_candidates() {
    let mut s = scheduler();
    for i in 0..10 {
        let mut u = update(2.0, 0.6, 1);
        u.ratings = Some(AvailabilityRatings::new(0.6, 0.6, 60));
        s.upsert_provider(ProviderId(i), u).unwrap();
        s.provider_connected(ProviderId(i), NOW).unwrap();
    }
    s.upsert_provider(ProviderId(10), ProviderUpdate { ratings: None, ..update(2.0, 0.6, 1) }).unwrap();
    s.add_job(JobKey(1), job(1.0, 0.9, None)).unwrap();
    add_tasks(&mut s, 1, 0, 1);
    let plan = s.plan(NOW, 1);
    assert!(plan.nodes.is_empty());
    assert_eq!(plan.unplaced, vec![Unplaced { job: JobKey(1), task: TaskKey(0), reason: UnplacedReason::NoCandidate }]);
    // A day of history later they are.
    for i in 0..10 {
        s.update_ratings(ProviderId(i), AvailabilityRatings::new(0.6, 0.6, 1440)).unwrap();
    }
    assert_eq!(plan_apply(&mut s, NOW, 1).nodes.len(), 1);
}

#[test]
fn explain_counts_what_each_requirement_rules_out() {
    let mut s = scheduler();
    add_providers(&mut s, 0, 10, 2.0, 0.6, 1); // match
    for i in 10..15 {
        let mut u = update(2.0, 0.6, 1);
        u.profile.memory_mb = 500; // too little memory
        s.upsert_provider(ProviderId(i), u).unwrap();
        s.provider_connected(ProviderId(i), NOW).unwrap();
    }
    for i in 15..18 {
        s.upsert_provider(ProviderId(i), update(2.0, 0.6, 1)).unwrap(); // never connected
    }
    add_providers(&mut s, 18, 4, 4.0, 0.9, 1); // too fast
    for i in 22..24 {
        s.upsert_provider(ProviderId(i), ProviderUpdate { ratings: None, ..update(2.0, 0.6, 1) }).unwrap(); // unmeasured
    }
    add_providers(&mut s, 24, 1, 1.0, 0.3, 1); // too slow and unreliable? pi 0.3 > pi_min: too slow only
    let mut spec = job(1.0, 0.9, Some(1));
    spec.node.memory_mb = 2000;
    s.add_job(JobKey(1), spec).unwrap();
    add_tasks(&mut s, 1, 0, 2);
    let e = s.explain(TaskKey(0), NOW).unwrap();
    assert_eq!(e.providers, 25);
    assert_eq!(e.providers_matching, 10);
    assert_eq!(e.state, ExplainedState::Waiting { ahead_in_job: 0 });
    let count = |r: &Requirement| {
        e.requirements.iter().find(|x| &x.requirement == r).map(|x| (x.ruled_out, x.ruled_out_alone)).unwrap()
    };
    assert_eq!(count(&Requirement::Measured { window_minutes_min: 1440 }), (2, 2));
    assert_eq!(count(&Requirement::Connected), (3, 3));
    assert_eq!(count(&Requirement::MemoryMb { min: 2000 }), (5, 5));
    assert_eq!(count(&Requirement::NotTooFast { seconds_min: 1350.0 }), (4, 4));
    assert_eq!(count(&Requirement::NotTooSlow { seconds_max: 1800.0 }), (1, 1));
    assert_eq!(count(&Requirement::FreeSlot), (0, 0));
    assert!(!e.requirements.iter().any(|r| matches!(
        r.requirement,
        Requirement::DiskMb { .. } | Requirement::AnyConnectivity | Requirement::BandwidthMin { .. }
    )));
    assert!(e.blockers.is_empty(), "{:?}", e.blockers);
    assert!((e.best_reliability - (1.0 - 0.4f64.powi(10))).abs() < 1e-12);
    let text = e.to_string();
    assert!(text.contains("memory >= 2000 MB") && text.contains("10 meet every requirement"), "{text}");
    // The job's node limit holds the second task back.
    plan_apply(&mut s, NOW, 1);
    let e = s.explain(TaskKey(1), NOW).unwrap();
    assert_eq!(e.blockers[0], Blocker::NodeLimitReached { nodes_running: 1, nodes_max: 1 });
    assert!(s.explain(TaskKey(0), NOW).unwrap().blockers.is_empty());
    assert!(matches!(s.explain(TaskKey(0), NOW).unwrap().state, ExplainedState::Running { .. }));
    assert_eq!(s.explain_job(JobKey(1), NOW).unwrap().unwrap().task, TaskKey(1));
    // Two matching providers of pi 0.6 cannot make 0.99.
    let mut s = scheduler();
    add_providers(&mut s, 0, 2, 2.0, 0.6, 1);
    s.add_job(JobKey(1), job(1.0, 0.99, None)).unwrap();
    add_tasks(&mut s, 1, 0, 1);
    let e = s.explain(TaskKey(0), NOW).unwrap();
    match e.blockers.as_slice() {
        [Blocker::ReliabilityUnreachable { best, requested }] => {
            assert!((best - 0.84).abs() < 1e-12 && *requested == 0.99)
        }
        other => panic!("{other:?}"),
    }
    let plan = s.plan(NOW, 1);
    assert!(matches!(plan.unplaced[0].reason, UnplacedReason::ReliabilityUnreachable { .. }));
    let mut s = scheduler();
    s.add_job(JobKey(1), job(1.0, 0.9, None)).unwrap();
    add_tasks(&mut s, 1, 0, 1);
    assert_eq!(s.explain(TaskKey(0), NOW).unwrap().blockers, vec![Blocker::NoMatchingProvider]);
    assert!(s.explain(TaskKey(99), NOW).is_err());
}

#[test]
fn explain_counts_constant_connectivity() {
    let mut s = scheduler();
    add_providers(&mut s, 0, 5, 2.0, 0.6, 1);
    for i in 5..8 {
        let mut u = update(2.0, 0.6, 1);
        u.profile.connectivity = Connectivity::Constant;
        s.upsert_provider(ProviderId(i), u).unwrap();
        s.provider_connected(ProviderId(i), NOW).unwrap();
    }
    let mut spec = job(1.0, 0.9, None);
    spec.node.connectivity = Connectivity::Constant;
    s.add_job(JobKey(1), spec).unwrap();
    add_tasks(&mut s, 1, 0, 1);
    let e = s.explain(TaskKey(0), NOW).unwrap();
    let report = e.requirements.iter().find(|r| r.requirement == Requirement::ConstantConnectivity).unwrap();
    assert_eq!((report.ruled_out, report.ruled_out_alone), (5, 5));
    assert_eq!(e.providers_matching, 3);
    let plan = plan_apply(&mut s, NOW, 1);
    assert!(ids(&plan.nodes[0]).iter().all(|id| *id >= 5));
}

#[test]
fn the_full_version_uses_the_probability_of_finishing_in_time() {
    let mut s = scheduler();
    add_providers(&mut s, 0, 30, 2.0, 0.6, 1);
    let signature = WeeklySignature::constant(0.6, 0.6);
    for i in 0..30 {
        s.update_signature(ProviderId(i), &signature).unwrap();
    }
    let mut spec = job(1.0, 0.9, None);
    spec.model = ReliabilityModel::Full;
    s.add_job(JobKey(1), spec).unwrap();
    add_tasks(&mut s, 1, 0, 1);
    let plan = plan_apply(&mut s, NOW, 1);
    let ratings = AvailabilityRatings::new(0.6, 0.6, 10_080);
    let model = ProviderModel { cpu_gflops: 2.0, bandwidth_mb_per_s: 10.0, signature: &signature, ratings: &ratings };
    let shape = TaskShape { work_gflop: 1800.0, data_in_mb: 0.0, data_out_mb: 0.0 };
    let (step, steps) = s.config().full.steps_for(1800.0);
    let expected = completion_curve(&model, &shape, NOW, step, steps).probability_within(1800.0);
    assert!((expected - 0.6).abs() > 0.05, "the tree differs from the average: {expected}");
    for member in &plan.nodes[0].members {
        assert!((member.pi - expected).abs() < 1e-12);
    }
}

#[test]
fn bad_input_is_refused() {
    let mut s = scheduler();
    for bad in [f64::NAN, -1.0, f64::INFINITY, 0.0] {
        assert!(s.upsert_provider(ProviderId(1), update(bad, 0.5, 1)).is_err());
        assert!(s.upsert_provider(ProviderId(1), update(1.0, bad.max(1.5), 1)).is_err());
    }
    assert!(s.upsert_provider(ProviderId(1), update(1.0, 0.5, SLOTS_MAX + 1)).is_err());
    assert_eq!(s.stats().providers, 0);
    assert!(matches!(
        s.update_ratings(ProviderId(1), AvailabilityRatings::new(0.5, 0.5, 1)),
        Err(SchedulerError::UnknownProvider(_))
    ));
    assert!(s.provider_connected(ProviderId(1), NOW).is_err());
    s.upsert_provider(ProviderId(1), update(1.0, 0.5, 1)).unwrap();
    assert!(s.update_ratings(ProviderId(1), AvailabilityRatings::new(f64::NAN, 0.5, 1)).is_err());
    assert!(
        s.update_ratings(
            ProviderId(1),
            AvailabilityRatings { cpu_run_minutes_mean: -1.0, ..AvailabilityRatings::new(0.5, 0.5, 1) }
        )
        .is_err()
    );
    assert!(s.add_job(JobKey(1), job(1.0, 1.0, None)).is_err());
    assert!(s.add_job(JobKey(1), job(f64::NAN, 0.9, None)).is_err());
    let mut bad_shape = job(1.0, 0.9, None);
    bad_shape.shape = Some(TaskShape { work_gflop: -5.0, data_in_mb: 0.0, data_out_mb: 0.0 });
    assert!(s.add_job(JobKey(1), bad_shape).is_err());
    assert!(s.add_task(JobKey(1), TaskKey(1), TaskSpec::default()).is_err());
    s.add_job(JobKey(1), job(1.0, 0.5, None)).unwrap();
    assert_eq!(s.job_power(JobKey(1)).unwrap().reliability, 0.9, "raised to the baseline");
    assert!(s.add_job(JobKey(1), job(1.0, 0.9, None)).is_err());
    s.add_task(JobKey(1), TaskKey(1), TaskSpec::default()).unwrap();
    assert!(s.add_task(JobKey(1), TaskKey(1), TaskSpec::default()).is_err());
    let too_many = TaskSpec {
        priority: None,
        elements: vec![ElementRef { key: ElementKey(1), size_mb: 1.0 }; TASK_ELEMENTS_MAX + 1],
    };
    assert!(s.add_task(JobKey(1), TaskKey(2), too_many).is_err());
    let negative = TaskSpec { priority: None, elements: vec![ElementRef { key: ElementKey(1), size_mb: -1.0 }] };
    assert!(s.add_task(JobKey(1), TaskKey(2), negative).is_err());
    assert!(matches!(s.remove_job(JobKey(1)), Err(SchedulerError::JobHasTasks { .. })));
    s.remove_task(TaskKey(1)).unwrap();
    s.remove_job(JobKey(1)).unwrap();
    let elements: Vec<ElementKey> = (0..10_000).map(ElementKey).collect();
    s.set_cache_contents(ProviderId(1), &elements).unwrap();
    assert_eq!(s.record(s.provider_slots[&ProviderId(1)]).cache.len(), s.config().cache_elements_max);
    assert!(Scheduler::new(SchedulerConfig { reliability_default: 1.0, ..SchedulerConfig::default() }).is_err());
    s.check_invariants().unwrap();
}

#[test]
fn job_spec_from_job_properties() {
    use idlegrid_types::{JobProperties, VirtualClusterRequest};
    let config = SchedulerConfig::default();
    assert_eq!(JobSpec::from_properties(&JobProperties::default(), &config).unwrap(), None);
    let mut properties = JobProperties {
        priority: 3,
        power_requested_gflops: Some(10.0),
        cluster: Some(VirtualClusterRequest {
            node_cpu_gflops: Some(2.0),
            node_bandwidth_mbps: Some(5.0),
            node_memory_mb: Some(1000),
            connectivity: Some(Connectivity::Constant),
            reliability: Some(0.99),
            work_per_task_gflop_hours: Some(0.5),
            data_in_mb: Some(20.0),
            ..VirtualClusterRequest::default()
        }),
        ..JobProperties::default()
    };
    properties.scheduling_hints.insert("reliability_model".into(), "Full".into());
    let spec = JobSpec::from_properties(&properties, &config).unwrap().unwrap();
    assert_eq!(spec.priority, 3);
    assert_eq!(spec.nodes_max, Some(5));
    assert_eq!(spec.node.connectivity, Connectivity::Constant);
    assert_eq!(spec.model, ReliabilityModel::Full);
    assert_eq!(spec.shape, Some(TaskShape { work_gflop: 1800.0, data_in_mb: 20.0, data_out_mb: 1.0 }));
    assert!(spec.paying);
    properties.scheduling_hints.insert("paying".into(), "false".into());
    assert!(!JobSpec::from_properties(&properties, &config).unwrap().unwrap().paying);
}

#[test]
fn restore_node_rebuilds_running_work() {
    let mut s = scheduler();
    add_providers(&mut s, 0, 5, 2.0, 0.6, 1);
    s.add_job(JobKey(1), job(1.0, 0.9, Some(2))).unwrap();
    add_tasks(&mut s, 1, 0, 3);
    s.restore_node(TaskKey(0), &[ProviderId(0), ProviderId(1), ProviderId(1)], NOW - 5000).unwrap();
    assert_eq!(s.members_of(TaskKey(0)).unwrap(), vec![ProviderId(0), ProviderId(1)]);
    assert_eq!(s.launched_ms(TaskKey(0)).unwrap(), Some(NOW - 5000));
    assert!(s.restore_node(TaskKey(0), &[ProviderId(2)], NOW).is_err());
    s.check_invariants().unwrap();
    let node = s.node_of(TaskKey(0)).unwrap().unwrap();
    assert_eq!(node.members.len(), 2);
    assert!((node.reliability - 0.84).abs() < 1e-12);
    assert_eq!(node.launched_ms, NOW - 5000);
}

// ---- properties ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Plan(u64),
    Finish(prop::sample::Index),
    Lose(prop::sample::Index),
    Disconnect(prop::sample::Index),
    Connect(prop::sample::Index),
    Wait(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => any::<u64>().prop_map(Op::Plan),
        2 => any::<prop::sample::Index>().prop_map(Op::Finish),
        1 => any::<prop::sample::Index>().prop_map(Op::Lose),
        1 => any::<prop::sample::Index>().prop_map(Op::Disconnect),
        1 => any::<prop::sample::Index>().prop_map(Op::Connect),
        1 => (0u64..1_200_000).prop_map(Op::Wait),
    ]
}

/// Check one plan against the model it came from.
fn check_plan(s: &Scheduler, plan: &Plan) -> Result<(), TestCaseError> {
    let mut used: HashMap<ProviderId, i64> = HashMap::new();
    for p in &plan.preemptions {
        *used.entry(p.provider).or_default() -= 1;
    }
    for f in &plan.failed_nodes {
        for p in &f.abandoned {
            *used.entry(*p).or_default() -= 1;
        }
    }
    for node in &plan.nodes {
        let job = &s.jobs[&node.job];
        prop_assert!(!node.members.is_empty());
        prop_assert!(node.members.len() <= s.config.members_max as usize);
        // No provider twice in a node.
        let mut members: Vec<ProviderId> = node.members.iter().map(|m| m.provider).collect();
        members.sort();
        members.dedup();
        prop_assert_eq!(members.len(), node.members.len());
        // The reliability formula holds for every node.
        let pis: Vec<f64> = node.members.iter().map(|m| m.pi).collect();
        prop_assert!((node.reliability - node_reliability(&pis)).abs() < 1e-12);
        // No member beyond N: without its last member the node was below its aim.
        if node.members.len() > 1 {
            let without_last = node_reliability(&pis[..pis.len() - 1]);
            prop_assert!(
                without_last < node.target_reliability + 1e-12,
                "{} >= {}",
                without_last,
                node.target_reliability
            );
        }
        // Every member passed the candidate test.
        let ctx = s.task_context(node.task, plan.now_ms).unwrap();
        for member in &node.members {
            let slot = s.provider_slots[&member.provider];
            let a = s.assess(slot, &ctx, false, false);
            prop_assert_eq!(a.failed, 0, "member {:?} fails {:b}", member.provider, a.failed);
            prop_assert!(member.pi >= s.config.pi_min);
            *used.entry(member.provider).or_default() += 1;
        }
        prop_assert!(job.reliability >= s.config.reliability_default);
    }
    // Every node whose members all fell silent past the limit is replaced (the scan is
    // incremental; this checks it against a full one).
    if plan.now_ms >= s.config.silence_ms_max {
        let cutoff = plan.now_ms - s.config.silence_ms_max;
        for (key, task) in &s.tasks {
            let Some(node) = &task.node else { continue };
            let all_silent = node.members.iter().all(|m| {
                let r = s.record(m.slot);
                !r.connected && r.last_contact_ms <= cutoff
            });
            if all_silent {
                prop_assert!(plan.failed_nodes.iter().any(|f| f.task == *key), "{:?} silent but not replaced", key);
            }
        }
    }
    // No provider over its capacity.
    for (provider, delta) in used {
        let record = s.record(s.provider_slots[&provider]);
        prop_assert!(record.copies.len() as i64 + delta <= record.slots as i64, "{:?} over capacity", provider);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Random providers, jobs and events: every plan keeps every promise, the model stays
    /// consistent, and no job runs more nodes than its requested power allows, nor fewer while
    /// tasks wait unless the plan said it found no candidates.
    #[test]
    fn random_histories_keep_every_promise(
        providers in proptest::collection::vec((0.5f64..4.0, 0.2f64..1.0, 1u32..3, any::<bool>()), 1..60),
        jobs in proptest::collection::vec((prop::sample::select(vec![0.5, 1.0, 2.0]), 0.8f64..0.99, proptest::option::of(1u32..8), -2i32..3, any::<bool>(), 0u64..15), 1..4),
        ops in proptest::collection::vec(op(), 1..30),
    ) {
        let mut s = scheduler();
        for (i, (cpu, a, slots, constant)) in providers.iter().enumerate() {
            let mut u = update(*cpu, *a, *slots);
            if *constant { u.profile.connectivity = Connectivity::Constant; }
            s.upsert_provider(ProviderId(i as u64), u).unwrap();
            s.provider_connected(ProviderId(i as u64), NOW).unwrap();
        }
        let mut next_task = 0;
        for (j, (cv, r, nodes_max, priority, paying, tasks)) in jobs.iter().enumerate() {
            let mut spec = job(*cv, *r, *nodes_max);
            spec.priority = *priority;
            spec.paying = *paying;
            s.add_job(JobKey(j as u64), spec).unwrap();
            add_tasks(&mut s, j as u64, next_task, *tasks);
            next_task += tasks;
        }
        let mut now = NOW;
        for op in ops {
            match op {
                Op::Plan(seed) => {
                    let plan = s.plan(now, seed);
                    s.check_invariants().map_err(TestCaseError::fail)?;
                    check_plan(&s, &plan)?;
                    let report = s.apply(&plan);
                    prop_assert_eq!(report.nodes_skipped, 0);
                    prop_assert_eq!(report.members_skipped, 0);
                    s.check_invariants().map_err(TestCaseError::fail)?;
                    for (key, job) in &s.jobs {
                        let limit = job.spec.nodes_max.unwrap_or(u32::MAX);
                        prop_assert!(job.nodes_running <= limit);
                        let short = job.nodes_running < limit && !job.waiting.is_empty();
                        if short {
                            // Either no candidates were found, or paying work of this plan
                            // preempted the job's copies.
                            let preempted = report.tasks_requeued.iter().any(|t| s.tasks[t].job == *key);
                            prop_assert!(plan.unplaced.iter().any(|u| u.job == *key) || preempted, "{:?} short of power without reason", key);
                        }
                    }
                }
                Op::Finish(i) => {
                    let running: Vec<TaskKey> = {
                        let mut v: Vec<TaskKey> = s.tasks.iter().filter(|(_, t)| t.node.is_some()).map(|(k, _)| *k).collect();
                        v.sort();
                        v
                    };
                    if !running.is_empty() {
                        let task = running[i.index(running.len())];
                        let members = s.members_of(task).unwrap();
                        let others = s.task_finished(task, members[0]).unwrap();
                        prop_assert_eq!(others.len(), members.len() - 1);
                    }
                }
                Op::Lose(i) => {
                    let mut copies: Vec<(TaskKey, ProviderId)> = s.tasks.iter()
                        .filter_map(|(k, t)| t.node.as_ref().map(|n| (k, n)))
                        .flat_map(|(k, n)| n.members.iter().map(|m| (*k, s.record(m.slot).id)).collect::<Vec<_>>())
                        .collect();
                    copies.sort();
                    if !copies.is_empty() {
                        let (task, provider) = copies[i.index(copies.len())];
                        s.copy_ended(task, provider).unwrap();
                    }
                }
                Op::Disconnect(i) => {
                    s.provider_disconnected(ProviderId(i.index(providers.len()) as u64), now).unwrap();
                }
                Op::Connect(i) => {
                    s.provider_connected(ProviderId(i.index(providers.len()) as u64), now).unwrap();
                }
                Op::Wait(ms) => now += ms,
            }
            s.check_invariants().map_err(TestCaseError::fail)?;
        }
    }

    /// With candidates to spare, a job gets exactly the nodes its requested power implies:
    /// the power delivered is the power requested, within one node's power.
    #[test]
    fn plentiful_candidates_deliver_exactly_the_requested_power(
        power in 0.5f64..40.0, cv in prop::sample::select(vec![1.0, 2.0]), r in 0.8f64..0.99, seed in any::<u64>(),
    ) {
        let mut s = scheduler();
        // Effective speed 1.2 cv: within [cv, 1.33 cv]; pi = 0.6.
        add_providers(&mut s, 0, 600, 2.0 * cv, 0.6, 1);
        let limit = node_limit(None, Some(power), None, cv);
        s.add_job(JobKey(1), job(cv, r, limit)).unwrap();
        add_tasks(&mut s, 1, 0, 100);
        plan_apply(&mut s, NOW, seed);
        let p = s.job_power(JobKey(1)).unwrap();
        prop_assert_eq!(Some(p.nodes_running), limit);
        let delivered = p.power_delivered_gflops;
        prop_assert!(delivered <= power.max(cv) + 1e-9);
        prop_assert!((power - delivered).abs() < cv + 1e-9, "requested {} delivered {}", power, delivered);
        // The mean duplication is the formula's N, within the carried error over the nodes.
        let copies = s.stats().copies_running as f64;
        let n = duplication_for(s.jobs[&JobKey(1)].reliability, 0.6);
        prop_assert!((copies - n * p.nodes_running as f64).abs() <= 1.0 + 1e-9, "{} copies for {} nodes of N = {}", copies, p.nodes_running, n);
    }
}

#[test]
fn providers_requirements_keep_jobs_off_them_and_explain_counts_them() {
    use crate::terms::{EngineTerms, JobTerms, parse_engine_requirement};
    use idlegrid_market::expr::AttributeMap;
    let mut s = scheduler();
    add_providers(&mut s, 0, 20, 2.0, 0.6, 1);
    // Half the providers take only alice's jobs.
    for i in 0..10 {
        let terms = EngineTerms {
            label: i.to_string(),
            requirement: Some(parse_engine_requirement(r#"job.client in ["alice"]"#).unwrap()),
            ..EngineTerms::default()
        };
        s.set_provider_terms(ProviderId(i), Some(terms)).unwrap();
    }
    assert_eq!(
        s.set_provider_terms(ProviderId(99), None),
        Err(SchedulerError::UnknownProvider(ProviderId(99))),
        "an unknown provider"
    );
    s.add_job(JobKey(1), job(1.0, 0.9, None)).unwrap();
    let bob = JobTerms { attributes: AttributeMap::new().with("client", "bob"), paying: true, ..JobTerms::default() };
    s.set_job_terms(JobKey(1), Some(bob), 0.25).unwrap();
    assert!(s.set_job_terms(JobKey(1), None, f64::NAN).is_err());
    add_tasks(&mut s, 1, 0, 6);
    let plan = plan_apply(&mut s, NOW, 7);
    assert!(!plan.nodes.is_empty());
    for node in &plan.nodes {
        for member in &node.members {
            assert!(
                member.provider.0 >= 10,
                "bob's task went to provider {} that takes only alice's",
                member.provider.0
            );
        }
    }
    // Ten free providers of one slot make at most three nodes of three: the others wait.
    let waiting = (0..6).map(TaskKey).find(|t| s.node_of(*t).unwrap().is_none()).expect("a task waits");
    let e = s.explain(waiting, NOW).unwrap();
    let terms = e.requirements.iter().find(|r| matches!(r.requirement, Requirement::Terms { .. })).unwrap();
    assert_eq!(terms.ruled_out, 10);
    s.check_invariants().unwrap();
}
