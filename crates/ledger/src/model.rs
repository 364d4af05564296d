//! What the ledger stores: accounts, transfers, reservations, and the keys that make a
//! retried request harmless.

use std::fmt;
use std::str::FromStr;

use idlegrid_types::{JobId, PartyId};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{LedgerError, Micros};

/// Longest idempotency key accepted.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 200;

/// An account. Every party (client or provider) has one account named by its `PartyId`; the
/// platform has one; `External` stands for the world outside the platform, so that money paid
/// in by clients and paid out to providers also moves between two accounts and the sum over all
/// accounts stays zero.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AccountId {
    /// The platform's revenue: credited by client charges, debited by provider pay.
    Platform,
    /// Money entering (client payments) or leaving (provider payouts) the platform. Its balance
    /// is minus the money held inside.
    External,
    /// A client's or a provider's account (one per party, whatever its role).
    Party(PartyId),
}

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountId::Platform => f.write_str("platform"),
            AccountId::External => f.write_str("external"),
            AccountId::Party(party) => write!(f, "party:{party}"),
        }
    }
}

impl fmt::Debug for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AccountId({self})")
    }
}

impl FromStr for AccountId {
    type Err = LedgerError;
    fn from_str(text: &str) -> Result<AccountId, LedgerError> {
        match text {
            "platform" => Ok(AccountId::Platform),
            "external" => Ok(AccountId::External),
            _ => {
                let invalid = || LedgerError::InvalidInput {
                    field: "account id",
                    value: text.chars().take(80).collect(),
                    reason: "expected 'platform', 'external' or 'party:' followed by a party id",
                };
                let party = text.strip_prefix("party:").ok_or_else(invalid)?;
                party.parse().map(AccountId::Party).map_err(|_| invalid())
            }
        }
    }
}

impl Serialize for AccountId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for AccountId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Balances of one account. Every amount is non-negative and only grows, except pending amounts,
/// which shrink when a reservation is settled or voided. The balance is credits minus debits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub debits_posted: Micros,
    pub credits_posted: Micros,
    /// Reserved by open reservations that debit this account.
    pub debits_pending: Micros,
    /// Reserved by open reservations that credit this account.
    pub credits_pending: Micros,
    /// How far the available balance may go below zero; `None`: no limit (platform, external).
    /// A provider's account has `Some(ZERO)`: it spends only what it earned.
    pub overdraft_max: Option<Micros>,
    pub created_ms: u64,
}

impl Account {
    pub fn new(id: AccountId, overdraft_max: Option<Micros>, created_ms: u64) -> Account {
        Account {
            id,
            debits_posted: Micros::ZERO,
            credits_posted: Micros::ZERO,
            debits_pending: Micros::ZERO,
            credits_pending: Micros::ZERO,
            overdraft_max,
            created_ms,
        }
    }

    /// Posted balance: credits minus debits. Negative for a client that owes money.
    pub fn balance_posted(&self) -> Result<Micros, LedgerError> {
        self.credits_posted.checked_sub(self.debits_posted)
    }

    /// What the account can still spend before its limit: the posted balance minus what is
    /// reserved against it (pending credits are not counted: they may be voided).
    pub fn available(&self) -> Result<Micros, LedgerError> {
        self.balance_posted()?.checked_sub(self.debits_pending)
    }

    /// True when the available balance is below minus the limit: the client's jobs must stop
    /// until a payment brings the account current (P7.6).
    pub fn is_over_limit(&self) -> Result<bool, LedgerError> {
        match self.overdraft_max {
            None => Ok(false),
            Some(limit) => Ok(self.available()? < limit.checked_neg()?),
        }
    }
}

/// Identity of a transfer, assigned by the store in increasing order (see
/// `LedgerStore::next_transfer_id`). A reservation is named by the id of the transfer that made
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TransferId(pub u64);

impl fmt::Display for TransferId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t{}", self.0)
    }
}

/// Names a request, so that a retry is recognised: a second request with the same key and the
/// same content returns the first transfer and moves nothing; with other content it is refused.
/// Printable ASCII, 1 to `IDEMPOTENCY_KEY_BYTES_MAX` bytes. The `keys` module derives the keys
/// of billing and job reservations.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn new(key: impl Into<String>) -> Result<IdempotencyKey, LedgerError> {
        let key = key.into();
        let reason = if key.is_empty() {
            Some("it is empty")
        } else if key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
            Some("it is longer than 200 bytes")
        } else if !key.bytes().all(|b| b.is_ascii_graphic()) {
            Some("only printable ASCII without spaces is allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(LedgerError::InvalidKey { key: key.chars().take(80).collect(), reason }),
            None => Ok(IdempotencyKey(key)),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for IdempotencyKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IdempotencyKey::new(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Keys derived from what a transfer is for, so that the same event always gets the same key.
pub mod keys {
    use super::*;

    fn key(text: String) -> IdempotencyKey {
        // Derived keys are short printable ASCII by construction.
        IdempotencyKey(text)
    }

    /// The reservation of a job's expected or maximum cost, made at launch.
    pub fn job_reservation(job: JobId) -> IdempotencyKey {
        key(format!("reserve:{job}"))
    }

    /// The release of what is left of a job's reservation, once its work is billed.
    pub fn job_release(job: JobId) -> IdempotencyKey {
        key(format!("release:{job}"))
    }

    /// A job's share of its client's computation charge for one increment.
    pub fn computation(job: JobId, increment_start_ms: u64) -> IdempotencyKey {
        key(format!("compute:{job}:{increment_start_ms}"))
    }

    /// A job's reliability premium for one increment.
    pub fn reliability_premium(job: JobId, increment_start_ms: u64) -> IdempotencyKey {
        key(format!("premium:{job}:{increment_start_ms}"))
    }

    /// The data transfer charge of the journal record that returned a task's final status.
    pub fn data_transfer(record: u64) -> IdempotencyKey {
        key(format!("data:{record}"))
    }

    /// A provider's pay for one journal record (one task on one engine).
    pub fn provider_pay(record: u64) -> IdempotencyKey {
        key(format!("pay:{record}"))
    }

    /// A step of a deposit or payout request: `reserve` (a payout waiting), `post` (approved),
    /// `void` (a payout rejected).
    pub fn request(id: u64, step: &str) -> IdempotencyKey {
        key(format!("request:{id}:{step}"))
    }
}

/// What a transfer is for; statements group by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// A client's payment into its account (external -> client).
    Deposit,
    /// A provider's withdrawal of its earnings (provider -> external).
    Payout,
    /// Price per hour for computation (P7.2) (client -> platform).
    Computation,
    /// Premium for reliability above the baseline (P7.4) (client -> platform).
    ReliabilityPremium,
    /// Data transfer charge (P7.3) (client -> platform).
    DataTransfer,
    /// Pay for an engine's time or work (P7.5) (platform -> provider).
    ProviderPay,
    /// Earnings of a provider made spendable by a client account (provider -> client).
    BarterCredit,
    /// A job's reservation, its settlement in parts, or its release.
    JobReservation,
    /// A correction by an operator.
    Adjustment,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Deposit => "deposit",
            Purpose::Payout => "payout",
            Purpose::Computation => "computation",
            Purpose::ReliabilityPremium => "reliability_premium",
            Purpose::DataTransfer => "data_transfer",
            Purpose::ProviderPay => "provider_pay",
            Purpose::BarterCredit => "barter_credit",
            Purpose::JobReservation => "job_reservation",
            Purpose::Adjustment => "adjustment",
        }
    }
}

/// A span of time, `start_ms` included, `end_ms` excluded (Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Period {
    pub start_ms: u64,
    pub end_ms: u64,
}

/// What a transfer pays for, for statements and audits. Not used by the state machine.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Memo {
    pub job: Option<JobId>,
    /// The engine whose work is paid (provider statements group by it).
    pub engine: Option<PartyId>,
    /// The journal record billed.
    pub record: Option<u64>,
    /// The time of the work paid for.
    pub service: Option<Period>,
    /// The deposit or payout request the transfer carries out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<u64>,
}

/// What to do when a direct posting would take the debit account past its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverLimit {
    /// Refuse the transfer (`LedgerError::OverLimit`): payouts, barter, manual transfers.
    Refuse,
    /// Post it and report the account over its limit: charges for work already done, which
    /// must not be lost; the server then stops the client's jobs.
    Allow,
}

/// How a reservation bounds the charges settled against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationKind {
    /// The job's maximum cost (P7.6): settlements never post more than the reserved amount in
    /// total; the excess is `capped` (not charged).
    Maximum,
    /// An expected cost: settlements beyond it are posted directly, past the account limit if
    /// need be (`OverLimit::Allow`).
    Estimate,
}

/// What a transfer does to balances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Move `amount` from `debit` to `credit` now (posted balances).
    Post { debit: AccountId, credit: AccountId, amount: Micros, over_limit: OverLimit },
    /// Reserve `amount` (pending balances). Refused if the debit account's available balance
    /// would go past its limit.
    Reserve { debit: AccountId, credit: AccountId, amount: Micros, kind: ReservationKind },
    /// Post `amount` between the reservation's accounts, taken first from what is still
    /// reserved; any excess follows the reservation's kind. May be repeated (settlement in
    /// parts), also after a void.
    Settle { reservation: TransferId, amount: Micros },
    /// Release what is still reserved.
    Void { reservation: TransferId },
}

/// A request to the ledger. Two requests are "the same content" when they are equal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TransferRequest {
    pub key: IdempotencyKey,
    pub action: Action,
    pub purpose: Purpose,
    pub memo: Memo,
}

/// A transfer as recorded: the request and what it did. Immutable once inserted.
///
/// Effects on balances: `posted` moved from the debit to the credit account's posted balances,
/// `from_reservation` of which came out of the pending balances; `reserved` added to pending;
/// `released` removed from pending without posting; `capped` was asked for but not charged
/// because of a maximum reservation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub id: TransferId,
    pub request: TransferRequest,
    pub debit: AccountId,
    pub credit: AccountId,
    pub posted: Micros,
    pub from_reservation: Micros,
    pub reserved: Micros,
    pub released: Micros,
    pub capped: Micros,
    pub created_ms: u64,
}

impl Transfer {
    pub fn key(&self) -> &IdempotencyKey {
        &self.request.key
    }

    pub fn purpose(&self) -> Purpose {
        self.request.purpose
    }

    pub fn memo(&self) -> &Memo {
        &self.request.memo
    }
}

/// An open or closed reservation; its id is the id of the `Reserve` transfer. Mutable: each
/// settlement and the void update it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub id: TransferId,
    pub debit: AccountId,
    pub credit: AccountId,
    pub kind: ReservationKind,
    pub amount: Micros,
    /// Posted out of the pending amount.
    pub settled_from_pending: Micros,
    /// Posted beyond what was still pending (after a void, or past an estimate).
    pub settled_beyond: Micros,
    /// Released by a void.
    pub released: Micros,
}

impl Reservation {
    /// Still reserved: neither settled nor released.
    pub fn remaining(&self) -> Result<Micros, LedgerError> {
        self.amount.checked_sub(self.settled_from_pending)?.checked_sub(self.released)
    }

    /// Everything posted through this reservation.
    pub fn settled(&self) -> Result<Micros, LedgerError> {
        self.settled_from_pending.checked_add(self.settled_beyond)
    }

    /// For a maximum: what may still be charged before the cap. For an estimate: unbounded.
    pub fn headroom(&self) -> Result<Option<Micros>, LedgerError> {
        match self.kind {
            ReservationKind::Maximum => Ok(Some(self.amount.checked_sub(self.settled()?)?)),
            ReservationKind::Estimate => Ok(None),
        }
    }

    pub fn is_open(&self) -> Result<bool, LedgerError> {
        Ok(self.remaining()?.is_positive())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_round_trip_as_text() {
        let party = PartyId::from_public_key(&[1; 32]);
        for id in [AccountId::Platform, AccountId::External, AccountId::Party(party)] {
            assert_eq!(id.to_string().parse::<AccountId>().unwrap(), id);
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(serde_json::from_str::<AccountId>(&json).unwrap(), id);
        }
        assert!("party:xyz".parse::<AccountId>().is_err());
        assert!("bank".parse::<AccountId>().is_err());
    }

    #[test]
    fn keys_are_validated() {
        assert!(IdempotencyKey::new("deposit:stripe:ch_123").is_ok());
        assert!(IdempotencyKey::new("").is_err());
        assert!(IdempotencyKey::new("has space").is_err());
        assert!(IdempotencyKey::new("x".repeat(201)).is_err());
        assert!(serde_json::from_str::<IdempotencyKey>("\"\"").is_err());
        let job = JobId::random();
        assert!(keys::computation(job, 900_000).as_str().ends_with(":900000"));
        assert_eq!(IdempotencyKey::new(keys::job_reservation(job).as_str()).unwrap(), keys::job_reservation(job));
    }
}
