//! The state the ledger reads and writes, as a trait so that the same state machine runs over
//! memory (tests), SQLite and PostgreSQL (the store crate).

use std::collections::{BTreeMap, HashMap};

use crate::{
    Account, AccountId, IdempotencyKey, LedgerError, Micros, MoneyRequest, RequestFilter, RequestKind, Reservation,
    Transfer, TransferId,
};

/// Storage of accounts, transfers and reservations.
///
/// Contract for an implementation:
/// - Every call of one ledger operation happens inside one transaction of the caller's; the
///   ledger validates everything before its first write, but a storage error after a write
///   leaves the transaction half done, so the caller must roll back on any `Err`.
/// - Transfers are immutable once inserted; `transfer_by_key` must find any inserted transfer
///   (a unique index on the key); `next_transfer_id` returns an id greater than every inserted
///   one (for example `MAX(id) + 1` inside the transaction, or a sequence).
/// - `put_account` and `put_reservation` insert or replace the whole row.
/// - Deposit and payout requests: `next_request_id` is greater than every inserted id;
///   `insert_request` refuses a second request with the same account, kind and reference (a
///   unique index); `put_request` replaces an existing one.
pub trait LedgerStore {
    fn account(&mut self, id: &AccountId) -> Result<Option<Account>, LedgerError>;
    fn put_account(&mut self, account: &Account) -> Result<(), LedgerError>;
    /// Every account, in any order (the balance check; statements do not use it).
    fn accounts(&mut self) -> Result<Vec<Account>, LedgerError>;

    fn next_transfer_id(&mut self) -> Result<TransferId, LedgerError>;
    fn insert_transfer(&mut self, transfer: &Transfer) -> Result<(), LedgerError>;
    fn transfer(&mut self, id: TransferId) -> Result<Option<Transfer>, LedgerError>;
    fn transfer_by_key(&mut self, key: &IdempotencyKey) -> Result<Option<Transfer>, LedgerError>;
    /// Transfers that debit or credit `account`, created in `created_from_ms..created_to_ms`,
    /// in id order (statements).
    fn transfers_of_account(
        &mut self,
        account: &AccountId,
        created_from_ms: u64,
        created_to_ms: u64,
    ) -> Result<Vec<Transfer>, LedgerError>;

    fn reservation(&mut self, id: TransferId) -> Result<Option<Reservation>, LedgerError>;
    fn put_reservation(&mut self, reservation: &Reservation) -> Result<(), LedgerError>;

    fn next_request_id(&mut self) -> Result<u64, LedgerError>;
    fn insert_request(&mut self, request: &MoneyRequest) -> Result<(), LedgerError>;
    fn put_request(&mut self, request: &MoneyRequest) -> Result<(), LedgerError>;
    fn request(&mut self, id: u64) -> Result<Option<MoneyRequest>, LedgerError>;
    fn request_by_reference(
        &mut self,
        account: &AccountId,
        kind: RequestKind,
        reference: &str,
    ) -> Result<Option<MoneyRequest>, LedgerError>;
    /// Matching requests in id order, at most `filter.limit`.
    fn requests(&mut self, filter: &RequestFilter) -> Result<Vec<MoneyRequest>, LedgerError>;

    /// Sums over all accounts. Override with one aggregate query over SQL.
    fn totals(&mut self) -> Result<LedgerTotals, LedgerError> {
        let mut totals = LedgerTotals::default();
        for account in self.accounts()? {
            totals.add(&account)?;
        }
        Ok(totals)
    }
}

/// Sums of every account's balances; balanced when debits equal credits, posted and pending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LedgerTotals {
    pub accounts: u64,
    pub debits_posted: Micros,
    pub credits_posted: Micros,
    pub debits_pending: Micros,
    pub credits_pending: Micros,
}

impl LedgerTotals {
    pub fn add(&mut self, account: &Account) -> Result<(), LedgerError> {
        self.accounts += 1;
        self.debits_posted = self.debits_posted.checked_add(account.debits_posted)?;
        self.credits_posted = self.credits_posted.checked_add(account.credits_posted)?;
        self.debits_pending = self.debits_pending.checked_add(account.debits_pending)?;
        self.credits_pending = self.credits_pending.checked_add(account.credits_pending)?;
        Ok(())
    }

    pub fn is_balanced(&self) -> bool {
        self.debits_posted == self.credits_posted && self.debits_pending == self.credits_pending
    }
}

/// The ledger's state in memory: for tests, the benchmark, and as the reference the SQL
/// implementations are compared with. `Clone` gives a cheap "transaction": clone, apply, keep
/// the clone to commit or drop it to roll back.
#[derive(Debug, Clone, Default)]
pub struct MemoryStore {
    accounts: BTreeMap<AccountId, Account>,
    /// Indexed by `id - 1`: ids are dense from 1.
    transfers: Vec<Transfer>,
    keys: HashMap<IdempotencyKey, TransferId>,
    reservations: HashMap<TransferId, Reservation>,
    /// Indexed by `id - 1`.
    requests: Vec<MoneyRequest>,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// All transfers in id order.
    pub fn transfers(&self) -> &[Transfer] {
        &self.transfers
    }

    pub fn account_ref(&self, id: &AccountId) -> Option<&Account> {
        self.accounts.get(id)
    }

    pub fn accounts_ref(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }
}

impl LedgerStore for MemoryStore {
    fn account(&mut self, id: &AccountId) -> Result<Option<Account>, LedgerError> {
        Ok(self.accounts.get(id).cloned())
    }

    fn put_account(&mut self, account: &Account) -> Result<(), LedgerError> {
        self.accounts.insert(account.id.clone(), account.clone());
        Ok(())
    }

    fn accounts(&mut self) -> Result<Vec<Account>, LedgerError> {
        Ok(self.accounts.values().cloned().collect())
    }

    fn next_transfer_id(&mut self) -> Result<TransferId, LedgerError> {
        Ok(TransferId(self.transfers.len() as u64 + 1))
    }

    fn insert_transfer(&mut self, transfer: &Transfer) -> Result<(), LedgerError> {
        // Dense ids and unique keys are what the SQL schema enforces with constraints.
        let expected = TransferId(self.transfers.len() as u64 + 1);
        if transfer.id != expected || self.keys.contains_key(transfer.key()) {
            return Err(LedgerError::storage(std::io::Error::other(format!(
                "transfer {} with key {} violates the store's constraints (expected id {expected}, unique key)",
                transfer.id,
                transfer.key()
            ))));
        }
        self.keys.insert(transfer.key().clone(), transfer.id);
        self.transfers.push(transfer.clone());
        Ok(())
    }

    fn transfer(&mut self, id: TransferId) -> Result<Option<Transfer>, LedgerError> {
        Ok(id.0.checked_sub(1).and_then(|index| self.transfers.get(index as usize)).cloned())
    }

    fn transfer_by_key(&mut self, key: &IdempotencyKey) -> Result<Option<Transfer>, LedgerError> {
        Ok(self.keys.get(key).map(|id| self.transfers[(id.0 - 1) as usize].clone()))
    }

    fn transfers_of_account(
        &mut self,
        account: &AccountId,
        created_from_ms: u64,
        created_to_ms: u64,
    ) -> Result<Vec<Transfer>, LedgerError> {
        Ok(self
            .transfers
            .iter()
            .filter(|t| {
                (&t.debit == account || &t.credit == account)
                    && (created_from_ms..created_to_ms).contains(&t.created_ms)
            })
            .cloned()
            .collect())
    }

    fn reservation(&mut self, id: TransferId) -> Result<Option<Reservation>, LedgerError> {
        Ok(self.reservations.get(&id).cloned())
    }

    fn put_reservation(&mut self, reservation: &Reservation) -> Result<(), LedgerError> {
        self.reservations.insert(reservation.id, reservation.clone());
        Ok(())
    }

    fn next_request_id(&mut self) -> Result<u64, LedgerError> {
        Ok(self.requests.len() as u64 + 1)
    }

    fn insert_request(&mut self, request: &MoneyRequest) -> Result<(), LedgerError> {
        let duplicate = self
            .requests
            .iter()
            .any(|r| r.account == request.account && r.kind == request.kind && r.reference == request.reference);
        if request.id != self.requests.len() as u64 + 1 || duplicate {
            return Err(LedgerError::storage(std::io::Error::other(format!(
                "request {} violates the store's constraints (dense ids, unique reference per account and kind)",
                request.id
            ))));
        }
        self.requests.push(request.clone());
        Ok(())
    }

    fn put_request(&mut self, request: &MoneyRequest) -> Result<(), LedgerError> {
        match request.id.checked_sub(1).and_then(|index| self.requests.get_mut(index as usize)) {
            Some(slot) => {
                *slot = request.clone();
                Ok(())
            }
            None => {
                Err(LedgerError::storage(std::io::Error::other(format!("request {} was never inserted", request.id))))
            }
        }
    }

    fn request(&mut self, id: u64) -> Result<Option<MoneyRequest>, LedgerError> {
        Ok(id.checked_sub(1).and_then(|index| self.requests.get(index as usize)).cloned())
    }

    fn request_by_reference(
        &mut self,
        account: &AccountId,
        kind: RequestKind,
        reference: &str,
    ) -> Result<Option<MoneyRequest>, LedgerError> {
        Ok(self.requests.iter().find(|r| &r.account == account && r.kind == kind && r.reference == reference).cloned())
    }

    fn requests(&mut self, filter: &RequestFilter) -> Result<Vec<MoneyRequest>, LedgerError> {
        Ok(self.requests.iter().filter(|r| filter.matches(r)).take(filter.limit as usize).cloned().collect())
    }
}
