//! Contracts that carry data (D7): storage kept by the seller's engine and proven over time
//! (`storage`), files handed to the buyer once paid (`files`), and internet access relayed by
//! the seller's engine, metered in bytes (`bandwidth`). What each carried out is kept with the
//! contract's execution ([`DataState`], inside the execution's JSON document), and shown in
//! its [`DataExecution`].

use idlegrid_market::Category;
use idlegrid_market::contract::{Consideration, Contract};
use idlegrid_market::proofs::StorageProofs;
use idlegrid_market::relay::{ByteCounts, Side};
use idlegrid_market::resource::Resource;
use idlegrid_protocol::market::ExecutionInfo;
use idlegrid_protocol::market_data::DataExecution;
use idlegrid_store::{StoreError, Tx};
use idlegrid_types::ElementHash;
use serde::{Deserialize, Serialize};

use crate::error::Reject;
use crate::{Coordinator, CoordinatorError, ErrorKind};

#[path = "market_bandwidth.rs"]
mod bandwidth;
#[path = "market_files.rs"]
mod files;
#[path = "market_storage.rs"]
mod storage;

/// How data contracts are carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataConfig {
    /// How often the blob of a storage contract is challenged (stretched so that at most
    /// `proofs::CHALLENGES_MAX` challenges last the contract). Default 10 minutes.
    pub storage_challenge_ms: u64,
    /// How long the seller's engine has to answer a challenge. Default 5 minutes.
    pub storage_answer_ms: u64,
    /// Most bytes of the blob one challenge covers. Default 64 KiB.
    pub storage_range_bytes_max: u64,
    /// Largest blob a buyer hands over (the server reads it once, to draw the challenges).
    /// Default 256 MiB.
    pub storage_blob_bytes_max: u64,
}

impl Default for DataConfig {
    fn default() -> DataConfig {
        DataConfig {
            storage_challenge_ms: 10 * 60 * 1000,
            storage_answer_ms: 5 * 60 * 1000,
            storage_range_bytes_max: 64 * 1024,
            storage_blob_bytes_max: 256 << 20,
        }
    }
}

/// What a data contract carried out, kept with its execution (externally tagged: the byte
/// counts' numbered maps keep their number keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataState {
    Storage {
        proofs: StorageProofs,
        /// The seller's engine said it keeps the blob.
        stored: bool,
    },
    Bandwidth {
        counts: ByteCounts,
        /// When bytes were last metered.
        last_ms: u64,
    },
}

impl DataState {
    pub(super) fn info(&self) -> DataExecution {
        match self {
            DataState::Storage { proofs, stored } => DataExecution::Storage {
                element: proofs.element.parse().ok(),
                size: proofs.size,
                stored: *stored,
                passed: proofs.passed,
                failed: proofs.failed,
                proven_until_ms: proofs.proven_until_ms,
            },
            DataState::Bandwidth { counts, .. } => DataExecution::Bandwidth {
                bytes_contracted: counts.bytes_contracted,
                seller_bytes: counts.total(Side::Seller),
                buyer_bytes: counts.total(Side::Buyer),
                delivered_bytes: counts.delivered(),
            },
        }
    }
}

/// The first resource of `category` the seller gives.
pub(super) fn sold(contract: &Contract, category: Category) -> Option<&Resource> {
    contract.seller.gives.iter().find_map(|given| match given {
        Consideration::Resource { resource } if resource.category() == category => Some(resource),
        _ => None,
    })
}

/// A refusal of the coordinator as a refusal of a channel message.
pub(crate) fn reject(error: CoordinatorError) -> Reject {
    match error.kind {
        ErrorKind::Internal => Reject::Store(StoreError::Database(error.report.message)),
        _ => Reject::Report(error.report),
    }
}

impl Coordinator {
    /// A contract's execution with what its category carried out (a file's state is read from
    /// the terms and the elements, not kept).
    pub(super) fn data_info(
        &self,
        tx: &mut dyn Tx,
        contract: u64,
        mut info: ExecutionInfo,
    ) -> Result<ExecutionInfo, StoreError> {
        if info.data.is_none()
            && let Some(row) = tx.market().contract(contract)?
        {
            let terms = super::execution::terms_of(&row)?;
            info.data = self.file_info(tx, &terms, &info.execution)?;
        }
        Ok(info)
    }

    /// Whether an engine may download `hash` for a market contract (the blob it keeps).
    pub fn market_engine_may_fetch(
        &self,
        tx: &mut dyn Tx,
        engine: &idlegrid_types::PartyId,
        hash: &ElementHash,
    ) -> Result<bool, StoreError> {
        Ok(self.storage_blob_of_seller(tx, engine, hash)? || self.relayed_for_buyer(tx, engine, hash)?)
    }

    /// Whether a client may download `hash` for a market contract (the file it bought).
    pub fn market_client_may_fetch(
        &self,
        tx: &mut dyn Tx,
        client: &idlegrid_types::PartyId,
        hash: &ElementHash,
    ) -> Result<bool, StoreError> {
        self.file_bought_by(tx, client, hash)
    }
}
