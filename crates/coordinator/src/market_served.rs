//! What a seller's engine shows of the market on its owner's status page: the contracts its
//! provider serves (category, buyer, state, share metered). The list is sent to the engine's
//! session when it starts and again whenever one of those contracts starts, is metered or
//! ends; the engine reads it at its next poll. With the list goes the memory reserved for
//! buyers (`market::memory`).

use idlegrid_market::contract::{Consideration, Contract};
use idlegrid_protocol::market::ServedContract;
use idlegrid_protocol::messages::ServerToProvider;
use idlegrid_store::{ContractRow, StoreError, Tx};
use idlegrid_types::{PartyId, SessionId};

use super::LISTED_MAX;
use super::execution::ExecutionRecord;
use crate::session::push;
use crate::{Coordinator, Effects};

/// Most contracts an engine is told about (the newest).
pub const SERVED_MAX: usize = 50;

/// The category the seller gives, by name (`money` when it gives money only).
pub(super) fn category_given(contract: &Contract) -> &'static str {
    contract
        .seller
        .gives
        .iter()
        .find_map(|given| match given {
            Consideration::Resource { resource } => Some(resource.category().name()),
            Consideration::Money { .. } => None,
        })
        .unwrap_or("money")
}

/// One served contract as the engine shows it, from its row and its execution.
pub(super) fn served(row: &ContractRow, record: &ExecutionRecord) -> Result<ServedContract, StoreError> {
    let contract: Contract =
        serde_json::from_str(&row.terms).map_err(|e| StoreError::Corrupt(format!("contract {}: {e}", row.id)))?;
    let execution = &record.execution;
    Ok(ServedContract {
        contract: row.id,
        category: category_given(&contract).to_string(),
        buyer: row.buyer.clone(),
        state: execution.state.name().to_string(),
        metered: execution.units_metered(),
        contracted: execution.units_contracted,
        unit: execution.unit.clone(),
    })
}

/// The contracts `seller` serves that have started, newest first, at most [`SERVED_MAX`].
pub(super) fn served_by(tx: &mut dyn Tx, seller: &PartyId) -> Result<Vec<ServedContract>, StoreError> {
    let mut rows: Vec<ContractRow> =
        tx.market().contracts_of(seller, LISTED_MAX)?.into_iter().filter(|row| row.seller == *seller).collect();
    rows.sort_by_key(|row| std::cmp::Reverse(row.id));
    let mut list = Vec::new();
    for row in rows {
        if list.len() == SERVED_MAX {
            break;
        }
        let Some(exec_row) = tx.market().execution(row.id)? else { continue };
        let record: ExecutionRecord = serde_json::from_str(&exec_row.body)
            .map_err(|e| StoreError::Corrupt(format!("execution of contract {}: {e}", row.id)))?;
        list.push(served(&row, &record)?);
    }
    Ok(list)
}

impl Coordinator {
    /// Tell the seller's engine, if it has a session, the contracts it serves.
    pub(super) fn tell_served(&self, tx: &mut dyn Tx, seller: &PartyId) -> Result<(), StoreError> {
        let Some(session) = tx.provider(seller)?.and_then(|p| p.session) else { return Ok(()) };
        // Read at the engine's next poll: market requests carry no wake-ups to the shell.
        self.send_served(tx, seller, session, &mut Effects::default())
    }

    /// Send a provider's served contracts to `session` (its engine's, just started): nothing
    /// when it serves none.
    pub(crate) fn send_served(
        &self,
        tx: &mut dyn Tx,
        seller: &PartyId,
        session: SessionId,
        fx: &mut Effects,
    ) -> Result<(), StoreError> {
        let contracts = served_by(tx, seller)?;
        if contracts.is_empty() {
            return Ok(());
        }
        let memory_reserved_bytes =
            self.memory_sold_by(tx, seller)?.iter().fold(0u64, |sum, (_, bytes)| sum.saturating_add(*bytes));
        let message = ServerToProvider::MarketContracts { contracts, memory_reserved_bytes };
        push(tx, fx, session, None, &message, None)?;
        Ok(())
    }
}
