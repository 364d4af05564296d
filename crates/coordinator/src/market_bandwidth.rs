//! Internet access sold on the market (D7): the seller's engine runs an element relay; the
//! buyer fetches its own elements through it.
//!
//! - The engine says where its relay listens (`MarketRelay`, kept in the server's metadata).
//! - The buyer of an active contract asks for the relay ([`Coordinator::market_relay`]): its
//!   address and a ticket the server signs with its assignment key (which every engine knows),
//!   naming the engine, the contract and an expiry.
//! - The relay checks the ticket, fetches the element from the server (allowed without an
//!   assignment ticket for the buyer's elements while the contract is active), serves it, and
//!   reports the bytes (`MarketServed`); the buyer reports the bytes it received
//!   (`POST /contracts/{id}/bytes`). [`ByteCounts`] takes the lower of the two as delivered
//!   and meters it; settlement pays bytes delivered over bytes contracted.

use idlegrid_market::Category;
use idlegrid_market::execution::ExecEvent;
use idlegrid_market::relay::{ByteCounts, Side, bytes_contracted};
use idlegrid_protocol::market::ContractInfo;
use idlegrid_protocol::market_data::{RelayInfo, relay_signed_bytes};
use idlegrid_store::{ContractRow, StoreError, Tx};
use idlegrid_types::{ElementHash, PartyId};

use super::super::LISTED_MAX;
use super::super::execution::{ExecutionRecord, record_of, terms_of};
use super::{DataState, sold};
use crate::{Coordinator, CoordinatorError, Party};

/// Longest relay address kept.
const ADDRESS_BYTES_MAX: usize = 256;

fn relay_key(engine: &PartyId) -> String {
    format!("market_relay:{engine}")
}

impl Coordinator {
    /// The engine says where its relay listens.
    pub(crate) fn market_relay_at(
        &self,
        tx: &mut dyn Tx,
        engine: &PartyId,
        address: &str,
    ) -> Result<(), CoordinatorError> {
        let valid = !address.is_empty()
            && address.len() <= ADDRESS_BYTES_MAX
            && address.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
            && address.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c));
        if !valid {
            return Err(CoordinatorError::bad_request(format!(
                "relay address '{}': give host:port",
                idlegrid_types::Untrusted(address)
            )));
        }
        tx.set_meta(&relay_key(engine), address.as_bytes())?;
        Ok(())
    }

    /// An internet access contract `party` is party to, active, with its execution.
    fn access_of(
        &self,
        tx: &mut dyn Tx,
        party: &PartyId,
        id: u64,
    ) -> Result<(ContractRow, ExecutionRecord), CoordinatorError> {
        let row = match tx.market().contract(id)? {
            Some(row) if row.seller == *party || row.buyer == *party => row,
            _ => return Err(CoordinatorError::not_found(format!("you are party to no contract {id}"))),
        };
        if sold(&terms_of(&row)?, Category::InternetAccess).is_none() {
            return Err(CoordinatorError::bad_request(format!("contract {id} does not sell internet access")));
        }
        let Some(exec_row) = tx.market().execution(id)? else {
            return Err(CoordinatorError::conflict(format!(
                "contract {id} has not started: both parties must sign it first"
            )));
        };
        let record = record_of(&exec_row)?;
        if record.execution.state != idlegrid_market::ExecState::Active {
            let state = record.execution.state.name();
            return Err(CoordinatorError::conflict(format!("contract {id} is {state}: its access is over")));
        }
        Ok((row, record))
    }

    /// The relay of an active contract, for its buyer: address and a signed ticket.
    pub fn market_relay(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: u64,
        now_ms: u64,
    ) -> Result<RelayInfo, CoordinatorError> {
        let (row, _) = self.access_of(tx, &party.id, id)?;
        if row.buyer != party.id {
            return Err(CoordinatorError::forbidden(format!("only the buyer of contract {id} uses its relay")));
        }
        let Some(address) = tx.meta(&relay_key(&row.seller))? else {
            return Err(CoordinatorError::conflict(
                "the seller's engine has no relay running: it must name one (relay_listen) and be connected",
            ));
        };
        let address = String::from_utf8(address).map_err(|_| StoreError::Corrupt("relay address".into()))?;
        let expires_ms = now_ms.saturating_add(self.config.ticket_ttl_ms);
        let signature = self.signer.sign_bytes(&relay_signed_bytes(&row.seller, id, expires_ms));
        Ok(RelayInfo { contract: id, address, ticket: format!("{id}.{expires_ms}.{signature}"), expires_ms })
    }

    /// One side reports bytes: the seller's engine served them, the buyer received them.
    pub fn market_bytes(
        &self,
        tx: &mut dyn Tx,
        party: &PartyId,
        id: u64,
        seq: u64,
        bytes: u64,
        now_ms: u64,
    ) -> Result<ContractInfo, CoordinatorError> {
        let (row, mut record) = self.access_of(tx, party, id)?;
        let terms = terms_of(&row)?;
        let side = if row.seller == *party { Side::Seller } else { Side::Buyer };
        let mut state = match record.data.take() {
            Some(DataState::Bandwidth { counts, last_ms }) => (counts, last_ms),
            _ => {
                let contracted = bytes_contracted(&terms).unwrap_or(1);
                (ByteCounts::new(&terms, contracted, record.execution.units_contracted), record.execution.started_ms)
            }
        };
        let metered =
            state.0.report(side, seq, bytes, state.1, now_ms).map_err(|e| CoordinatorError::conflict(e.to_string()))?;
        if metered.is_some() {
            state.1 = now_ms;
        }
        record.data = Some(DataState::Bandwidth { counts: state.0, last_ms: state.1 });
        self.put_execution(tx, &terms, &record, now_ms)?;
        if let Some(record) = metered {
            self.market_step(tx, &row, &ExecEvent::Meter { record }, now_ms)?;
        }
        let me = Party { id: party.clone(), role: idlegrid_types::Role::Client };
        self.market_contract(tx, &me, id)
    }

    /// Whether `engine` relays, under an active internet access contract, for a buyer who
    /// holds `hash` (it may fetch it).
    pub(super) fn relayed_for_buyer(
        &self,
        tx: &mut dyn Tx,
        engine: &PartyId,
        hash: &ElementHash,
    ) -> Result<bool, StoreError> {
        for row in tx.market().contracts_of(engine, LISTED_MAX)? {
            if row.seller != *engine || row.state != "signed" {
                continue;
            }
            if sold(&terms_of(&row)?, Category::InternetAccess).is_none() {
                continue;
            }
            let active = tx.market().execution(row.id)?.is_some_and(|e| e.state == "active");
            if active && tx.element_visible_to_client(&row.buyer, hash)? {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
