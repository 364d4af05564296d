//! Settlement maths of contract execution (D7), pure, for the server to carry out through the
//! ledger:
//!
//! - **Escrow.** When a contract starts, the buyer's price and its part of the commission move
//!   to the contract's escrow account ([`plan_escrow`]); money a party gives moves at once.
//! - **Delivery fraction.** What share of the contract was delivered: by metering records
//!   (units delivered over units contracted, repeated records counted once, [`metered`]) or by
//!   time (a party that failed partway, [`delivered_by_time`]).
//! - **Settlement.** [`plan_settlement`] splits the escrow by that fraction: the seller earns
//!   `floor(price x fraction)` less its part of the commission, the platform the commission on
//!   what was earned, the buyer gets the rest back. The parts always add up to the escrow.
//! - **Idempotency.** Every transfer carries a key derived from the contract and its purpose
//!   (`market:contract:9:settle:seller`), which the ledger executes at most once: a settlement
//!   planned again after a repeated message or a restart moves nothing twice.
//! - **Proof of storage.** Before handing a blob to the seller, the server prepares challenges
//!   (a random byte range and a nonce, with the expected SHA-256 of nonce and range); later it
//!   sends one and compares the answer ([`prepare_challenges`], [`answer_challenge`], [`check_answer`]).
//! - **Sweepstakes.** A seeded draw among entries, weighted by their count, reproducible by
//!   anyone from the seed ([`draw`]).

use std::collections::BTreeMap;

use idlegrid_ledger::Micros;
use idlegrid_types::PartyId;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::contract::{Consideration, Contract, ContractId};
use idlegrid_random::{RandomSource, Xoshiro256StarStar};

/// An account a settlement moves money between.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", content = "id", rename_all = "snake_case")]
pub enum Account {
    Party(PartyId),
    Platform,
    /// The money a contract holds until it is settled.
    Escrow(ContractId),
}

/// One ledger transfer to make, with its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub key: String,
    pub from: Account,
    pub to: Account,
    pub amount: Micros,
}

/// Why a settlement cannot be planned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SettlementError {
    #[error("metering record {seq} was received twice with different figures: keep the first, check the engine")]
    ConflictingRecord { seq: u64 },
    #[error("metering record {seq} belongs to contract {found}, not {expected}")]
    WrongContract { seq: u64, expected: ContractId, found: ContractId },
    #[error("metering record {seq} ends before it starts")]
    BackwardsRecord { seq: u64 },
    #[error("the contract's units_contracted must be positive")]
    NothingContracted,
    #[error("the blob is empty: there is nothing to challenge")]
    EmptyBlob,
    #[error("the challenged range {offset}+{length} is outside the {size}-byte blob")]
    OutOfRange { offset: u64, length: u64, size: u64 },
    #[error("no entries to draw from")]
    NoEntries,
}

/// The idempotency key of a contract's transfer for `purpose` (ASCII, at most about 60
/// bytes: within the ledger's limit).
pub fn settlement_key(contract: ContractId, purpose: &str) -> String {
    format!("market:contract:{}:{purpose}", contract.0)
}

/// A share of a contract, `numerator / denominator`, at most 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fraction {
    pub numerator: u64,
    pub denominator: u64,
}

impl Fraction {
    pub const WHOLE: Fraction = Fraction { numerator: 1, denominator: 1 };

    /// `numerator / denominator` capped at 1 (a zero denominator is the whole).
    pub fn new(numerator: u64, denominator: u64) -> Fraction {
        if denominator == 0 {
            return Fraction::WHOLE;
        }
        Fraction { numerator: numerator.min(denominator), denominator }
    }

    /// `floor(amount x self)`, exactly, for amounts not negative.
    pub fn of(self, amount: Micros) -> Micros {
        let amount = amount.as_i64().max(0) as u128;
        Micros::new((amount * self.numerator as u128 / self.denominator.max(1) as u128) as i64)
    }
}

/// One report of use by the delivering side (an engine): units delivered over a time span.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterRecord {
    pub contract: ContractId,
    /// Numbered by the reporter from 1; a repeated number is the same record sent again.
    pub seq: u64,
    pub from_ms: u64,
    pub to_ms: u64,
    /// Units of the contract's metering unit (bytes served, MB-seconds reserved, ms of compute).
    pub units: u64,
}

/// What metering records add up to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metered {
    pub units: u64,
    /// Records received more than once (ignored after the first).
    pub repeated: usize,
    pub fraction: Fraction,
    /// What the seller has earned so far: `floor(price x fraction)`.
    pub amount_due: Micros,
}

/// Add up metering records for `contract`, each sequence number once; a number seen again
/// with other figures is an error (a forged or corrupted report).
pub fn metered(
    contract: &Contract,
    units_contracted: u64,
    records: &[MeterRecord],
) -> Result<Metered, SettlementError> {
    if units_contracted == 0 {
        return Err(SettlementError::NothingContracted);
    }
    let mut seen: BTreeMap<u64, &MeterRecord> = BTreeMap::new();
    let mut repeated = 0;
    for record in records {
        if record.contract != contract.id {
            return Err(SettlementError::WrongContract {
                seq: record.seq,
                expected: contract.id,
                found: record.contract,
            });
        }
        if record.to_ms < record.from_ms {
            return Err(SettlementError::BackwardsRecord { seq: record.seq });
        }
        match seen.get(&record.seq) {
            Some(first) if *first == record => repeated += 1,
            Some(_) => return Err(SettlementError::ConflictingRecord { seq: record.seq }),
            None => {
                seen.insert(record.seq, record);
            }
        }
    }
    let units = seen.values().fold(0u64, |sum, record| sum.saturating_add(record.units));
    let fraction = Fraction::new(units, units_contracted);
    Ok(Metered { units, repeated, fraction, amount_due: fraction.of(contract.price) })
}

/// The share of a contract's time delivered when a party stopped delivering at `until_ms`.
pub fn delivered_by_time(contract: &Contract, until_ms: u64) -> Fraction {
    Fraction::new(until_ms.saturating_sub(contract.starts_ms), contract.duration_ms)
}

/// The transfers when a contract starts: the buyer's price and commission part into escrow,
/// and money either party gives, straight to the other.
pub fn plan_escrow(contract: &Contract) -> Vec<Transfer> {
    let mut transfers = Vec::new();
    let buyer = Account::Party(contract.buyer.party.clone());
    let seller = Account::Party(contract.seller.party.clone());
    let held = Micros::new(contract.price.as_i64().saturating_add(contract.buyer_commission().as_i64()));
    if held.is_positive() {
        transfers.push(Transfer {
            key: settlement_key(contract.id, "escrow"),
            from: buyer.clone(),
            to: Account::Escrow(contract.id),
            amount: held,
        });
    }
    for (role, from, to, side) in
        [("seller", &seller, &buyer, &contract.seller), ("buyer", &buyer, &seller, &contract.buyer)]
    {
        for (n, consideration) in side.gives.iter().enumerate() {
            if let Consideration::Money { amount } = consideration {
                transfers.push(Transfer {
                    key: settlement_key(contract.id, &format!("money:{role}:{n}")),
                    from: from.clone(),
                    to: to.clone(),
                    amount: *amount,
                });
            }
        }
    }
    transfers
}

/// Split the escrow by the delivered `fraction`: the seller's earnings less its commission
/// part, the platform's commission on what was earned, the buyer's refund. Zero transfers are
/// left out; the amounts always add up to the escrow of [`plan_escrow`].
pub fn plan_settlement(contract: &Contract, fraction: Fraction) -> Vec<Transfer> {
    let escrow = contract.price.as_i64().saturating_add(contract.buyer_commission().as_i64());
    let earned = fraction.of(contract.price).as_i64();
    let buyer_commission = fraction.of(contract.buyer_commission()).as_i64();
    let seller_commission_total = contract.commission.as_i64() - contract.buyer_commission().as_i64();
    let seller_commission = fraction.of(Micros::new(seller_commission_total)).as_i64().min(earned);
    let parts = [
        ("settle:seller", Account::Party(contract.seller.party.clone()), earned - seller_commission),
        ("settle:platform", Account::Platform, buyer_commission + seller_commission),
        ("settle:refund", Account::Party(contract.buyer.party.clone()), escrow - earned - buyer_commission),
    ];
    parts
        .into_iter()
        .filter(|(_, _, amount)| *amount > 0)
        .map(|(purpose, to, amount)| Transfer {
            key: settlement_key(contract.id, purpose),
            from: Account::Escrow(contract.id),
            to,
            amount: Micros::new(amount),
        })
        .collect()
}

/// A proof-of-storage challenge: hash `nonce` followed by `length` bytes from `offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Challenge {
    pub offset: u64,
    pub length: u64,
    /// 16 random bytes, hex.
    pub nonce: String,
}

/// A challenge and the answer expected, kept by the server (never sent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedChallenge {
    pub challenge: Challenge,
    /// SHA-256 of nonce and range, hex.
    pub expected: String,
}

/// Draw `count` challenges over `blob`, each over at most `range_bytes_max` bytes. The server
/// must pass a generator seeded from a secret: a seller who could predict the ranges could keep
/// only those bytes.
pub fn prepare_challenges(
    blob: &[u8],
    count: usize,
    range_bytes_max: u64,
    random: &mut dyn RandomSource,
) -> Result<Vec<PreparedChallenge>, SettlementError> {
    let size = blob.len() as u64;
    if size == 0 {
        return Err(SettlementError::EmptyBlob);
    }
    let mut prepared = Vec::with_capacity(count);
    for _ in 0..count {
        let length = 1 + random.below_unbiased(range_bytes_max.clamp(1, size));
        let offset = random.below_unbiased(size - length + 1);
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&random.next_u64().to_le_bytes());
        nonce[8..].copy_from_slice(&random.next_u64().to_le_bytes());
        let challenge = Challenge { offset, length, nonce: hex::encode(nonce) };
        let expected = answer_challenge(&challenge, blob)?;
        prepared.push(PreparedChallenge { challenge, expected });
    }
    Ok(prepared)
}

/// The answer to a challenge (what the storing engine computes): hex SHA-256 of the nonce's
/// bytes followed by the range.
pub fn answer_challenge(challenge: &Challenge, blob: &[u8]) -> Result<String, SettlementError> {
    let size = blob.len() as u64;
    let out_of_range = || SettlementError::OutOfRange { offset: challenge.offset, length: challenge.length, size };
    let end = challenge.offset.checked_add(challenge.length).ok_or_else(out_of_range)?;
    if end > size || challenge.length == 0 {
        return Err(out_of_range());
    }
    let mut hasher = Sha256::new();
    hasher.update(hex::decode(&challenge.nonce).unwrap_or_default());
    hasher.update(&blob[challenge.offset as usize..end as usize]);
    Ok(hex::encode(hasher.finalize()))
}

/// Whether `answer` proves the range is stored (compared in constant time).
pub fn check_answer(prepared: &PreparedChallenge, answer: &str) -> bool {
    let (expected, answer) = (prepared.expected.as_bytes(), answer.trim().to_ascii_lowercase());
    expected.len() == answer.len() && expected.iter().zip(answer.as_bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Draw `winners` distinct parties among `entries` (party, number of entries), each draw
/// weighted by entries, from `seed`. Entries are merged per party and sorted by party first,
/// so the result depends only on the entries and the seed, not their order.
pub fn draw(entries: &[(PartyId, u64)], winners: usize, seed: u64) -> Result<Vec<PartyId>, SettlementError> {
    let mut merged: BTreeMap<&PartyId, u64> = BTreeMap::new();
    for (party, count) in entries {
        let total = merged.entry(party).or_default();
        *total = total.saturating_add(*count);
    }
    let mut pool: Vec<(&PartyId, u64)> = merged.into_iter().filter(|(_, count)| *count > 0).collect();
    if pool.is_empty() {
        return Err(SettlementError::NoEntries);
    }
    let mut random = Xoshiro256StarStar::from_seed(seed);
    let mut drawn = Vec::new();
    while drawn.len() < winners && !pool.is_empty() {
        let total = pool.iter().fold(0u64, |sum, (_, count)| sum.saturating_add(*count));
        let mut ticket = random.below_unbiased(total);
        let index = pool
            .iter()
            .position(|(_, count)| {
                if ticket < *count {
                    return true;
                }
                ticket -= count;
                false
            })
            .unwrap_or(pool.len() - 1);
        drawn.push(pool.remove(index).0.clone());
    }
    Ok(drawn)
}

#[cfg(test)]
mod tests;
