//! The engine's core driven by events, without threads, I/O or a clock.

use super::*;
use crate::policy::Reason;
use idlegrid_types::{ElementRef, TaskLimitsSpec};
use proptest::prelude::*;

fn budgets(cores: u32, results_max: usize, bytes_max: u64) -> Budgets {
    Budgets {
        cores,
        memory_bytes_max: 1 << 30,
        task_memory_bytes_max: 1 << 28,
        outbox: OutboxLimits { results_max, bytes_max },
    }
}

fn assignment(id: u64, priority: i32) -> Assignment {
    Assignment {
        assignment: AssignmentId(id),
        executable: ElementRef { hash: ElementHash::of(b"exe"), size: 3 },
        data: Default::default(),
        params: Vec::new(),
        checkpoint: None,
        priority,
        limits: TaskLimitsSpec { memory_bytes_max: 1 << 20, ..TaskLimitsSpec::default() },
        ticket: "t".into(),
        signature: "s".into(),
        checkpoint_upload_ms: None,
        trace: None,
    }
}

fn signed(_: &Assignment) -> Result<(), String> {
    Ok(())
}

/// Take tasks in and stage them all.
fn hold(core: &mut Core, tasks: &[(u64, i32)]) {
    let admission = core.arrived(tasks.iter().map(|(id, p)| assignment(*id, *p)).collect(), signed);
    let actions = core.admitted(admission);
    for action in actions {
        let Action::Stage { id, has_local_checkpoint } = action else { panic!("{action:?}") };
        core.staged(id, has_local_checkpoint);
    }
}

fn start_all(core: &mut Core) -> Vec<u64> {
    let mut started = Vec::new();
    while let Some(Action::Start(id)) = core.next() {
        started.push(id.0);
    }
    started
}

fn queue_count(actions: &[Action]) -> usize {
    actions.iter().filter(|a| matches!(a, Action::Send { .. })).count()
}

#[test]
fn tasks_start_in_priority_order_within_the_cores() {
    let mut core = Core::new(budgets(2, 100, 1 << 20), 4);
    hold(&mut core, &[(1, 0), (2, 5), (3, 1)]);
    assert_eq!(start_all(&mut core), vec![2, 3]);
    assert_eq!(core.running_count(), 2);
    assert_eq!(core.ended(AssignmentId(2), Ended::Succeeded), Some(AfterRun::Report));
    core.done(AssignmentId(2));
    assert_eq!(start_all(&mut core), vec![1]);
}

#[test]
fn a_task_of_higher_priority_preempts_the_lowest_running_one_once() {
    let mut core = Core::new(budgets(1, 100, 1 << 20), 4);
    hold(&mut core, &[(1, 0)]);
    assert_eq!(start_all(&mut core), vec![1]);
    hold(&mut core, &[(2, 9)]);
    assert_eq!(core.next(), Some(Action::Stop(AssignmentId(1))));
    // Already yielding: no second stop, nothing starts.
    assert_eq!(core.next(), None);
    assert_eq!(core.ended(AssignmentId(1), Ended::Stopped), Some(AfterRun::Keep { preempted: true }));
    assert_eq!(core.task(AssignmentId(1)).unwrap().state, LocalState::Suspended);
    assert_eq!(start_all(&mut core), vec![2]);
}

#[test]
fn the_owners_verdict_pauses_and_resumes_and_holds_new_starts() {
    let mut core = Core::new(budgets(1, 100, 1 << 20), 4);
    hold(&mut core, &[(1, 0)]);
    assert_eq!(
        core.verdict(Verdict::Wait(Reason::OutsideHours { opens_in_minutes: 5 })),
        vec![Action::SetRunning(false), Action::Wake]
    );
    assert_eq!(core.verdict(Verdict::Wait(Reason::OutsideHours { opens_in_minutes: 5 })), vec![]);
    assert_eq!(core.next(), None);
    assert_eq!(core.summary().state, "waiting");
    assert_eq!(core.verdict(Verdict::Run), vec![Action::SetRunning(true), Action::Wake]);
    assert_eq!(start_all(&mut core), vec![1]);
}

#[test]
fn removal_and_hand_back_depend_on_where_the_task_is() {
    let mut core = Core::new(budgets(1, 100, 1 << 20), 4);
    hold(&mut core, &[(1, 0), (2, 0), (3, 0)]);
    assert_eq!(start_all(&mut core), vec![1]);
    assert_eq!(core.remove(AssignmentId(1)), vec![Action::Kill(AssignmentId(1))]);
    assert_eq!(core.ended(AssignmentId(1), Ended::Stopped), Some(AfterRun::Forget));
    assert!(core.task(AssignmentId(1)).is_none());
    assert_eq!(core.remove(AssignmentId(2)), vec![Action::Forget(AssignmentId(2))]);
    assert_eq!(core.hand_back(AssignmentId(3)), vec![Action::ReturnSuspended { id: AssignmentId(3), cpu_ms: 0 }]);
    assert_eq!(core.task(AssignmentId(3)).unwrap().state, LocalState::Done);
    assert_eq!(core.remove(AssignmentId(9)), vec![]);
    assert_eq!(core.next(), None);
}

#[test]
fn a_running_task_handed_back_is_stopped_then_returned() {
    let mut core = Core::new(budgets(1, 100, 1 << 20), 4);
    hold(&mut core, &[(1, 0)]);
    start_all(&mut core);
    assert_eq!(core.hand_back(AssignmentId(1)), vec![Action::Stop(AssignmentId(1))]);
    assert_eq!(core.ended(AssignmentId(1), Ended::Stopped), Some(AfterRun::ReturnSuspended));
    assert_eq!(core.task(AssignmentId(1)).unwrap().state, LocalState::Done);
}

#[test]
fn unsigned_tasks_are_refused_and_a_full_disk_gives_new_ones_back() {
    let mut core = Core::new(budgets(1, 100, 1 << 20), 4);
    let admission = core.arrived(vec![assignment(1, 0), assignment(2, 0)], |a| {
        if a.assignment.0 == 1 { Err("not signed".into()) } else { Ok(()) }
    });
    assert_eq!(admission.refused, vec![(AssignmentId(1), "not signed".to_string())]);
    assert_eq!(admission.fresh, vec![AssignmentId(2)]);
    core.admitted(admission);
    let now = Instant::now();
    assert!(core.disk_full("full".into(), now));
    assert!(!core.disk_full("still full".into(), now));
    assert!(matches!(core.node_status(), ProviderToServer::NodeStatus { state: NodeState::Paused, .. }));
    let admission = core.arrived(vec![assignment(2, 0), assignment(3, 0)], signed);
    assert_eq!(admission.given_back, vec![AssignmentId(3)]);
    assert_eq!(admission.fresh, vec![], "a task sent again is kept");
    assert_eq!(core.summary().state, "disk full");
    assert!(!core.disk_check_due(now), "not checked again at once");
    let later = now + DISK_RECHECK;
    assert!(core.disk_check_due(later));
    assert_eq!(core.disk_checked(Some("full".into())), vec![]);
    assert!(core.disk_check_due(later + DISK_RECHECK));
    assert_eq!(queue_count(&core.disk_checked(None)), 1);
    assert!(!core.disk_is_full());
}

#[test]
fn at_the_outbox_bound_no_task_starts_until_results_are_delivered() {
    let mut core = Core::new(budgets(1, 2, 1 << 20), 4);
    hold(&mut core, &[(1, 0), (2, 0), (3, 0)]);
    for id in [1, 2] {
        assert_eq!(start_all(&mut core), vec![id]);
        core.ended(AssignmentId(id), Ended::Succeeded);
        core.done(AssignmentId(id));
        let told = core.queued(100);
        // Reaching the bound tells the server the engine takes no work.
        assert_eq!(queue_count(&told), usize::from(id == 2));
    }
    assert!(core.outbox_full());
    assert_eq!(core.next(), None);
    assert!(matches!(
        core.node_status(),
        ProviderToServer::NodeStatus { state: NodeState::Paused, queue_capacity: 0, .. }
    ));
    let summary = core.summary();
    assert_eq!(summary.state, "outbox full");
    assert!(summary.reason.unwrap().contains("2 results"));
    let actions = core.delivered(1, 100, &[AssignmentId(1)]);
    assert!(actions.contains(&Action::Wake));
    assert!(core.task(AssignmentId(1)).is_none(), "a delivered task goes");
    assert!(matches!(core.node_status(), ProviderToServer::NodeStatus { state: NodeState::Active, .. }));
    assert_eq!(start_all(&mut core), vec![3]);
}

#[test]
fn the_byte_bound_holds_too() {
    let mut core = Core::new(budgets(1, 100, 1000), 4);
    hold(&mut core, &[(1, 0), (2, 0)]);
    start_all(&mut core);
    core.ended(AssignmentId(1), Ended::Succeeded);
    core.done(AssignmentId(1));
    assert_eq!(queue_count(&core.queued(1000)), 1);
    assert_eq!(core.next(), None);
    assert_eq!(queue_count(&core.delivered(1, 1000, &[])), 1, "refused batches leave the outbox too");
    assert_eq!(start_all(&mut core), vec![2]);
}

#[test]
fn recovered_tasks_resume_or_resend_their_outcome() {
    let mut core = Core::new(budgets(1, 100, 1 << 20), 4);
    let outcome = bare_status(AssignmentId(1), AssignmentState::Succeeded);
    let action = core.recovered(assignment(1, 0), Some(outcome), false);
    assert!(matches!(action, Action::Send { cleanup: Some(AssignmentId(1)), .. }));
    let action = core.recovered(assignment(2, 0), None, true);
    assert_eq!(action, Action::Stage { id: AssignmentId(2), has_local_checkpoint: true });
    core.staged(AssignmentId(2), true);
    assert_eq!(core.task(AssignmentId(2)).unwrap().state, LocalState::Suspended);
    assert_eq!(start_all(&mut core), vec![2]);
    assert!(!core.needed_elements().is_empty());
}

#[derive(Debug, Clone)]
enum Event {
    Arrive(u64, i32),
    Next,
    End(u64, u8),
    Deliver,
    Remove(u64),
    HandBack(u64),
    Verdict(bool),
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        (0u64..12, -2i32..3).prop_map(|(id, p)| Event::Arrive(id, p)),
        Just(Event::Next),
        Just(Event::Next),
        (0u64..12, 0u8..4).prop_map(|(id, e)| Event::End(id, e)),
        Just(Event::Deliver),
        (0u64..12).prop_map(Event::Remove),
        (0u64..12).prop_map(Event::HandBack),
        any::<bool>().prop_map(Event::Verdict),
    ]
}

proptest! {
    /// Whatever happens: never more running tasks than cores, no start at the outbox bound or
    /// while the owner says wait, and the outbox count matches what was queued and delivered.
    #[test]
    fn the_core_keeps_its_invariants(events in proptest::collection::vec(event(), 1..80)) {
        let mut core = Core::new(budgets(2, 3, 1 << 20), 2);
        let mut queued: Vec<AssignmentId> = Vec::new();
        for event in events {
            match event {
                Event::Arrive(id, p) => hold(&mut core, &[(id, p)]),
                Event::Next => {
                    let full = core.outbox_full();
                    let allowed = core.may_compute();
                    if let Some(Action::Start(_)) = core.next() {
                        prop_assert!(!full && allowed);
                    }
                }
                Event::End(id, e) => {
                    let id = AssignmentId(id);
                    if core.task(id).is_some_and(|t| t.state == LocalState::Running) {
                        let ended = [Ended::Succeeded, Ended::Failed, Ended::Internal, Ended::Stopped][e as usize];
                        match core.ended(id, ended) {
                            Some(AfterRun::Report) | Some(AfterRun::PlaceAgain) | Some(AfterRun::ReturnSuspended) => {
                                core.done(id);
                                core.queued(10);
                                queued.push(id);
                            }
                            _ => {}
                        }
                    }
                }
                Event::Deliver => {
                    let delivered: Vec<AssignmentId> = std::mem::take(&mut queued);
                    core.delivered(delivered.len(), 10 * delivered.len() as u64, &delivered);
                }
                Event::Remove(id) => { core.remove(AssignmentId(id)); }
                Event::HandBack(id) => {
                    if core.hand_back(AssignmentId(id)).iter().any(|a| matches!(a, Action::ReturnSuspended { .. })) {
                        core.queued(10);
                        queued.push(AssignmentId(id));
                    }
                }
                Event::Verdict(run) => {
                    core.verdict(if run { Verdict::Run } else { Verdict::Wait(Reason::OutsideHours { opens_in_minutes: 5 }) });
                }
            }
            prop_assert!(core.running_count() <= 2);
            prop_assert_eq!(core.outbox().results, queued.len());
        }
    }
}

#[test]
fn memory_sold_on_the_market_goes_to_granted_tasks_and_others_share_what_is_left() {
    let mut core = Core::new(budgets(4, 100, 1 << 20), 4);
    // 1 GiB in all, 256 MiB per task as a rule; 768 MiB sold, 600 MiB of it to task 1's buyer.
    core.set_memory_reserved(768 << 20);
    core.grant_memory(AssignmentId(1), 600 << 20);
    let big = |id| Assignment {
        limits: TaskLimitsSpec { memory_bytes_max: 512 << 20, ..TaskLimitsSpec::default() },
        ..assignment(id, 0)
    };
    let admission = core.arrived(vec![big(1), big(2), big(3)], signed);
    for action in core.admitted(admission) {
        let Action::Stage { id, has_local_checkpoint } = action else { panic!("{action:?}") };
        core.staged(id, has_local_checkpoint);
    }
    assert_eq!(core.task(AssignmentId(1)).unwrap().memory_bytes, 512 << 20, "the grant lifts the usual cap");
    assert_eq!(core.task(AssignmentId(2)).unwrap().memory_bytes, 256 << 20);
    // The others share the 256 MiB the sale leaves: task 3 waits for task 2.
    assert_eq!(start_all(&mut core), vec![1, 2]);
    assert_eq!(core.ended(AssignmentId(2), Ended::Succeeded), Some(AfterRun::Report));
    core.done(AssignmentId(2));
    assert_eq!(start_all(&mut core), vec![3]);
}
