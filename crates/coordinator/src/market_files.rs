//! Files sold on the market (D7): the offer names the file by its SHA-256 and size (the files
//! category's `sha256` and `size_bytes`), so the seller cannot swap it after the contract.
//!
//! - The seller uploads the file as an element of its own and attaches it
//!   ([`Coordinator::market_file_attach`]): refused unless its hash and size are the contract's.
//! - Once the contract started (the buyer's price is held in escrow), the buyer may download
//!   that element over the data channel ([`Coordinator::market_file_get`] names it; the element
//!   download checks [`Coordinator::market_client_may_fetch`]); before, it is refused.
//! - The buyer's confirmation after the download delivers the contract, which is then settled.
//!
//! Nothing is kept beyond the terms and the element: whether the file is attached is whether
//! the seller holds the element the contract names.

use idlegrid_market::Category;
use idlegrid_market::contract::Contract;
use idlegrid_market::execution::{ExecState, Execution};
use idlegrid_protocol::market::ContractInfo;
use idlegrid_protocol::market_data::DataExecution;
use idlegrid_store::{ContractRow, StoreError, Tx};
use idlegrid_types::{ElementHash, ElementRef, PartyId};

use super::super::LISTED_MAX;
use super::super::execution::{record_of, terms_of};
use super::sold;
use crate::{Coordinator, CoordinatorError, Party};

/// The file a contract sells: its hash and size as the terms name them.
fn file_named(contract: &Contract) -> Option<(String, u64)> {
    let file = sold(contract, Category::Files)?;
    let sha256 = file.text("sha256")?.to_ascii_lowercase();
    Some((sha256, file.number("size_bytes").unwrap_or(0.0).max(0.0) as u64))
}

impl Coordinator {
    /// Whether the seller holds the element the contract names.
    fn file_attached(&self, tx: &mut dyn Tx, contract: &Contract, sha256: &str) -> Result<bool, StoreError> {
        let Ok(hash) = sha256.parse::<ElementHash>() else { return Ok(false) };
        tx.element_visible_to_client(&contract.seller.party, &hash)
    }

    /// What a file contract's execution shows (none for other categories).
    pub(super) fn file_info(
        &self,
        tx: &mut dyn Tx,
        contract: &Contract,
        execution: &Execution,
    ) -> Result<Option<DataExecution>, StoreError> {
        let Some((sha256, size_bytes)) = file_named(contract) else { return Ok(None) };
        let attached = self.file_attached(tx, contract, &sha256)?;
        Ok(Some(DataExecution::File { sha256, size_bytes, attached, downloaded: execution.confirmed }))
    }

    fn file_contract(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: u64,
    ) -> Result<(ContractRow, Contract), CoordinatorError> {
        let row = match tx.market().contract(id)? {
            Some(row) if row.seller == party.id || row.buyer == party.id => row,
            _ => return Err(CoordinatorError::not_found(format!("you are party to no contract {id}"))),
        };
        let terms = terms_of(&row)?;
        if file_named(&terms).is_none() {
            return Err(CoordinatorError::bad_request(format!("contract {id} does not sell a file")));
        }
        Ok((row, terms))
    }

    /// The seller attaches the file it uploaded: it must be the one the contract names.
    pub fn market_file_attach(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: u64,
        element: &ElementRef,
    ) -> Result<ContractInfo, CoordinatorError> {
        let (row, terms) = self.file_contract(tx, party, id)?;
        if row.seller != party.id {
            return Err(CoordinatorError::forbidden(format!("only the seller of contract {id} attaches its file")));
        }
        let (sha256, size_bytes) = file_named(&terms).unwrap_or_default();
        if element.hash.to_string() != sha256 || element.size != size_bytes {
            return Err(CoordinatorError::bad_request(format!(
                "this file ({} bytes, sha256 {}) is not the one contract {id} names ({size_bytes} bytes, sha256 {sha256})",
                element.size, element.hash
            )));
        }
        if !self.file_attached(tx, &terms, &sha256)? {
            return Err(CoordinatorError::not_found_element(format!(
                "element {sha256} is not one of yours: upload the file first"
            )));
        }
        self.market_contract(tx, party, id)
    }

    /// The file of a contract, for its buyer to download: only once the contract started (its
    /// price is held), and until it failed or was settled without delivery.
    pub fn market_file_get(&self, tx: &mut dyn Tx, party: &Party, id: u64) -> Result<ElementRef, CoordinatorError> {
        let (row, terms) = self.file_contract(tx, party, id)?;
        if row.buyer != party.id {
            return Err(CoordinatorError::forbidden(format!("only the buyer of contract {id} downloads its file")));
        }
        let (sha256, size) = file_named(&terms).unwrap_or_default();
        match self.file_started(tx, &row)? {
            Some(true) => {}
            Some(false) => {
                return Err(CoordinatorError::conflict(format!("contract {id} failed: its file is not delivered")));
            }
            None => {
                return Err(CoordinatorError::conflict(format!(
                    "contract {id} is not paid yet: the file is yours once both parties signed and the price is held"
                )));
            }
        }
        if !self.file_attached(tx, &terms, &sha256)? {
            return Err(CoordinatorError::conflict(format!(
                "the seller has not attached the file of contract {id} yet: try again later"
            )));
        }
        let hash = sha256.parse().map_err(|_| CoordinatorError::bad_request("the contract's sha256 is malformed"))?;
        Ok(ElementRef { hash, size })
    }

    /// Whether a contract started (`None`: not yet) and was not failed (`Some(true)`).
    fn file_started(&self, tx: &mut dyn Tx, row: &ContractRow) -> Result<Option<bool>, StoreError> {
        let Some(exec_row) = tx.market().execution(row.id)? else { return Ok(None) };
        let execution = record_of(&exec_row)?.execution;
        let failed = execution.state == ExecState::Failed
            || (execution.state == ExecState::Settled && execution.failure.is_some() && !execution.confirmed);
        Ok(Some(!failed))
    }

    /// Whether `client` bought, in a started contract, the file `hash` (it may download it).
    pub(super) fn file_bought_by(
        &self,
        tx: &mut dyn Tx,
        client: &PartyId,
        hash: &ElementHash,
    ) -> Result<bool, StoreError> {
        let wanted = hash.to_string();
        for row in tx.market().contracts_of(client, LISTED_MAX)? {
            if row.buyer != *client || row.state != "signed" {
                continue;
            }
            let terms = terms_of(&row)?;
            let Some((sha256, _)) = file_named(&terms) else { continue };
            if sha256 == wanted
                && self.file_started(tx, &row)? == Some(true)
                && self.file_attached(tx, &terms, &sha256)?
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
