//! The log server (P4.9): engines and clients send their error and warning lines in batches;
//! operators list and filter them. Bounded per batch, per line, and per party per minute.

use std::collections::HashMap;
use std::sync::Mutex;

use idlegrid_protocol::ErrorCode;
use idlegrid_protocol::wire::{LogBatch, LogEntry, limits};
use idlegrid_store::{LogFilter, LogRow, Tx};
use idlegrid_types::{PartyId, Role};

use crate::{Coordinator, CoordinatorError, ErrorKind, Party};

const LEVELS: [&str; 3] = ["error", "warn", "info"];
const COMPONENT_BYTES_MAX: usize = 100;
/// Most lines one listing returns.
pub const LOG_LIST_MAX: u32 = 1000;

/// Lines accepted per party in the current minute (in this instance's memory: with several
/// instances a party may send this much to each).
#[derive(Default)]
pub(crate) struct LogRates {
    minutes: Mutex<HashMap<PartyId, (u64, u32)>>,
}

impl LogRates {
    /// Take `n` lines of `party`'s allowance for the minute of `now_ms`.
    fn take(&self, party: &PartyId, n: u32, per_minute: u32, now_ms: u64) -> bool {
        let minute = now_ms / 60_000;
        let mut minutes = self.minutes.lock().unwrap_or_else(|p| p.into_inner());
        if minutes.len() > 100_000 {
            minutes.retain(|_, (m, _)| *m == minute);
        }
        let entry = minutes.entry(party.clone()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1.saturating_add(n) > per_minute {
            return false;
        }
        entry.1 += n;
        true
    }
}

fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

impl Coordinator {
    /// Store a batch of log lines from an engine or a client. Lines about an assignment are
    /// filed under its job only if the engine holds (or held) it; lines about a job only if
    /// the client owns it.
    pub fn store_logs(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        batch: LogBatch,
        now_ms: u64,
    ) -> Result<usize, CoordinatorError> {
        if batch.lines.len() > limits::LOG_LINES_PER_BATCH_MAX {
            return Err(CoordinatorError::too_large(format!(
                "{} log lines in one batch; at most {} allowed",
                batch.lines.len(),
                limits::LOG_LINES_PER_BATCH_MAX
            )));
        }
        if !self.log_rates.take(&party.id, batch.lines.len() as u32, self.config.log_lines_per_minute_max, now_ms) {
            return Err(CoordinatorError::new(
                ErrorKind::TooMany,
                ErrorCode::LimitExceeded,
                format!(
                    "more than {} log lines this minute; send errors only, or fewer",
                    self.config.log_lines_per_minute_max
                ),
            ));
        }
        let mut rows = Vec::with_capacity(batch.lines.len());
        for line in batch.lines {
            if !LEVELS.contains(&line.level.as_str()) {
                return Err(CoordinatorError::bad_request(format!(
                    "log level {:?}: expected error, warn or info",
                    cut(&line.level, 20)
                )));
            }
            let job = match (party.role, line.assignment, line.job) {
                (Role::Provider, Some(assignment), _) => match tx.assignment(assignment)? {
                    Some(row) if row.provider == party.id => tx.task_by_key(row.task)?.map(|task| task.job),
                    _ => None,
                },
                (Role::Client, _, Some(job)) => tx.job(job)?.filter(|row| row.client == party.id).map(|row| row.id),
                _ => None,
            };
            rows.push(LogRow {
                id: 0,
                time_ms: line.time_ms,
                received_ms: now_ms,
                party: party.id.clone(),
                role: party.role,
                level: line.level,
                component: cut(&line.component, COMPONENT_BYTES_MAX),
                job,
                message: cut(&line.message, limits::LOG_MESSAGE_BYTES_MAX),
            });
        }
        tx.insert_logs(&rows)?;
        Ok(rows.len())
    }

    /// Log lines for an operator, newest first.
    pub fn logs_for(
        &self,
        tx: &mut dyn Tx,
        operator: &Party,
        mut filter: LogFilter,
    ) -> Result<Vec<LogEntry>, CoordinatorError> {
        if operator.role != Role::Operator {
            return Err(CoordinatorError::forbidden("only operators may read the logs"));
        }
        filter.limit = if filter.limit == 0 { 100 } else { filter.limit.min(LOG_LIST_MAX) };
        Ok(tx
            .logs(&filter)?
            .into_iter()
            .map(|row| LogEntry {
                id: row.id,
                time_ms: row.time_ms,
                received_ms: row.received_ms,
                party: row.party,
                role: row.role,
                level: row.level,
                component: row.component,
                job: row.job,
                message: row.message,
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowance_is_per_party_per_minute() {
        let rates = LogRates::default();
        let (a, b) = (PartyId::from_public_key(&[1; 32]), PartyId::from_public_key(&[2; 32]));
        assert!(rates.take(&a, 8, 10, 0));
        assert!(!rates.take(&a, 3, 10, 59_999), "11 lines in the first minute");
        assert!(rates.take(&a, 2, 10, 59_999));
        assert!(rates.take(&b, 10, 10, 1), "another party has its own");
        assert!(rates.take(&a, 10, 10, 60_000), "a new minute");
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        assert_eq!(cut("short", 10), "short");
        assert_eq!(cut("ééé", 3), "é…");
    }
}
