//! Money through the HTTP API. [`Accounts`] is a client's or provider's side: the balance, the
//! requests that move money across the platform's edge (a client asks for a deposit, a provider
//! for a payout) and their states. [`MoneyDesk`] is an operator's side: every pending request,
//! approve or reject each, credit an account directly. Amounts are micro-units.

use std::time::Duration;

use idlegrid_protocol::messages::{AccountInfo, MoneyRequestInfo, MoneyRequestState};
use idlegrid_protocol::wire::{CreditBody, DecisionBody, MoneyRequestBody};
use idlegrid_types::PartyId;
use reqwest::Method;

use crate::{ClientError, Transport};

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

fn state_query(state: Option<MoneyRequestState>) -> &'static str {
    match state {
        None => "all",
        Some(MoneyRequestState::Pending) => "pending",
        Some(MoneyRequestState::Approved) => "approved",
        Some(MoneyRequestState::Rejected) => "rejected",
    }
}

/// A client's or a provider's money, as the party registered on `transport`.
pub struct Accounts<'a> {
    transport: &'a Transport,
}

impl<'a> Accounts<'a> {
    pub fn new(transport: &'a Transport) -> Accounts<'a> {
        Accounts { transport }
    }

    /// Balance, what may still be spent (payouts waiting are reserved), the limit.
    pub async fn info(&self) -> Result<AccountInfo, ClientError> {
        self.transport.call::<(), _>(Method::GET, "/v1/account", None, TIMEOUT).await
    }

    /// As a client: ask to pay `amount_micros` in. Pending until an operator (or the payment
    /// processor) approves it; the same reference again is the same request.
    pub async fn request_deposit(&self, amount_micros: i64, reference: &str) -> Result<MoneyRequestInfo, ClientError> {
        let body = MoneyRequestBody { amount_micros, reference: reference.to_string() };
        self.transport.call(Method::POST, "/v1/account/deposits", Some(&body), TIMEOUT).await
    }

    /// As a provider: ask to be paid `amount_micros` of the earnings. Reserved at once (so it
    /// cannot be spent twice), paid when an operator approves it.
    pub async fn request_payout(&self, amount_micros: i64, reference: &str) -> Result<MoneyRequestInfo, ClientError> {
        let body = MoneyRequestBody { amount_micros, reference: reference.to_string() };
        self.transport.call(Method::POST, "/v1/account/payouts", Some(&body), TIMEOUT).await
    }

    /// This party's requests, oldest first; `None`: every state.
    pub async fn requests(&self, state: Option<MoneyRequestState>) -> Result<Vec<MoneyRequestInfo>, ClientError> {
        let path = format!("/v1/account/requests?state={}", state_query(state));
        self.transport.call::<(), _>(Method::GET, &path, None, TIMEOUT).await
    }
}

/// An operator's money desk, as the operator registered on `transport`.
pub struct MoneyDesk<'a> {
    transport: &'a Transport,
}

impl<'a> MoneyDesk<'a> {
    pub fn new(transport: &'a Transport) -> MoneyDesk<'a> {
        MoneyDesk { transport }
    }

    /// Every party's requests in `state` (`None`: all), oldest first, at most `limit`.
    pub async fn requests(
        &self,
        state: Option<MoneyRequestState>,
        limit: u32,
    ) -> Result<Vec<MoneyRequestInfo>, ClientError> {
        let path = format!("/v1/ops/requests?state={}&limit={limit}", state_query(state));
        self.transport.call::<(), _>(Method::GET, &path, None, TIMEOUT).await
    }

    /// Approve a request: a deposit credits its account, a payout leaves the platform. Again
    /// moves nothing.
    pub async fn approve(&self, request: u64, note: &str) -> Result<MoneyRequestInfo, ClientError> {
        let body = DecisionBody { note: note.to_string() };
        let path = format!("/v1/ops/requests/{request}/approve");
        self.transport.call(Method::POST, &path, Some(&body), TIMEOUT).await
    }

    /// Reject a request, saying why: nothing moves, a payout's reservation is released.
    pub async fn reject(&self, request: u64, reason: &str) -> Result<MoneyRequestInfo, ClientError> {
        let body = DecisionBody { note: reason.to_string() };
        let path = format!("/v1/ops/requests/{request}/reject");
        self.transport.call(Method::POST, &path, Some(&body), TIMEOUT).await
    }

    /// Credit `party`'s account with money received under `reference` (a pending deposit
    /// request with that reference and amount is approved instead). Again moves nothing.
    pub async fn credit(
        &self,
        party: &PartyId,
        amount_micros: i64,
        reference: &str,
        note: &str,
    ) -> Result<MoneyRequestInfo, ClientError> {
        let body = CreditBody {
            party: party.clone(),
            amount_micros,
            reference: reference.to_string(),
            note: note.to_string(),
        };
        self.transport.call(Method::POST, "/v1/ops/credit", Some(&body), TIMEOUT).await
    }
}
