//! What the server tells engines besides their tasks, for their owners' status pages: a
//! summary of the work the server accepted from them and what it earned (`WorkSummary`), and
//! the content the operator published (`DisplayContent`). An engine gets both when its
//! session starts; the summary again after every billing pass that settled its work, the
//! content whenever the operator publishes new content. The totals are kept per provider in
//! the store's key-value table, added to only by billing, which settles each record once.

use std::collections::BTreeMap;

use idlegrid_ledger::{AccountId, Ledger, LedgerError, WorkRecord};
use idlegrid_protocol::messages::ServerToProvider;
use idlegrid_protocol::wire::DisplayBody;
use idlegrid_store::{StoreError, Tx};
use idlegrid_types::{PartyId, Role, SessionId};
use serde::{Deserialize, Serialize};

use crate::session::push;
use crate::{Coordinator, CoordinatorError, Effects, Party};

/// Where the published content is kept (one value: new content replaces the old).
const DISPLAY_KEY: &str = "display_content";
const TITLE_BYTES_MAX: usize = 200;
const BODY_BYTES_MAX: usize = 4000;
const URL_BYTES_MAX: usize = 2000;
/// Connected engines told at once when content is published; the rest get it when they next
/// start a session.
const ENGINES_TOLD_MAX: u32 = 10_000;

/// Why published content is refused, if it is.
pub fn check_display(content: &DisplayBody) -> Result<(), String> {
    if content.title.trim().is_empty() || content.title.len() > TITLE_BYTES_MAX {
        return Err(format!("title must be 1 to {TITLE_BYTES_MAX} bytes"));
    }
    if content.body.len() > BODY_BYTES_MAX {
        return Err(format!("body must be at most {BODY_BYTES_MAX} bytes"));
    }
    if let Some(url) = &content.url
        && (url.len() > URL_BYTES_MAX || !(url.starts_with("https://") || url.starts_with("http://")))
    {
        return Err(format!("url must start with https:// or http:// and be at most {URL_BYTES_MAX} bytes"));
    }
    Ok(())
}

impl Coordinator {
    /// Publish content for every engine's status page: kept, sent now to the engines heard
    /// from within the silence limit, and to every other engine when its session starts.
    /// Returns how many engines were told now.
    pub fn publish_display(
        &self,
        tx: &mut dyn Tx,
        operator: &Party,
        content: &DisplayBody,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<u32, CoordinatorError> {
        if operator.role != Role::Operator {
            return Err(CoordinatorError::forbidden("only operators may publish content for engines"));
        }
        check_display(content).map_err(CoordinatorError::bad_request)?;
        let stored = serde_json::to_vec(content).expect("display content serializes");
        tx.set_meta(DISPLAY_KEY, &stored)?;
        let message = display_message(content.clone());
        let since = now_ms.saturating_sub(self.config.provider_silence_ms_max);
        let mut told = 0;
        for provider in tx.providers_heard_since(since, ENGINES_TOLD_MAX)? {
            if let Some(session) = provider.session {
                push(tx, fx, session, None, &message, None)?;
                told += 1;
            }
        }
        tracing::info!(engines = told, title = %content.title, "content published for engines");
        Ok(told)
    }

    /// An engine's session started: its work summary and the published content, if any.
    pub(crate) fn greet_engine(
        &self,
        tx: &mut dyn Tx,
        provider: &PartyId,
        session: SessionId,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let summary = work_summary(tx, provider)?;
        push(tx, fx, session, None, &summary, None)?;
        self.send_served(tx, provider, session, fx)?;
        if let Some(stored) = tx.meta(DISPLAY_KEY)? {
            match serde_json::from_slice::<DisplayBody>(&stored) {
                Ok(content) => {
                    push(tx, fx, session, None, &display_message(content), None)?;
                }
                Err(e) => {
                    return Err(StoreError::Corrupt(format!("published content for engines: {e}")));
                }
            }
        }
        Ok(())
    }

    /// Add the work a billing pass settled to each provider's totals and tell its connected
    /// engine the new summary. `settled` are the records billed for the last time in this
    /// pass, each exactly once (the pass marks them billed in the same transaction).
    pub(crate) fn settle_work_totals(
        &self,
        tx: &mut dyn Tx,
        settled: &[&WorkRecord],
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let mut added: BTreeMap<&PartyId, WorkTotals> = BTreeMap::new();
        for record in settled {
            added.entry(&record.provider).or_default().add(record);
        }
        for (provider, more) in added {
            let mut totals = load_totals(tx, provider)?;
            totals.tasks_completed += more.tasks_completed;
            totals.run_ms += more.run_ms;
            tx.set_meta(&totals_key(provider), &serde_json::to_vec(&totals).expect("totals serialize"))?;
            let summary = work_summary(tx, provider)?;
            self.tell_provider(tx, provider, &summary, fx)?;
        }
        Ok(())
    }
}

/// What billing settled of one provider's work, summed over its placements.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct WorkTotals {
    /// Placements that returned their task's final result and were paid.
    tasks_completed: u64,
    /// Time the placements ran, launch to conclusion.
    run_ms: u64,
}

impl WorkTotals {
    fn add(&mut self, record: &WorkRecord) {
        if record.final_status && !record.pay_withheld {
            self.tasks_completed += 1;
        }
        if let Some(end) = record.concluded_ms {
            self.run_ms += end.saturating_sub(record.launched_ms);
        }
    }
}

fn totals_key(provider: &PartyId) -> String {
    format!("work_totals/{provider}")
}

fn load_totals(tx: &mut dyn Tx, provider: &PartyId) -> Result<WorkTotals, StoreError> {
    match tx.meta(&totals_key(provider))? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("work totals of provider {provider}: {e}"))),
        None => Ok(WorkTotals::default()),
    }
}

fn display_message(content: DisplayBody) -> ServerToProvider {
    ServerToProvider::DisplayContent { title: content.title, body: content.body, url: content.url }
}

/// The server's view of a provider's work: its settled totals and the balance of its account
/// (0 before it has one).
fn work_summary(tx: &mut dyn Tx, provider: &PartyId) -> Result<ServerToProvider, StoreError> {
    let totals = load_totals(tx, provider)?;
    let balance_micros = match Ledger::new(tx.ledger()).account(&AccountId::Party(provider.clone())) {
        Ok(account) => account
            .balance_posted()
            .map_err(|e| StoreError::Corrupt(format!("balance of provider {provider}: {e}")))?
            .as_i64(),
        Err(LedgerError::AccountNotFound { .. }) => 0,
        Err(e) => return Err(StoreError::Database(format!("account of provider {provider}: {e}"))),
    };
    Ok(ServerToProvider::WorkSummary {
        tasks_completed: totals.tasks_completed,
        run_seconds: totals.run_ms / 1000,
        balance_micros,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(title: &str, body: &str, url: Option<&str>) -> DisplayBody {
        DisplayBody { title: title.into(), body: body.into(), url: url.map(String::from) }
    }

    #[test]
    fn published_content_is_checked_field_by_field() {
        assert!(check_display(&content("Maintenance", "Sunday 02:00 UTC", Some("https://example.org/x"))).is_ok());
        assert!(check_display(&content("  ", "b", None)).unwrap_err().contains("title"));
        assert!(check_display(&content(&"t".repeat(201), "b", None)).unwrap_err().contains("title"));
        assert!(check_display(&content("t", &"b".repeat(4001), None)).unwrap_err().contains("body"));
        assert!(check_display(&content("t", "b", Some("javascript:alert(1)"))).unwrap_err().contains("url"));
    }
}
