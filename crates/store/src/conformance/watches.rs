//! Conformance of narrowed attachments: a narrowing round-trips, replacing it forgets its
//! marks, marks are per task, deleting removes both, a rolled-back transaction leaves nothing,
//! and a deleted session takes its narrowings with it.

use idlegrid_types::{JobId, SessionId};

use super::R;
use crate::{InterimMark, Store, StoreError, WatchRow};

pub fn watches_round_trip_and_forget_their_marks(store: &impl Store) {
    let (session, job) = (SessionId::random(), JobId::random());
    let watch = WatchRow { session, job, task: Some(3), every_ms: Some(2_000), every_percent: Some(12.5) };
    store
        .write(|tx| -> R<()> {
            assert_eq!(tx.watches().watch(session, job)?, None);
            tx.watches().set_watch(&watch)?;
            tx.watches().set_interim_mark(session, job, 3, &InterimMark { sent_ms: 10, progress: 0.25 })?;
            tx.watches().set_interim_mark(session, job, 3, &InterimMark { sent_ms: 20, progress: 0.5 })?;
            tx.watches().set_interim_mark(session, job, 4, &InterimMark { sent_ms: 30, progress: 0.75 })?;
            Ok(())
        })
        .unwrap();
    store
        .write(|tx| -> R<()> {
            assert_eq!(tx.watches().watch(session, job)?, Some(watch.clone()));
            assert_eq!(tx.watches().watch(SessionId::random(), job)?, None);
            assert_eq!(tx.watches().interim_mark(session, job, 3)?, Some(InterimMark { sent_ms: 20, progress: 0.5 }));
            assert_eq!(tx.watches().interim_mark(session, job, 4)?.map(|m| m.sent_ms), Some(30));
            let plain = WatchRow { task: None, every_ms: None, every_percent: None, ..watch.clone() };
            tx.watches().set_watch(&plain)?;
            assert_eq!(tx.watches().watch(session, job)?, Some(plain));
            assert_eq!(tx.watches().interim_mark(session, job, 3)?, None, "a new narrowing starts afresh");
            tx.watches().delete_watch(session, job)?;
            assert_eq!(tx.watches().watch(session, job)?, None);
            Ok(())
        })
        .unwrap();
    let rolled_back = store.write(|tx| -> R<()> {
        tx.watches().set_watch(&watch)?;
        Err(StoreError::Conflict("rolled back on purpose".into()))
    });
    assert!(rolled_back.is_err());
    let left = store.write(|tx| -> R<Option<WatchRow>> { tx.watches().watch(session, job) }).unwrap();
    assert_eq!(left, None, "nothing of a rolled-back transaction stays");
}

pub fn a_deleted_session_forgets_its_watches(store: &impl Store) {
    let (session, other, job) = (SessionId::random(), SessionId::random(), JobId::random());
    let watch = WatchRow { session, job, task: Some(1), every_ms: Some(1_000), every_percent: None };
    let kept = WatchRow { session: other, ..watch.clone() };
    store
        .write(|tx| -> R<()> {
            tx.watches().set_watch(&watch)?;
            tx.watches().set_watch(&kept)?;
            tx.watches().set_interim_mark(session, job, 1, &InterimMark { sent_ms: 5, progress: 0.1 })?;
            tx.delete_session(session)?;
            Ok(())
        })
        .unwrap();
    store
        .write(|tx| -> R<()> {
            assert_eq!(tx.watches().watch(session, job)?, None, "an expired session's narrowing goes with it");
            assert_eq!(tx.watches().interim_mark(session, job, 1)?, None);
            assert_eq!(tx.watches().watch(other, job)?, Some(kept.clone()), "another session's stays");
            Ok(())
        })
        .unwrap();
}
