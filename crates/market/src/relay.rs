//! Internet access sold on the market, metered in bytes (D7): the seller's engine relays
//! elements to the buyer and both count the bytes. Each side's reports are numbered (a repeat
//! counts once, other figures for a number seen are refused); what is delivered is the lower of
//! the two sides' totals once both reported (a side cannot inflate it alone), or the one total
//! reported so far. The contract's execution is metered in its own unit (milliseconds of
//! access), so bytes are turned into that unit in proportion: `units = floor(delivered x
//! units_contracted / bytes_contracted)`, and the settlement pays bytes delivered over bytes
//! contracted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::contract::{Contract, ContractId};
use crate::schema::Category;
use crate::settlement::MeterRecord;

/// Most reports one side keeps per contract.
pub const REPORTS_MAX: usize = 10_000;

/// Which side counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// The seller's engine, bytes served.
    Seller,
    /// The buyer, bytes received.
    Buyer,
}

/// Why a report is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("byte report {seq} was received before with another figure: the first is kept")]
    Conflicting { seq: u64 },
    #[error("byte reports are numbered from 1")]
    Unnumbered,
    #[error("at most {REPORTS_MAX} byte reports are kept per side: report larger spans")]
    TooMany,
}

/// The bytes an internet access contract is worth: its speed (Mbit/s) over its duration.
pub fn bytes_contracted(contract: &Contract) -> Option<u64> {
    let access = contract.seller.gives.iter().find_map(|given| match given {
        crate::contract::Consideration::Resource { resource } if resource.category() == Category::InternetAccess => {
            Some(resource)
        }
        _ => None,
    })?;
    let speed = access.number("speed_mbit_s")?;
    let seconds = contract.duration_ms as f64 / 1000.0;
    Some((speed * 125_000.0 * seconds).clamp(1.0, u64::MAX as f64 / 2.0) as u64)
}

/// Both sides' byte counts of one contract, and what was metered of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteCounts {
    pub contract: ContractId,
    pub bytes_contracted: u64,
    pub units_contracted: u64,
    pub seller: BTreeMap<u64, u64>,
    pub buyer: BTreeMap<u64, u64>,
    /// Units metered so far, and the metering records made.
    pub units_metered: u64,
    pub records: u64,
}

impl ByteCounts {
    pub fn new(contract: &Contract, bytes_contracted: u64, units_contracted: u64) -> ByteCounts {
        ByteCounts {
            contract: contract.id,
            bytes_contracted: bytes_contracted.max(1),
            units_contracted,
            seller: BTreeMap::new(),
            buyer: BTreeMap::new(),
            units_metered: 0,
            records: 0,
        }
    }

    pub fn total(&self, side: Side) -> u64 {
        let reports = match side {
            Side::Seller => &self.seller,
            Side::Buyer => &self.buyer,
        };
        reports.values().fold(0u64, |sum, bytes| sum.saturating_add(*bytes))
    }

    /// The bytes delivered: the lower total once both sides reported, else the one reported.
    pub fn delivered(&self) -> u64 {
        match (self.seller.is_empty(), self.buyer.is_empty()) {
            (false, false) => self.total(Side::Seller).min(self.total(Side::Buyer)),
            (false, true) => self.total(Side::Seller),
            (true, false) => self.total(Side::Buyer),
            (true, true) => 0,
        }
    }

    /// A side reports `bytes` as its report `seq`: the metering record of what this newly
    /// delivers, if anything, spanning `[from_ms, now_ms]`.
    pub fn report(
        &mut self,
        side: Side,
        seq: u64,
        bytes: u64,
        from_ms: u64,
        now_ms: u64,
    ) -> Result<Option<MeterRecord>, RelayError> {
        if seq == 0 {
            return Err(RelayError::Unnumbered);
        }
        let reports = match side {
            Side::Seller => &mut self.seller,
            Side::Buyer => &mut self.buyer,
        };
        match reports.get(&seq) {
            Some(first) if *first == bytes => return Ok(None),
            Some(_) => return Err(RelayError::Conflicting { seq }),
            None if reports.len() >= REPORTS_MAX => return Err(RelayError::TooMany),
            None => {
                reports.insert(seq, bytes);
            }
        }
        let delivered = self.delivered().min(self.bytes_contracted);
        let units = (delivered as u128 * self.units_contracted as u128 / self.bytes_contracted as u128) as u64;
        if units <= self.units_metered {
            return Ok(None);
        }
        let record = MeterRecord {
            contract: self.contract,
            seq: self.records + 1,
            from_ms: from_ms.min(now_ms),
            to_ms: now_ms,
            units: units - self.units_metered,
        };
        self.records += 1;
        self.units_metered = units;
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::tests::contract;

    fn counts() -> ByteCounts {
        ByteCounts::new(&contract(), 10_000, 3_600_000)
    }

    #[test]
    fn the_lower_of_both_sides_is_delivered_and_metered_in_proportion() {
        let mut counts = counts();
        let record = counts.report(Side::Seller, 1, 5_000, 10, 20).unwrap().unwrap();
        assert_eq!((record.seq, record.units, record.from_ms, record.to_ms), (1, 1_800_000, 10, 20));
        assert_eq!(counts.report(Side::Buyer, 1, 4_000, 10, 30).unwrap(), None, "the buyer saw less: nothing new");
        assert_eq!(counts.delivered(), 4_000);
        assert_eq!(counts.report(Side::Buyer, 2, 2_000, 30, 40).unwrap(), None, "5 000 both ways: metered already");
        assert_eq!(counts.delivered(), 5_000);
        let record = counts.report(Side::Seller, 2, 3_000, 40, 50).unwrap().unwrap();
        assert_eq!(counts.delivered(), 6_000, "the buyer's 6 000 is now the lower");
        assert_eq!((record.seq, record.units, record.from_ms), (2, 360_000, 40));
        assert_eq!(counts.units_metered, 2_160_000);
    }

    #[test]
    fn repeats_count_once_and_conflicts_are_refused() {
        let mut counts = counts();
        counts.report(Side::Seller, 1, 1_000, 0, 1).unwrap();
        assert_eq!(counts.report(Side::Seller, 1, 1_000, 0, 2).unwrap(), None);
        assert_eq!(counts.report(Side::Seller, 1, 9_000, 0, 2), Err(RelayError::Conflicting { seq: 1 }));
        assert_eq!(counts.report(Side::Buyer, 0, 1, 0, 2), Err(RelayError::Unnumbered));
        assert_eq!(counts.total(Side::Seller), 1_000);
    }

    #[test]
    fn nothing_past_the_bytes_contracted_is_metered() {
        let mut counts = counts();
        let record = counts.report(Side::Seller, 1, 50_000, 0, 5).unwrap().unwrap();
        assert_eq!(record.units, 3_600_000);
        assert_eq!(counts.report(Side::Seller, 2, 1, 5, 6).unwrap(), None);
        assert_eq!(counts.units_metered, 3_600_000);
    }

    #[test]
    fn bytes_contracted_are_speed_over_duration_for_internet_access_only() {
        assert_eq!(bytes_contracted(&contract()), None, "memory is not internet access");
    }
}
