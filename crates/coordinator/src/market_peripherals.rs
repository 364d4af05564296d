//! Peripherals sold on the market, served by the seller's engine (D7): the buyer of an active
//! contract whose seller gives a peripheral sends an input; the server numbers the use and
//! passes it to the seller's engine (`PeripheralUse`), which runs the handler its owner set for
//! that kind of peripheral and answers with the output or why it failed (`PeripheralDone`); the
//! buyer reads the outcome. Inputs and outputs travel inline, at most
//! [`PERIPHERAL_BYTES_MAX`] bytes each. Uses are kept in the store's key-value table, one value
//! per use; an engine's answer to a use already answered changes nothing.

use idlegrid_market::Category;
use idlegrid_market::contract::{Consideration, Contract};
use idlegrid_protocol::market::{PERIPHERAL_BYTES_MAX, PeripheralUseInfo};
use idlegrid_protocol::messages::{ErrorCode, ServerToProvider};
use idlegrid_store::{ContractRow, StoreError, Tx};
use idlegrid_types::PartyId;

use crate::error::{Reject, report};
use crate::session::push;
use crate::{Coordinator, CoordinatorError, Effects, Party};

/// Uses of one contract at most (numbered from 1).
pub const USES_MAX: u64 = 10_000;
/// Longest failure reason kept from an engine.
const ERROR_CHARS_MAX: usize = 500;

/// The kind of peripheral the seller of a contract gives (`printer`, ...), if it gives one.
pub(super) fn peripheral_kind(contract: &Contract) -> Option<String> {
    contract.seller.gives.iter().find_map(|given| match given {
        Consideration::Resource { resource } if resource.category() == Category::Peripherals => {
            Some(resource.text("kind").unwrap_or("peripheral").to_string())
        }
        _ => None,
    })
}

fn use_key(contract: u64, number: u64) -> String {
    format!("market_peripheral_use:{contract}:{number}")
}

fn count_key(contract: u64) -> String {
    format!("market_peripheral_uses:{contract}")
}

fn load_use(tx: &mut dyn Tx, contract: u64, number: u64) -> Result<Option<PeripheralUseInfo>, StoreError> {
    tx.meta(&use_key(contract, number))?
        .map(|bytes| {
            serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("peripheral use {number} of contract {contract}: {e}")))
        })
        .transpose()
}

fn save_use(tx: &mut dyn Tx, info: &PeripheralUseInfo) -> Result<(), StoreError> {
    let bytes = serde_json::to_vec(info).expect("a peripheral use serializes");
    tx.set_meta(&use_key(info.contract, info.number), &bytes)
}

fn uses_so_far(tx: &mut dyn Tx, contract: u64) -> Result<u64, StoreError> {
    Ok(tx.meta(&count_key(contract))?.and_then(|bytes| String::from_utf8(bytes).ok()?.parse().ok()).unwrap_or(0))
}

fn terms(row: &ContractRow) -> Result<Contract, StoreError> {
    serde_json::from_str(&row.terms).map_err(|e| StoreError::Corrupt(format!("contract {}: {e}", row.id)))
}

impl Coordinator {
    /// The buyer uses the peripheral of contract `id` with `input`: passed to the seller's
    /// engine; the answer says the use's number (its outcome comes later).
    pub fn market_peripheral_use(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: u64,
        input: &[u8],
        fx: &mut Effects,
    ) -> Result<PeripheralUseInfo, CoordinatorError> {
        let row = match tx.market().contract(id)? {
            Some(row) if row.buyer == party.id => row,
            Some(row) if row.seller == party.id => {
                return Err(CoordinatorError::forbidden(format!(
                    "only the buyer of contract {id} uses its peripheral"
                )));
            }
            _ => return Err(CoordinatorError::not_found(format!("you are party to no contract {id}"))),
        };
        if input.len() > PERIPHERAL_BYTES_MAX {
            return Err(CoordinatorError::bad_request(format!(
                "input: {} bytes is more than a peripheral use takes ({PERIPHERAL_BYTES_MAX})",
                input.len()
            )));
        }
        let Some(kind) = peripheral_kind(&terms(&row)?) else {
            return Err(CoordinatorError::bad_request(format!("contract {id} sells no peripheral")));
        };
        let state = tx.market().execution(id)?.map(|e| e.state);
        if state.as_deref() != Some("active") {
            let state = state.unwrap_or_else(|| "not started".into());
            return Err(CoordinatorError::conflict(format!("contract {id} is {state}: its peripheral is not served")));
        }
        let Some(session) = tx.provider(&row.seller)?.and_then(|engine| engine.session) else {
            return Err(CoordinatorError::conflict(format!(
                "the seller's engine has not connected: contract {id}'s peripheral cannot be used now; try again later"
            )));
        };
        let number = uses_so_far(tx, id)? + 1;
        if number > USES_MAX {
            return Err(CoordinatorError::conflict(format!("contract {id} has had its {USES_MAX} peripheral uses")));
        }
        tx.set_meta(&count_key(id), number.to_string().as_bytes())?;
        let info = PeripheralUseInfo {
            contract: id,
            number,
            kind: kind.clone(),
            state: "waiting".into(),
            output: Vec::new(),
            error: None,
        };
        save_use(tx, &info)?;
        let message = ServerToProvider::PeripheralUse { contract: id, number, kind, input: input.to_vec() };
        push(tx, fx, session, None, &message, None)?;
        tracing::info!(contract = id, number, "peripheral use sent to the seller's engine");
        Ok(info)
    }

    /// A peripheral use of contract `id` as either party sees it.
    pub fn market_peripheral_result(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: u64,
        number: u64,
    ) -> Result<PeripheralUseInfo, CoordinatorError> {
        match tx.market().contract(id)? {
            Some(row) if row.buyer == party.id || row.seller == party.id => {}
            _ => return Err(CoordinatorError::not_found(format!("you are party to no contract {id}"))),
        }
        load_use(tx, id, number)?
            .ok_or_else(|| CoordinatorError::not_found(format!("contract {id} has no peripheral use {number}")))
    }

    /// The seller's engine answers a peripheral use: kept once (a repeated answer changes
    /// nothing); an output over the limit fails the use.
    pub(crate) fn market_peripheral_done(
        &self,
        tx: &mut dyn Tx,
        engine: &PartyId,
        (id, number): (u64, u64),
        output: Vec<u8>,
        error: Option<&str>,
    ) -> Result<(), Reject> {
        let refused = |message: String| report(ErrorCode::BadRequest, message);
        match tx.market().contract(id)? {
            Some(row) if row.seller == *engine => {}
            _ => return Err(refused(format!("you serve no contract {id}"))),
        }
        let Some(mut info) = load_use(tx, id, number)? else {
            return Err(refused(format!("contract {id} has no peripheral use {number}")));
        };
        if info.state != "waiting" {
            return Ok(());
        }
        match error {
            Some(reason) => {
                info.state = "failed".into();
                info.error = Some(reason.chars().take(ERROR_CHARS_MAX).collect());
            }
            None if output.len() > PERIPHERAL_BYTES_MAX => {
                info.state = "failed".into();
                info.error = Some(format!("the output is over {PERIPHERAL_BYTES_MAX} bytes"));
            }
            None => {
                info.state = "done".into();
                info.output = output;
            }
        }
        tracing::info!(contract = id, number, state = %info.state, "peripheral use answered");
        save_use(tx, &info)?;
        Ok(())
    }
}
