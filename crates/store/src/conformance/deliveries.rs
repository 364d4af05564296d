//! Conformance: where a job's results are delivered, and each delivery's state.

use super::*;
use crate::deliveries::{DeliveryCounts, DeliveryState, DeliveryTarget};

pub fn deliveries_queue_retry_and_go_with_their_job(store: &impl Store) {
    let client = party(1, Role::Client);
    let j = job(&client.id);
    store
        .write(|tx| -> R<()> {
            tx.insert_party(&client)?;
            tx.insert_job(&j)?;
            let d = tx.deliveries();
            assert_eq!(d.delivery_target(j.id)?, None);
            let target = DeliveryTarget { job: j.id, task: None, url: "https://a.example/r".into(), created_ms: 5 };
            d.set_delivery_target(&target)?;
            let narrowed = DeliveryTarget { task: Some(3), url: "https://b.example/r".into(), ..target };
            d.set_delivery_target(&narrowed)?;
            assert_eq!(d.delivery_target(j.id)?, Some(narrowed), "a new target replaces the old");

            d.queue_delivery(j.id, 3, 11, 100)?;
            d.queue_delivery(j.id, 1, 12, 50)?;
            assert!(d.due_deliveries(49, 10)?.is_empty(), "nothing due yet");
            let due = d.due_deliveries(100, 10)?;
            assert_eq!(due.iter().map(|r| (r.task, r.result_id)).collect::<Vec<_>>(), vec![(1, 12), (3, 11)]);
            assert!(due.iter().all(|r| r.state == DeliveryState::Pending && r.attempts == 0));
            assert_eq!(d.due_deliveries(100, 1)?.len(), 1, "limited");

            d.delivery_attempted(j.id, 1, DeliveryState::Pending, 1, 200, Some("answered 503"), None)?;
            d.delivery_attempted(j.id, 3, DeliveryState::Delivered, 1, 100, None, Some(101))?;
            assert!(d.due_deliveries(199, 10)?.is_empty(), "retried later; delivered ones never again");
            let again = d.due_deliveries(200, 10)?;
            assert_eq!(again.len(), 1);
            assert_eq!((again[0].attempts, again[0].last_error.as_deref()), (1, Some("answered 503")));
            d.delivery_attempted(j.id, 1, DeliveryState::Failed, 2, 200, Some("gave up"), None)?;
            assert!(d.due_deliveries(u64::MAX >> 2, 10)?.is_empty(), "failed for good");
            assert_eq!(d.delivery_counts(j.id)?, DeliveryCounts { pending: 0, delivered: 1, failed: 1 });
            let all = d.deliveries_of_job(j.id, None, 10)?;
            assert_eq!(all.iter().map(|r| r.task).collect::<Vec<_>>(), vec![1, 3]);
            assert_eq!(all[1].delivered_ms, Some(101));
            assert_eq!(d.deliveries_of_job(j.id, Some(1), 10)?.len(), 1, "paged by task");

            d.queue_delivery(j.id, 1, 13, 300)?;
            let requeued = &d.deliveries_of_job(j.id, None, 1)?[0];
            assert_eq!((requeued.state, requeued.attempts, requeued.result_id), (DeliveryState::Pending, 0, 13));
            assert_eq!(requeued.last_error, None, "queued again from no attempts");

            tx.delete_job(j.id)?;
            let d = tx.deliveries();
            assert_eq!(d.delivery_target(j.id)?, None, "gone with the job");
            assert_eq!(d.delivery_counts(j.id)?, DeliveryCounts::default());
            Ok(())
        })
        .unwrap();
}
