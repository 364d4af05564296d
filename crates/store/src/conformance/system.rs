//! Conformance: Metadata, logs, the census, and client settings.

use super::*;

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
