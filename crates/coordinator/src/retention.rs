//! Archive and purge on the operator's demand (P4.11): what maintenance does by the retention
//! settings (`archive_after_ms`, `results_retention_ms`), done now for the jobs completed at
//! least a given time ago whose results nobody fetched. Purged jobs' clients get a `purged`
//! notice naming the job.

use idlegrid_protocol::ops::{RetentionAction, RetentionReply, RetentionRequest};
use idlegrid_store::Tx;
use idlegrid_types::Role;

use crate::{Coordinator, CoordinatorError, Effects, Party};

/// Jobs one demand handles at most (run it again for more).
pub const RETENTION_JOBS_MAX: u32 = 10_000;

impl Coordinator {
    /// Archive or purge now, for jobs completed at least `older_than_secs` before `now_ms`.
    pub fn retention_now(
        &self,
        tx: &mut dyn Tx,
        operator: &Party,
        request: &RetentionRequest,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<RetentionReply, CoordinatorError> {
        if operator.role != Role::Operator {
            return Err(CoordinatorError::forbidden("only operators may archive or purge results"));
        }
        let before = now_ms.saturating_sub(request.older_than_secs.saturating_mul(1000)).saturating_add(1);
        let jobs = tx.completed_jobs_with_undelivered_results(before, RETENTION_JOBS_MAX)?;
        let mut reply = RetentionReply { jobs: 0, results: 0 };
        for (job, _, _) in jobs {
            match request.action {
                RetentionAction::Archive => {
                    let archived = tx.archive_results(job, false)?;
                    reply.results += archived;
                    reply.jobs += u64::from(archived > 0);
                }
                RetentionAction::Purge => {
                    let Some(row) = tx.job(job)? else { continue };
                    let reason = "the operator purged results nobody fetched; the job and its data are deleted";
                    self.notify(tx, &row, "purged", Some(reason), now_ms)?;
                    for assignment in tx.active_assignments_of_job(job)? {
                        self.cancel_placement(tx, assignment.id, &assignment.provider, now_ms, fx)?;
                    }
                    tx.delete_job(job)?;
                    reply.jobs += 1;
                }
            }
        }
        tracing::info!(action = ?request.action, older_than_secs = request.older_than_secs, jobs = reply.jobs, "retention on demand");
        Ok(reply)
    }
}
