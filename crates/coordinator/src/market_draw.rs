//! Sweepstakes sold on the market (D7, money of kind `sweepstakes`): each contract sells its
//! buyer `amount` entries; the seller draws the winners among the entries of its contracts under
//! way with a seed from the server's random source, and the draw (seed, entries, winners) is
//! kept with every contract it covered, so anyone can reproduce it with the market core's
//! `settlement::draw`. The draw delivers those contracts: they are then settled (the seller
//! earns the prices) and every party is told the winners.
//!
//! A prize (credits per winner, named by the seller when drawing) moves from the seller's
//! account to each winner in the draw's transaction, one ledger transfer per winner whose
//! idempotency key is derived from the draw's first contract: a contract is drawn once, so a
//! prize is paid once, whatever is repeated afterwards.

use idlegrid_ledger::{AccountId, Action, Ledger, LedgerError, Micros, OverLimit};
use idlegrid_market::Category;
use idlegrid_market::contract::{Consideration, Contract};
use idlegrid_market::execution::ExecEvent;
use idlegrid_market::settlement::{draw, settlement_key};
use idlegrid_protocol::market::DrawInfo;
use idlegrid_store::{ContractRow, Tx};
use idlegrid_types::PartyId;

use super::{LISTED_MAX, market_notice};
use crate::{Coordinator, CoordinatorError, Party};

/// Most winners one draw names.
pub const WINNERS_MAX: u32 = 100;

/// Largest prize per winner: a billion credits.
pub const PRIZE_MAX: Micros = Micros::new(1_000_000_000 * 1_000_000);

/// The key of the prize paid to the `n`th winner of the draw that covered `first` first.
pub fn prize_key(first: u64, n: usize) -> String {
    settlement_key(idlegrid_market::ContractId(first), &format!("prize:{n}"))
}

/// Pay each winner the prize from the seller's account (keys from [`prize_key`]).
fn pay_prizes(
    tx: &mut dyn Tx,
    seller: &PartyId,
    covered: &[ContractRow],
    info: &DrawInfo,
    now_ms: u64,
) -> Result<(), CoordinatorError> {
    let (Some(first), true) = (covered.first(), info.prize > Micros::ZERO) else { return Ok(()) };
    let contract: Contract = serde_json::from_str(&first.terms)
        .map_err(|e| CoordinatorError::internal(format!("contract {}: {e}", first.id)))?;
    let mut ledger = Ledger::new(tx.ledger());
    for (n, winner) in info.winners.iter().enumerate() {
        let action = Action::Post {
            debit: AccountId::Party(seller.clone()),
            credit: AccountId::Party(winner.clone()),
            amount: info.prize,
            over_limit: OverLimit::Refuse,
        };
        let request = super::execution::request(&prize_key(first.id, n), action, &contract)?;
        ledger.execute(request, now_ms).map_err(|error| match error {
            LedgerError::OverLimit { .. } => CoordinatorError::conflict(format!(
                "your account cannot pay a prize of {} to each of {} winners: {error}; deposit credits, then draw again",
                info.prize,
                info.winners.len()
            )),
            other => CoordinatorError::from(crate::requests::ledger_refusal(other)),
        })?;
    }
    Ok(())
}

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
        prize: Micros,
        now_ms: u64,
    ) -> Result<DrawInfo, CoordinatorError> {
        if winners == 0 || winners > WINNERS_MAX {
            return Err(CoordinatorError::bad_request(format!("winners must be from 1 to {WINNERS_MAX}")));
        }
        if prize < Micros::ZERO || prize > PRIZE_MAX {
            return Err(CoordinatorError::bad_request(format!("prize must be from 0 to {PRIZE_MAX} credits")));
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
            prize,
        };
        pay_prizes(tx, &party.id, &covered, &info, now_ms)?;
        let listed: Vec<String> = info.winners.iter().map(ToString::to_string).collect();
        let mut what = format!("sweepstakes drawn with seed {seed}: winners {}", listed.join(", "));
        if prize > Micros::ZERO {
            what.push_str(&format!("; prize {prize} paid to each winner"));
        }
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
