//! Money across the platform's edge. Money enters only as a deposit and leaves only as a
//! payout, and both need a decision: a client *requests* a deposit, a provider *requests* a
//! payout, and an operator (or a payment processor the operator configured) approves or rejects
//! each. A payout is reserved against the provider's available balance when it is requested,
//! so the same earnings cannot be paid out twice or spent while it waits. An operator may also
//! credit an account directly, with the payment's reference.
//!
//! Every decision is idempotent: the request's state says whether it was decided, and each step
//! moves money under a key derived from the request (`keys::request`), so approving twice, or
//! retrying after a crash, moves nothing twice.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::store::LedgerStore;
use crate::{
    AccountId, Action, Ledger, LedgerError, Memo, Micros, OverLimit, Purpose, ReservationKind, TransferId,
    TransferRequest, check_amount, keys,
};

/// Longest reference of a request (the payment's or payout's own reference).
pub const REFERENCE_BYTES_MAX: usize = 100;
/// Longest note of a decision.
pub const NOTE_BYTES_MAX: usize = 500;
/// Requests one account may have waiting at once: enough for real use, and a bound on what a
/// party can make the server store.
pub const PENDING_REQUESTS_PER_ACCOUNT_MAX: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestKind {
    /// Money paid into a client's account from outside.
    Deposit,
    /// A provider's earnings paid out of the platform.
    Payout,
}

impl RequestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestKind::Deposit => "deposit",
            RequestKind::Payout => "payout",
        }
    }

    pub fn parse(text: &str) -> Option<RequestKind> {
        [RequestKind::Deposit, RequestKind::Payout].into_iter().find(|k| k.as_str() == text)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestState {
    /// Waiting for a decision; a payout's amount is reserved meanwhile.
    Pending,
    /// The money moved.
    Approved,
    /// Nothing moved (a payout's reservation was released).
    Rejected,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Approved => "approved",
            RequestState::Rejected => "rejected",
        }
    }

    pub fn parse(text: &str) -> Option<RequestState> {
        [RequestState::Pending, RequestState::Approved, RequestState::Rejected].into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for RequestState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A deposit or payout request and what became of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MoneyRequest {
    /// Assigned by the store, from 1 up.
    pub id: u64,
    pub account: AccountId,
    pub kind: RequestKind,
    pub amount: Micros,
    /// The requester's reference (an invoice, a bank transfer): unique per account and kind, so
    /// that a retried request is recognised.
    pub reference: String,
    pub state: RequestState,
    pub created_ms: u64,
    /// Who decided: `operator:<party id>` or `payment:<adapter name>`.
    #[serde(default)]
    pub decided_by: Option<String>,
    #[serde(default)]
    pub decided_ms: Option<u64>,
    /// The decision's note: the payment's reference when approved, the reason when rejected.
    #[serde(default)]
    pub note: String,
    /// The transfer that reserved a payout's amount.
    #[serde(default)]
    pub reservation: Option<TransferId>,
    /// The transfer that moved the money, once approved.
    #[serde(default)]
    pub transfer: Option<TransferId>,
}

/// Which requests to list; every given field must match. In id order, at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFilter {
    pub account: Option<AccountId>,
    pub state: Option<RequestState>,
    /// Created at or after.
    pub created_from_ms: u64,
    /// Created before.
    pub created_to_ms: u64,
    pub limit: u32,
}

impl Default for RequestFilter {
    fn default() -> Self {
        RequestFilter { account: None, state: None, created_from_ms: 0, created_to_ms: u64::MAX, limit: 1000 }
    }
}

impl RequestFilter {
    /// Whether a request passes the filter (for stores that filter in memory).
    pub fn matches(&self, request: &MoneyRequest) -> bool {
        self.account.as_ref().is_none_or(|a| *a == request.account)
            && self.state.is_none_or(|s| s == request.state)
            && (self.created_from_ms..self.created_to_ms).contains(&request.created_ms)
    }
}

/// What a request call did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOutcome {
    pub request: MoneyRequest,
    /// The same request was made (or decided) before: nothing moved this time.
    pub repeated: bool,
}

fn check_text(field: &'static str, text: &str, max: usize, empty_allowed: bool) -> Result<(), LedgerError> {
    let reason = if text.is_empty() && !empty_allowed {
        Some("it is empty")
    } else if text.len() > max {
        Some("it is too long")
    } else if text.chars().any(char::is_control) {
        Some("control characters are not allowed")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(LedgerError::InvalidInput { field, value: text.chars().take(80).collect(), reason }),
        None => Ok(()),
    }
}

/// A request's reference: 1 to `REFERENCE_BYTES_MAX` bytes of printable ASCII without spaces.
pub fn check_reference(reference: &str) -> Result<(), LedgerError> {
    check_text("reference", reference, REFERENCE_BYTES_MAX, false)?;
    if !reference.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(LedgerError::InvalidInput {
            field: "reference",
            value: reference.chars().take(80).collect(),
            reason: "only printable ASCII without spaces is allowed, like INV-1042",
        });
    }
    Ok(())
}

impl<S: LedgerStore + ?Sized> Ledger<'_, S> {
    /// A client asks to pay `amount` into its account; nothing moves until it is approved. The
    /// same reference and amount again returns the first request.
    pub fn request_deposit(
        &mut self,
        account: AccountId,
        amount: Micros,
        reference: &str,
        now_ms: u64,
    ) -> Result<RequestOutcome, LedgerError> {
        self.file_request(account, RequestKind::Deposit, amount, reference, true, now_ms)
    }

    /// A provider asks to be paid `amount` of its earnings; the amount is reserved at once and
    /// refused (`OverLimit`) beyond what the account has available.
    pub fn request_payout(
        &mut self,
        account: AccountId,
        amount: Micros,
        reference: &str,
        now_ms: u64,
    ) -> Result<RequestOutcome, LedgerError> {
        self.file_request(account, RequestKind::Payout, amount, reference, true, now_ms)
    }

    fn file_request(
        &mut self,
        account: AccountId,
        kind: RequestKind,
        amount: Micros,
        reference: &str,
        bounded: bool,
        now_ms: u64,
    ) -> Result<RequestOutcome, LedgerError> {
        check_amount(amount)?;
        check_reference(reference)?;
        self.account(&account)?;
        if let Some(existing) = self.store().request_by_reference(&account, kind, reference)? {
            if existing.amount != amount {
                return Err(LedgerError::RequestConflict { reference: reference.to_string(), existing: existing.id });
            }
            return Ok(RequestOutcome { request: existing, repeated: true });
        }
        if bounded {
            let waiting = RequestFilter {
                account: Some(account.clone()),
                state: Some(RequestState::Pending),
                limit: PENDING_REQUESTS_PER_ACCOUNT_MAX as u32,
                ..RequestFilter::default()
            };
            if self.store().requests(&waiting)?.len() >= PENDING_REQUESTS_PER_ACCOUNT_MAX {
                return Err(LedgerError::TooManyPendingRequests { account, max: PENDING_REQUESTS_PER_ACCOUNT_MAX });
            }
        }
        let id = self.store().next_request_id()?;
        let mut request = MoneyRequest {
            id,
            account: account.clone(),
            kind,
            amount,
            reference: reference.to_string(),
            state: RequestState::Pending,
            created_ms: now_ms,
            decided_by: None,
            decided_ms: None,
            note: String::new(),
            reservation: None,
            transfer: None,
        };
        if kind == RequestKind::Payout {
            let action =
                Action::Reserve { debit: account, credit: AccountId::External, amount, kind: ReservationKind::Maximum };
            let reserve = self.execute(request_transfer(id, "reserve", action, Purpose::Payout), now_ms)?;
            request.reservation = Some(reserve.transfer.id);
        }
        self.store().insert_request(&request)?;
        Ok(RequestOutcome { request, repeated: false })
    }

    /// Approve a pending request: a deposit credits the account, a payout posts its
    /// reservation. Approving an approved request moves nothing; a rejected one is refused.
    pub fn approve_request(
        &mut self,
        id: u64,
        decided_by: &str,
        note: &str,
        now_ms: u64,
    ) -> Result<RequestOutcome, LedgerError> {
        check_text("note", note, NOTE_BYTES_MAX, true)?;
        let mut request = self.request(id)?;
        match request.state {
            RequestState::Approved => return Ok(RequestOutcome { request, repeated: true }),
            RequestState::Rejected => return Err(LedgerError::RequestDecided { id, state: request.state }),
            RequestState::Pending => {}
        }
        let (action, purpose) = match request.kind {
            RequestKind::Deposit => (
                Action::Post {
                    debit: AccountId::External,
                    credit: request.account.clone(),
                    amount: request.amount,
                    over_limit: OverLimit::Refuse,
                },
                Purpose::Deposit,
            ),
            RequestKind::Payout => {
                let reservation = request.reservation.ok_or(LedgerError::InvalidInput {
                    field: "payout request",
                    value: id.to_string(),
                    reason: "it has no reservation; the store lost part of it",
                })?;
                (Action::Settle { reservation, amount: request.amount }, Purpose::Payout)
            }
        };
        let posted = self.execute(request_transfer(id, "post", action, purpose), now_ms)?;
        request.state = RequestState::Approved;
        request.transfer = Some(posted.transfer.id);
        decide(&mut request, decided_by, note, now_ms);
        self.store().put_request(&request)?;
        Ok(RequestOutcome { request, repeated: false })
    }

    /// Reject a pending request: nothing moves, a payout's reservation is released. Rejecting
    /// a rejected request changes nothing; an approved one is refused.
    pub fn reject_request(
        &mut self,
        id: u64,
        decided_by: &str,
        reason: &str,
        now_ms: u64,
    ) -> Result<RequestOutcome, LedgerError> {
        check_text("reason", reason, NOTE_BYTES_MAX, false)?;
        let mut request = self.request(id)?;
        match request.state {
            RequestState::Rejected => return Ok(RequestOutcome { request, repeated: true }),
            RequestState::Approved => return Err(LedgerError::RequestDecided { id, state: request.state }),
            RequestState::Pending => {}
        }
        if let Some(reservation) = request.reservation {
            self.execute(request_transfer(id, "void", Action::Void { reservation }, Purpose::Payout), now_ms)?;
        }
        request.state = RequestState::Rejected;
        decide(&mut request, decided_by, reason, now_ms);
        self.store().put_request(&request)?;
        Ok(RequestOutcome { request, repeated: false })
    }

    /// An operator credits an account directly (a payment it received): a deposit request
    /// approved at once. A pending deposit request of the account with this reference and
    /// amount is approved instead; the same credit again moves nothing.
    pub fn credit(
        &mut self,
        account: AccountId,
        amount: Micros,
        reference: &str,
        decided_by: &str,
        note: &str,
        now_ms: u64,
    ) -> Result<RequestOutcome, LedgerError> {
        check_text("note", note, NOTE_BYTES_MAX, true)?;
        let filed = self.file_request(account, RequestKind::Deposit, amount, reference, false, now_ms)?;
        if filed.request.state == RequestState::Rejected {
            return Err(LedgerError::RequestDecided { id: filed.request.id, state: filed.request.state });
        }
        self.approve_request(filed.request.id, decided_by, note, now_ms)
    }

    pub fn request(&mut self, id: u64) -> Result<MoneyRequest, LedgerError> {
        self.store().request(id)?.ok_or(LedgerError::RequestNotFound { id })
    }

    pub fn requests(&mut self, filter: &RequestFilter) -> Result<Vec<MoneyRequest>, LedgerError> {
        self.store().requests(filter)
    }
}

fn request_transfer(id: u64, step: &str, action: Action, purpose: Purpose) -> TransferRequest {
    TransferRequest {
        key: keys::request(id, step),
        action,
        purpose,
        memo: Memo { request: Some(id), ..Memo::default() },
    }
}

fn decide(request: &mut MoneyRequest, decided_by: &str, note: &str, now_ms: u64) {
    request.decided_by = Some(decided_by.to_string());
    request.decided_ms = Some(now_ms);
    request.note = note.to_string();
}

#[cfg(test)]
mod tests {
    use idlegrid_types::PartyId;

    use super::*;
    use crate::{IdempotencyKey, MemoryStore};

    fn units(n: i64) -> Micros {
        Micros::from_units(n).unwrap()
    }

    /// A client (may owe 10) and a provider that earned 30.
    fn setup() -> (MemoryStore, AccountId, AccountId) {
        let mut store = MemoryStore::new();
        let mut ledger = Ledger::new(&mut store);
        ledger.open_system_accounts(0).unwrap();
        let client = ledger.open_account(AccountId::Party(PartyId::from_public_key(&[1; 32])), Some(units(10)), 0);
        let provider = ledger.open_account(AccountId::Party(PartyId::from_public_key(&[2; 32])), Some(Micros::ZERO), 0);
        let (client, provider) = (client.unwrap().id, provider.unwrap().id);
        let earn = TransferRequest {
            key: IdempotencyKey::new("pay:1").unwrap(),
            action: Action::Post {
                debit: AccountId::Platform,
                credit: provider.clone(),
                amount: units(30),
                over_limit: OverLimit::Refuse,
            },
            purpose: Purpose::ProviderPay,
            memo: Memo::default(),
        };
        ledger.execute(earn, 0).unwrap();
        (store, client, provider)
    }

    fn balance(ledger: &mut Ledger<'_, MemoryStore>, account: &AccountId) -> Micros {
        ledger.account(account).unwrap().balance_posted().unwrap()
    }

    #[test]
    fn a_deposit_moves_money_only_once_approved_and_only_once() {
        let (mut store, client, _) = setup();
        let mut ledger = Ledger::new(&mut store);
        let filed = ledger.request_deposit(client.clone(), units(50), "INV-1", 1).unwrap();
        assert_eq!((filed.request.state, filed.repeated), (RequestState::Pending, false));
        assert_eq!(balance(&mut ledger, &client), Micros::ZERO, "a request is not money");
        let again = ledger.request_deposit(client.clone(), units(50), "INV-1", 2).unwrap();
        assert!(again.repeated && again.request == filed.request, "a retried request is the same request");
        let other = ledger.request_deposit(client.clone(), units(51), "INV-1", 2).unwrap_err();
        assert!(matches!(other, LedgerError::RequestConflict { existing, .. } if existing == filed.request.id));

        let approved = ledger.approve_request(filed.request.id, "operator:x", "bank 77", 3).unwrap();
        assert_eq!(approved.request.state, RequestState::Approved);
        assert_eq!(balance(&mut ledger, &client), units(50));
        let twice = ledger.approve_request(filed.request.id, "operator:y", "again", 4).unwrap();
        assert!(twice.repeated && twice.request == approved.request, "the first decision stands");
        assert_eq!(balance(&mut ledger, &client), units(50), "approving twice moves nothing twice");
        let reject = ledger.reject_request(filed.request.id, "operator:x", "too late", 5).unwrap_err();
        assert!(matches!(reject, LedgerError::RequestDecided { state: RequestState::Approved, .. }));
        ledger.check_balanced().unwrap();
    }

    #[test]
    fn a_payout_is_reserved_while_it_waits_so_it_cannot_be_spent_twice() {
        let (mut store, client, provider) = setup();
        let mut ledger = Ledger::new(&mut store);
        let first = ledger.request_payout(provider.clone(), units(20), "OUT-1", 1).unwrap().request;
        assert_eq!(ledger.account(&provider).unwrap().available().unwrap(), units(10));
        let second = ledger.request_payout(provider.clone(), units(20), "OUT-2", 1).unwrap_err();
        assert!(matches!(second, LedgerError::OverLimit { .. }), "{second}");
        let AccountId::Party(p) = provider.clone() else { unreachable!() };
        let AccountId::Party(c) = client.clone() else { unreachable!() };
        let barter = ledger.barter_credit(IdempotencyKey::new("b").unwrap(), &p, &c, units(11), 2).unwrap_err();
        assert!(matches!(barter, LedgerError::OverLimit { .. }), "reserved earnings cannot be bartered");

        let rejected = ledger.reject_request(first.id, "operator:x", "wrong bank account", 3).unwrap().request;
        assert_eq!(rejected.state, RequestState::Rejected);
        assert_eq!(ledger.account(&provider).unwrap().available().unwrap(), units(30), "released");
        let approve = ledger.approve_request(first.id, "operator:x", "", 4).unwrap_err();
        assert!(matches!(approve, LedgerError::RequestDecided { state: RequestState::Rejected, .. }));

        let paid = ledger.request_payout(provider.clone(), units(25), "OUT-3", 5).unwrap().request;
        ledger.approve_request(paid.id, "operator:x", "sent", 6).unwrap();
        ledger.approve_request(paid.id, "operator:x", "sent", 7).unwrap();
        assert_eq!(balance(&mut ledger, &provider), units(5));
        assert_eq!(ledger.account(&provider).unwrap().debits_pending, Micros::ZERO);
        assert_eq!(balance(&mut ledger, &AccountId::External), units(25), "the money left the platform once");
        ledger.check_balanced().unwrap();
    }

    #[test]
    fn an_operator_credit_approves_at_once_or_confirms_a_pending_request() {
        let (mut store, client, _) = setup();
        let mut ledger = Ledger::new(&mut store);
        let credit = ledger.credit(client.clone(), units(7), "WIRE-9", "operator:x", "", 1).unwrap();
        assert_eq!(credit.request.state, RequestState::Approved);
        let again = ledger.credit(client.clone(), units(7), "WIRE-9", "operator:x", "", 2).unwrap();
        assert!(again.repeated);
        let pending = ledger.request_deposit(client.clone(), units(3), "INV-2", 3).unwrap().request;
        let confirmed = ledger.credit(client.clone(), units(3), "INV-2", "operator:x", "", 4).unwrap().request;
        assert_eq!((confirmed.id, confirmed.state), (pending.id, RequestState::Approved));
        assert_eq!(balance(&mut ledger, &client), units(10));
        ledger.check_balanced().unwrap();
    }

    #[test]
    fn bad_requests_are_refused_and_leave_nothing() {
        let (mut store, client, provider) = setup();
        let mut ledger = Ledger::new(&mut store);
        for amount in [Micros::ZERO, Micros::new(-5), Micros::MAX, Micros::new(crate::AMOUNT_MICROS_MAX + 1)] {
            assert!(ledger.request_deposit(client.clone(), amount, "R", 1).is_err(), "{amount}");
        }
        for reference in ["", "has space", "bell\x07", &"x".repeat(101)] {
            assert!(ledger.request_deposit(client.clone(), units(1), reference, 1).is_err(), "{reference:?}");
        }
        let stranger = AccountId::Party(PartyId::from_public_key(&[9; 32]));
        assert!(matches!(ledger.request_deposit(stranger, units(1), "R", 1), Err(LedgerError::AccountNotFound { .. })));
        assert!(matches!(
            ledger.approve_request(99, "operator:x", "", 1),
            Err(LedgerError::RequestNotFound { id: 99 })
        ));
        assert!(ledger.requests(&RequestFilter::default()).unwrap().is_empty());
        for n in 0..PENDING_REQUESTS_PER_ACCOUNT_MAX {
            ledger.request_payout(provider.clone(), Micros::new(1), &format!("P{n}"), 1).unwrap();
        }
        let error = ledger.request_payout(provider.clone(), Micros::new(1), "P-last", 1).unwrap_err();
        assert!(matches!(error, LedgerError::TooManyPendingRequests { .. }), "{error}");
        ledger.check_balanced().unwrap();
    }
}
