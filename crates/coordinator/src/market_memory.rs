//! Memory sold on the market, carried out by the seller's engine (D7): while a contract whose
//! seller gives memory is active, that much of the engine's memory is reserved for the buyer.
//! The engine is told the total reserved (with its served contracts, `market::served`), and
//! every task of the buyer's placed on it is preceded by a grant (`MarketMemoryGrant`) of the
//! memory the buyer holds there: the task may use up to it, above the owner's usual per-task
//! cap, while other parties' tasks share what the reservation leaves. Like computing, the
//! contract is watched through the engine: silent, it fails at its last contact and is settled
//! pro rata by time; present to the end, it is delivered in full.

use idlegrid_market::Category;
use idlegrid_market::contract::{Consideration, Contract};
use idlegrid_protocol::messages::ServerToProvider;
use idlegrid_store::{StoreError, Tx};
use idlegrid_types::{AssignmentId, PartyId, SessionId};

use super::LISTED_MAX;
use crate::session::push;
use crate::{Coordinator, Effects};

/// Bytes in a megabyte as the market counts memory (`memory_mb`).
const MB: f64 = (1u64 << 20) as f64;

/// The memory the seller gives by a contract, in bytes (0 when it gives none).
pub(super) fn memory_sold_bytes(contract: &Contract) -> u64 {
    contract
        .seller
        .gives
        .iter()
        .filter_map(|given| match given {
            Consideration::Resource { resource } if resource.category() == Category::Memory => {
                resource.number("memory_mb")
            }
            _ => None,
        })
        .map(|mb| (mb * MB).clamp(0.0, u64::MAX as f64 / 2.0) as u64)
        .fold(0u64, u64::saturating_add)
}

impl Coordinator {
    /// The memory `seller` sells by active contracts: (buyer, bytes) for each.
    pub(super) fn memory_sold_by(&self, tx: &mut dyn Tx, seller: &PartyId) -> Result<Vec<(PartyId, u64)>, StoreError> {
        let mut sold = Vec::new();
        for row in tx.market().contracts_of(seller, LISTED_MAX)? {
            if row.seller != *seller || row.state != "signed" {
                continue;
            }
            let contract: Contract = serde_json::from_str(&row.terms)
                .map_err(|e| StoreError::Corrupt(format!("contract {}: {e}", row.id)))?;
            let bytes = memory_sold_bytes(&contract);
            if bytes == 0 || tx.market().execution(row.id)?.is_none_or(|e| e.state != "active") {
                continue;
            }
            sold.push((row.buyer, bytes));
        }
        Ok(sold)
    }

    /// Before a task of `client` goes to `engine` (on `session`): the memory the client bought
    /// on that engine, granted to the task's assignment.
    pub(crate) fn market_memory_grant(
        &self,
        tx: &mut dyn Tx,
        fx: &mut Effects,
        session: SessionId,
        engine: &PartyId,
        client: &PartyId,
        assignment: AssignmentId,
    ) -> Result<(), StoreError> {
        let bought: u64 = self
            .memory_sold_by(tx, engine)?
            .into_iter()
            .filter(|(buyer, _)| buyer == client)
            .fold(0, |sum, (_, bytes)| sum.saturating_add(bytes));
        if bought > 0 {
            push(tx, fx, session, None, &ServerToProvider::MarketMemoryGrant { assignment, bytes: bought }, None)?;
        }
        Ok(())
    }
}
