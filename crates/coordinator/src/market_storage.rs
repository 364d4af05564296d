//! Storage sold on the market (D7): the seller's engine keeps the buyer's blob and proves it.
//!
//! 1. The buyer uploads its blob (encrypted on its side) as an element and hands it over
//!    ([`Coordinator::market_storage_put`]): the server reads it once, draws the contract's
//!    proof-of-storage challenges from its secret random source and keeps only them, then
//!    tells the seller's engine to fetch and keep the blob (`MarketStore`).
//! 2. Maintenance ([`Coordinator::market_storage_due`]) steps each active contract's
//!    [`StorageProofs`]: it sends a challenge every period (`MarketChallenge`) and fails the
//!    contract when an answer is overdue.
//! 3. The engine's answer (`MarketProof`, [`Coordinator::market_storage_proof`]) is checked: a
//!    correct one is a metering record of the time proven, a wrong one fails the contract at
//!    the end of the time proven. Settlement then pays the share of the time proven.
//! 4. While the contract is active the buyer may fetch the blob back
//!    ([`Coordinator::market_storage_get`]); when it ends, the engine may drop it
//!    (`MarketRelease`).

use idlegrid_market::Category;
use idlegrid_market::contract::Contract;
use idlegrid_market::execution::ExecEvent;
use idlegrid_market::proofs::{ProofStep, StorageProofs, challenge_period, challenges_needed};
use idlegrid_market::settlement::prepare_challenges;
use idlegrid_protocol::market::ContractInfo;
use idlegrid_protocol::messages::ServerToProvider;
use idlegrid_store::{ContractRow, StoreError, Tx};
use idlegrid_types::{ElementHash, ElementRef, PartyId};

use super::super::LISTED_MAX;
use super::super::execution::{ExecutionRecord, record_of, terms_of};
use super::{DataState, sold};
use crate::{Coordinator, CoordinatorError, Effects, Party};

/// Active executions read per page in maintenance.
const PAGE: u32 = 500;

/// A storage contract's parts, as its buyer or seller reaches it.
struct Storage {
    row: ContractRow,
    terms: Contract,
    record: ExecutionRecord,
}

fn decode_record(row: &idlegrid_store::ExecutionRow) -> Result<ExecutionRecord, StoreError> {
    record_of(row)
}

impl Coordinator {
    /// A contract selling storage that `party` is party to, with its execution.
    fn storage_of(&self, tx: &mut dyn Tx, party: &PartyId, id: u64) -> Result<Storage, CoordinatorError> {
        let row = match tx.market().contract(id)? {
            Some(row) if row.seller == *party || row.buyer == *party => row,
            _ => return Err(CoordinatorError::not_found(format!("you are party to no contract {id}"))),
        };
        let terms = terms_of(&row)?;
        if sold(&terms, Category::Storage).is_none() {
            return Err(CoordinatorError::bad_request(format!("contract {id} does not sell storage")));
        }
        let Some(exec_row) = tx.market().execution(id)? else {
            return Err(CoordinatorError::conflict(format!(
                "contract {id} has not started: both parties must sign it first"
            )));
        };
        Ok(Storage { row, terms, record: decode_record(&exec_row)? })
    }

    /// Check that the buyer may hand `element` over for contract `id` (before the server reads
    /// it): the buyer's own element, within the capacity sold and the server's limit.
    pub fn market_storage_check(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: u64,
        element: &ElementRef,
    ) -> Result<(), CoordinatorError> {
        let storage = self.storage_of(tx, &party.id, id)?;
        if storage.row.buyer != party.id {
            return Err(CoordinatorError::forbidden(format!("only the buyer of contract {id} hands a blob over")));
        }
        if storage.record.execution.state != idlegrid_market::ExecState::Active {
            let state = storage.record.execution.state.name();
            return Err(CoordinatorError::conflict(format!("contract {id} is {state}: nothing more is stored")));
        }
        if tx.element_size(&element.hash)? != Some(element.size)
            || !tx.element_visible_to_client(&party.id, &element.hash)?
        {
            return Err(CoordinatorError::not_found_element(format!(
                "element {} ({} bytes) is not one of yours: upload it first",
                element.hash, element.size
            )));
        }
        if element.size == 0 {
            return Err(CoordinatorError::bad_request("the blob is empty: there is nothing to store"));
        }
        let capacity = sold(&storage.terms, Category::Storage).and_then(|r| r.number("capacity_mb")).unwrap_or(0.0);
        let limit = self.config.market.data.storage_blob_bytes_max.min((capacity * 1e6) as u64);
        if element.size > limit {
            return Err(CoordinatorError::too_large(format!(
                "the blob is {} bytes: contract {id} and this server take at most {limit}",
                element.size
            )));
        }
        if let Some(DataState::Storage { proofs, .. }) = &storage.record.data
            && proofs.element != element.hash.to_string()
        {
            return Err(CoordinatorError::conflict(format!(
                "contract {id} keeps blob {} already: one blob per contract",
                proofs.element
            )));
        }
        Ok(())
    }

    /// The buyer hands `blob` (the bytes of `element`, read by the server) over: the
    /// challenges are drawn and the seller's engine told to keep it. Handing the same blob
    /// over again changes nothing.
    pub fn market_storage_put(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: u64,
        element: &ElementRef,
        blob: &[u8],
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<ContractInfo, CoordinatorError> {
        self.market_storage_check(tx, party, id, element)?;
        let mut storage = self.storage_of(tx, &party.id, id)?;
        if storage.record.data.is_none() {
            if blob.len() as u64 != element.size || ElementHash::of(blob) != element.hash {
                return Err(CoordinatorError::internal(format!("element {} read back differs", element.hash)));
            }
            if tx.provider(&storage.row.seller)?.is_none() {
                return Err(CoordinatorError::conflict(format!(
                    "the seller of contract {id} is not an engine: nothing can keep the blob"
                )));
            }
            let config = &self.config.market.data;
            let period = challenge_period(storage.terms.duration_ms, config.storage_challenge_ms);
            let count = challenges_needed(storage.terms.duration_ms, period);
            let prepared = prepare_challenges(blob, count, config.storage_range_bytes_max, &mut **self.random())
                .map_err(|e| CoordinatorError::bad_request(e.to_string()))?;
            let hash = element.hash.to_string();
            let proofs = StorageProofs::new(
                &storage.terms,
                hash,
                element.size,
                prepared,
                period,
                config.storage_answer_ms,
                now_ms,
            );
            storage.record.data = Some(DataState::Storage { proofs, stored: false });
            self.put_execution(tx, &storage.terms, &storage.record, now_ms)?;
            let until_ms = storage.terms.ends_ms();
            let message = ServerToProvider::MarketStore { contract: id, element: *element, until_ms };
            self.tell_provider(tx, &storage.row.seller, &message, fx)?;
            tracing::info!(contract = id, size = element.size, challenges = count, "storage blob handed over");
        }
        self.market_contract(tx, party, id)
    }

    /// The blob of an active storage contract, for its buyer to fetch back.
    pub fn market_storage_get(&self, tx: &mut dyn Tx, party: &Party, id: u64) -> Result<ElementRef, CoordinatorError> {
        let storage = self.storage_of(tx, &party.id, id)?;
        if storage.row.buyer != party.id {
            return Err(CoordinatorError::forbidden(format!("only the buyer of contract {id} fetches its blob")));
        }
        let Some(DataState::Storage { proofs, .. }) = &storage.record.data else {
            return Err(CoordinatorError::not_found(format!("contract {id} keeps no blob yet: hand one over first")));
        };
        if storage.record.execution.state != idlegrid_market::ExecState::Active {
            let state = storage.record.execution.state.name();
            return Err(CoordinatorError::conflict(format!("contract {id} is {state}: its blob is no longer kept")));
        }
        let hash: ElementHash =
            proofs.element.parse().map_err(|_| StoreError::Corrupt(format!("blob hash of contract {id}")))?;
        Ok(ElementRef { hash, size: proofs.size })
    }

    /// The engine says whether it keeps the blob; one that cannot fails the contract.
    pub(crate) fn market_storage_stored(
        &self,
        tx: &mut dyn Tx,
        engine: &PartyId,
        id: u64,
        element: &ElementHash,
        error: Option<&str>,
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        let mut storage = self.seller_storage(tx, engine, id)?;
        let Some(DataState::Storage { proofs, stored }) = &mut storage.record.data else { return Ok(()) };
        if proofs.element != element.to_string() || *stored {
            return Ok(());
        }
        if let Some(error) = error {
            let at_ms = proofs.proven_until_ms;
            let reason = format!("the seller's engine cannot keep the blob: {}", idlegrid_types::Untrusted(error));
            self.market_step(tx, &storage.row, &ExecEvent::Fail { at_ms, reason }, now_ms)?;
            return Ok(());
        }
        *stored = true;
        self.put_execution(tx, &storage.terms, &storage.record, now_ms)?;
        Ok(())
    }

    fn seller_storage(&self, tx: &mut dyn Tx, engine: &PartyId, id: u64) -> Result<Storage, CoordinatorError> {
        let storage = self.storage_of(tx, engine, id)?;
        if storage.row.seller != *engine {
            return Err(CoordinatorError::forbidden(format!("this engine does not keep contract {id}'s blob")));
        }
        Ok(storage)
    }

    /// The engine answers a challenge: metered when correct, failed when wrong.
    pub(crate) fn market_storage_proof(
        &self,
        tx: &mut dyn Tx,
        engine: &PartyId,
        id: u64,
        number: u32,
        answer: &str,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), CoordinatorError> {
        let mut storage = self.seller_storage(tx, engine, id)?;
        let Some(DataState::Storage { proofs, .. }) = &mut storage.record.data else { return Ok(()) };
        if storage.record.execution.state != idlegrid_market::ExecState::Active {
            return Ok(()); // an answer after the end: nothing more to prove
        }
        let step = proofs.answer(number, answer, now_ms);
        self.put_execution(tx, &storage.terms, &storage.record, now_ms)?;
        match step {
            ProofStep::Proven(record) => self.market_step(tx, &storage.row, &ExecEvent::Meter { record }, now_ms),
            ProofStep::Fail { at_ms, reason } => {
                self.market_step(tx, &storage.row, &ExecEvent::Fail { at_ms, reason }, now_ms)?;
                let message = ServerToProvider::MarketRelease { contract: id };
                Ok(self.tell_provider(tx, &storage.row.seller, &message, fx)?)
            }
            ProofStep::Idle | ProofStep::Issue { .. } => Ok(()),
        }
    }

    /// Step every active storage contract (maintenance): challenges due, answers overdue; and
    /// tell the engines of contracts that ended to drop their blobs. Returns the challenges sent.
    pub(crate) fn market_storage_due(&self, tx: &mut dyn Tx, now_ms: u64, fx: &mut Effects) -> Result<u32, StoreError> {
        let mut sent = 0;
        let mut after = 0;
        loop {
            let page = tx.market().executions_in_state("active", after, PAGE)?;
            let Some(last) = page.last() else { break };
            after = last.contract;
            for exec_row in &page {
                let mut record = decode_record(exec_row)?;
                let Some(DataState::Storage { proofs, .. }) = &mut record.data else { continue };
                let step = proofs.tick(now_ms);
                if step == ProofStep::Idle {
                    continue;
                }
                let Some(row) = tx.market().contract(exec_row.contract)? else { continue };
                let terms = terms_of(&row)?;
                self.put_execution(tx, &terms, &record, now_ms)?;
                match step {
                    ProofStep::Issue { number, challenge } => {
                        let message = ServerToProvider::MarketChallenge { contract: row.id, number, challenge };
                        self.tell_provider(tx, &row.seller, &message, fx)?;
                        sent += 1;
                    }
                    ProofStep::Fail { at_ms, reason } => {
                        if self.maintenance_step(tx, &row, ExecEvent::Fail { at_ms, reason }, now_ms)? {
                            self.tell_provider(
                                tx,
                                &row.seller,
                                &ServerToProvider::MarketRelease { contract: row.id },
                                fx,
                            )?;
                        }
                    }
                    ProofStep::Idle | ProofStep::Proven(_) => {}
                }
            }
            if (page.len() as u32) < PAGE {
                break;
            }
        }
        Ok(sent)
    }

    /// Whether `hash` is the blob of an active storage contract `engine` sold (it may fetch it).
    pub(super) fn storage_blob_of_seller(
        &self,
        tx: &mut dyn Tx,
        engine: &PartyId,
        hash: &ElementHash,
    ) -> Result<bool, StoreError> {
        for row in tx.market().contracts_of(engine, LISTED_MAX)? {
            if row.seller != *engine || row.state != "signed" {
                continue;
            }
            let Some(exec_row) = tx.market().execution(row.id)? else { continue };
            if exec_row.state != "active" {
                continue;
            }
            if let Some(DataState::Storage { proofs, .. }) = decode_record(&exec_row)?.data
                && proofs.element == hash.to_string()
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
