//! The double-entry state machine: every transfer debits one account and credits another by the
//! same amount, so the sums of debits and credits over all accounts stay equal, posted and
//! pending. Pure: the time is passed in, the state is behind `LedgerStore`.

use idlegrid_types::{JobId, PartyId};

use crate::store::{LedgerStore, LedgerTotals};
use crate::{
    AMOUNT_MICROS_MAX, Account, AccountId, Action, IdempotencyKey, LedgerError, Memo, Micros, OverLimit, Purpose,
    Reservation, ReservationKind, Transfer, TransferId, TransferRequest, keys,
};

/// What a request did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferOutcome {
    pub transfer: Transfer,
    /// The key was used before with the same content: `transfer` is the original, nothing moved.
    pub repeated: bool,
    /// After the transfer the debit account is past its limit (possible only through
    /// `OverLimit::Allow` or settlements beyond an estimate): the server must stop the
    /// client's jobs until it pays (P7.6).
    pub debit_over_limit: bool,
}

/// The ledger over a store. Create one per transaction: `Ledger::new(&mut tx)`.
pub struct Ledger<'a, S: LedgerStore + ?Sized> {
    store: &'a mut S,
}

impl<'a, S: LedgerStore + ?Sized> Ledger<'a, S> {
    pub fn new(store: &'a mut S) -> Ledger<'a, S> {
        Ledger { store }
    }

    pub fn store(&mut self) -> &mut S {
        self.store
    }

    /// Open an account, or return it unchanged if it exists (so that registration can be
    /// retried). `overdraft_max`: `None` for no limit, `Some(ZERO)` for a provider.
    pub fn open_account(
        &mut self,
        id: AccountId,
        overdraft_max: Option<Micros>,
        now_ms: u64,
    ) -> Result<Account, LedgerError> {
        if let Some(existing) = self.store.account(&id)? {
            return Ok(existing);
        }
        if let Some(limit) = overdraft_max {
            check_limit_value(limit)?;
        }
        let account = Account::new(id, overdraft_max, now_ms);
        self.store.put_account(&account)?;
        Ok(account)
    }

    /// Open the platform and external accounts (no limits) if they do not exist.
    pub fn open_system_accounts(&mut self, now_ms: u64) -> Result<(), LedgerError> {
        self.open_account(AccountId::Platform, None, now_ms)?;
        self.open_account(AccountId::External, None, now_ms)?;
        Ok(())
    }

    /// Change how far an account may go below zero. Lowering it below the current balance is
    /// allowed: the account is then over its limit and reported so.
    pub fn set_overdraft_max(&mut self, id: &AccountId, overdraft_max: Option<Micros>) -> Result<Account, LedgerError> {
        if let Some(limit) = overdraft_max {
            check_limit_value(limit)?;
        }
        let mut account = self.account(id)?;
        account.overdraft_max = overdraft_max;
        self.store.put_account(&account)?;
        Ok(account)
    }

    pub fn account(&mut self, id: &AccountId) -> Result<Account, LedgerError> {
        self.store.account(id)?.ok_or_else(|| LedgerError::AccountNotFound { account: id.clone() })
    }

    /// Carry out a request exactly once per key. A retry with the same key and content returns
    /// the original transfer (`repeated`); with other content it is refused.
    pub fn execute(&mut self, request: TransferRequest, now_ms: u64) -> Result<TransferOutcome, LedgerError> {
        if let Some(existing) = self.store.transfer_by_key(&request.key)? {
            if existing.request != request {
                return Err(LedgerError::IdempotencyConflict { key: request.key, existing: existing.id });
            }
            let debit_over_limit = self.account(&existing.debit)?.is_over_limit()?;
            return Ok(TransferOutcome { transfer: existing, repeated: true, debit_over_limit });
        }

        // Compute every change first; write only once nothing can fail but the store.
        let mut effects = Effects::default();
        let (debit, credit, reservation) = match &request.action {
            Action::Post { debit, credit, amount, over_limit } => {
                let (mut debit_account, mut credit_account) = self.pair(debit, credit, *amount)?;
                debit_account.debits_posted = debit_account.debits_posted.checked_add(*amount)?;
                credit_account.credits_posted = credit_account.credits_posted.checked_add(*amount)?;
                if *over_limit == OverLimit::Refuse {
                    check_within_limit(&debit_account, *amount)?;
                }
                effects.posted = *amount;
                (debit_account, credit_account, None)
            }
            Action::Reserve { debit, credit, amount, kind } => {
                let (mut debit_account, mut credit_account) = self.pair(debit, credit, *amount)?;
                debit_account.debits_pending = debit_account.debits_pending.checked_add(*amount)?;
                credit_account.credits_pending = credit_account.credits_pending.checked_add(*amount)?;
                check_within_limit(&debit_account, *amount)?;
                effects.reserved = *amount;
                let reservation = Reservation {
                    id: TransferId(0), // set below, with the transfer's id
                    debit: debit.clone(),
                    credit: credit.clone(),
                    kind: *kind,
                    amount: *amount,
                    settled_from_pending: Micros::ZERO,
                    settled_beyond: Micros::ZERO,
                    released: Micros::ZERO,
                };
                (debit_account, credit_account, Some(reservation))
            }
            Action::Settle { reservation, amount } => {
                let mut reservation = self.reservation(*reservation)?;
                let (mut debit_account, mut credit_account) =
                    self.pair(&reservation.debit, &reservation.credit, *amount)?;
                let from_pending = (*amount).min(reservation.remaining()?);
                let rest = amount.checked_sub(from_pending)?;
                let beyond = match reservation.kind {
                    ReservationKind::Estimate => rest,
                    ReservationKind::Maximum => {
                        let headroom =
                            reservation.amount.checked_sub(reservation.settled()?)?.checked_sub(from_pending)?;
                        rest.min(headroom.max(Micros::ZERO))
                    }
                };
                let posted = from_pending.checked_add(beyond)?;
                debit_account.debits_pending = debit_account.debits_pending.checked_sub(from_pending)?;
                credit_account.credits_pending = credit_account.credits_pending.checked_sub(from_pending)?;
                debit_account.debits_posted = debit_account.debits_posted.checked_add(posted)?;
                credit_account.credits_posted = credit_account.credits_posted.checked_add(posted)?;
                reservation.settled_from_pending = reservation.settled_from_pending.checked_add(from_pending)?;
                reservation.settled_beyond = reservation.settled_beyond.checked_add(beyond)?;
                effects.posted = posted;
                effects.from_reservation = from_pending;
                effects.capped = rest.checked_sub(beyond)?;
                (debit_account, credit_account, Some(reservation))
            }
            Action::Void { reservation } => {
                let mut reservation = self.reservation(*reservation)?;
                let mut debit_account = self.account(&reservation.debit)?;
                let mut credit_account = self.account(&reservation.credit)?;
                let released = reservation.remaining()?;
                debit_account.debits_pending = debit_account.debits_pending.checked_sub(released)?;
                credit_account.credits_pending = credit_account.credits_pending.checked_sub(released)?;
                reservation.released = reservation.released.checked_add(released)?;
                effects.released = released;
                (debit_account, credit_account, Some(reservation))
            }
        };

        let id = self.store.next_transfer_id()?;
        let transfer = Transfer {
            id,
            debit: debit.id.clone(),
            credit: credit.id.clone(),
            request,
            posted: effects.posted,
            from_reservation: effects.from_reservation,
            reserved: effects.reserved,
            released: effects.released,
            capped: effects.capped,
            created_ms: now_ms,
        };
        let debit_over_limit = debit.is_over_limit()?;
        self.store.put_account(&debit)?;
        self.store.put_account(&credit)?;
        if let Some(mut reservation) = reservation {
            if matches!(transfer.request.action, Action::Reserve { .. }) {
                reservation.id = id;
            }
            self.store.put_reservation(&reservation)?;
        }
        self.store.insert_transfer(&transfer)?;
        Ok(TransferOutcome { transfer, repeated: false, debit_over_limit })
    }

    /// A client's payment into its account (from outside the platform).
    pub fn deposit(
        &mut self,
        key: IdempotencyKey,
        account: AccountId,
        amount: Micros,
        now_ms: u64,
    ) -> Result<TransferOutcome, LedgerError> {
        let action =
            Action::Post { debit: AccountId::External, credit: account, amount, over_limit: OverLimit::Refuse };
        self.execute(TransferRequest { key, action, purpose: Purpose::Deposit, memo: Memo::default() }, now_ms)
    }

    /// A provider's withdrawal of its earnings; refused beyond its available balance.
    pub fn payout(
        &mut self,
        key: IdempotencyKey,
        account: AccountId,
        amount: Micros,
        now_ms: u64,
    ) -> Result<TransferOutcome, LedgerError> {
        let action =
            Action::Post { debit: account, credit: AccountId::External, amount, over_limit: OverLimit::Refuse };
        self.execute(TransferRequest { key, action, purpose: Purpose::Payout, memo: Memo::default() }, now_ms)
    }

    /// Barter: make `amount` of what a provider's engines earned spendable by a client account
    /// (usually the same owner's). Refused beyond the provider's available balance, so only
    /// earned credit moves.
    pub fn barter_credit(
        &mut self,
        key: IdempotencyKey,
        provider: &PartyId,
        client: &PartyId,
        amount: Micros,
        now_ms: u64,
    ) -> Result<TransferOutcome, LedgerError> {
        let action = Action::Post {
            debit: AccountId::Party(provider.clone()),
            credit: AccountId::Party(client.clone()),
            amount,
            over_limit: OverLimit::Refuse,
        };
        self.execute(TransferRequest { key, action, purpose: Purpose::BarterCredit, memo: Memo::default() }, now_ms)
    }

    /// Reserve a job's cost at launch: its maximum cost (`Maximum`, P7.6) or an estimate.
    /// Refused with `OverLimit` if the payer cannot afford it: do not launch the job. The key is
    /// derived from the job, so a retried launch reserves once.
    pub fn reserve_job(
        &mut self,
        job: JobId,
        payer: AccountId,
        amount: Micros,
        kind: ReservationKind,
        now_ms: u64,
    ) -> Result<TransferOutcome, LedgerError> {
        let action = Action::Reserve { debit: payer, credit: AccountId::Platform, amount, kind };
        let memo = Memo { job: Some(job), ..Memo::default() };
        self.execute(
            TransferRequest { key: keys::job_reservation(job), action, purpose: Purpose::JobReservation, memo },
            now_ms,
        )
    }

    /// Release what is left of a job's reservation, after its last work has been billed. A
    /// maximum still caps charges settled later. `None` if the job has no reservation.
    pub fn release_job(&mut self, job: JobId, now_ms: u64) -> Result<Option<TransferOutcome>, LedgerError> {
        let Some(reservation) = self.job_reservation(job)? else { return Ok(None) };
        let action = Action::Void { reservation: reservation.id };
        let memo = Memo { job: Some(job), ..Memo::default() };
        self.execute(
            TransferRequest { key: keys::job_release(job), action, purpose: Purpose::JobReservation, memo },
            now_ms,
        )
        .map(Some)
    }

    /// The job's reservation, if it has one: `remaining()` is still reserved, `settled()` was
    /// charged through it, `headroom()` is what may still be charged under a maximum.
    pub fn job_reservation(&mut self, job: JobId) -> Result<Option<Reservation>, LedgerError> {
        match self.store.transfer_by_key(&keys::job_reservation(job))? {
            Some(transfer) => self.store.reservation(transfer.id),
            None => Ok(None),
        }
    }

    /// Check that the sums of debits and credits over all accounts are equal, posted and
    /// pending; `Unbalanced` otherwise.
    pub fn check_balanced(&mut self) -> Result<LedgerTotals, LedgerError> {
        check_balanced(self.store)
    }

    fn reservation(&mut self, id: TransferId) -> Result<Reservation, LedgerError> {
        self.store.reservation(id)?.ok_or(LedgerError::ReservationNotFound { reservation: id })
    }

    fn pair(
        &mut self,
        debit: &AccountId,
        credit: &AccountId,
        amount: Micros,
    ) -> Result<(Account, Account), LedgerError> {
        check_amount(amount)?;
        if debit == credit {
            return Err(LedgerError::SameAccount { account: debit.clone() });
        }
        Ok((self.account(debit)?, self.account(credit)?))
    }
}

/// Check the sum-zero invariant over any store.
pub fn check_balanced<S: LedgerStore + ?Sized>(store: &mut S) -> Result<LedgerTotals, LedgerError> {
    let totals = store.totals()?;
    if !totals.is_balanced() {
        return Err(LedgerError::Unbalanced {
            debits_posted: totals.debits_posted,
            credits_posted: totals.credits_posted,
            debits_pending: totals.debits_pending,
            credits_pending: totals.credits_pending,
        });
    }
    Ok(totals)
}

#[derive(Default)]
struct Effects {
    posted: Micros,
    from_reservation: Micros,
    reserved: Micros,
    released: Micros,
    capped: Micros,
}

/// Every amount that moves or is reserved is positive and at most [`AMOUNT_MICROS_MAX`]: one
/// request's absurd amount fails that request alone, and no sum of bounded amounts can come
/// near the 64-bit limit of the accounts every party shares (the platform, the outside world).
pub fn check_amount(amount: Micros) -> Result<(), LedgerError> {
    if !amount.is_positive() {
        return Err(LedgerError::NonPositiveAmount { amount });
    }
    if amount.as_i64() > AMOUNT_MICROS_MAX {
        return Err(LedgerError::AmountTooLarge { amount, max: Micros::new(AMOUNT_MICROS_MAX) });
    }
    Ok(())
}

fn check_limit_value(limit: Micros) -> Result<(), LedgerError> {
    if limit.is_negative() {
        return Err(LedgerError::InvalidInput {
            field: "overdraft_max",
            value: limit.to_string(),
            reason: "a limit is how far the balance may go below zero: zero or more",
        });
    }
    Ok(())
}

/// `account` is the debit account after the change of `amount`.
fn check_within_limit(account: &Account, amount: Micros) -> Result<(), LedgerError> {
    let Some(limit) = account.overdraft_max else { return Ok(()) };
    let available_after = account.available()?;
    let floor = limit.checked_neg()?;
    if available_after < floor {
        return Err(LedgerError::OverLimit {
            account: account.id.clone(),
            available: available_after.checked_add(amount)?,
            overdraft_max: limit,
            amount,
            shortfall: floor.checked_sub(available_after)?,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;

    fn party(n: u8) -> PartyId {
        PartyId::from_public_key(&[n; 32])
    }

    fn key(text: &str) -> IdempotencyKey {
        IdempotencyKey::new(text).unwrap()
    }

    fn units(n: i64) -> Micros {
        Micros::from_units(n).unwrap()
    }

    /// A client with a limit of 10 below zero and 100 deposited, a provider, the platform.
    fn setup() -> (MemoryStore, AccountId, AccountId) {
        let mut store = MemoryStore::new();
        let mut ledger = Ledger::new(&mut store);
        ledger.open_system_accounts(0).unwrap();
        let client = ledger.open_account(AccountId::Party(party(1)), Some(units(10)), 0).unwrap().id;
        let provider = ledger.open_account(AccountId::Party(party(2)), Some(Micros::ZERO), 0).unwrap().id;
        ledger.deposit(key("deposit:1"), client.clone(), units(100), 1).unwrap();
        (store, client, provider)
    }

    fn post(
        key_text: &str,
        debit: &AccountId,
        credit: &AccountId,
        amount: Micros,
        over_limit: OverLimit,
    ) -> TransferRequest {
        TransferRequest {
            key: key(key_text),
            action: Action::Post { debit: debit.clone(), credit: credit.clone(), amount, over_limit },
            purpose: Purpose::Adjustment,
            memo: Memo::default(),
        }
    }

    #[test]
    fn a_transfer_debits_one_account_and_credits_another_by_the_same_amount() {
        let (mut store, client, _) = setup();
        let mut ledger = Ledger::new(&mut store);
        let outcome =
            ledger.execute(post("charge:1", &client, &AccountId::Platform, units(30), OverLimit::Refuse), 5).unwrap();
        assert_eq!(outcome.transfer.posted, units(30));
        assert_eq!(ledger.account(&client).unwrap().balance_posted().unwrap(), units(70));
        assert_eq!(ledger.account(&AccountId::Platform).unwrap().balance_posted().unwrap(), units(30));
        assert_eq!(ledger.account(&AccountId::External).unwrap().balance_posted().unwrap(), units(-100));
        let totals = ledger.check_balanced().unwrap();
        assert_eq!(totals.accounts, 4);
        assert_eq!(totals.debits_posted, units(130));
    }

    #[test]
    fn a_retry_with_the_same_key_moves_nothing_and_other_content_is_refused() {
        let (mut store, client, _) = setup();
        let mut ledger = Ledger::new(&mut store);
        let request = post("charge:1", &client, &AccountId::Platform, units(30), OverLimit::Refuse);
        let first = ledger.execute(request.clone(), 5).unwrap();
        let again = ledger.execute(request, 9).unwrap();
        assert!(again.repeated);
        assert_eq!(again.transfer, first.transfer, "the original, with its original time");
        assert_eq!(ledger.account(&client).unwrap().balance_posted().unwrap(), units(70));
        let different = post("charge:1", &client, &AccountId::Platform, units(31), OverLimit::Refuse);
        let error = ledger.execute(different, 9).unwrap_err();
        assert!(matches!(error, LedgerError::IdempotencyConflict { existing, .. } if existing == first.transfer.id));
        assert!(error.to_string().contains("a new request needs a new key"), "{error}");
        assert_eq!(ledger.account(&client).unwrap().balance_posted().unwrap(), units(70));
    }

    #[test]
    fn the_account_limit_refuses_transfers_past_it_unless_work_is_already_done() {
        let (mut store, client, _) = setup();
        let mut ledger = Ledger::new(&mut store);
        // 100 deposited, 10 of overdraft: 110 may be spent, not 110.000001.
        let error = ledger
            .execute(post("charge:big", &client, &AccountId::Platform, Micros::new(110_000_001), OverLimit::Refuse), 5)
            .unwrap_err();
        match &error {
            LedgerError::OverLimit { shortfall, available, .. } => {
                assert_eq!(*shortfall, Micros::new(1));
                assert_eq!(*available, units(100));
            }
            other => panic!("{other}"),
        }
        assert!(error.to_string().contains("a payment into the account or a higher limit is needed"));
        assert!(ledger.store().transfer_by_key(&key("charge:big")).unwrap().is_none(), "a refusal leaves no trace");
        let at_limit =
            ledger.execute(post("charge:ok", &client, &AccountId::Platform, units(110), OverLimit::Refuse), 5).unwrap();
        assert!(!at_limit.debit_over_limit);
        let done_work =
            ledger.execute(post("charge:work", &client, &AccountId::Platform, units(1), OverLimit::Allow), 6).unwrap();
        assert!(done_work.debit_over_limit, "work already done is charged and reported");
        assert!(ledger.account(&client).unwrap().is_over_limit().unwrap());
        ledger.deposit(key("deposit:2"), client.clone(), units(1), 7).unwrap();
        assert!(!ledger.account(&client).unwrap().is_over_limit().unwrap(), "a payment brings the account current");
        ledger.check_balanced().unwrap();
    }

    #[test]
    fn a_reservation_is_settled_in_parts_then_voided() {
        let (mut store, client, _) = setup();
        let mut ledger = Ledger::new(&mut store);
        let job = JobId::random();
        let reserve = ledger.reserve_job(job, client.clone(), units(40), ReservationKind::Estimate, 2).unwrap();
        let id = reserve.transfer.id;
        let account = ledger.account(&client).unwrap();
        assert_eq!((account.debits_pending, account.available().unwrap()), (units(40), units(60)));
        assert_eq!(ledger.account(&AccountId::Platform).unwrap().credits_pending, units(40));
        let settle = |amount, key_text: &str| TransferRequest {
            key: key(key_text),
            action: Action::Settle { reservation: id, amount },
            purpose: Purpose::Computation,
            memo: Memo::default(),
        };
        ledger.execute(settle(units(15), "s1"), 3).unwrap();
        let second = ledger.execute(settle(units(30), "s2"), 4).unwrap();
        // 25 were left reserved; the other 5 go beyond the estimate.
        assert_eq!((second.transfer.from_reservation, second.transfer.posted), (units(25), units(30)));
        let account = ledger.account(&client).unwrap();
        assert_eq!((account.debits_pending, account.balance_posted().unwrap()), (Micros::ZERO, units(55)));
        let void = ledger.release_job(job, 5).unwrap().unwrap();
        assert_eq!(void.transfer.released, Micros::ZERO);
        ledger.check_balanced().unwrap();

        let job = JobId::random();
        ledger.reserve_job(job, client.clone(), units(20), ReservationKind::Estimate, 6).unwrap();
        let reservation = ledger.job_reservation(job).unwrap().unwrap();
        let mut partial = settle(units(5), "s3");
        partial.action = Action::Settle { reservation: reservation.id, amount: units(5) };
        ledger.execute(partial, 7).unwrap();
        let void = ledger.release_job(job, 8).unwrap().unwrap();
        assert_eq!(void.transfer.released, units(15));
        let account = ledger.account(&client).unwrap();
        assert_eq!((account.debits_pending, account.balance_posted().unwrap()), (Micros::ZERO, units(50)));
        assert_eq!(ledger.account(&AccountId::Platform).unwrap().credits_pending, Micros::ZERO);
        ledger.check_balanced().unwrap();
    }

    #[test]
    fn a_maximum_reservation_caps_charges_even_after_it_is_released() {
        let (mut store, client, _) = setup();
        let mut ledger = Ledger::new(&mut store);
        let job = JobId::random();
        let id = ledger.reserve_job(job, client.clone(), units(10), ReservationKind::Maximum, 1).unwrap().transfer.id;
        let settle = |amount, key_text: &str| TransferRequest {
            key: key(key_text),
            action: Action::Settle { reservation: id, amount },
            purpose: Purpose::Computation,
            memo: Memo::default(),
        };
        ledger.execute(settle(units(4), "s1"), 2).unwrap();
        ledger.release_job(job, 3).unwrap();
        // 6 of headroom left though nothing is reserved any more: charged directly.
        let late = ledger.execute(settle(units(5), "s2"), 4).unwrap();
        assert_eq!(
            (late.transfer.posted, late.transfer.from_reservation, late.transfer.capped),
            (units(5), Micros::ZERO, Micros::ZERO)
        );
        let over = ledger.execute(settle(units(3), "s3"), 5).unwrap();
        assert_eq!((over.transfer.posted, over.transfer.capped), (units(1), units(2)));
        let none = ledger.execute(settle(units(3), "s4"), 6).unwrap();
        assert_eq!((none.transfer.posted, none.transfer.capped), (Micros::ZERO, units(3)));
        assert_eq!(
            ledger.account(&client).unwrap().balance_posted().unwrap(),
            units(90),
            "never more than the maximum"
        );
        assert_eq!(ledger.job_reservation(job).unwrap().unwrap().headroom().unwrap(), Some(Micros::ZERO));
        ledger.check_balanced().unwrap();
    }

    #[test]
    fn a_reservation_past_the_limit_is_refused_so_the_job_does_not_launch() {
        let (mut store, client, _) = setup();
        let mut ledger = Ledger::new(&mut store);
        let error = ledger.reserve_job(JobId::random(), client, units(111), ReservationKind::Maximum, 1).unwrap_err();
        assert!(matches!(error, LedgerError::OverLimit { .. }), "{error}");
        ledger.check_balanced().unwrap();
    }

    #[test]
    fn barter_spends_only_what_the_provider_earned() {
        let (mut store, client, provider) = setup();
        let mut ledger = Ledger::new(&mut store);
        let earn = post("pay:1", &AccountId::Platform, &provider, units(8), OverLimit::Refuse);
        ledger.execute(earn, 1).unwrap();
        let AccountId::Party(provider_party) = provider.clone() else { unreachable!() };
        let AccountId::Party(client_party) = client.clone() else { unreachable!() };
        let error = ledger.barter_credit(key("barter:1"), &provider_party, &client_party, units(9), 2).unwrap_err();
        assert!(matches!(error, LedgerError::OverLimit { .. }));
        ledger.barter_credit(key("barter:2"), &provider_party, &client_party, units(8), 2).unwrap();
        assert_eq!(ledger.account(&provider).unwrap().balance_posted().unwrap(), Micros::ZERO);
        assert_eq!(ledger.account(&client).unwrap().balance_posted().unwrap(), units(108));
        ledger.check_balanced().unwrap();
    }

    #[test]
    fn bad_requests_are_errors() {
        let (mut store, client, _) = setup();
        let mut ledger = Ledger::new(&mut store);
        let zero = post("z", &client, &AccountId::Platform, Micros::ZERO, OverLimit::Refuse);
        assert!(matches!(ledger.execute(zero, 1), Err(LedgerError::NonPositiveAmount { .. })));
        let same = post("s", &client, &client, units(1), OverLimit::Refuse);
        assert!(matches!(ledger.execute(same, 1), Err(LedgerError::SameAccount { .. })));
        let missing = post("m", &client, &AccountId::Party(party(9)), units(1), OverLimit::Refuse);
        let error = ledger.execute(missing, 1).unwrap_err();
        assert!(error.to_string().contains("open it with Ledger::open_account"), "{error}");
        let void = TransferRequest {
            key: key("v"),
            action: Action::Void { reservation: TransferId(99) },
            purpose: Purpose::JobReservation,
            memo: Memo::default(),
        };
        assert!(matches!(ledger.execute(void, 1), Err(LedgerError::ReservationNotFound { .. })));
        assert!(ledger.set_overdraft_max(&client, Some(Micros::new(-1))).is_err());
        let huge = post("h", &AccountId::External, &client, Micros::MAX, OverLimit::Refuse);
        assert!(matches!(ledger.execute(huge, 1), Err(LedgerError::AmountTooLarge { .. })), "too large is an error");
        let largest = post("l", &AccountId::External, &client, Micros::new(AMOUNT_MICROS_MAX), OverLimit::Refuse);
        ledger.execute(largest, 1).unwrap();
        ledger.check_balanced().unwrap();
    }

    #[test]
    fn opening_an_account_twice_keeps_the_first() {
        let mut store = MemoryStore::new();
        let mut ledger = Ledger::new(&mut store);
        let id = AccountId::Party(party(3));
        ledger.open_account(id.clone(), Some(units(5)), 1).unwrap();
        let again = ledger.open_account(id.clone(), Some(units(50)), 2).unwrap();
        assert_eq!((again.overdraft_max, again.created_ms), (Some(units(5)), 1));
        let changed = ledger.set_overdraft_max(&id, None).unwrap();
        assert_eq!(changed.overdraft_max, None);
    }
}
