//! Conformance: Providers and the records result assurance keeps of them.

use super::*;

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
