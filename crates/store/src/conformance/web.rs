//! Conformance of the web manager's tables: links spent once, sessions touched, expired and
//! ended per party, a rollback that keeps nothing; a job's tasks by page and its results
//! counted per interval of time.

use std::collections::BTreeMap;

use idlegrid_protocol::Payload;
use idlegrid_types::{ElementHash, PartyId, Role, TaskState};

use super::{R, job, party};
use crate::*;

fn entry(key: &str, kind: WebEntryKind, party: &PartyId, expires_ms: u64) -> WebEntryRow {
    WebEntryRow {
        key: key.to_string(),
        kind,
        party: party.clone(),
        role: Role::Client,
        csrf: if kind == WebEntryKind::Session { format!("csrf-{key}") } else { String::new() },
        started_ms: 10,
        last_seen_ms: 10,
        expires_ms,
    }
}

/// Links are taken once, sessions are read and touched, and both go by party or by expiry;
/// instances' reports are kept one per instance.
pub fn web_entries_are_spent_touched_and_expire(store: &impl Store) {
    let alice = party(1, Role::Client).id;
    let bob = party(2, Role::Provider).id;
    let failed = store.write(|tx| -> R<()> {
        let w = tx.web();
        w.insert_web_entry(&entry("l1", WebEntryKind::Link, &alice, 100))?;
        w.insert_web_entry(&entry("s1", WebEntryKind::Session, &alice, 200))?;
        w.insert_web_entry(&entry("s1", WebEntryKind::Session, &alice, 1))?;
        Ok(())
    });
    assert!(failed.is_err(), "keys are unique");
    store
        .write(|tx| -> R<()> {
            let w = tx.web();
            assert_eq!(w.web_entry("l1", WebEntryKind::Session)?, None, "a link is no session");
            assert_eq!(w.count_web_entries(WebEntryKind::Link, 0)?, 0, "the failed write kept nothing");
            assert_eq!(w.count_web_entries(WebEntryKind::Session, 0)?, 0, "the failed write kept nothing");
            w.insert_web_entry(&entry("l1", WebEntryKind::Link, &alice, 100))?;
            assert_eq!(w.take_web_entry("l1", WebEntryKind::Link)?, Some(entry("l1", WebEntryKind::Link, &alice, 100)));
            assert_eq!(w.take_web_entry("l1", WebEntryKind::Link)?, None, "a link is taken once");
            Ok(())
        })
        .unwrap();
    store
        .write(|tx| -> R<()> {
            let w = tx.web();
            w.insert_web_entry(&entry("l1", WebEntryKind::Link, &alice, 100))?;
            w.insert_web_entry(&entry("s1", WebEntryKind::Session, &alice, 200))?;
            let mut bobs = entry("s2", WebEntryKind::Session, &bob, 300);
            bobs.role = Role::Provider;
            w.insert_web_entry(&bobs)?;
            assert_eq!(w.web_entry("s2", WebEntryKind::Session)?, Some(bobs.clone()));
            assert!(w.touch_web_entry("s1", 50, 250)?);
            assert!(!w.touch_web_entry("nothing", 50, 250)?);
            let s1 = w.web_entry("s1", WebEntryKind::Session)?.unwrap();
            assert_eq!((s1.last_seen_ms, s1.expires_ms, s1.csrf.as_str()), (50, 250, "csrf-s1"));
            assert_eq!(w.count_web_entries(WebEntryKind::Session, 249)?, 2);
            assert_eq!(w.count_web_entries(WebEntryKind::Session, 250)?, 1, "expired at its time");
            assert_eq!(w.count_web_entries(WebEntryKind::Link, 0)?, 1);
            assert_eq!(w.delete_expired_web_entries(250)?, 2, "the link and alice's session");
            assert_eq!(w.web_entry("s2", WebEntryKind::Session)?, Some(bobs));
            w.insert_web_entry(&entry("s3", WebEntryKind::Session, &alice, 900))?;
            assert_eq!(w.delete_web_entries_of(&bob)?, 1);
            assert_eq!(w.web_entry("s2", WebEntryKind::Session)?, None);
            assert!(w.web_entry("s3", WebEntryKind::Session)?.is_some(), "other parties keep theirs");

            let report = |instance: &str, at: u64| InstanceReport {
                instance: instance.to_string(),
                reported_ms: at,
                body: format!("{{\"at\":{at}}}"),
            };
            assert!(w.instance_reports(10)?.is_empty());
            w.put_instance_report(&report("b", 1))?;
            w.put_instance_report(&report("a", 2))?;
            w.put_instance_report(&report("b", 3))?;
            assert_eq!(w.instance_reports(10)?, vec![report("a", 2), report("b", 3)], "one per instance, the last");
            assert_eq!(w.instance_reports(1)?.len(), 1);
            Ok(())
        })
        .unwrap();
}

/// A job's tasks come a page at a time by index, the engines of its running tasks, and its
/// results per interval of time.
pub fn web_pages_read_tasks_by_page_and_results_by_time(store: &impl Store) {
    let client = party(1, Role::Client);
    let j = job(&client.id);
    let other = job(&client.id);
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&client)?;
            tx.insert_job(&j)?;
            tx.insert_job(&other)?;
            let new = |index: u64| NewTask {
                index,
                priority: 0,
                executable: ElementHash::of(b"exe"),
                data: BTreeMap::new(),
                params: Vec::new(),
                trace: None,
            };
            tx.insert_tasks(j.id, &(0..7).map(new).collect::<Vec<_>>())?;
            tx.insert_tasks(other.id, &[new(0)])?;
            let first = tx.web().task_page(j.id, None, 3)?;
            assert_eq!(first.iter().map(|t| t.index).collect::<Vec<_>>(), vec![0, 1, 2]);
            assert_eq!(first[0].state, TaskState::Created);
            let key = tx.task(j.id, 4)?.unwrap().key;
            tx.set_task_run(key, 2, 1_500)?;
            let next = tx.web().task_page(j.id, Some(2), 3)?;
            assert_eq!(next.iter().map(|t| t.index).collect::<Vec<_>>(), vec![3, 4, 5]);
            assert_eq!((next[1].attempts, next[1].cpu_ms), (2, 1_500));
            assert_eq!(tx.web().task_page(j.id, Some(5), 3)?.len(), 1);
            assert!(tx.web().task_page(j.id, Some(6), 3)?.is_empty());

            // Engines of running tasks: placements of tasks that run, not of others or ended ones.
            let provider = party(3, Role::Provider);
            tx.insert_party(&provider)?;
            assert!(tx.web().running_engines(j.id, 10)?.is_empty());
            let running = tx.task(j.id, 5)?.unwrap().key;
            let queued = tx.task(j.id, 6)?.unwrap().key;
            tx.set_task_state(running, TaskState::Queued)?;
            tx.set_task_state(running, TaskState::Running)?;
            tx.insert_assignment(running, &provider.id, 1)?;
            let ended = tx.insert_assignment(running, &provider.id, 1)?;
            tx.end_assignment(ended, 2)?;
            tx.set_task_state(queued, TaskState::Queued)?;
            tx.insert_assignment(queued, &provider.id, 1)?;
            assert_eq!(tx.web().running_engines(j.id, 10)?, vec![provider.id.clone()]);
            assert!(tx.web().running_engines(other.id, 10)?.is_empty());
            assert!(tx.web().running_engines(j.id, 0)?.is_empty());

            // Results at 1_000, 1_500 and 2_100 (failed), and one of another job.
            for (index, at, state) in
                [(0, 1_000, TaskState::Succeeded), (1, 1_500, TaskState::Succeeded), (2, 2_100, TaskState::Failed)]
            {
                let task = tx.task(j.id, index)?.unwrap().key;
                let result = NewResult {
                    task,
                    job: j.id,
                    index,
                    state,
                    result: Some(Payload::Inline(vec![1])),
                    failure: None,
                    cpu_ms: 1,
                    attempts: 1,
                };
                tx.insert_result(&result, at)?;
            }
            let task = tx.task(other.id, 0)?.unwrap().key;
            let result = NewResult {
                task,
                job: other.id,
                index: 0,
                state: TaskState::Succeeded,
                result: None,
                failure: None,
                cpu_ms: 1,
                attempts: 1,
            };
            tx.insert_result(&result, 1_000)?;
            let history = tx.web().result_history(j.id, 0, 1_000)?;
            assert_eq!(
                history,
                vec![
                    ResultBucket { start_ms: 1_000, succeeded: 2, failed: 0 },
                    ResultBucket { start_ms: 2_000, succeeded: 0, failed: 1 },
                ]
            );
            let recent = tx.web().result_history(j.id, 1_200, 1_000)?;
            assert_eq!(recent[0], ResultBucket { start_ms: 1_000, succeeded: 1, failed: 0 });
            Ok(())
        })
        .unwrap();
}
