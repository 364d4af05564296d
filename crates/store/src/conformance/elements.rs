//! Conformance: Elements, their grants and the jobs that refer to them.

use super::*;

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

/// A task's checkpoint keeps its element; replaced or cleared, the element goes once its
/// grace period, counted again from the release, is over, unless another task still holds it.
pub fn checkpoints_hold_their_elements_until_released(store: &impl Store) {
    let client = party(1, Role::Client);
    let j = job(&client.id);
    let (shared, old) = (ElementHash::of(b"shared checkpoint"), ElementHash::of(b"old checkpoint"));
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&client)?;
            tx.insert_job(&j)?;
            tx.insert_tasks(j.id, &tasks(0..2, 0))?;
            let (first, second) = (tx.task(j.id, 0)?.unwrap().key, tx.task(j.id, 1)?.unwrap().key);
            tx.insert_element(&shared, 8, 0)?;
            tx.insert_element(&old, 8, 0)?;
            tx.set_task_checkpoint(first, Some(&old))?;
            tx.set_task_checkpoint(second, Some(&shared))?;
            assert!(tx.unreferenced_elements(100, 10)?.is_empty(), "both are tasks' checkpoints");
            assert!(tx.element_visible_to_client(&client.id, &old)?, "the client reads its task's checkpoint");
            assert!(!tx.element_visible_to_client(&party(9, Role::Client).id, &old)?);

            // The first task's checkpoint is replaced by the one the second task holds too.
            tx.set_task_checkpoint(first, Some(&shared))?;
            tx.release_element(&old, 50)?;
            assert!(tx.unreferenced_elements(50, 10)?.is_empty(), "released at 50: its grace starts again");
            assert_eq!(tx.unreferenced_elements(51, 10)?, vec![old]);
            assert!(!tx.element_visible_to_client(&client.id, &old)?);
            tx.release_element(&old, 10)?;
            assert_eq!(tx.unreferenced_elements(51, 10)?, vec![old], "a release never makes an element older");

            // One task finishes: the shared blob stays while the other still refers to it.
            tx.set_task_checkpoint(first, None)?;
            tx.release_element(&shared, 60)?;
            assert_eq!(tx.unreferenced_elements(1000, 10)?, vec![old]);
            tx.set_task_checkpoint(second, None)?;
            let mut free = tx.unreferenced_elements(1000, 10)?;
            free.sort();
            let mut both = vec![shared, old];
            both.sort();
            assert_eq!(free, both);
            Ok(())
        })
        .unwrap();
}
