//! Money across the platform's edge, on the server: clients request deposits, providers request
//! payouts, operators (or the payment processor the operator configured) approve or reject
//! them, and operators may credit an account directly. The rules are `idlegrid_ledger`'s
//! (`requests`); this module checks who asks, maps the ledger's refusals to API errors, and
//! resumes a client's held jobs once money brings its account back within its limit.

use idlegrid_ledger::{AccountId, Ledger, LedgerError, Micros, MoneyRequest, RequestFilter, RequestKind, RequestState};
use idlegrid_protocol::messages::{MoneyRequestInfo, MoneyRequestKind, MoneyRequestState};
use idlegrid_store::{DomainKind, StoreError, Tx};
use idlegrid_types::{PartyId, Role};

use crate::money::HOLD_ACCOUNT_LIMIT;
use crate::{Coordinator, CoordinatorError, Effects, Party};

/// Most requests one listing returns.
pub const REQUESTS_LISTED_MAX: u32 = 1000;

/// Who decides a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decider {
    Operator(PartyId),
    /// A payment processor the operator configured, by its name.
    Payment(String),
}

impl Decider {
    fn label(&self) -> String {
        match self {
            Decider::Operator(id) => format!("operator:{id}"),
            Decider::Payment(name) => format!("payment:{name}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Reject,
}

/// The ledger's refusal as an answer: what the caller got wrong is a 4xx naming it, and only a
/// failure of the server itself is a 500.
pub(crate) fn ledger_api_error(error: LedgerError) -> CoordinatorError {
    CoordinatorError::from(ledger_refusal(error))
}

/// The ledger's refusal inside a transaction: a domain error of the kind it is (a failure of
/// the ledger's storage stays a storage failure).
pub(crate) fn ledger_refusal(error: LedgerError) -> StoreError {
    let message = error.to_string();
    let kind = match error {
        LedgerError::Storage(inner) => return StoreError::Database(inner.to_string()),
        LedgerError::NonPositiveAmount { .. }
        | LedgerError::AmountTooLarge { .. }
        | LedgerError::Overflow { .. }
        | LedgerError::InvalidInput { .. }
        | LedgerError::InvalidKey { .. }
        | LedgerError::AccountNotFound { .. }
        | LedgerError::SameAccount { .. } => DomainKind::Invalid,
        LedgerError::RequestNotFound { .. } => DomainKind::NotFound,
        LedgerError::OverLimit { .. } | LedgerError::TooManyPendingRequests { .. } => DomainKind::Limit,
        LedgerError::IdempotencyConflict { .. }
        | LedgerError::RequestConflict { .. }
        | LedgerError::RequestDecided { .. } => DomainKind::Conflict,
        LedgerError::ReservationNotFound { .. }
        | LedgerError::InvalidRecord { .. }
        | LedgerError::MissingJobTerms { .. }
        | LedgerError::InvalidWindow { .. }
        | LedgerError::Unbalanced { .. } => DomainKind::Broken,
    };
    StoreError::domain(kind, message)
}

/// A request as the API shows it.
pub fn request_info(request: &MoneyRequest) -> MoneyRequestInfo {
    MoneyRequestInfo {
        id: request.id,
        account: request.account.to_string(),
        kind: match request.kind {
            RequestKind::Deposit => MoneyRequestKind::Deposit,
            RequestKind::Payout => MoneyRequestKind::Payout,
        },
        amount_micros: request.amount.as_i64(),
        reference: request.reference.clone(),
        state: match request.state {
            RequestState::Pending => MoneyRequestState::Pending,
            RequestState::Approved => MoneyRequestState::Approved,
            RequestState::Rejected => MoneyRequestState::Rejected,
        },
        created_ms: request.created_ms,
        decided_ms: request.decided_ms,
        decided_by: request.decided_by.clone(),
        note: request.note.clone(),
    }
}

fn require(party: &Party, role: Role, what: &str) -> Result<(), CoordinatorError> {
    if party.role == role {
        Ok(())
    } else {
        Err(CoordinatorError::forbidden(format!("only a {} may {what}", role.as_str())))
    }
}

impl Coordinator {
    /// A client asks to pay `amount_micros` into its account. Nothing moves until an operator
    /// or the payment processor approves it.
    pub fn request_deposit(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        amount_micros: i64,
        reference: &str,
        now_ms: u64,
    ) -> Result<MoneyRequestInfo, CoordinatorError> {
        require(party, Role::Client, "request a deposit (a provider's account holds earnings)")?;
        let outcome = Ledger::new(tx.ledger())
            .request_deposit(AccountId::Party(party.id.clone()), Micros::new(amount_micros), reference, now_ms)
            .map_err(ledger_api_error)?;
        if !outcome.repeated {
            tracing::info!(request = outcome.request.id, client = %party.id, amount = %outcome.request.amount, "deposit requested");
        }
        Ok(request_info(&outcome.request))
    }

    /// A provider asks to be paid `amount_micros` of its earnings; the amount is reserved at
    /// once, so it can be neither spent nor paid out twice while the operator decides.
    pub fn request_payout(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        amount_micros: i64,
        reference: &str,
        now_ms: u64,
    ) -> Result<MoneyRequestInfo, CoordinatorError> {
        require(party, Role::Provider, "request a payout of earnings")?;
        let outcome = Ledger::new(tx.ledger())
            .request_payout(AccountId::Party(party.id.clone()), Micros::new(amount_micros), reference, now_ms)
            .map_err(ledger_api_error)?;
        if !outcome.repeated {
            tracing::info!(request = outcome.request.id, provider = %party.id, amount = %outcome.request.amount, "payout requested");
        }
        Ok(request_info(&outcome.request))
    }

    /// A party's own requests, oldest first; only those in `state` if given.
    pub fn requests_of(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        state: Option<MoneyRequestState>,
    ) -> Result<Vec<MoneyRequestInfo>, CoordinatorError> {
        if party.role == Role::Operator {
            return Err(CoordinatorError::forbidden(
                "operators have no account; list every request with GET /v1/ops/requests",
            ));
        }
        let filter = RequestFilter {
            account: Some(AccountId::Party(party.id.clone())),
            state: state.map(ledger_state),
            limit: REQUESTS_LISTED_MAX,
            ..RequestFilter::default()
        };
        self.list_requests(tx, &filter)
    }

    /// Every party's requests (operators), oldest first: pending ones unless `state` says.
    pub fn requests_for_operator(
        &self,
        tx: &mut dyn Tx,
        operator: &Party,
        state: Option<MoneyRequestState>,
        limit: u32,
    ) -> Result<Vec<MoneyRequestInfo>, CoordinatorError> {
        require(operator, Role::Operator, "list every party's requests")?;
        let filter = RequestFilter {
            state: state.map(ledger_state),
            limit: limit.min(REQUESTS_LISTED_MAX),
            ..Default::default()
        };
        self.list_requests(tx, &filter)
    }

    /// Deposit requests waiting for a decision, oldest first (for a payment processor).
    pub fn pending_deposits(&self, tx: &mut dyn Tx, limit: u32) -> Result<Vec<MoneyRequestInfo>, CoordinatorError> {
        let filter =
            RequestFilter { state: Some(RequestState::Pending), limit: REQUESTS_LISTED_MAX, ..Default::default() };
        let mut pending = self.list_requests(tx, &filter)?;
        pending.retain(|r| r.kind == MoneyRequestKind::Deposit);
        pending.truncate(limit as usize);
        Ok(pending)
    }

    fn list_requests(
        &self,
        tx: &mut dyn Tx,
        filter: &RequestFilter,
    ) -> Result<Vec<MoneyRequestInfo>, CoordinatorError> {
        let requests = Ledger::new(tx.ledger()).requests(filter).map_err(ledger_api_error)?;
        Ok(requests.iter().map(request_info).collect())
    }

    /// Approve or reject a request. Deciding it the same way again changes nothing; the other
    /// way is refused. An approved deposit may bring its client back within its limit: its held
    /// jobs resume.
    #[allow(clippy::too_many_arguments)]
    pub fn decide_request(
        &self,
        tx: &mut dyn Tx,
        decider: &Decider,
        id: u64,
        decision: Decision,
        note: &str,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<MoneyRequestInfo, CoordinatorError> {
        let by = decider.label();
        let mut ledger = Ledger::new(tx.ledger());
        let outcome = match decision {
            Decision::Approve => ledger.approve_request(id, &by, note, now_ms),
            Decision::Reject => ledger.reject_request(id, &by, note, now_ms),
        }
        .map_err(ledger_api_error)?;
        let request = outcome.request;
        if !outcome.repeated {
            tracing::info!(
                request = id,
                kind = request.kind.as_str(),
                state = request.state.as_str(),
                by,
                "request decided"
            );
            if request.kind == RequestKind::Deposit && request.state == RequestState::Approved {
                self.resume_if_current(tx, &request.account, now_ms, fx)?;
            }
        }
        Ok(request_info(&request))
    }

    /// An operator credits a party's account with money it received (`reference`: the
    /// payment's). A pending deposit request with this reference and amount is approved; the
    /// same credit again moves nothing.
    #[allow(clippy::too_many_arguments)]
    pub fn credit_account(
        &self,
        tx: &mut dyn Tx,
        operator: &Party,
        target: &PartyId,
        amount_micros: i64,
        reference: &str,
        note: &str,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<MoneyRequestInfo, CoordinatorError> {
        require(operator, Role::Operator, "credit an account")?;
        match tx.party(target)? {
            Some(party) if party.role != Role::Operator => {}
            _ => return Err(CoordinatorError::bad_request(format!("{target} is not a registered client or provider"))),
        }
        let account = AccountId::Party(target.clone());
        let by = Decider::Operator(operator.id.clone()).label();
        let outcome = Ledger::new(tx.ledger())
            .credit(account.clone(), Micros::new(amount_micros), reference, &by, note, now_ms)
            .map_err(ledger_api_error)?;
        if !outcome.repeated {
            tracing::info!(request = outcome.request.id, party = %target, amount = %outcome.request.amount, by, "account credited");
            self.resume_if_current(tx, &account, now_ms, fx)?;
        }
        Ok(request_info(&outcome.request))
    }

    /// Money came in: if the client's account is within its limit again, resume the jobs the
    /// server held for it.
    pub(crate) fn resume_if_current(
        &self,
        tx: &mut dyn Tx,
        account: &AccountId,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), CoordinatorError> {
        let AccountId::Party(client) = account else { return Ok(()) };
        if !self.account_info(tx, client)?.over_limit {
            for mut job in tx.held_jobs_of_client(client, HOLD_ACCOUNT_LIMIT)? {
                self.release_hold(tx, &mut job, now_ms, fx)?;
            }
        }
        Ok(())
    }
}

fn ledger_state(state: MoneyRequestState) -> RequestState {
    match state {
        MoneyRequestState::Pending => RequestState::Pending,
        MoneyRequestState::Approved => RequestState::Approved,
        MoneyRequestState::Rejected => RequestState::Rejected,
    }
}
