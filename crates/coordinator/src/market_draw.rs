//! Sweepstakes sold on the market (D7, money of kind `sweepstakes`): each contract sells its
//! buyer `amount` entries; the seller draws the winners among the entries of its contracts under
//! way with a seed from the server's random source, and the draw (seed, entries, winners) is
//! kept with every contract it covered, so anyone can reproduce it with the market core's
//! `settlement::draw`. The draw delivers those contracts: they are then settled (the seller
//! earns the prices) and every party is told the winners.

use idlegrid_market::Category;
use idlegrid_market::contract::{Consideration, Contract};
use idlegrid_market::execution::ExecEvent;
use idlegrid_market::settlement::draw;
use idlegrid_protocol::market::DrawInfo;
use idlegrid_store::Tx;
use idlegrid_types::PartyId;

use super::{LISTED_MAX, market_notice};
use crate::{Coordinator, CoordinatorError, Party};

/// Most winners one draw names.
pub const WINNERS_MAX: u32 = 100;

/// Entries a contract sells: the amount of its sweepstakes money resource.
pub(super) fn entries_sold(contract: &Contract) -> u64 {
    contract
        .seller
        .gives
        .iter()
        .filter_map(|given| match given {
            Consideration::Resource { resource }
                if resource.category() == Category::Money && resource.text("kind") == Some("sweepstakes") =>
            {
                resource.number("amount")
            }
            _ => None,
        })
        .map(|amount| amount.clamp(0.0, 1e12) as u64)
        .sum()
}

impl Coordinator {
    /// The seller draws `winners` among the entries of its sweepstakes contracts under way.
    pub fn market_draw(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        winners: u32,
        now_ms: u64,
    ) -> Result<DrawInfo, CoordinatorError> {
        if winners == 0 || winners > WINNERS_MAX {
            return Err(CoordinatorError::bad_request(format!("winners must be from 1 to {WINNERS_MAX}")));
        }
        let mut entries: Vec<(PartyId, u64)> = Vec::new();
        let mut covered = Vec::new();
        for row in tx.market().contracts_of(&party.id, LISTED_MAX)? {
            if row.seller != party.id || row.state != "signed" {
                continue;
            }
            let contract: Contract = serde_json::from_str(&row.terms)
                .map_err(|e| CoordinatorError::internal(format!("contract {}: {e}", row.id)))?;
            let count = entries_sold(&contract);
            let active = tx.market().execution(row.id)?.is_some_and(|e| e.state == "active");
            if count > 0 && active {
                entries.push((row.buyer.clone(), count));
                covered.push(row);
            }
        }
        if covered.is_empty() {
            return Err(CoordinatorError::conflict(
                "you have no sweepstakes contract under way: sell entries (money of kind sweepstakes) first",
            ));
        }
        let seed = self.random().next_u64();
        let drawn =
            draw(&entries, winners as usize, seed).map_err(|e| CoordinatorError::internal(format!("the draw: {e}")))?;
        let info = DrawInfo {
            seed,
            entries: entries.clone(),
            winners: drawn,
            contracts: covered.iter().map(|row| row.id).collect(),
            drawn_ms: now_ms,
        };
        let listed: Vec<String> = info.winners.iter().map(ToString::to_string).collect();
        let what = format!("sweepstakes drawn with seed {seed}: winners {}", listed.join(", "));
        for row in &covered {
            self.record_draw(tx, row.id, &info)?;
            self.market_step(tx, row, &ExecEvent::Confirm { at_ms: now_ms }, now_ms)?;
            self.send_notice(tx, &row.buyer, market_notice("market_draw", what.clone(), now_ms), now_ms)?;
        }
        self.send_notice(tx, &party.id, market_notice("market_draw", what, now_ms), now_ms)?;
        tracing::info!(seed, contracts = info.contracts.len(), "market sweepstakes drawn");
        Ok(info)
    }
}
