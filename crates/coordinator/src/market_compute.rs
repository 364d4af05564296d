//! Computing sold on the market, carried out by the scheduler (D7): while a contract whose
//! seller gives computing is active, the seller's engine runs only the buyer's jobs (an implied
//! requirement over jobs, added to the one its owner set), and the server watches the engine:
//! silent, the contract fails at its last contact and is settled pro rata by time
//! (`market_watch_sellers`); present to the end, it is delivered in full.

use idlegrid_market::Category;
use idlegrid_market::contract::{Consideration, Contract};
use idlegrid_store::{ContractRow, StoreError, Tx};
use idlegrid_types::PartyId;

use super::LISTED_MAX;
use crate::Coordinator;

/// Whether the seller gives computing (what reserves its engine).
pub(super) fn sells_computing(contract: &Contract) -> bool {
    contract.seller.gives.iter().any(|given| match given {
        Consideration::Resource { resource } => resource.category() == Category::Computing,
        Consideration::Money { .. } => false,
    })
}

impl Coordinator {
    /// The buyers an engine's computing is sold to by active contracts (the platform's own
    /// purchases reserve nothing: it runs no jobs of its own).
    fn engine_buyers(&self, tx: &mut dyn Tx, engine: &PartyId) -> Result<Vec<PartyId>, StoreError> {
        let mut buyers = Vec::new();
        for row in tx.market().contracts_of(engine, LISTED_MAX)? {
            if row.seller != *engine || row.state != "signed" || row.buyer == *self.signer.id() {
                continue;
            }
            if !self.active_computing(tx, &row)? {
                continue;
            }
            if !buyers.contains(&row.buyer) {
                buyers.push(row.buyer.clone());
            }
        }
        Ok(buyers)
    }

    fn active_computing(&self, tx: &mut dyn Tx, row: &ContractRow) -> Result<bool, StoreError> {
        match tx.market().execution(row.id)? {
            Some(execution) if execution.state == "active" => {
                let contract: Contract = serde_json::from_str(&row.terms)
                    .map_err(|e| StoreError::Corrupt(format!("contract {}: {e}", row.id)))?;
                Ok(sells_computing(&contract))
            }
            _ => Ok(false),
        }
    }

    /// An engine's requirement over jobs: its owner's, and while its computing is sold, that
    /// the job be a buyer's.
    pub(crate) fn market_engine_requirement(
        &self,
        tx: &mut dyn Tx,
        engine: &PartyId,
        owner: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let buyers = self.engine_buyers(tx, engine)?;
        if buyers.is_empty() {
            return Ok(owner.map(str::to_string));
        }
        let listed: Vec<String> = buyers.iter().map(|b| format!("\"{b}\"")).collect();
        let reserved = format!("job.client_id in [{}]", listed.join(", "));
        Ok(Some(match owner {
            Some(owner) => format!("({owner}) and {reserved}"),
            None => reserved,
        }))
    }
}
