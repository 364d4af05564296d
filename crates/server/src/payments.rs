//! The seam where a payment processor confirms deposits. Money enters the platform only when
//! an operator approves a deposit request (`idlegrid ops approve`) or credits an account, or
//! when a payment processor the operator configured confirms that a requested payment arrived.
//! Idlegrid ships no processor: an operator who has one implements [`PaymentAdapter`] (a card
//! or bank integration answering from its own records) and passes it in
//! `ServerConfig::payment_adapter`. Payouts are always decided by an operator.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use idlegrid_coordinator::requests::{Decider, Decision};
use idlegrid_protocol::messages::MoneyRequestInfo;

use crate::{AppState, now_ms};

/// Deposit requests handed to the adapter in one review.
const REVIEW_REQUESTS_MAX: u32 = 100;

/// What a processor says about one pending deposit request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentDecision {
    pub request: u64,
    /// True: the payment arrived, credit the account. False: it will not (refused, bounced).
    pub approve: bool,
    /// The processor's own reference of the payment, or why it was refused.
    pub note: String,
}

/// A payment processor that confirms deposits without an operator.
pub trait PaymentAdapter: Send + Sync + std::fmt::Debug + 'static {
    /// Recorded as `payment:<name>` on each request it decides.
    fn name(&self) -> &str;

    /// The deposit requests still pending, oldest first. Answer a decision for each one whose
    /// payment the processor has seen arrive, or knows will not; leave the others out: they stay
    /// pending for the next review or an operator. Called again after every interval, so an
    /// answer lost to a crash is simply given again.
    fn review<'a>(&'a self, pending: &'a [MoneyRequestInfo]) -> BoxFuture<'a, Vec<PaymentDecision>>;
}

/// Review pending deposits with the adapter every `interval`, until the server stops.
pub(crate) async fn review_deposits(state: Arc<AppState>, adapter: Arc<dyn PaymentAdapter>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(error) = review_once(&state, adapter.as_ref()).await {
            tracing::warn!(adapter = adapter.name(), %error, "payment review failed; retrying at the next interval");
        }
    }
}

async fn review_once(
    state: &Arc<AppState>,
    adapter: &dyn PaymentAdapter,
) -> Result<(), idlegrid_coordinator::CoordinatorError> {
    let pending = state.run(|c, tx, _| c.pending_deposits(tx, REVIEW_REQUESTS_MAX)).await?;
    if pending.is_empty() {
        return Ok(());
    }
    let offered: BTreeSet<u64> = pending.iter().map(|r| r.id).collect();
    let decider = Decider::Payment(adapter.name().to_string());
    for decision in adapter.review(&pending).await {
        // An adapter decides only the deposits it was shown, never a payout.
        if !offered.contains(&decision.request) {
            tracing::warn!(
                adapter = adapter.name(),
                request = decision.request,
                "payment adapter answered for a request it was not shown; ignored"
            );
            continue;
        }
        let (decider, now) = (decider.clone(), now_ms());
        let verdict = if decision.approve { Decision::Approve } else { Decision::Reject };
        let note = decision.note.clone();
        let decided =
            state.run(move |c, tx, fx| c.decide_request(tx, &decider, decision.request, verdict, &note, now, fx)).await;
        if let Err(error) = decided {
            // An operator may have decided it meanwhile.
            tracing::info!(adapter = adapter.name(), request = decision.request, %error, "payment decision not applied");
        }
    }
    Ok(())
}
