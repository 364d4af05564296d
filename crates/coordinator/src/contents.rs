//! What an engine holds, asked in the middle of its session (`GetContents`) and reconciled
//! with the server's records (`Contents`).
//!
//! An engine announces what it holds when its session starts. The server asks again:
//! - **after a silence**: an engine heard from again after it was quiet long enough to be
//!   probed (`silence::ASK_AFTER_PERCENT` of the silence limit) may have lost tasks meanwhile;
//! - **when the records disagree**: the engine reports on a placement the server does not hold
//!   as active on it;
//! - **every `contents_audit_ms`** of contact (the operator's `--engine-audit-secs`).
//!
//! Questions to one engine are at least [`ASK_GAP_MS`] apart (disagreements come in bursts).
//! The answer is reconciled: a placement the server holds and the engine does not is lost (its
//! task is queued again, and resumes from its checkpoint), a placement the engine holds and the
//! server does not want gets `RemoveTask`. A question carries its time and the answer echoes
//! it: only placements made before the question count as lost, since a later one may still be
//! on its way to the engine. When each engine was last asked is kept in the metadata.

use std::collections::BTreeSet;

use idlegrid_protocol::messages::{AssignmentState, ServerToProvider};
use idlegrid_store::{AssignmentRow, AssignmentRowState, StoreError, Tx};
use idlegrid_types::{AssignmentId, PartyId, SessionId};

use crate::error::Reject;
use crate::session::{Ctx, push};
use crate::{Coordinator, Effects};

/// Least time between two questions to one engine.
pub const ASK_GAP_MS: u64 = 5_000;

/// Why the server asks an engine what it holds now, if it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Heard from again after a silence long enough to be probed.
    AfterSilence,
    /// The last question is older than the audit period.
    Audit,
}

/// Whether an engine in contact now (`now_ms`), heard from before at `previous_contact_ms`
/// and last asked at `asked_ms`, is to be asked what it holds.
pub fn due(
    now_ms: u64,
    previous_contact_ms: Option<u64>,
    asked_ms: Option<u64>,
    silence_ms_max: u64,
    audit_ms: Option<u64>,
) -> Option<Reason> {
    if asked_ms.is_some_and(|asked| now_ms.saturating_sub(asked) < ASK_GAP_MS) {
        return None;
    }
    let probe_after = silence_ms_max.saturating_mul(crate::silence::ASK_AFTER_PERCENT) / 100;
    if previous_contact_ms.is_some_and(|contact| now_ms.saturating_sub(contact) >= probe_after.max(1)) {
        return Some(Reason::AfterSilence);
    }
    match (audit_ms, asked_ms) {
        // A first question waits a whole period after the engine was first seen asking.
        (Some(period), Some(asked)) if now_ms.saturating_sub(asked) >= period => Some(Reason::Audit),
        _ => None,
    }
}

/// Which placements an answer shows lost: active on the engine by the server's records, not
/// held by the engine, and made before the question (`request`; `None`: an unasked report at
/// session start, which counts for every placement).
pub fn lost_placements(
    active: &[AssignmentRow],
    held: &BTreeSet<AssignmentId>,
    request: Option<u64>,
) -> Vec<AssignmentId> {
    active
        .iter()
        .filter(|a| !held.contains(&a.id))
        .filter(|a| request.is_none_or(|asked| a.created_ms < asked))
        .map(|a| a.id)
        .collect()
}

fn asked_key(provider: &PartyId) -> String {
    format!("contents_asked:{provider}")
}

impl Coordinator {
    fn contents_asked(&self, tx: &mut dyn Tx, provider: &PartyId) -> Result<Option<u64>, StoreError> {
        Ok(tx
            .meta(&asked_key(provider))?
            .and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok())
            .map(u64::from_be_bytes))
    }

    /// Ask the engine what it holds (and what its cache holds), unless it was asked less than
    /// [`ASK_GAP_MS`] ago; returns whether it was asked.
    pub(crate) fn ask_contents(
        &self,
        tx: &mut dyn Tx,
        provider: &PartyId,
        session: SessionId,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<bool, StoreError> {
        if self.contents_asked(tx, provider)?.is_some_and(|asked| now_ms.saturating_sub(asked) < ASK_GAP_MS) {
            return Ok(false);
        }
        push(tx, fx, session, None, &ServerToProvider::GetContents { request: Some(now_ms) }, None)?;
        push(tx, fx, session, None, &ServerToProvider::GetCacheContents, None)?;
        tx.set_meta(&asked_key(provider), &now_ms.to_be_bytes())?;
        Ok(true)
    }

    /// An engine's request arrived (`previous_contact_ms`: when it was heard from before this
    /// one): ask what it holds when it comes back from a silence or an audit is due. An engine
    /// seen for the first time is not asked (it announces its contents) but its audit period
    /// starts.
    pub(crate) fn contents_on_contact(
        &self,
        tx: &mut dyn Tx,
        provider: &PartyId,
        session: SessionId,
        previous_contact_ms: Option<u64>,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let asked = self.contents_asked(tx, provider)?;
        if asked.is_none() && self.config.contents_audit_ms.is_some() {
            tx.set_meta(&asked_key(provider), &now_ms.to_be_bytes())?;
            return Ok(());
        }
        let silence = self.config.provider_silence_ms_max;
        if let Some(reason) = due(now_ms, previous_contact_ms, asked, silence, self.config.contents_audit_ms)
            && self.ask_contents(tx, provider, session, now_ms, fx)?
        {
            tracing::debug!(%provider, ?reason, "asked the engine what it holds");
        }
        Ok(())
    }

    /// The engine listed the tasks it holds (`request`: the question it answers): forget the
    /// placements it no longer has, and tell it to drop tasks the server no longer wants.
    pub(crate) fn reconcile(
        &self,
        ctx: &mut Ctx<'_>,
        held: Vec<(AssignmentId, AssignmentState)>,
        request: Option<u64>,
    ) -> Result<(), Reject> {
        let held_ids: BTreeSet<AssignmentId> = held.iter().map(|(id, _)| *id).collect();
        let active = ctx.tx.active_assignments_of_provider(&ctx.party.id)?;
        // An echoed time later than now is no question of this server's: it counts as now.
        let lost = lost_placements(&active, &held_ids, request.map(|asked| asked.min(ctx.now)));
        for row in active.into_iter().filter(|a| lost.contains(&a.id)) {
            ctx.tx.end_assignment(row.id, ctx.now)?;
            self.journal_conclude(ctx.tx, row.id, None, ctx.now)?;
            let Some(mut task) = ctx.tx.task_by_key(row.task)? else { continue };
            let Some(mut job) = ctx.tx.job(task.job)? else { continue };
            tracing::info!(provider = %ctx.party.id, assignment = %row.id, "the engine no longer holds its task: queued again");
            self.lost(ctx.tx, &mut task, &mut job, row.id, None, ctx.now, ctx.fx)?;
            ctx.tx.save_job_state(job.id, job.state, &job.counts)?;
        }
        for (id, _) in held {
            let wanted = matches!(ctx.tx.assignment(id)?, Some(a) if a.provider == ctx.party.id && a.state == AssignmentRowState::Active);
            if !wanted {
                push(ctx.tx, ctx.fx, ctx.session, None, &ServerToProvider::RemoveTask { assignment: id }, None)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, created_ms: u64) -> AssignmentRow {
        AssignmentRow {
            id: AssignmentId(id),
            task: id as i64,
            provider: PartyId::from_public_key(&[7; 32]),
            state: AssignmentRowState::Active,
            created_ms,
        }
    }

    #[test]
    fn engines_are_asked_after_a_silence_or_an_audit_period_never_twice_in_a_gap() {
        let (silence, audit) = (10_000, Some(60_000));
        assert_eq!(due(100_000, Some(99_000), Some(50_000), silence, audit), None, "in contact, audited recently");
        assert_eq!(due(100_000, Some(95_000), Some(50_000), silence, audit), None, "quiet, but not for long");
        assert_eq!(due(100_000, Some(94_000), Some(50_000), silence, audit), Some(Reason::AfterSilence));
        assert_eq!(due(100_000, Some(99_000), Some(40_000), silence, audit), Some(Reason::Audit));
        assert_eq!(due(100_000, Some(99_000), Some(40_000), silence, None), None, "audits off");
        assert_eq!(due(100_000, Some(10_000), Some(96_000), silence, audit), None, "asked within the gap");
        assert_eq!(due(100_000, None, None, silence, audit), None, "a new engine announces what it holds");
        assert_eq!(due(100_000, Some(200_000), Some(0), silence, None), None, "a contact after now is no silence");
    }

    #[test]
    fn only_placements_made_before_the_question_and_not_held_are_lost() {
        let active = [row(1, 10), row(2, 20), row(3, 30)];
        let held: BTreeSet<AssignmentId> = [AssignmentId(1)].into();
        assert_eq!(lost_placements(&active, &held, None), vec![AssignmentId(2), AssignmentId(3)]);
        assert_eq!(lost_placements(&active, &held, Some(30)), vec![AssignmentId(2)], "3 may still be on its way");
        assert_eq!(lost_placements(&active, &held, Some(5)), Vec::<AssignmentId>::new());
        let all: BTreeSet<AssignmentId> = active.iter().map(|a| a.id).collect();
        assert!(lost_placements(&active, &all, None).is_empty());
    }
}
