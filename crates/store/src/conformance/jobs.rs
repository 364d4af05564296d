//! Conformance: Jobs, tasks, assignments, results, attachments and result assurance.

use super::*;

pub fn tasks_queue_in_priority_order(store: &impl Store) {
    let client = party(1, Role::Client);
    let j = job(&client.id);
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&client)?;
            assert!(tx.insert_job(&j)?);
            assert!(!tx.insert_job(&j)?);
            tx.insert_tasks(j.id, &tasks(0..5, 0))?;
            tx.insert_tasks(j.id, &tasks(5..8, 10))?;
            let conflict = tx.insert_tasks(j.id, &tasks(7..9, 0));
            assert!(matches!(conflict, Err(StoreError::Conflict(ref m)) if m.contains("task 7")), "{conflict:?}");
            Ok(())
        })
        .unwrap();
    store
        .write(|tx| -> R<()> {
            assert!(tx.queued_tasks(10)?.is_empty(), "nothing is queued before launch");
            let moved = tx.move_job_tasks(j.id, &[TaskState::Created], TaskState::Queued)?;
            assert_eq!(moved, vec![(TaskState::Created, 8)]);
            let queue = tx.queued_tasks(4)?;
            let indexes: Vec<u64> = queue.iter().map(|q| tx.task_by_key(q.key).unwrap().unwrap().index).collect();
            assert_eq!(indexes, vec![5, 6, 7, 0], "priority first, then order of creation");
            let t = tx.task(j.id, 3)?.unwrap();
            assert_eq!(t.params, b"i=3");
            assert_eq!(t.data["in"], ElementHash::of(b"data"));
            tx.set_task_state(t.key, TaskState::Stopped)?;
            tx.set_task_progress(t.key, 0.5, Some(&Payload::Inline(b"half".to_vec())))?;
            tx.set_task_checkpoint(t.key, Some(&ElementHash::of(b"cp")))?;
            tx.set_task_run(t.key, 2, 900)?;
            let sid = SessionId::random();
            tx.add_task_request(t.key, sid, 4)?;
            assert_eq!(tx.take_task_requests(t.key)?, vec![(sid, 4)]);
            assert!(tx.take_task_requests(t.key)?.is_empty());
            let t = tx.task(j.id, 3)?.unwrap();
            assert_eq!(
                (t.state, t.progress, t.status, t.checkpoint, t.attempts, t.cpu_ms),
                (
                    TaskState::Stopped,
                    0.5,
                    Some(Payload::Inline(b"half".to_vec())),
                    Some(ElementHash::of(b"cp")),
                    2,
                    900
                )
            );
            assert_eq!(tx.queued_tasks(100)?.len(), 7);
            Ok(())
        })
        .unwrap();
}

pub fn assignments_track_provider_load(store: &impl Store) {
    let client = party(1, Role::Client);
    let provider = party(2, Role::Provider);
    let j = job(&client.id);
    let sid = SessionId::random();
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&client)?;
            tx.insert_party(&provider)?;
            tx.insert_session(
                &provider.id,
                &SessionRow { id: sid, inbound_acked: 0, outbound_head: 0, outbound_acked: 0, last_seen_ms: 0 },
            )?;
            tx.set_provider_session(&provider.id, Some(sid))?;
            tx.upsert_provider(&provider.id, NodeState::Active, 2, 3, 100)?;
            tx.insert_job(&j)?;
            tx.insert_tasks(j.id, &tasks(0..4, 0))?;
            let rooms = tx.providers_with_room(50)?;
            assert_eq!(rooms, vec![ProviderRoom { id: provider.id.clone(), session: sid, room: 3 }]);
            assert!(tx.providers_with_room(101)?.is_empty(), "silent providers get no work");
            let t0 = tx.task(j.id, 0)?.unwrap().key;
            let t1 = tx.task(j.id, 1)?.unwrap().key;
            let a0 = tx.insert_assignment(t0, &provider.id, 110)?;
            let a1 = tx.insert_assignment(t1, &provider.id, 110)?;
            assert_ne!(a0, a1);
            assert_eq!(tx.provider(&provider.id)?.unwrap().assigned, 2);
            assert_eq!(tx.providers_with_room(50)?[0].room, 1);
            assert_eq!(tx.active_assignments_of_task(t0)?.len(), 1);
            assert_eq!(tx.active_assignments_of_provider(&provider.id)?.len(), 2);
            assert_eq!(tx.active_assignments_of_job(j.id)?.len(), 2);
            // Ids are never reused, even after the highest one is deleted with its task.
            let t2 = tx.task(j.id, 2)?.unwrap().key;
            let a2 = tx.insert_assignment(t2, &provider.id, 110)?;
            tx.delete_task(t2)?;
            let again = tx.insert_assignment(t0, &provider.id, 111)?;
            assert!(again.0 > a2.0, "assignment ids are never reused");
            tx.end_assignment(again, 112)?;
            assert!(tx.end_assignment(a0, 120)?);
            assert!(!tx.end_assignment(a0, 121)?, "ending twice is a no-op");
            assert_eq!(tx.assignment(a0)?.unwrap().state, AssignmentRowState::Ended);
            assert_eq!(tx.provider(&provider.id)?.unwrap().assigned, 1);
            assert_eq!(tx.silent_assignments(100, 10)?.len(), 0);
            assert_eq!(tx.silent_assignments(101, 10)?.iter().map(|a| a.id).collect::<Vec<_>>(), vec![a1]);
            tx.touch_provider(&provider.id, 200)?;
            assert!(tx.silent_assignments(150, 10)?.is_empty());
            tx.upsert_provider(&provider.id, NodeState::Paused, 2, 3, 200)?;
            assert!(tx.providers_with_room(0)?.is_empty(), "paused providers get no work");
            let heard = tx.providers_heard_since(200, 10)?;
            assert_eq!(heard.len(), 1, "paused providers are still heard from");
            assert_eq!((heard[0].state, heard[0].last_contact_ms, heard[0].assigned), (NodeState::Paused, 200, 1));
            assert!(tx.providers_heard_since(201, 10)?.is_empty(), "silent since then");
            assert!(tx.providers_heard_since(0, 0)?.is_empty(), "the limit holds");
            Ok(())
        })
        .unwrap();
}

pub fn results_page_and_delivery(store: &impl Store) {
    let client = party(1, Role::Client);
    let j = job(&client.id);
    let sid = SessionId::random();
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&client)?;
            tx.insert_job(&j)?;
            tx.insert_tasks(j.id, &tasks(0..5, 0))?;
            let mut ids = Vec::new();
            for index in 0..5 {
                let key = tx.task(j.id, index)?.unwrap().key;
                let r = NewResult {
                    task: key,
                    job: j.id,
                    index,
                    state: TaskState::Succeeded,
                    result: Some(Payload::Inline(vec![index as u8])),
                    failure: None,
                    cpu_ms: 3,
                    attempts: 1,
                };
                ids.push(tx.insert_result(&r, 9)?);
            }
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "result ids grow");
            assert_eq!(tx.last_result_id(j.id)?, ids[4]);
            let page = tx.results_after(j.id, 0, true, 2)?;
            assert_eq!(page.iter().map(|r| r.result.index).collect::<Vec<_>>(), vec![0, 1]);
            tx.mark_delivered(&[ids[0], ids[2]])?;
            let undelivered = tx.results_after(j.id, 0, true, 10)?;
            assert_eq!(undelivered.iter().map(|r| r.result.index).collect::<Vec<_>>(), vec![1, 3, 4]);
            assert_eq!(tx.results_after(j.id, ids[2], false, 10)?.len(), 2);
            let a = AttachmentRow { session: sid, job: j.id, replay: Replay::All, cursor: 4, completion_sent: false };
            tx.upsert_attachment(&a)?;
            tx.upsert_attachment(&AttachmentRow { cursor: 9, ..a.clone() })?;
            assert_eq!(tx.attachments_of_job(j.id)?[0].cursor, 9);
            assert_eq!(tx.attachments_of_session(sid)?.len(), 1);
            tx.delete_attachment(sid, j.id)?;
            assert!(tx.attachments_of_job(j.id)?.is_empty());
            Ok(())
        })
        .unwrap();
}

pub fn deleting_a_job_removes_its_rows(store: &impl Store) {
    let client = party(1, Role::Client);
    let provider = party(2, Role::Provider);
    let j = job(&client.id);
    let other = job(&client.id);
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&client)?;
            tx.upsert_provider(&provider.id, NodeState::Active, 1, 1, 0)?;
            tx.insert_job(&j)?;
            tx.insert_job(&other)?;
            tx.insert_tasks(j.id, &tasks(0..3, 0))?;
            tx.insert_tasks(other.id, &tasks(0..1, 0))?;
            let key = tx.task(j.id, 0)?.unwrap().key;
            tx.insert_assignment(key, &provider.id, 1)?;
            tx.add_job_elements(j.id, &[ElementHash::of(b"exe")])?;
            tx.delete_job(j.id)?;
            assert!(tx.job(j.id)?.is_none());
            assert!(tx.task(j.id, 1)?.is_none());
            assert_eq!(tx.provider(&provider.id)?.unwrap().assigned, 0, "the provider's load drops");
            assert!(tx.task(other.id, 0)?.is_some(), "other jobs are untouched");
            assert_eq!(tx.jobs_of_client(&client.id)?.len(), 1);
            Ok(())
        })
        .unwrap();
}

pub fn tasks_keep_their_fields(store: &impl Store) {
    let client = party(1, Role::Client);
    let provider = party(2, Role::Provider);
    let j = job(&client.id);
    let sid = SessionId::random();
    store
        .write(|tx| -> R<()> {
            tx.insert_job(&j)?;
            let mut new = tasks(0..3, -5);
            new[1].data =
                BTreeMap::from([("a".to_string(), ElementHash::of(b"a")), ("b".to_string(), ElementHash::of(b"b"))]);
            new[1].params = vec![0, 1, 255];
            new[1].trace = Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".to_string());
            new[2].data = BTreeMap::new();
            new[2].params = Vec::new();
            tx.insert_tasks(j.id, &new)?;
            let t = tx.task(j.id, 1)?.unwrap();
            assert_eq!(
                t,
                TaskRow {
                    key: t.key,
                    job: j.id,
                    index: 1,
                    state: TaskState::Created,
                    priority: -5,
                    executable: ElementHash::of(b"exe"),
                    data: new[1].data.clone(),
                    params: vec![0, 1, 255],
                    attempts: 0,
                    checkpoint: None,
                    progress: 0.0,
                    status: None,
                    cpu_ms: 0,
                    trace: new[1].trace.clone(),
                }
            );
            assert_eq!(tx.task_by_key(t.key)?, Some(t.clone()));
            let empty = tx.task(j.id, 2)?.unwrap();
            assert!(empty.data.is_empty() && empty.params.is_empty() && empty.trace.is_none());
            assert!(tx.task(j.id, 3)?.is_none());
            assert!(tx.task_by_key(t.key + 1000)?.is_none());
            let conflict = tx.insert_tasks(j.id, &tasks(3..5, 0).into_iter().chain(tasks(3..4, 0)).collect::<Vec<_>>());
            assert!(
                matches!(conflict, Err(StoreError::Conflict(ref m)) if m.contains("task 3")),
                "a batch repeating an index: {conflict:?}"
            );
            assert!(tx.task(j.id, 4)?.is_some(), "the tasks before the repeated index are inserted");
            for index in [3, 4] {
                let key = tx.task(j.id, index)?.unwrap().key;
                tx.delete_task(key)?;
            }

            tx.set_task_progress(t.key, 0.25, Some(&Payload::Inline(b"s".to_vec())))?;
            tx.set_task_progress(t.key, 0.75, None)?;
            tx.set_task_checkpoint(t.key, Some(&ElementHash::of(b"cp")))?;
            let row = tx.task_by_key(t.key)?.unwrap();
            assert_eq!(
                (row.progress, row.status),
                (0.75, Some(Payload::Inline(b"s".to_vec()))),
                "no status keeps the last one"
            );
            assert_eq!(row.checkpoint, Some(ElementHash::of(b"cp")));
            tx.set_task_checkpoint(t.key, None)?;
            assert_eq!(tx.task_by_key(t.key)?.unwrap().checkpoint, None);

            tx.set_task_state(t.key, TaskState::Running)?;
            let moved = tx.move_job_tasks(
                j.id,
                &[TaskState::Created, TaskState::Running, TaskState::Stopped],
                TaskState::Queued,
            )?;
            assert_eq!(moved, vec![(TaskState::Created, 2), (TaskState::Running, 1), (TaskState::Stopped, 0)]);
            assert_eq!(tx.queued_tasks(10)?.iter().map(|q| q.priority).collect::<Vec<_>>(), vec![-5, -5, -5]);

            // Deleting a task ends its assignments and drops its result and requests.
            tx.upsert_provider(&provider.id, NodeState::Active, 1, 2, 0)?;
            tx.insert_assignment(t.key, &provider.id, 1)?;
            tx.add_task_request(t.key, sid, 9)?;
            let result = NewResult {
                task: t.key,
                job: j.id,
                index: 1,
                state: TaskState::Succeeded,
                result: None,
                failure: None,
                cpu_ms: 1,
                attempts: 1,
            };
            tx.insert_result(&result, 2)?;
            assert_eq!(tx.provider(&provider.id)?.unwrap().assigned, 1);
            tx.delete_task(t.key)?;
            assert!(tx.task_by_key(t.key)?.is_none());
            assert_eq!(tx.provider(&provider.id)?.unwrap().assigned, 0, "the provider's load drops");
            assert!(tx.active_assignments_of_task(t.key)?.is_empty());
            assert!(tx.take_task_requests(t.key)?.is_empty());
            assert!(tx.results_after(j.id, 0, false, 10)?.is_empty());
            assert!(tx.task(j.id, 0)?.is_some(), "other tasks stay");
            Ok(())
        })
        .unwrap();
}

pub fn jobs_round_trip_with_states_and_holds(store: &impl Store) {
    let client = party(1, Role::Client);
    let mut a = job(&client.id);
    a.created_ms = 10;
    a.properties = JobProperties {
        name: "render".into(),
        priority: 3,
        deadline_unix_ms: Some(9_000),
        cost_max_micros: Some(5_000_000),
        scheduling_hints: BTreeMap::from([("zone".to_string(), "eu".to_string())]),
        attempts_max: 7,
        ..JobProperties::default()
    };
    let mut b = job(&client.id);
    b.created_ms = 20;
    let stranger = job(&party(2, Role::Client).id);
    store
        .write(|tx| -> R<()> {
            assert!(tx.insert_job(&b)?);
            assert!(tx.insert_job(&a)?);
            assert!(tx.insert_job(&stranger)?);
            assert_eq!(tx.job(a.id)?, Some(a.clone()), "a job reads back as written");
            assert_eq!(tx.job(JobId::random())?, None);
            let counts = JobCounts { created: 1, queued: 2, running: 3, stopped: 4, succeeded: 5, failed: 6 };
            tx.save_job_state(a.id, JobState::Running, &counts)?;
            let row = tx.job(a.id)?.unwrap();
            assert_eq!((row.state, row.counts, row.properties), (JobState::Running, counts, a.properties.clone()));
            let ids: Vec<JobId> = tx.jobs_of_client(&client.id)?.iter().map(|j| j.id).collect();
            assert_eq!(ids, vec![a.id, b.id], "a client's jobs, oldest first");

            assert!(tx.held_jobs_of_client(&client.id, "cost_max")?.is_empty());
            tx.set_job_hold(b.id, Some("cost_max"))?;
            tx.set_job_hold(a.id, Some("account_limit"))?;
            tx.set_job_hold(stranger.id, Some("cost_max"))?;
            assert_eq!(tx.job(b.id)?.unwrap().hold.as_deref(), Some("cost_max"));
            let held = |tx: &mut dyn Tx, hold: &str| -> R<Vec<JobId>> {
                Ok(tx.held_jobs_of_client(&client.id, hold)?.iter().map(|j| j.id).collect())
            };
            assert_eq!(held(tx, "cost_max")?, vec![b.id]);
            assert_eq!(held(tx, "account_limit")?, vec![a.id]);
            tx.set_job_hold(b.id, None)?;
            assert_eq!(tx.job(b.id)?.unwrap().hold, None);
            assert!(held(tx, "cost_max")?.is_empty());
            Ok(())
        })
        .unwrap();
}

pub fn completed_jobs_and_archived_results(store: &impl Store) {
    let client = party(1, Role::Client);
    let j = job(&client.id);
    store
        .write(|tx| -> R<()> {
            tx.insert_job(&j)?;
            tx.insert_tasks(j.id, &tasks(0..3, 0))?;
            let big = Payload::Inline(b"result ".repeat(500));
            let outcomes = [
                (TaskState::Succeeded, Some(Payload::Inline(b"zero".to_vec())), None),
                (
                    TaskState::Failed,
                    None,
                    Some(TaskFailureInfo { kind: FailureKind::Trap, message: "unreachable".into() }),
                ),
                (TaskState::Succeeded, Some(big), None),
            ];
            let mut ids = Vec::new();
            for (index, (state, result, failure)) in outcomes.into_iter().enumerate() {
                let task = tx.task(j.id, index as u64)?.unwrap().key;
                let r = NewResult {
                    task,
                    job: j.id,
                    index: index as u64,
                    state,
                    result,
                    failure,
                    cpu_ms: 10 + index as u64,
                    attempts: 2,
                };
                ids.push(tx.insert_result(&r, 50)?);
            }
            let before = tx.results_after(j.id, 0, false, 10)?;
            assert_eq!(before.len(), 3);
            assert_eq!(before[1].result.failure.as_ref().map(|f| f.kind), Some(FailureKind::Trap));
            assert_eq!((before[2].result.cpu_ms, before[2].result.attempts, before[2].delivered), (12, 2, false));

            tx.mark_job_completed(j.id, 100)?;
            assert!(
                tx.completed_jobs_with_undelivered_results(1_000, 10)?.is_empty(),
                "only jobs in the completed state"
            );
            tx.save_job_state(
                j.id,
                JobState::Completed,
                &JobCounts { succeeded: 2, failed: 1, ..JobCounts::default() },
            )?;
            tx.mark_job_completed(j.id, 200)?;
            assert_eq!(
                tx.completed_jobs_with_undelivered_results(101, 10)?,
                vec![(j.id, 100, false)],
                "the first completion counts"
            );
            assert!(tx.completed_jobs_with_undelivered_results(100, 10)?.is_empty(), "the bound is exclusive");
            tx.set_purge_warned(j.id)?;
            assert_eq!(tx.completed_jobs_with_undelivered_results(101, 10)?, vec![(j.id, 100, true)]);

            tx.mark_delivered(&[ids[0]])?;
            assert_eq!(tx.archive_results(j.id, true)?, 1, "delivered results with a payload");
            assert_eq!(tx.archive_results(j.id, true)?, 0, "archived once");
            assert_eq!(tx.archive_results(j.id, false)?, 1, "undelivered results with a payload");
            let after = tx.results_after(j.id, 0, false, 10)?;
            let payloads = |rows: &[ResultRow]| rows.iter().map(|r| r.result.clone()).collect::<Vec<_>>();
            assert_eq!(payloads(&after), payloads(&before), "archived results read back unchanged");
            assert_eq!(after.iter().map(|r| r.delivered).collect::<Vec<_>>(), vec![true, false, false]);
            tx.mark_delivered(&ids)?;
            assert!(tx.completed_jobs_with_undelivered_results(1_000, 10)?.is_empty(), "every result was delivered");
            Ok(())
        })
        .unwrap();
}

/// Keys of the tasks `0..n` of `j`, in index order.
fn task_keys(tx: &mut dyn Tx, j: JobId, n: u64) -> R<Vec<TaskKey>> {
    (0..n).map(|index| Ok(tx.task(j, index)?.expect("the task exists").key)).collect()
}

pub fn assurance_state_wants_replicas_of_running_tasks(store: &impl Store) {
    let client = party(1, Role::Client);
    let j = job(&client.id);
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&client)?;
            tx.insert_job(&j)?;
            tx.insert_tasks(j.id, &tasks(0..3, 0))?;
            tx.insert_tasks(j.id, &tasks(3..6, 5))?;
            let k = task_keys(tx, j.id, 6)?;
            assert_eq!(tx.task_assurance(k[0])?, None);
            tx.set_task_assurance(k[0], r#"{"replicas":[]}"#, 2)?;
            assert_eq!(
                tx.task_assurance(k[0])?,
                Some(AssuranceRow { state: r#"{"replicas":[]}"#.into(), replicas_wanted: 2 })
            );
            tx.set_task_assurance(k[0], r#"{"replicas":[1,2]}"#, 0)?;
            assert_eq!(
                tx.task_assurance(k[0])?,
                Some(AssuranceRow { state: r#"{"replicas":[1,2]}"#.into(), replicas_wanted: 0 }),
                "set_task_assurance replaces"
            );
            assert_eq!(tx.task_assurance(k[1])?, None, "other tasks have no state");
            tx.set_task_assurance(k[1], "{}", 1)?;
            tx.set_task_assurance(k[3], "{}", 2)?;
            tx.set_task_assurance(k[4], "{}", 1)?;
            tx.set_task_assurance(k[5], "{}", 3)?;
            tx.move_job_tasks(j.id, &[TaskState::Created], TaskState::Queued)?;
            assert!(tx.tasks_wanting_replicas(10)?.is_empty(), "queued tasks are the scheduler's, not assurance's");
            // k[2] runs without an assurance row; k[5] stays queued.
            for i in [0, 1, 2, 3, 4] {
                tx.set_task_state(k[i], TaskState::Running)?;
            }
            let wanting = |tx: &mut dyn Tx, limit: u32| -> R<Vec<TaskKey>> {
                Ok(tx.tasks_wanting_replicas(limit)?.into_iter().map(|q| q.key).collect())
            };
            assert_eq!(wanting(tx, 10)?, vec![k[3], k[4], k[1]], "priority first, then lowest key");
            assert_eq!(
                tx.tasks_wanting_replicas(1)?,
                vec![QueuedTask { key: k[3], priority: 5 }],
                "at most the limit, with the task's priority"
            );
            tx.set_task_state(k[5], TaskState::Running)?;
            assert_eq!(wanting(tx, 10)?, vec![k[3], k[4], k[5], k[1]]);
            tx.set_task_state(k[4], TaskState::Succeeded)?;
            tx.set_task_assurance(k[3], "{}", 0)?;
            assert_eq!(wanting(tx, 10)?, vec![k[5], k[1]], "ended tasks and satisfied ones drop out");
            Ok(())
        })
        .unwrap();
}

pub fn assured_tasks_of_provider_are_listed_once(store: &impl Store) {
    let client = party(1, Role::Client);
    let (p, q) = (party(2, Role::Provider), party(3, Role::Provider));
    let j = job(&client.id);
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&client)?;
            tx.upsert_provider(&p.id, NodeState::Active, 1, 4, 0)?;
            tx.upsert_provider(&q.id, NodeState::Active, 1, 4, 0)?;
            tx.insert_job(&j)?;
            tx.insert_tasks(j.id, &tasks(0..4, 0))?;
            let k = task_keys(tx, j.id, 4)?;
            for i in [0, 1, 3] {
                tx.set_task_assurance(k[i], "{}", 0)?;
            }
            // k[1] twice (ended, then again), placed before k[0]; k[2] has no assurance row.
            let first = tx.insert_assignment(k[1], &p.id, 1)?;
            tx.end_assignment(first, 2)?;
            tx.insert_assignment(k[1], &p.id, 3)?;
            tx.insert_assignment(k[0], &p.id, 3)?;
            tx.insert_assignment(k[2], &p.id, 3)?;
            tx.insert_assignment(k[3], &q.id, 3)?;
            assert_eq!(tx.assured_tasks_of_provider(&p.id, 10)?, vec![k[0], k[1]], "lowest key first, once each");
            assert_eq!(tx.assured_tasks_of_provider(&p.id, 1)?, vec![k[0]], "at most the limit");
            assert_eq!(tx.assured_tasks_of_provider(&q.id, 10)?, vec![k[3]]);
            assert!(tx.assured_tasks_of_provider(&party(9, Role::Provider).id, 10)?.is_empty());
            Ok(())
        })
        .unwrap();
}

pub fn known_answers_are_newest_first_and_replaced(store: &impl Store) {
    let client = party(1, Role::Client);
    let j = job(&client.id);
    let h = |n: u8| ElementHash::of(&[n]);
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&client)?;
            tx.insert_job(&j)?;
            tx.insert_tasks(j.id, &tasks(0..4, 0))?;
            let k = task_keys(tx, j.id, 4)?;
            assert!(tx.known_answers(10)?.is_empty());
            tx.insert_known_answer(k[0], &h(0), 10)?;
            tx.insert_known_answer(k[1], &h(1), 20)?;
            tx.insert_known_answer(k[2], &h(2), 20)?;
            tx.insert_known_answer(k[3], &h(3), 5)?;
            assert_eq!(
                tx.known_answers(10)?,
                vec![(k[2], h(2)), (k[1], h(1)), (k[0], h(0)), (k[3], h(3))],
                "newest first, then the higher key"
            );
            assert_eq!(tx.known_answers(2)?, vec![(k[2], h(2)), (k[1], h(1))], "at most the limit");
            tx.insert_known_answer(k[0], &h(7), 30)?;
            assert_eq!(
                tx.known_answers(10)?,
                vec![(k[0], h(7)), (k[2], h(2)), (k[1], h(1)), (k[3], h(3))],
                "a repeat replaces the digest, as the newest"
            );
            Ok(())
        })
        .unwrap();
}

pub fn spot_checks_belong_to_assignments(store: &impl Store) {
    let client = party(1, Role::Client);
    let provider = party(2, Role::Provider);
    let j = job(&client.id);
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&client)?;
            tx.upsert_provider(&provider.id, NodeState::Active, 1, 4, 0)?;
            tx.insert_job(&j)?;
            tx.insert_tasks(j.id, &tasks(0..2, 0))?;
            let k = task_keys(tx, j.id, 2)?;
            let check = tx.insert_assignment(k[0], &provider.id, 1)?;
            let plain = tx.insert_assignment(k[1], &provider.id, 1)?;
            tx.insert_spot_check(check, &ElementHash::of(b"right"))?;
            assert_eq!(tx.spot_check(check)?, Some(ElementHash::of(b"right")));
            assert_eq!(tx.spot_check(plain)?, None, "an ordinary assignment is no spot check");
            assert_eq!(tx.spot_check(AssignmentId(plain.0 + 1000))?, None, "nor is an unknown one");
            tx.insert_spot_check(check, &ElementHash::of(b"righter"))?;
            assert_eq!(tx.spot_check(check)?, Some(ElementHash::of(b"righter")), "insert_spot_check replaces");
            assert!(tx.end_assignment(check, 2)?);
            assert_eq!(
                tx.spot_check(check)?,
                Some(ElementHash::of(b"righter")),
                "the result is checked after the assignment ends"
            );
            Ok(())
        })
        .unwrap();
}

pub fn deleting_tasks_and_jobs_removes_their_assurance(store: &impl Store) {
    let client = party(1, Role::Client);
    let provider = party(2, Role::Provider);
    let (j, other) = (job(&client.id), job(&client.id));
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&client)?;
            tx.upsert_provider(&provider.id, NodeState::Active, 1, 8, 0)?;
            tx.insert_job(&j)?;
            tx.insert_job(&other)?;
            // The other job's task first, so that the job's tasks have the highest keys, which
            // SQLite hands out again once they are deleted.
            tx.insert_tasks(other.id, &tasks(0..1, 0))?;
            tx.insert_tasks(j.id, &tasks(0..3, 0))?;
            let mut k = task_keys(tx, j.id, 3)?;
            k.extend(task_keys(tx, other.id, 1)?);
            let mut checks = Vec::new();
            for (n, key) in k.iter().enumerate() {
                tx.set_task_assurance(*key, "{}", 1)?;
                tx.set_task_state(*key, TaskState::Running)?;
                tx.insert_known_answer(*key, &ElementHash::of(&[n as u8]), n as u64)?;
                let assignment = tx.insert_assignment(*key, &provider.id, 1)?;
                tx.insert_spot_check(assignment, &ElementHash::of(b"x"))?;
                checks.push(assignment);
            }
            tx.delete_task(k[2])?;
            assert_eq!(tx.task_assurance(k[2])?, None, "the assurance row goes with the task");
            assert_eq!(tx.spot_check(checks[2])?, None, "spot checks go with their assignments");
            assert!(!tx.known_answers(10)?.iter().any(|(key, _)| *key == k[2]), "the known answer goes with the task");
            assert_eq!(tx.task_assurance(k[1])?.map(|a| a.replicas_wanted), Some(1), "other tasks keep theirs");
            tx.delete_job(j.id)?;
            for i in 0..2 {
                assert_eq!(tx.task_assurance(k[i])?, None);
                assert_eq!(tx.spot_check(checks[i])?, None);
            }
            assert_eq!(
                tx.known_answers(10)?,
                vec![(k[3], ElementHash::of(&[3]))],
                "only the other job's answer is left"
            );
            assert_eq!(tx.spot_check(checks[3])?, Some(ElementHash::of(b"x")));
            assert_eq!(tx.tasks_wanting_replicas(10)?.iter().map(|q| q.key).collect::<Vec<_>>(), vec![k[3]]);
            assert_eq!(tx.assured_tasks_of_provider(&provider.id, 10)?, vec![k[3]]);
            // New tasks, whatever keys they get, start without assurance state.
            tx.insert_tasks(other.id, &tasks(1..4, 0))?;
            for key in task_keys(tx, other.id, 4)?.into_iter().skip(1) {
                assert_eq!(tx.task_assurance(key)?, None, "task {key} inherits nothing");
            }
            assert_eq!(tx.known_answers(10)?.len(), 1);
            Ok(())
        })
        .unwrap();
}

pub fn queued_tasks_with_deadline_come_by_priority_then_deadline(store: &impl Store) {
    let client = party(1, Role::Client);
    let with = |deadline: Option<u64>| {
        let mut j = job(&client.id);
        j.properties.deadline_unix_ms = deadline;
        j
    };
    let (late, soon, none) = (with(Some(9_000)), with(Some(1_000)), with(None));
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&client)?;
            for (j, priority) in [(&late, 0), (&soon, 0), (&none, 0)] {
                tx.insert_job(j)?;
                tx.insert_tasks(j.id, &tasks(0..2, priority))?;
            }
            tx.insert_tasks(late.id, &tasks(2..3, 4))?;
            assert!(tx.queued_tasks_with_deadline(10)?.is_empty(), "nothing is queued yet");
            for j in [&late, &soon, &none] {
                tx.move_job_tasks(j.id, &[TaskState::Created], TaskState::Queued)?;
                let counts = JobCounts { queued: 3, ..JobCounts::default() };
                tx.save_job_state(j.id, JobState::Running, &counts)?;
            }
            let found = tx.queued_tasks_with_deadline(10)?;
            let seen: Vec<(JobId, u64, u64)> = found
                .iter()
                .map(|(q, deadline)| {
                    let t = tx.task_by_key(q.key).unwrap().unwrap();
                    (t.job, t.index, *deadline)
                })
                .collect();
            assert_eq!(
                seen,
                vec![
                    (late.id, 2, 9_000),
                    (soon.id, 0, 1_000),
                    (soon.id, 1, 1_000),
                    (late.id, 0, 9_000),
                    (late.id, 1, 9_000)
                ],
                "priority first, then the earliest deadline, then order of creation; jobs without one left out"
            );
            assert_eq!(tx.queued_tasks_with_deadline(2)?.len(), 2);
            Ok(())
        })
        .unwrap();
}
