//! Results delivered outside the server (the catalogue's `ExternalDelivery`): a client names a
//! URL where a job's final results (or one task's) go; each result, as it concludes or already
//! concluded, is queued for delivery, and the server shell sends it (an HTTP PUT of the
//! result's bytes, naming the job, the task, the state and the SHA-256 in headers), retried
//! with exponential back-off until the receiver answers 2xx or the attempts run out. The client
//! reads how far delivery got in the reply to `ExternalDelivery` (`idlegrid job deliver`).
//!
//! The URL is the client's, so it is untrusted: at most [`URL_BYTES_MAX`] bytes, http or https,
//! and, like notice webhooks, only public addresses unless the operator allows a range
//! (`webhooks`); the shell checks the address it connects to again, follows no redirect and
//! gives up on a slow receiver. Credentials in the URL are used but never shown: logs and
//! reports carry [`redacted`] URLs.

use idlegrid_protocol::Payload;
use idlegrid_protocol::messages::{DELIVERIES_LISTED_MAX, DeliveryInfo, DeliveryReport, ErrorCode, ServerToClient};
use idlegrid_store::{DeliveryRow, DeliveryState, DeliveryTarget, JobRow, StoreError, Tx};
use idlegrid_types::{JobId, TaskIndex, TaskState};

use crate::error::{Reject, report};
use crate::session::Ctx;
use crate::{Coordinator, CoordinatorError};

/// Longest URL a client may give.
pub const URL_BYTES_MAX: usize = 2048;
/// Results already in that one request queues at most (the rest of a larger job is refused:
/// ask for them task by task).
const QUEUED_AT_ONCE_MAX: usize = 1_000_000;
/// How long a delivery handed to the shell is not handed out again (by any instance): the
/// shell's attempt ends, and is recorded, well within it.
const CLAIM_MS: u64 = 30 * 60_000;
/// Longest error kept per delivery.
const ERROR_CHARS_MAX: usize = 300;

/// Check a delivery URL as far as can be without the network.
pub fn check_url(text: &str, allow: &[crate::webhooks::NetRange]) -> Result<(), String> {
    if text.len() > URL_BYTES_MAX {
        return Err(format!("the delivery URL is {} bytes long; at most {URL_BYTES_MAX} allowed", text.len()));
    }
    let url = url::Url::parse(text).map_err(|e| format!("the delivery URL is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("the delivery URL must be http or https, not {}", url.scheme()));
    }
    crate::webhooks::check_url(text, allow).map_err(|e| e.replace("webhook_url", "the delivery URL"))
}

/// The URL without its credentials, query and fragment: what logs and reports show.
pub fn redacted(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => "(not a URL)".to_string(),
    }
}

/// When a delivery that failed `attempts` times (this one included) is tried again: 1 s,
/// doubled each time, at most `max_ms`; `None`: given up.
pub fn next_try(now_ms: u64, attempts: u32, attempts_max: u32, max_ms: u64) -> Option<u64> {
    if attempts >= attempts_max {
        return None;
    }
    let delay = 1000u64.saturating_mul(1 << attempts.saturating_sub(1).min(30)).min(max_ms);
    Some(now_ms.saturating_add(delay))
}

/// A delivery due now, with what the shell sends.
#[derive(Debug, Clone, PartialEq)]
pub struct DueDelivery {
    pub job: JobId,
    pub task: TaskIndex,
    pub url: String,
    pub attempts: u32,
    pub state: TaskState,
    /// The result (`None`: a failure, delivered as its JSON description).
    pub result: Option<Payload>,
    pub failure_json: Option<String>,
}

fn info(row: &DeliveryRow) -> DeliveryInfo {
    DeliveryInfo {
        task: row.task,
        state: row.state.as_str().to_string(),
        attempts: row.attempts,
        last_error: row.last_error.clone(),
        delivered_ms: row.delivered_ms,
    }
}

impl Coordinator {
    /// `ExternalDelivery` from a client: set the target (checked) and queue the results already
    /// in, or only report; answered with the job's `DeliveryReport`.
    pub(crate) fn external_delivery(
        &self,
        ctx: &mut Ctx<'_>,
        seq: u64,
        job: &JobRow,
        task: Option<TaskIndex>,
        url: Option<String>,
    ) -> Result<(), Reject> {
        if let Some(url) = url {
            check_url(&url, &self.config.webhook_allow).map_err(|e| report(ErrorCode::BadRequest, e))?;
            if let Some(index) = task
                && ctx.tx.task(job.id, index)?.is_none()
            {
                return Err(report(ErrorCode::UnknownTask, format!("job {} has no task {index}", job.id)));
            }
            let target = DeliveryTarget { job: job.id, task, url: url.clone(), created_ms: ctx.now };
            ctx.tx.deliveries().set_delivery_target(&target)?;
            let queued = self.queue_existing(ctx.tx, job.id, task, ctx.now)?;
            tracing::info!(job = %job.id, url = %redacted(&url), queued, "results to be delivered outside the server");
        }
        let report = self.delivery_report(ctx.tx, job.id)?;
        ctx.reply(seq, &ServerToClient::ExternalDelivery(report))
    }

    /// Queue the delivery of every result the job has already (of `task` only, if named).
    fn queue_existing(
        &self,
        tx: &mut dyn Tx,
        job: JobId,
        task: Option<TaskIndex>,
        now_ms: u64,
    ) -> Result<usize, Reject> {
        let (mut after, mut queued) = (0, 0);
        loop {
            let page = tx.results_after(job, after, false, 1000)?;
            let Some(last) = page.last() else { return Ok(queued) };
            after = last.id;
            for row in page.iter().filter(|r| task.is_none_or(|t| r.result.index == t)) {
                if queued >= QUEUED_AT_ONCE_MAX {
                    return Err(report(
                        ErrorCode::LimitExceeded,
                        format!("more than {QUEUED_AT_ONCE_MAX} results to deliver at once: name one task at a time"),
                    ));
                }
                tx.deliveries().queue_delivery(job, row.result.index, row.id, now_ms)?;
                queued += 1;
            }
        }
    }

    /// A task's result was just recorded (`result_id`): queue its delivery if its job has a
    /// target for it.
    pub(crate) fn deliver_if_asked(
        &self,
        tx: &mut dyn Tx,
        job: JobId,
        task: TaskIndex,
        result_id: i64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        if let Some(target) = tx.deliveries().delivery_target(job)?
            && target.task.is_none_or(|t| t == task)
        {
            tx.deliveries().queue_delivery(job, task, result_id, now_ms)?;
        }
        Ok(())
    }

    /// How delivery of a job's results goes.
    pub fn delivery_report(&self, tx: &mut dyn Tx, job: JobId) -> Result<DeliveryReport, StoreError> {
        let target = tx.deliveries().delivery_target(job)?;
        let counts = tx.deliveries().delivery_counts(job)?;
        let rows = tx.deliveries().deliveries_of_job(job, None, DELIVERIES_LISTED_MAX)?;
        Ok(DeliveryReport {
            job,
            task: target.as_ref().and_then(|t| t.task),
            url: target.map(|t| redacted(&t.url)),
            pending: counts.pending,
            delivered: counts.delivered,
            failed: counts.failed,
            deliveries: rows.iter().map(info).collect(),
        })
    }

    /// Deliveries due now, with their results, for the shell to send (at most `limit`).
    pub fn due_deliveries(
        &self,
        tx: &mut dyn Tx,
        now_ms: u64,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, CoordinatorError> {
        let mut due = Vec::new();
        for row in tx.deliveries().due_deliveries(now_ms, limit)? {
            let target = tx.deliveries().delivery_target(row.job)?;
            let result = tx.results_after(row.job, row.result_id - 1, false, 1)?.into_iter().next();
            let (Some(target), Some(result)) = (target, result.filter(|r| r.id == row.result_id)) else {
                // The target or the result went (the job was removed, its results purged).
                let error = "the result or its target is no longer on the server";
                tx.deliveries().delivery_attempted(
                    row.job,
                    row.task,
                    DeliveryState::Failed,
                    row.attempts,
                    now_ms,
                    Some(error),
                    None,
                )?;
                continue;
            };
            tx.deliveries().delivery_attempted(
                row.job,
                row.task,
                DeliveryState::Pending,
                row.attempts,
                now_ms.saturating_add(CLAIM_MS),
                row.last_error.as_deref(),
                None,
            )?;
            let failure_json = result.result.failure.as_ref().map(|f| serde_json::to_string(f).unwrap_or_default());
            due.push(DueDelivery {
                job: row.job,
                task: row.task,
                url: target.url,
                attempts: row.attempts,
                state: result.result.state,
                result: result.result.result,
                failure_json,
            });
        }
        Ok(due)
    }

    /// Record an attempt at a delivery: delivered, or tried again later (given up after
    /// `delivery_attempts_max`).
    pub fn delivery_attempted(
        &self,
        tx: &mut dyn Tx,
        job: JobId,
        task: TaskIndex,
        attempts_before: u32,
        outcome: Result<(), String>,
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        let attempts = attempts_before.saturating_add(1);
        let deliveries = tx.deliveries();
        match outcome {
            Ok(()) => deliveries.delivery_attempted(
                job,
                task,
                DeliveryState::Delivered,
                attempts,
                now_ms,
                None,
                Some(now_ms),
            )?,
            Err(error) => {
                let error: String = error.chars().take(ERROR_CHARS_MAX).collect();
                let max = self.config.delivery_attempts_max;
                match next_try(now_ms, attempts, max, self.config.delivery_retry_ms_max) {
                    Some(next) => deliveries.delivery_attempted(
                        job,
                        task,
                        DeliveryState::Pending,
                        attempts,
                        next,
                        Some(&error),
                        None,
                    )?,
                    None => {
                        tracing::warn!(%job, task, %error, "result delivery given up after its last attempt");
                        deliveries.delivery_attempted(
                            job,
                            task,
                            DeliveryState::Failed,
                            attempts,
                            now_ms,
                            Some(&error),
                            None,
                        )?
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_shown_without_credentials() {
        let allow = ["127.0.0.0/8".parse().unwrap()];
        check_url("https://results.example.com/in", &[]).unwrap();
        check_url("http://127.0.0.1:9000/in", &allow).unwrap();
        let error = check_url("http://127.0.0.1:9000/in", &[]).unwrap_err();
        assert!(error.contains("--webhook-allow"), "{error}");
        assert!(check_url("ftp://results.example.com/in", &[]).unwrap_err().contains("http or https"));
        assert!(check_url("results.example.com/in", &[]).unwrap_err().contains("not a URL"));
        let long = format!("https://results.example.com/{}", "a".repeat(URL_BYTES_MAX));
        assert!(check_url(&long, &[]).unwrap_err().contains("at most 2048"));
        assert_eq!(
            redacted("https://user:secret@results.example.com:8443/in/put?token=abc#x"),
            "https://results.example.com:8443/in/put"
        );
        assert_eq!(redacted("::"), "(not a URL)");
    }

    #[test]
    fn retries_back_off_and_end() {
        assert_eq!(next_try(0, 1, 5, 60_000), Some(1000));
        assert_eq!(next_try(0, 2, 5, 60_000), Some(2000));
        assert_eq!(next_try(0, 4, 5, 60_000), Some(8000));
        assert_eq!(next_try(0, 5, 5, 60_000), None, "the last attempt allowed");
        assert_eq!(next_try(0, 20, 40, 60_000), Some(60_000), "at most the longest wait");
        assert_eq!(next_try(u64::MAX, 1, 5, 60_000), Some(u64::MAX), "no overflow");
    }
}
