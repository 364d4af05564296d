//! Signed contracts carried out (D6, D7): the market core's `Execution` stepped over the store,
//! its transfers made through the double-entry ledger, one transaction per message.
//!
//! - **Start**: when the second signature arrives (or a contract both parties signed directly
//!   is registered), the buyer's price and commission part are reserved in the ledger (a
//!   reservation from the buyer to the platform stands for the contract's escrow), money a
//!   party gives moves at once, and both parties get a notice.
//! - **Messages**: the seller's metering records, the buyer's confirmation, a party's report of
//!   failure, a request to settle. Each steps the execution; a repeated or reordered message
//!   changes nothing it should not (the core decides).
//! - **Settlement**: the escrow split pro rata: the buyer's reservation settled for what was
//!   earned (to the platform), the seller's part passed on from the platform, the rest released
//!   to the buyer. Every transfer's idempotency key is derived from the contract, so a
//!   settlement carried out again after a restart moves nothing twice.
//! - **Maintenance**: contracts whose time is over are closed as delivered (as far as metered)
//!   and settled.
//!
//! Market transfers are booked with the ledger's barter purpose.

use idlegrid_ledger::{
    AccountId, Action, IdempotencyKey, Ledger, LedgerError, Memo, Micros, OverLimit, Purpose, ReservationKind,
    TransferRequest,
};
use idlegrid_market::contract::{Contract, SignedContract};
use idlegrid_market::execution::{ExecError, ExecEvent, ExecState, Execution};
use idlegrid_market::settlement::{Account, MeterRecord, Transfer, settlement_key};
use idlegrid_protocol::market::{ContractInfo, DrawInfo, ExecutionInfo, MeterBody};
use idlegrid_store::{ContractRow, ExecutionRow, StoreError, Tx};
use idlegrid_types::PartyId;
use serde::{Deserialize, Serialize};

use super::{contract_info, market_notice, to_json};
use crate::{Coordinator, CoordinatorError, Effects, Party};

/// Executions settled per maintenance pass at most.
const DUE_BATCH: u32 = 200;

/// What the store keeps of an execution (the row's body).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct ExecutionRecord {
    pub execution: Execution,
    pub escrow: Vec<Transfer>,
    pub settlement: Vec<Transfer>,
    /// The sweepstakes draw that delivered the contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draw: Option<DrawInfo>,
    /// What a storage or internet access contract carried out (see `market::data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<super::data::DataState>,
}

impl ExecutionRecord {
    pub(super) fn info(self) -> ExecutionInfo {
        let data = self.data.as_ref().map(super::data::DataState::info);
        ExecutionInfo {
            execution: self.execution,
            escrow: self.escrow,
            settlement: self.settlement,
            draw: self.draw,
            data,
        }
    }
}

pub(super) fn record_of(row: &ExecutionRow) -> Result<ExecutionRecord, StoreError> {
    serde_json::from_str(&row.body)
        .map_err(|e| StoreError::Corrupt(format!("execution of contract {}: {e}", row.contract)))
}

pub(super) fn terms_of(row: &ContractRow) -> Result<Contract, StoreError> {
    serde_json::from_str(&row.terms).map_err(|e| StoreError::Corrupt(format!("contract {}: {e}", row.id)))
}

fn exec_error(error: ExecError) -> CoordinatorError {
    let message = error.to_string();
    match error {
        ExecError::Closed { .. } | ExecError::NotEnded { .. } | ExecError::ConflictingRecord { .. } => {
            CoordinatorError::conflict(message)
        }
        _ => CoordinatorError::bad_request(message),
    }
}

fn key(text: &str) -> Result<IdempotencyKey, StoreError> {
    IdempotencyKey::new(text).map_err(|e| StoreError::Corrupt(format!("settlement key {text}: {e}")))
}

/// The ledger account of a market account (the escrow is a reservation, never an account; the
/// platform as a contract party is the platform's account).
fn ledger_account(account: &Account, platform: &PartyId) -> AccountId {
    match account {
        Account::Party(party) if party == platform => AccountId::Platform,
        Account::Party(party) => AccountId::Party(party.clone()),
        Account::Platform | Account::Escrow(_) => AccountId::Platform,
    }
}

fn ledger_refused(error: LedgerError) -> CoordinatorError {
    match error {
        LedgerError::OverLimit { .. } => CoordinatorError::conflict(format!(
            "the buyer's account cannot hold this contract's price: {error}; deposit credits, then sign again"
        )),
        other => CoordinatorError::from(crate::requests::ledger_refusal(other)),
    }
}

pub(super) fn request(key_text: &str, action: Action, contract: &Contract) -> Result<TransferRequest, StoreError> {
    let memo = Memo { record: Some(contract.id.0), ..Memo::default() };
    Ok(TransferRequest { key: key(key_text)?, action, purpose: Purpose::BarterCredit, memo })
}

/// Make a start's transfers: the escrow as a reservation, money given as postings.
fn book_escrow(
    tx: &mut dyn Tx,
    contract: &Contract,
    transfers: &[Transfer],
    platform: &PartyId,
    now_ms: u64,
) -> Result<(), CoordinatorError> {
    let mut ledger = Ledger::new(tx.ledger());
    for transfer in transfers {
        let action = match transfer.to {
            // The platform buying holds nothing: it pays from its own account at settlement.
            Account::Escrow(_) if contract.buyer.party == *platform => continue,
            Account::Escrow(_) => Action::Reserve {
                debit: ledger_account(&transfer.from, platform),
                credit: AccountId::Platform,
                amount: transfer.amount,
                kind: ReservationKind::Maximum,
            },
            _ => Action::Post {
                debit: ledger_account(&transfer.from, platform),
                credit: ledger_account(&transfer.to, platform),
                amount: transfer.amount,
                over_limit: OverLimit::Refuse,
            },
        };
        ledger.execute(request(&transfer.key, action, contract)?, now_ms).map_err(ledger_refused)?;
    }
    Ok(())
}

/// Pass the seller's part on from the platform's account.
fn pay_seller<S: idlegrid_ledger::LedgerStore + ?Sized>(
    ledger: &mut Ledger<'_, S>,
    contract: &Contract,
    transfers: &[Transfer],
    platform: &PartyId,
    now_ms: u64,
) -> Result<(), CoordinatorError> {
    let seller = Account::Party(contract.seller.party.clone());
    for transfer in transfers.iter().filter(|t| t.to == seller) {
        let action = Action::Post {
            debit: AccountId::Platform,
            credit: ledger_account(&transfer.to, platform),
            amount: transfer.amount,
            over_limit: OverLimit::Allow,
        };
        ledger.execute(request(&transfer.key, action, contract)?, now_ms).map_err(ledger_refused)?;
    }
    Ok(())
}

/// Make a settlement's transfers: what was earned taken from the buyer's reservation, the
/// seller's part passed on, the rest released. When the platform is the buyer, it pays the
/// seller's part from its own account.
fn book_settlement(
    tx: &mut dyn Tx,
    contract: &Contract,
    transfers: &[Transfer],
    platform: &PartyId,
    now_ms: u64,
) -> Result<(), CoordinatorError> {
    let mut ledger = Ledger::new(tx.ledger());
    if contract.buyer.party == *platform {
        return pay_seller(&mut ledger, contract, transfers, platform, now_ms);
    }
    let escrow_key = key(&settlement_key(contract.id, "escrow"))?;
    let Some(reservation) = ledger.store().transfer_by_key(&escrow_key).map_err(ledger_refused)? else {
        return Ok(()); // nothing was held (a contract without a price)
    };
    let reservation = reservation.id;
    let buyer = Account::Party(contract.buyer.party.clone());
    let taken: i64 = transfers.iter().filter(|t| t.to != buyer).map(|t| t.amount.as_i64()).sum();
    if taken > 0 {
        let action = Action::Settle { reservation, amount: Micros::new(taken) };
        let take = request(&settlement_key(contract.id, "settle:take"), action, contract)?;
        ledger.execute(take, now_ms).map_err(ledger_refused)?;
    }
    pay_seller(&mut ledger, contract, transfers, platform, now_ms)?;
    let release = request(&settlement_key(contract.id, "settle:release"), Action::Void { reservation }, contract)?;
    ledger.execute(release, now_ms).map_err(ledger_refused)?;
    Ok(())
}

impl Coordinator {
    /// Start a contract both parties signed: escrow, the execution row, notices.
    pub(super) fn market_start(&self, tx: &mut dyn Tx, row: &ContractRow, now_ms: u64) -> Result<(), CoordinatorError> {
        if tx.market().execution(row.id)?.is_some() {
            return Ok(());
        }
        let contract = terms_of(row)?;
        let (execution, escrow) = Execution::start(&contract, now_ms);
        book_escrow(tx, &contract, &escrow, self.signer.id(), now_ms)?;
        let record = ExecutionRecord { execution, escrow, settlement: Vec::new(), draw: None, data: None };
        self.put_execution(tx, &contract, &record, now_ms)?;
        self.tell_served(tx, &contract.seller.party)?;
        let what = format!("contract {} started: {} to deliver", row.id, record.execution.units_contracted);
        self.notify_parties(tx, &contract, "market_started", what, now_ms)?;
        tracing::info!(contract = row.id, mode = ?contract.mode, "market contract started");
        Ok(())
    }

    pub(super) fn put_execution(
        &self,
        tx: &mut dyn Tx,
        contract: &Contract,
        record: &ExecutionRecord,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        tx.market().put_execution(&ExecutionRow {
            contract: contract.id.0,
            state: record.execution.state.name().to_string(),
            ends_ms: contract.ends_ms(),
            updated_ms: now_ms,
            body: to_json(record),
        })
    }

    fn notify_parties(
        &self,
        tx: &mut dyn Tx,
        contract: &Contract,
        kind: &str,
        what: String,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        for party in [&contract.seller.party, &contract.buyer.party] {
            self.send_notice(tx, party, market_notice(kind, what.clone(), now_ms), now_ms)?;
        }
        Ok(())
    }

    /// Keep a sweepstakes draw with a contract it covered.
    pub(super) fn record_draw(&self, tx: &mut dyn Tx, contract: u64, draw: &DrawInfo) -> Result<(), StoreError> {
        let Some(mut row) = tx.market().execution(contract)? else { return Ok(()) };
        let mut record = record_of(&row)?;
        record.draw = Some(draw.clone());
        row.body = to_json(&record);
        tx.market().put_execution(&row)
    }

    /// The execution of a contract, if it started.
    pub(super) fn execution_info(&self, tx: &mut dyn Tx, contract: u64) -> Result<Option<ExecutionInfo>, StoreError> {
        let row = tx.market().execution(contract)?;
        let info = row.map(|row| record_of(&row).map(ExecutionRecord::info)).transpose()?;
        info.map(|info| self.data_info(tx, contract, info)).transpose()
    }

    /// Step a contract's execution with `event`; transfers and notices follow the outcome.
    pub(super) fn market_step(
        &self,
        tx: &mut dyn Tx,
        row: &ContractRow,
        event: &ExecEvent,
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        let Some(exec_row) = tx.market().execution(row.id)? else {
            return Err(CoordinatorError::conflict(format!(
                "contract {} has not started: both parties must sign it first",
                row.id
            )));
        };
        let contract = terms_of(row)?;
        let mut record = record_of(&exec_row)?;
        let (next, outcome) = record.execution.apply(&contract, event).map_err(exec_error)?;
        if outcome.repeated && next == record.execution {
            return Ok(());
        }
        if !outcome.transfers.is_empty() {
            book_settlement(tx, &contract, &outcome.transfers, self.signer.id(), now_ms)?;
            record.settlement = outcome.transfers.clone();
        }
        record.execution = next;
        self.put_execution(tx, &contract, &record, now_ms)?;
        self.tell_served(tx, &contract.seller.party)?;
        if outcome.changed {
            let state = record.execution.state;
            let kind = match state {
                ExecState::Failed => "market_failed",
                ExecState::Settled => "market_settled",
                _ => "market_delivered",
            };
            let mut what = format!("contract {} {}", row.id, state.name());
            if let Some(reason) = record.execution.failure.as_deref().filter(|_| state == ExecState::Failed) {
                what.push_str(&format!(": {}", idlegrid_types::Untrusted(reason)));
            }
            self.notify_parties(tx, &contract, kind, what, now_ms)?;
            tracing::info!(contract = row.id, state = state.name(), "market contract execution");
        }
        Ok(())
    }

    fn contract_for(&self, tx: &mut dyn Tx, party: &Party, id: u64) -> Result<ContractRow, CoordinatorError> {
        match tx.market().contract(id)? {
            Some(row) if row.seller == party.id || row.buyer == party.id => Ok(row),
            _ => Err(CoordinatorError::not_found(format!("you are party to no contract {id}"))),
        }
    }

    fn answer(&self, tx: &mut dyn Tx, id: u64) -> Result<ContractInfo, CoordinatorError> {
        let row = tx.market().contract(id)?.ok_or_else(|| CoordinatorError::internal("contract vanished"))?;
        let mut info = contract_info(&row)?;
        info.execution = self.execution_info(tx, id)?;
        Ok(info)
    }

    /// The seller reports use of a contract it delivers.
    pub fn market_meter(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: u64,
        body: &MeterBody,
        now_ms: u64,
    ) -> Result<ContractInfo, CoordinatorError> {
        let row = self.contract_for(tx, party, id)?;
        if row.seller != party.id {
            return Err(CoordinatorError::forbidden(format!("only the seller of contract {id} reports its metering")));
        }
        let record = MeterRecord {
            contract: idlegrid_market::ContractId(id),
            seq: body.seq,
            from_ms: body.from_ms,
            to_ms: body.to_ms,
            units: body.units,
        };
        self.market_step(tx, &row, &ExecEvent::Meter { record }, now_ms)?;
        self.answer(tx, id)
    }

    /// The buyer confirms delivery in full.
    pub fn market_confirm(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: u64,
        now_ms: u64,
    ) -> Result<ContractInfo, CoordinatorError> {
        let row = self.contract_for(tx, party, id)?;
        if row.buyer != party.id {
            return Err(CoordinatorError::forbidden(format!("only the buyer of contract {id} confirms its delivery")));
        }
        self.market_step(tx, &row, &ExecEvent::Confirm { at_ms: now_ms }, now_ms)?;
        self.answer(tx, id)
    }

    /// A party reports that the contract is not delivered (any more): it fails now, and is
    /// settled pro rata.
    pub fn market_fail(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: u64,
        reason: &str,
        now_ms: u64,
    ) -> Result<ContractInfo, CoordinatorError> {
        let row = self.contract_for(tx, party, id)?;
        let reason = format!("{} reports: {}", if row.seller == party.id { "the seller" } else { "the buyer" }, reason);
        self.market_step(tx, &row, &ExecEvent::Fail { at_ms: now_ms, reason }, now_ms)?;
        self.answer(tx, id)
    }

    /// Settle a delivered or failed contract now (maintenance does it too).
    pub fn market_settle(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: u64,
        now_ms: u64,
    ) -> Result<ContractInfo, CoordinatorError> {
        let row = self.contract_for(tx, party, id)?;
        let Some(exec_row) = tx.market().execution(id)? else {
            return Err(CoordinatorError::conflict(format!("contract {id} has not started: nothing to settle")));
        };
        if exec_row.state == "active" && exec_row.ends_ms <= now_ms {
            self.market_step(tx, &row, &ExecEvent::TimeUp { at_ms: now_ms }, now_ms)?;
        }
        self.market_step(tx, &row, &ExecEvent::Settle { at_ms: now_ms }, now_ms)?;
        self.answer(tx, id)
    }

    /// Register a contract both parties signed on their own (peer with peer, directly): checked
    /// like any contract, stored signed, started at once; no commission.
    pub fn market_register(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        signed: &SignedContract,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<ContractInfo, CoordinatorError> {
        let contract = &signed.contract;
        if contract.mode != idlegrid_market::BarterMode::PeerWithPeerDirect {
            return Err(CoordinatorError::bad_request(
                "contract.mode: only a contract made directly between peers (peer_with_peer_direct) is registered; \
                 trades through the coordinator are made by negotiation",
            ));
        }
        if contract.seller.party != party.id && contract.buyer.party != party.id {
            return Err(CoordinatorError::forbidden("you may register only a contract you are party to"));
        }
        signed.verify().map_err(|e| CoordinatorError::bad_request(format!("contract: {e}")))?;
        for side in [&contract.seller.party, &contract.buyer.party] {
            registered(tx, side)?;
        }
        let id = contract.id.0;
        if let Some(existing) = tx.market().contract(id)? {
            if existing.terms == to_json(contract) {
                return self.answer(tx, id); // registered before: the same contract again
            }
            let next = tx.market().next_id(idlegrid_store::MarketTable::Contracts)?;
            return Err(CoordinatorError::conflict(format!(
                "contract id {id} is in use: sign the contract again with a free id, such as {next}"
            )));
        }
        let row = ContractRow {
            id,
            offer: None,
            negotiation: None,
            seller: contract.seller.party.clone(),
            buyer: contract.buyer.party.clone(),
            state: "signed".into(),
            price_micros: contract.price.as_i64(),
            commission_micros: 0,
            created_ms: now_ms,
            signed_ms: Some(now_ms),
            terms: to_json(contract),
            seller_signature: Some(signed.seller_signature.clone()),
            buyer_signature: Some(signed.buyer_signature.clone()),
        };
        tx.market().insert_contract(&row)?;
        fx.market.contracts += 1;
        fx.market.contracts_signed += 1;
        self.market_start(tx, &row, now_ms)?;
        self.answer(tx, id)
    }

    /// Fail a contract on the server's own finding (maintenance); false if it could not.
    pub(super) fn market_fail_silently(
        &self,
        tx: &mut dyn Tx,
        row: &ContractRow,
        at_ms: u64,
        reason: String,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        self.maintenance_step(tx, row, ExecEvent::Fail { at_ms, reason }, now_ms)
    }

    /// Step in maintenance: a refusal is logged (tried again at the next pass), a fault of the
    /// server's own aborts the pass.
    pub(super) fn maintenance_step(
        &self,
        tx: &mut dyn Tx,
        row: &ContractRow,
        event: ExecEvent,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        match self.market_step(tx, row, &event, now_ms) {
            Ok(()) => Ok(true),
            Err(error) if error.kind == crate::ErrorKind::Internal => Err(StoreError::Database(error.report.message)),
            Err(error) => {
                tracing::warn!(contract = row.id, error = %error.report.message, "market contract not settled: tried again later");
                Ok(false)
            }
        }
    }

    /// Close contracts whose time is over (delivered as far as metered) and settle delivered
    /// and failed ones (maintenance); returns how many were settled. A contract the ledger
    /// refuses to settle is logged and tried again at the next pass.
    pub(super) fn market_settle_due(&self, tx: &mut dyn Tx, now_ms: u64) -> Result<u32, StoreError> {
        let mut settled = 0;
        for exec_row in tx.market().executions_due(now_ms, DUE_BATCH)? {
            let Some(row) = tx.market().contract(exec_row.contract)? else { continue };
            // An engine selling computing (or memory, once its engine was heard from) that was
            // never found silent delivered all of it.
            let terms = terms_of(&row)?;
            let watched = match tx.provider(&row.seller)? {
                Some(engine) => {
                    super::compute::sells_computing(&terms)
                        || (super::memory::memory_sold_bytes(&terms) > 0 && engine.last_contact_ms > 0)
                }
                None => false,
            };
            let ended =
                if watched { ExecEvent::Confirm { at_ms: now_ms } } else { ExecEvent::TimeUp { at_ms: now_ms } };
            let mut step = |event: ExecEvent| self.maintenance_step(tx, &row, event, now_ms);
            if exec_row.state == "active" && !step(ended)? {
                continue;
            }
            if step(ExecEvent::Settle { at_ms: now_ms })? {
                settled += 1;
            }
        }
        Ok(settled)
    }
}

/// A party of a registered contract must be known to the server (its ledger account exists).
fn registered(tx: &mut dyn Tx, party: &PartyId) -> Result<(), CoordinatorError> {
    match tx.party(party)? {
        Some(_) => Ok(()),
        None => Err(CoordinatorError::bad_request(format!("party {party} is not registered with this server"))),
    }
}

#[cfg(test)]
#[path = "market_execution_tests.rs"]
mod tests;
