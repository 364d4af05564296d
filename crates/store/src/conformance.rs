//! Behaviour every store implementation must have. Call [`run_all`] with a factory of empty
//! stores; each check panics with a description on failure. Together the checks call every
//! method of [`Tx`] and of [`idlegrid_ledger::LedgerStore`] and assert what it returns.

use std::collections::BTreeMap;

use idlegrid_ledger::{
    AccountId, Action, IdempotencyKey, Ledger, LedgerError, LedgerTotals, Memo, Micros, OverLimit, Purpose,
    Reservation, ReservationKind, Transfer, TransferId, TransferRequest, WorkRecord,
};
use idlegrid_protocol::Payload;
use idlegrid_protocol::messages::{NodeState, Replay};
use idlegrid_types::{
    AssignmentId, ElementHash, ElementKind, FailureKind, JobCounts, JobId, JobProperties, JobState, PartyId, Role,
    SessionId, TaskFailureInfo, TaskState,
};

use crate::*;

mod market;
mod requests;
mod watches;
pub use market::{market_refuses_conflicts_and_rolls_back, market_rows_round_trip_in_order};
pub use requests::{requests_move_money_once_and_roll_back, requests_round_trip_and_filter};
pub use watches::watches_round_trip_and_forget_their_marks;

type R<T> = Result<T, StoreError>;

fn party(n: u8, role: Role) -> PartyRow {
    let public_key = [n; 32];
    PartyRow { id: PartyId::from_public_key(&public_key), role, public_key, name: format!("p{n}"), created_ms: 1 }
}

fn job(client: &PartyId) -> JobRow {
    JobRow {
        id: JobId::random(),
        client: client.clone(),
        properties: JobProperties { name: "j".into(), ..JobProperties::default() },
        state: JobState::Defining,
        counts: JobCounts::default(),
        created_ms: 5,
        hold: None,
    }
}

fn tasks(range: std::ops::Range<u64>, priority: i32) -> Vec<NewTask> {
    range
        .map(|index| NewTask {
            index,
            priority,
            executable: ElementHash::of(b"exe"),
            data: BTreeMap::from([("in".to_string(), ElementHash::of(b"data"))]),
            params: format!("i={index}").into_bytes(),
        })
        .collect()
}

pub fn run_all<S: Store>(make: impl Fn() -> S) {
    parties_are_unique(&make());
    revocations_are_kept_once(&make());
    census_counts_from_jobs_and_providers(&make());
    logs_are_filtered_newest_first_and_expire(&make());
    outbox_sequences_and_acks(&make());
    rollback_discards_everything(&make());
    tasks_queue_in_priority_order(&make());
    assignments_track_provider_load(&make());
    results_page_and_delivery(&make());
    deleting_a_job_removes_its_rows(&make());
    elements_are_referenced_by_grants_and_jobs(&make());
    meta_and_client_settings(&make());
    sessions_expire_and_delete_with_their_rows(&make());
    providers_keep_session_and_load_across_updates(&make());
    tasks_keep_their_fields(&make());
    jobs_round_trip_with_states_and_holds(&make());
    completed_jobs_and_archived_results(&make());
    work_records_are_journaled_and_billed(&make());
    notices_wait_until_delivered(&make());
    assurance_state_wants_replicas_of_running_tasks(&make());
    assured_tasks_of_provider_are_listed_once(&make());
    provider_records_keep_the_quarantine_flag(&make());
    known_answers_are_newest_first_and_replaced(&make());
    spot_checks_belong_to_assignments(&make());
    deleting_tasks_and_jobs_removes_their_assurance(&make());
    ledger_store_round_trips(&make());
    ledger_moves_money_once_and_rolls_back(&make());
    requests_round_trip_and_filter(&make());
    requests_move_money_once_and_roll_back(&make());
    market_rows_round_trip_in_order(&make());
    market_refuses_conflicts_and_rolls_back(&make());
    watches_round_trip_and_forget_their_marks(&make());
}

pub fn parties_are_unique(store: &impl Store) {
    let p = party(1, Role::Client);
    store
        .write(|tx| -> R<()> {
            assert!(tx.insert_party(&p)?);
            assert!(!tx.insert_party(&p)?, "the second insert of an ID is refused");
            assert_eq!(tx.party(&p.id)?, Some(p.clone()));
            assert_eq!(tx.party(&party(2, Role::Client).id)?, None);
            Ok(())
        })
        .unwrap();
}

pub fn logs_are_filtered_newest_first_and_expire(store: &impl Store) {
    let (engine, client) = (party(1, Role::Provider), party(2, Role::Client));
    let job = JobId::random();
    let line = |n: u64, who: &PartyRow, component: &str, level: &str, job: Option<JobId>| LogRow {
        id: 0,
        time_ms: n,
        received_ms: 100 + n,
        party: who.id.clone(),
        role: who.role,
        level: level.into(),
        component: component.into(),
        job,
        message: format!("line {n}"),
    };
    store
        .write(|tx| -> R<()> {
            tx.insert_logs(&[
                line(1, &engine, "engine", "warn", Some(job)),
                line(2, &engine, "engine", "error", None),
                line(3, &client, "client", "error", Some(job)),
                line(4, &engine, "idlegrid_client", "warn", None),
            ])?;
            let all = tx.logs(&LogFilter { limit: 10, ..LogFilter::default() })?;
            assert_eq!(all.iter().map(|l| l.time_ms).collect::<Vec<_>>(), vec![4, 3, 2, 1], "newest first");
            assert!(all[0].id > all[3].id);
            assert_eq!(
                all[1],
                LogRow { id: all[1].id, ..line(3, &client, "client", "error", Some(job)) },
                "every field kept"
            );
            let of = |tx: &mut dyn Tx, filter: LogFilter| -> R<Vec<u64>> {
                Ok(tx.logs(&LogFilter { limit: 10, ..filter })?.into_iter().map(|l| l.time_ms).collect())
            };
            assert_eq!(of(tx, LogFilter { component: Some("engine".into()), ..Default::default() })?, vec![2, 1]);
            assert_eq!(of(tx, LogFilter { party: Some(client.id.clone()), ..Default::default() })?, vec![3]);
            assert_eq!(of(tx, LogFilter { job: Some(job), ..Default::default() })?, vec![3, 1]);
            assert_eq!(of(tx, LogFilter { level: Some("warn".into()), ..Default::default() })?, vec![4, 1]);
            assert_eq!(
                of(tx, LogFilter { since_ms: Some(102), until_ms: Some(104), ..Default::default() })?,
                vec![3, 2]
            );
            assert_eq!(tx.logs(&LogFilter { limit: 1, ..Default::default() })?.len(), 1);
            assert_eq!(tx.delete_logs_before(103)?, 2);
            assert_eq!(of(tx, LogFilter::default())?, vec![4, 3]);
            Ok(())
        })
        .unwrap();
}

pub fn census_counts_from_jobs_and_providers(store: &impl Store) {
    let client = party(1, Role::Client);
    store
        .write(|tx| -> R<()> {
            assert_eq!(tx.census(0)?, Census::default(), "an empty database");
            tx.insert_party(&client)?;
            let mut running = job(&client.id);
            running.state = JobState::Running;
            running.counts = JobCounts { queued: 3, running: 2, succeeded: 1, ..Default::default() };
            tx.insert_job(&running)?;
            let mut done = job(&client.id);
            done.state = JobState::Completed;
            done.counts = JobCounts { succeeded: 4, ..Default::default() };
            tx.insert_job(&done)?;
            let provider = party(2, Role::Provider);
            tx.insert_party(&provider)?;
            tx.upsert_provider(&provider.id, NodeState::Active, 2, 4, 1_000)?;
            tx.set_provider_session(&provider.id, Some(SessionId::random()))?;
            let census = tx.census(500)?;
            assert_eq!(census, Census { tasks_queued: 3, tasks_running: 2, jobs_active: 1, engines_connected: 1 });
            assert_eq!(tx.census(2_000)?.engines_connected, 0, "not heard from since");
            Ok(())
        })
        .unwrap();
}

pub fn revocations_are_kept_once(store: &impl Store) {
    let (a, b) = (party(1, Role::Provider), party(2, Role::Client));
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&a)?;
            tx.insert_party(&b)?;
            assert_eq!(tx.revocation(&a.id)?, None);
            let first = RevocationRow { party: a.id.clone(), reason: "forged results".into(), revoked_ms: 10 };
            assert!(tx.revoke_party(&first)?);
            let again = RevocationRow { party: a.id.clone(), reason: "another reason".into(), revoked_ms: 20 };
            assert!(!tx.revoke_party(&again)?, "a second revocation changes nothing");
            assert_eq!(tx.revocation(&a.id)?, Some(first.clone()));
            assert_eq!(tx.revocation(&b.id)?, None);
            let other = RevocationRow { party: b.id.clone(), reason: "stolen key".into(), revoked_ms: 5 };
            tx.revoke_party(&other)?;
            assert_eq!(tx.revocations()?, vec![other, first]);
            Ok(())
        })
        .unwrap();
}

pub fn outbox_sequences_and_acks(store: &impl Store) {
    let p = party(1, Role::Client);
    let sid = SessionId::random();
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&p)?;
            tx.insert_session(
                &p.id,
                &SessionRow { id: sid, inbound_acked: 0, outbound_head: 0, outbound_acked: 0, last_seen_ms: 1 },
            )?;
            assert_eq!(tx.push_outbox(sid, None, "a", None)?, 1);
            assert_eq!(tx.push_outbox(sid, Some(7), "b", Some(42))?, 2);
            assert_eq!(tx.push_outbox(sid, None, "c", None)?, 3);
            let rows = tx.outbox_after(sid, 1, 10)?;
            assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), vec![2, 3]);
            assert_eq!(rows[0].reply_to, Some(7));
            assert_eq!(tx.ack_outbox(sid, 2)?, vec![42], "acknowledging returns the results carried");
            assert_eq!(tx.outbox_after(sid, 0, 10)?.len(), 1);
            let s = tx.session(sid)?.unwrap();
            assert_eq!((s.session.outbound_head, s.session.outbound_acked), (3, 2));
            tx.ack_outbox(sid, 99)?;
            assert_eq!(tx.session(sid)?.unwrap().session.outbound_acked, 3, "acks never pass the head");
            tx.set_session_inbound(sid, 12, 50)?;
            assert_eq!(tx.session(sid)?.unwrap().session.inbound_acked, 12);
            assert!(tx.push_outbox(SessionId::random(), None, "x", None).is_err(), "no outbox without a session");
            tx.delete_session(sid)?;
            assert!(tx.session(sid)?.is_none());
            Ok(())
        })
        .unwrap();
}

pub fn rollback_discards_everything(store: &impl Store) {
    let p = party(3, Role::Client);
    let result: R<()> = store.write(|tx| {
        tx.insert_party(&p)?;
        Err(StoreError::Conflict("abort".into()))
    });
    assert!(result.is_err());
    store
        .write(|tx| -> R<()> {
            assert!(tx.party(&p.id)?.is_none(), "a failed transaction leaves nothing behind");
            Ok(())
        })
        .unwrap();
}

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

pub fn elements_are_referenced_by_grants_and_jobs(store: &impl Store) {
    let client = party(1, Role::Client);
    let j = job(&client.id);
    let (a, b) = (ElementHash::of(b"a"), ElementHash::of(b"b"));
    store
        .write(|tx| -> R<()> {
            tx.insert_element(&a, 1, 0)?;
            tx.insert_element(&b, 1, 0)?;
            tx.insert_element(&a, 1, 0)?;
            assert_eq!(tx.element_size(&a)?, Some(1));
            tx.grant_element(&client.id, &a, ElementKind::Executable, "task.wasm", 0)?;
            tx.grant_element(&client.id, &a, ElementKind::Executable, "", 0)?;
            assert_eq!(tx.element_grant(&client.id, &a)?.unwrap().name, "task.wasm", "an empty name keeps the old one");
            tx.insert_job(&j)?;
            tx.add_job_elements(j.id, &[b])?;
            assert!(tx.unreferenced_elements(1, 10)?.is_empty());
            assert!(tx.element_visible_to_client(&client.id, &a)?);
            assert!(tx.element_visible_to_client(&client.id, &b)?, "through its job");
            assert!(!tx.element_visible_to_client(&party(9, Role::Client).id, &a)?);
            assert_eq!(
                tx.element_usage(&client.id)?,
                ElementUsage { bytes: 1, elements: 1 },
                "grants count, jobs' not"
            );
            tx.insert_element(&ElementHash::of(b"c"), 1 << 40, 0)?;
            tx.grant_element(&client.id, &ElementHash::of(b"c"), ElementKind::Data, "", 0)?;
            assert_eq!(tx.element_usage(&client.id)?, ElementUsage { bytes: (1 << 40) + 1, elements: 2 });
            assert!(tx.revoke_element(&client.id, &ElementHash::of(b"c"))?);
            tx.delete_element(&ElementHash::of(b"c"))?;
            assert_eq!(tx.element_usage(&party(9, Role::Client).id)?, ElementUsage::default(), "nothing stored");
            assert!(tx.revoke_element(&client.id, &a)?);
            assert_eq!(tx.element_usage(&client.id)?, ElementUsage::default(), "a revoked grant frees its share");
            assert_eq!(tx.unreferenced_elements(1, 10)?, vec![a]);
            assert!(tx.unreferenced_elements(0, 10)?.is_empty(), "young elements are spared");
            tx.delete_job(j.id)?;
            let mut free = tx.unreferenced_elements(1, 10)?;
            free.sort();
            let mut both = vec![a, b];
            both.sort();
            assert_eq!(free, both);
            tx.delete_element(&a)?;
            assert_eq!(tx.element_size(&a)?, None);
            Ok(())
        })
        .unwrap();
}

pub fn meta_and_client_settings(store: &impl Store) {
    let client = party(1, Role::Client);
    store
        .write(|tx| -> R<()> {
            assert_eq!(tx.meta("billed_to")?, None);
            tx.set_meta("billed_to", b"100")?;
            tx.set_meta("binary", &[0, 255, 7])?;
            tx.set_meta("billed_to", b"200")?;
            assert_eq!(tx.meta("billed_to")?, Some(b"200".to_vec()), "set_meta replaces");
            assert_eq!(tx.meta("binary")?, Some(vec![0, 255, 7]), "values are bytes");
            assert_eq!(tx.client_settings(&client.id)?, None);
            tx.set_client_settings(&client.id, r#"{"webhook":"a"}"#)?;
            tx.set_client_settings(&client.id, r#"{"webhook":"b"}"#)?;
            assert_eq!(tx.client_settings(&client.id)?.as_deref(), Some(r#"{"webhook":"b"}"#));
            assert_eq!(tx.client_settings(&party(2, Role::Client).id)?, None);
            Ok(())
        })
        .unwrap();
    store
        .read(|tx| -> R<()> {
            assert_eq!(tx.meta("billed_to")?, Some(b"200".to_vec()), "a read sees what was committed");
            Ok(())
        })
        .unwrap();
}

fn session_row(id: SessionId, last_seen_ms: u64) -> SessionRow {
    SessionRow { id, inbound_acked: 0, outbound_head: 0, outbound_acked: 0, last_seen_ms }
}

pub fn sessions_expire_and_delete_with_their_rows(store: &impl Store) {
    let provider = party(2, Role::Provider);
    let (s1, s2, s3) = (SessionId::random(), SessionId::random(), SessionId::random());
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&provider)?;
            tx.insert_session(
                &provider.id,
                &SessionRow { id: s1, inbound_acked: 4, outbound_head: 0, outbound_acked: 0, last_seen_ms: 10 },
            )?;
            tx.insert_session(&provider.id, &session_row(s2, 20))?;
            tx.insert_session(&provider.id, &session_row(s3, 30))?;
            assert_eq!(
                tx.session(s1)?,
                Some(OwnedSession {
                    party: provider.id.clone(),
                    session: SessionRow {
                        id: s1,
                        inbound_acked: 4,
                        outbound_head: 0,
                        outbound_acked: 0,
                        last_seen_ms: 10
                    }
                })
            );
            tx.touch_session(s1, 100)?;
            assert_eq!(tx.session(s1)?.unwrap().session.last_seen_ms, 100);
            let mut idle = tx.sessions_idle_since(50, 10)?;
            idle.sort();
            let mut expected = vec![s2, s3];
            expected.sort();
            assert_eq!(idle, expected, "sessions last seen before the time");
            assert_eq!(tx.sessions_idle_since(50, 1)?.len(), 1, "at most the limit");
            assert!(tx.sessions_idle_since(20, 10)?.is_empty(), "the bound is exclusive");
            tx.set_session_inbound(s2, 5, 60)?;
            assert_eq!(tx.session(s2)?.unwrap().session.last_seen_ms, 60, "an inbound message is contact too");
            assert_eq!(tx.sessions_idle_since(50, 10)?, vec![s3]);

            // Deleting a session drops its outbox and attachments and frees its provider.
            tx.set_provider_session(&provider.id, Some(s3))?;
            tx.push_outbox(s3, None, "m", None)?;
            let attachment = AttachmentRow {
                session: s3,
                job: JobId::random(),
                replay: Replay::None,
                cursor: 3,
                completion_sent: true,
            };
            tx.upsert_attachment(&attachment)?;
            assert_eq!(tx.attachments_of_session(s3)?, vec![attachment.clone()]);
            assert_eq!(tx.attachments_of_job(attachment.job)?, vec![attachment.clone()]);
            tx.delete_session(s3)?;
            assert!(tx.session(s3)?.is_none());
            assert!(tx.outbox_after(s3, 0, 10)?.is_empty());
            assert!(tx.attachments_of_session(s3)?.is_empty());
            assert_eq!(tx.provider(&provider.id)?.unwrap().session, None);
            assert!(tx.session(s1)?.is_some(), "other sessions stay");
            Ok(())
        })
        .unwrap();
}

pub fn providers_keep_session_and_load_across_updates(store: &impl Store) {
    let provider = party(2, Role::Provider);
    let client = party(1, Role::Client);
    let j = job(&client.id);
    let sid = SessionId::random();
    store
        .write(|tx| -> R<()> {
            assert!(tx.provider(&provider.id)?.is_none());
            tx.set_provider_session(&provider.id, Some(sid))?;
            assert_eq!(
                tx.provider(&provider.id)?,
                Some(ProviderRow {
                    id: provider.id.clone(),
                    session: Some(sid),
                    state: NodeState::Paused,
                    slots: 0,
                    capacity: 0,
                    assigned: 0,
                    last_contact_ms: 0
                }),
                "a session for an unknown provider creates it, paused and without room"
            );
            tx.insert_job(&j)?;
            tx.insert_tasks(j.id, &tasks(0..1, 0))?;
            let key = tx.task(j.id, 0)?.unwrap().key;
            tx.insert_assignment(key, &provider.id, 1)?;
            tx.upsert_provider(&provider.id, NodeState::ShuttingDown, 4, 6, 500)?;
            assert_eq!(tx.provider_profile(&provider.id)?, None, "no profile reported yet");
            tx.set_provider_profile(&provider.id, r#"{"cores":4}"#)?;
            assert_eq!(tx.provider_profile(&provider.id)?.as_deref(), Some(r#"{"cores":4}"#));
            assert_eq!(
                tx.provider(&provider.id)?,
                Some(ProviderRow {
                    id: provider.id.clone(),
                    session: Some(sid),
                    state: NodeState::ShuttingDown,
                    slots: 4,
                    capacity: 6,
                    assigned: 1,
                    last_contact_ms: 500
                }),
                "an update keeps the session and the load"
            );
            tx.touch_provider(&provider.id, 400)?;
            assert_eq!(tx.provider(&provider.id)?.unwrap().last_contact_ms, 500, "contact time never goes back");
            tx.touch_provider(&provider.id, 600)?;
            assert_eq!(tx.provider(&provider.id)?.unwrap().last_contact_ms, 600);
            tx.upsert_provider(&provider.id, NodeState::Active, 4, 6, 700)?;
            assert_eq!(
                tx.providers_with_room(700)?,
                vec![ProviderRoom { id: provider.id.clone(), session: sid, room: 5 }]
            );
            tx.set_provider_session(&provider.id, None)?;
            assert_eq!(tx.provider(&provider.id)?.unwrap().session, None);
            assert!(tx.providers_with_room(0)?.is_empty(), "no session, no work");
            tx.set_provider_profile(&party(9, Role::Provider).id, "{}")?;
            tx.touch_provider(&party(9, Role::Provider).id, 1)?;
            assert!(
                tx.provider(&party(9, Role::Provider).id)?.is_none(),
                "profile and contact do not create providers"
            );
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
                    cpu_ms: 0
                }
            );
            assert_eq!(tx.task_by_key(t.key)?, Some(t.clone()));
            let empty = tx.task(j.id, 2)?.unwrap();
            assert!(empty.data.is_empty() && empty.params.is_empty());
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

fn work_record(id: u64, job: JobId, launched_ms: u64) -> WorkRecord {
    WorkRecord {
        id,
        client: party(1, Role::Client).id,
        job,
        task: id,
        provider: party(2, Role::Provider).id,
        engine: party(2, Role::Provider).id,
        power_gflops: 12.5,
        availability: 0.75,
        launched_ms,
        cancelled_ms: None,
        concluded_ms: None,
        final_status: false,
        data_in_bytes: 1_000,
        data_out_bytes: 0,
        pay_awaits_judgement: false,
        pay_withheld: false,
    }
}

pub fn work_records_are_journaled_and_billed(store: &impl Store) {
    let (a, b) = (JobId::random(), JobId::random());
    let ids = |records: Vec<WorkRecord>| records.iter().map(|r| r.id).collect::<Vec<_>>();
    store
        .write(|tx| -> R<()> {
            assert_eq!(tx.work_record(1)?, None);
            let mut r1 = work_record(1, a, 100);
            for record in [&r1, &work_record(2, a, 50), &work_record(3, b, 200), &work_record(4, b, 50)] {
                tx.upsert_work_record(record)?;
            }
            assert_eq!(tx.work_record(1)?, Some(r1.clone()));
            assert_eq!(ids(tx.unbilled_work_records(1_000, 10)?), vec![2, 4, 1, 3], "oldest launch first, then id");
            assert_eq!(ids(tx.unbilled_work_records(150, 10)?), vec![2, 4, 1], "launched before the bound");
            assert_eq!(ids(tx.unbilled_work_records(1_000, 2)?), vec![2, 4]);

            // An upsert replaces the whole record, the times it is selected by included.
            r1.launched_ms = 20;
            r1.cancelled_ms = Some(250);
            r1.concluded_ms = Some(300);
            r1.final_status = true;
            r1.data_out_bytes = 7;
            tx.upsert_work_record(&r1)?;
            assert_eq!(tx.work_record(1)?, Some(r1.clone()));
            assert_eq!(ids(tx.unbilled_work_records(1_000, 10)?), vec![1, 2, 4, 3]);
            assert_eq!(ids(tx.unbilled_work_records(30, 10)?), vec![1]);

            assert_eq!(ids(tx.work_records_of_job(a)?), vec![1, 2]);
            assert_eq!(tx.work_records_of_job(a)?[0], r1);
            assert_eq!(tx.unbilled_records_of_job(a)?, 2);
            tx.mark_work_records_billed(&[1, 3])?;
            tx.mark_work_records_billed(&[])?;
            assert_eq!(ids(tx.unbilled_work_records(1_000, 10)?), vec![2, 4]);
            assert_eq!((tx.unbilled_records_of_job(a)?, tx.unbilled_records_of_job(b)?), (1, 1));
            assert_eq!(ids(tx.work_records_of_job(a)?), vec![1, 2], "billed records stay in the journal");
            assert_eq!(tx.unbilled_records_of_job(JobId::random())?, 0);
            Ok(())
        })
        .unwrap();
}

pub fn notices_wait_until_delivered(store: &impl Store) {
    let client = party(1, Role::Client);
    let ids = |rows: Vec<NoticeRow>| rows.iter().map(|n| n.id).collect::<Vec<_>>();
    store
        .write(|tx| -> R<()> {
            let a = tx.push_notice(&client.id, "webhook", r#"{"n":"a"}"#, 100)?;
            let b = tx.push_notice(&client.id, "email", r#"{"n":"b"}"#, 50)?;
            let c = tx.push_notice(&client.id, "webhook", r#"{"n":"c"}"#, 100)?;
            assert!(a < b && b < c, "notice ids grow");
            assert!(tx.due_notices(49, 10)?.is_empty());
            let due = tx.due_notices(100, 10)?;
            assert_eq!(ids(due.clone()), vec![b, a, c], "earliest try first, then id");
            assert_eq!(
                due[0],
                NoticeRow {
                    id: b,
                    client: client.id.clone(),
                    channel: "email".into(),
                    body: r#"{"n":"b"}"#.into(),
                    attempts: 0,
                    next_try_ms: 50
                }
            );
            assert_eq!(ids(tx.due_notices(100, 2)?), vec![b, a]);
            tx.notice_attempted(b, false, 500, Some("connection refused"))?;
            assert_eq!(ids(tx.due_notices(100, 10)?), vec![a, c], "a failed notice waits for its next try");
            let due = tx.due_notices(500, 10)?;
            assert_eq!(ids(due.clone()), vec![a, c, b]);
            assert_eq!((due[2].attempts, due[2].next_try_ms), (1, 500));
            tx.notice_attempted(a, true, 0, None)?;
            assert_eq!(ids(tx.due_notices(1_000, 10)?), vec![c, b], "a delivered notice is never due again");
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

pub fn provider_records_keep_the_quarantine_flag(store: &impl Store) {
    let (p, q) = (party(2, Role::Provider), party(3, Role::Provider));
    store
        .write(|tx| -> R<()> {
            assert_eq!(tx.provider_record(&p.id)?, None);
            assert!(tx.quarantined_providers()?.is_empty());
            tx.set_provider_record(&p.id, r#"{"checked":1}"#, false)?;
            assert_eq!(tx.provider_record(&p.id)?.as_deref(), Some(r#"{"checked":1}"#));
            assert!(tx.quarantined_providers()?.is_empty(), "a record is not a quarantine");
            tx.set_provider_record(&p.id, r#"{"checked":2}"#, true)?;
            tx.set_provider_record(&q.id, r#"{"checked":5}"#, true)?;
            let mut quarantined = tx.quarantined_providers()?;
            quarantined.sort();
            let mut both = vec![p.id.clone(), q.id.clone()];
            both.sort();
            assert_eq!(quarantined, both);
            tx.set_provider_record(&p.id, r#"{"checked":3}"#, false)?;
            assert_eq!(tx.quarantined_providers()?, vec![q.id.clone()], "a lifted quarantine leaves the list");
            assert_eq!(tx.provider_record(&p.id)?.as_deref(), Some(r#"{"checked":3}"#), "set_provider_record replaces");
            assert_eq!(tx.provider_record(&party(9, Role::Provider).id)?, None);
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

fn ledger_failed(error: LedgerError) -> StoreError {
    StoreError::Conflict(error.to_string())
}

fn key(text: &str) -> IdempotencyKey {
    IdempotencyKey::new(text).unwrap()
}

fn transfer(id: u64, key_text: &str, debit: &AccountId, credit: &AccountId, amount: i64, created_ms: u64) -> Transfer {
    let amount = Micros::new(amount);
    Transfer {
        id: TransferId(id),
        request: TransferRequest {
            key: key(key_text),
            action: Action::Post {
                debit: debit.clone(),
                credit: credit.clone(),
                amount,
                over_limit: OverLimit::Refuse,
            },
            purpose: Purpose::Adjustment,
            memo: Memo { job: Some(JobId::random()), record: Some(id), ..Memo::default() },
        },
        debit: debit.clone(),
        credit: credit.clone(),
        posted: amount,
        from_reservation: Micros::ZERO,
        reserved: Micros::ZERO,
        released: Micros::ZERO,
        capped: Micros::ZERO,
        created_ms,
    }
}

/// The `LedgerStore` methods one by one, below the ledger's own checks.
pub fn ledger_store_round_trips(store: &impl Store) {
    let client = AccountId::Party(party(1, Role::Client).id);
    let platform = AccountId::Platform;
    let external = AccountId::External;
    let t1 = transfer(1, "adjust:1", &client, &platform, 300, 100);
    let t2 = transfer(2, "adjust:2", &platform, &client, 100, 200);
    let t3 = transfer(3, "adjust:3", &external, &platform, 50, 150);
    store
        .write(|tx| -> R<()> {
            let l = tx.ledger();
            assert_eq!(l.account(&client).map_err(ledger_failed)?, None);
            assert!(l.accounts().map_err(ledger_failed)?.is_empty());
            assert_eq!(l.totals().map_err(ledger_failed)?, LedgerTotals::default());
            let mut account = idlegrid_ledger::Account::new(client.clone(), Some(Micros::new(5_000_000)), 10);
            l.put_account(&account).map_err(ledger_failed)?;
            assert_eq!(l.account(&client).map_err(ledger_failed)?, Some(account.clone()));
            account.debits_posted = Micros::new(300);
            account.credits_pending = Micros::new(7);
            l.put_account(&account).map_err(ledger_failed)?;
            assert_eq!(
                l.account(&client).map_err(ledger_failed)?,
                Some(account.clone()),
                "put_account replaces the row"
            );
            let mut house = idlegrid_ledger::Account::new(platform.clone(), None, 10);
            house.credits_posted = Micros::new(300);
            house.debits_pending = Micros::new(7);
            l.put_account(&house).map_err(ledger_failed)?;
            let mut all = l.accounts().map_err(ledger_failed)?;
            all.sort_by_key(|a| a.id.clone());
            let mut expected = vec![account.clone(), house.clone()];
            expected.sort_by_key(|a| a.id.clone());
            assert_eq!(all, expected);
            let totals = l.totals().map_err(ledger_failed)?;
            assert_eq!(
                totals,
                LedgerTotals {
                    accounts: 2,
                    debits_posted: Micros::new(300),
                    credits_posted: Micros::new(300),
                    debits_pending: Micros::new(7),
                    credits_pending: Micros::new(7)
                }
            );
            assert!(totals.is_balanced());

            assert_eq!(l.next_transfer_id().map_err(ledger_failed)?, TransferId(1));
            l.insert_transfer(&t1).map_err(ledger_failed)?;
            assert_eq!(l.next_transfer_id().map_err(ledger_failed)?, TransferId(2));
            l.insert_transfer(&t2).map_err(ledger_failed)?;
            l.insert_transfer(&t3).map_err(ledger_failed)?;
            assert_eq!(l.transfer(TransferId(1)).map_err(ledger_failed)?, Some(t1.clone()));
            assert_eq!(l.transfer(TransferId(9)).map_err(ledger_failed)?, None);
            assert_eq!(l.transfer_by_key(&key("adjust:2")).map_err(ledger_failed)?, Some(t2.clone()));
            assert_eq!(l.transfer_by_key(&key("adjust:9")).map_err(ledger_failed)?, None);
            assert_eq!(l.next_transfer_id().map_err(ledger_failed)?, TransferId(4));
            let of = |l: &mut dyn idlegrid_ledger::LedgerStore,
                      account: &AccountId,
                      from: u64,
                      to: u64|
             -> R<Vec<u64>> {
                Ok(l.transfers_of_account(account, from, to).map_err(ledger_failed)?.iter().map(|t| t.id.0).collect())
            };
            assert_eq!(of(l, &client, 0, 1_000)?, vec![1, 2], "debits and credits, in id order");
            assert_eq!(of(l, &platform, 0, 1_000)?, vec![1, 2, 3]);
            assert_eq!(of(l, &client, 100, 200)?, vec![1], "the end is excluded");
            assert_eq!(of(l, &client, 101, 1_000)?, vec![2]);
            assert_eq!(of(l, &external, 0, 150)?, Vec::<u64>::new());
            assert_eq!(l.transfers_of_account(&external, 150, 151).map_err(ledger_failed)?, vec![t3.clone()]);

            assert_eq!(l.reservation(TransferId(1)).map_err(ledger_failed)?, None);
            let mut reservation = Reservation {
                id: TransferId(1),
                debit: client.clone(),
                credit: platform.clone(),
                kind: ReservationKind::Maximum,
                amount: Micros::new(1_000),
                settled_from_pending: Micros::ZERO,
                settled_beyond: Micros::ZERO,
                released: Micros::ZERO,
            };
            l.put_reservation(&reservation).map_err(ledger_failed)?;
            assert_eq!(l.reservation(TransferId(1)).map_err(ledger_failed)?, Some(reservation.clone()));
            reservation.settled_from_pending = Micros::new(400);
            reservation.released = Micros::new(600);
            l.put_reservation(&reservation).map_err(ledger_failed)?;
            assert_eq!(
                l.reservation(TransferId(1)).map_err(ledger_failed)?,
                Some(reservation),
                "put_reservation replaces"
            );
            Ok(())
        })
        .unwrap();

    // Keys and ids are unique: a second transfer with a used key, or a used id, is refused.
    for duplicate in
        [transfer(4, "adjust:1", &client, &platform, 1, 300), transfer(3, "adjust:4", &client, &platform, 1, 300)]
    {
        let refused: R<()> = store.write(|tx| {
            assert!(tx.ledger().insert_transfer(&duplicate).is_err(), "{duplicate:?} must be refused");
            Err(StoreError::Conflict("roll back".into()))
        });
        assert!(refused.is_err());
    }
    store
        .read(|tx| -> R<()> {
            let l = tx.ledger();
            assert_eq!(l.next_transfer_id().map_err(ledger_failed)?, TransferId(4));
            assert_eq!(l.transfer(TransferId(3)).map_err(ledger_failed)?, Some(t3.clone()), "transfers are immutable");
            Ok(())
        })
        .unwrap();
}

/// The ledger's state machine over the store: money moves once per key, and a rolled-back
/// transaction moves none.
pub fn ledger_moves_money_once_and_rolls_back(store: &impl Store) {
    let client = AccountId::Party(party(1, Role::Client).id);
    let provider = AccountId::Party(party(2, Role::Provider).id);
    let j = JobId::random();
    store
        .write(|tx| -> R<()> {
            let mut ledger = Ledger::new(tx.ledger());
            ledger.open_system_accounts(0).map_err(ledger_failed)?;
            ledger.open_account(client.clone(), Some(Micros::new(1_000_000)), 0).map_err(ledger_failed)?;
            ledger.open_account(provider.clone(), Some(Micros::ZERO), 0).map_err(ledger_failed)?;
            let deposit =
                ledger.deposit(key("deposit:1"), client.clone(), Micros::new(5_000_000), 10).map_err(ledger_failed)?;
            assert!(!deposit.repeated);
            let again =
                ledger.deposit(key("deposit:1"), client.clone(), Micros::new(5_000_000), 11).map_err(ledger_failed)?;
            assert!(again.repeated && again.transfer == deposit.transfer, "a retried key moves nothing");
            ledger
                .reserve_job(j, client.clone(), Micros::new(2_000_000), ReservationKind::Maximum, 20)
                .map_err(ledger_failed)?;
            let reservation = ledger.job_reservation(j).map_err(ledger_failed)?.unwrap();
            let settle = TransferRequest {
                key: key("compute:1"),
                action: Action::Settle { reservation: reservation.id, amount: Micros::new(500_000) },
                purpose: Purpose::Computation,
                memo: Memo::default(),
            };
            ledger.execute(settle, 30).map_err(ledger_failed)?;
            let pay = TransferRequest {
                key: key("pay:1"),
                action: Action::Post {
                    debit: AccountId::Platform,
                    credit: provider.clone(),
                    amount: Micros::new(300_000),
                    over_limit: OverLimit::Refuse,
                },
                purpose: Purpose::ProviderPay,
                memo: Memo::default(),
            };
            ledger.execute(pay, 31).map_err(ledger_failed)?;
            let released = ledger.release_job(j, 40).map_err(ledger_failed)?.unwrap();
            assert_eq!(released.transfer.released, Micros::new(1_500_000));
            let account = ledger.account(&client).map_err(ledger_failed)?;
            assert_eq!(
                (account.balance_posted().unwrap(), account.debits_pending),
                (Micros::new(4_500_000), Micros::ZERO)
            );
            assert_eq!(
                ledger.account(&provider).map_err(ledger_failed)?.balance_posted().unwrap(),
                Micros::new(300_000)
            );
            let totals = ledger.check_balanced().map_err(ledger_failed)?;
            assert_eq!(totals.accounts, 4);
            Ok(())
        })
        .unwrap();
    let aborted: R<()> = store.write(|tx| {
        Ledger::new(tx.ledger())
            .deposit(key("deposit:2"), client.clone(), Micros::new(1), 50)
            .map_err(ledger_failed)?;
        Err(StoreError::Conflict("abort".into()))
    });
    assert!(aborted.is_err());
    store
        .read(|tx| -> R<()> {
            let l = tx.ledger();
            assert_eq!(
                l.transfer_by_key(&key("deposit:2")).map_err(ledger_failed)?,
                None,
                "a rolled-back transfer leaves no trace"
            );
            let statement = l.transfers_of_account(&client, 0, u64::MAX).map_err(ledger_failed)?;
            let keys: Vec<&str> = statement.iter().map(|t| t.request.key.as_str()).collect();
            assert_eq!(keys, vec!["deposit:1", &format!("reserve:{j}"), "compute:1", &format!("release:{j}")]);
            assert!(idlegrid_ledger::check_balanced(l).is_ok());
            Ok(())
        })
        .unwrap();
}

#[cfg(test)]
mod tests {
    #[test]
    fn sqlite_in_memory_conforms() {
        super::run_all(|| crate::SqliteStore::open_in_memory().unwrap());
    }

    #[test]
    fn sqlite_file_conforms_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        super::parties_are_unique(&crate::SqliteStore::open(&path).unwrap());
        // Reopening runs no migration twice and keeps the data.
        let store = crate::SqliteStore::open(&path).unwrap();
        use crate::Store;
        let n: usize = store
            .write(|tx| -> Result<usize, crate::StoreError> {
                Ok(tx.party(&idlegrid_types::PartyId::from_public_key(&[1; 32]))?.into_iter().count())
            })
            .unwrap();
        assert_eq!(n, 1);
    }
}
