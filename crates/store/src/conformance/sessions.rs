//! Conformance: Parties, sessions and their outboxes, revocations.

use super::*;

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
