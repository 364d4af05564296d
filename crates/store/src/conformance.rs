//! Behaviour every store implementation must have. Call [`run_all`] with a factory of empty
//! stores; each check panics with a description on failure.

use std::collections::BTreeMap;

use idlegrid_protocol::messages::{NodeState, Replay};
use idlegrid_protocol::Payload;
use idlegrid_types::{
    ElementHash, ElementKind, JobCounts, JobId, JobProperties, JobState, PartyId, Role, SessionId, TaskState,
};

use crate::*;

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
    outbox_sequences_and_acks(&make());
    rollback_discards_everything(&make());
    tasks_queue_in_priority_order(&make());
    assignments_track_provider_load(&make());
    results_page_and_delivery(&make());
    deleting_a_job_removes_its_rows(&make());
    elements_are_referenced_by_grants_and_jobs(&make());
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

pub fn outbox_sequences_and_acks(store: &impl Store) {
    let p = party(1, Role::Client);
    let sid = SessionId::random();
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&p)?;
            tx.insert_session(&p.id, &SessionRow { id: sid, inbound_acked: 0, outbound_head: 0, outbound_acked: 0, last_seen_ms: 1 })?;
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
    store.write(|tx| -> R<()> {
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
            let indexes: Vec<u64> =
                queue.iter().map(|q| tx.task_by_key(q.key).unwrap().unwrap().index).collect();
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
                (TaskState::Stopped, 0.5, Some(Payload::Inline(b"half".to_vec())), Some(ElementHash::of(b"cp")), 2, 900)
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
            tx.insert_session(&provider.id, &SessionRow { id: sid, inbound_acked: 0, outbound_head: 0, outbound_acked: 0, last_seen_ms: 0 })?;
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
            assert!(tx.revoke_element(&client.id, &a)?);
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
