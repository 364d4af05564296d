//! The first barter mode (D6, coordinator with peer): the platform itself buys a peer's
//! offered computing for credits. The server values the offer (`ValuationConfig`), agrees at the
//! asking price if it is no more than that value, and signs as the buyer with its own key; the
//! seller signs with its key and the contract starts. The platform pays from its own account
//! when the contract is settled (nothing is held: it cannot fail to pay), pro rata to what was
//! delivered; no commission. While it runs, an engine of the seller that falls silent fails the
//! contract at its last contact (see `market_watch_sellers`).

use idlegrid_ledger::Micros;
use idlegrid_market::Category;
use idlegrid_market::contract::{
    BarterMode, CommissionPayer, Consideration, Contract, ContractId, ContractParty, PublicKey,
};
use idlegrid_protocol::market::ContractInfo;
use idlegrid_store::{ContractRow, MarketTable, StoreError, Tx};
use idlegrid_types::Role as PartyRole;

use super::{LISTED_MAX, offer_record, to_json};
use crate::{Coordinator, CoordinatorError, Effects, Party};

impl Coordinator {
    /// The platform as a contract party: the server's own key.
    pub(super) fn platform_party(&self, gives: Vec<Consideration>) -> ContractParty {
        ContractParty { party: self.signer.id().clone(), public_key: PublicKey(self.signer.public_key()), gives }
    }

    /// A provider sells one of its open computing offers to the platform for credits: a
    /// contract the platform has signed, awaiting the seller's signature.
    pub fn market_sell_to_platform(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        offer: u64,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<ContractInfo, CoordinatorError> {
        let mut row = self.own_offer(tx, party, offer)?;
        if party.role != PartyRole::Provider {
            return Err(CoordinatorError::forbidden("the platform buys computing from engines' providers only"));
        }
        if row.state != "open" {
            return Err(CoordinatorError::conflict(format!(
                "offer {offer} is {}: only an open offer is sold",
                row.state
            )));
        }
        let record = offer_record(&row)?;
        if record.offer.resource.category() != Category::Computing {
            return Err(CoordinatorError::bad_request(format!(
                "the platform grants credits for computing only; offer {offer} is {}",
                record.offer.resource.category().name()
            )));
        }
        let negotiating = tx.market().negotiations_of(&party.id, LISTED_MAX)?;
        if negotiating.iter().any(|n| n.offer == offer && n.state == "open") {
            return Err(CoordinatorError::conflict(format!("offer {offer} is being negotiated: wait until it ends")));
        }
        let price = record.offer.price;
        if price > record.valuation.credits {
            return Err(CoordinatorError::conflict(format!(
                "the platform pays at most its valuation of offer {offer}, {}: lower the price to sell it",
                record.valuation.credits
            )));
        }
        let public_key =
            tx.party(&party.id)?.map(|p| p.public_key).ok_or_else(|| CoordinatorError::internal("no party"))?;
        let seller = ContractParty {
            party: party.id.clone(),
            public_key: PublicKey(public_key),
            gives: vec![Consideration::Resource { resource: record.offer.resource.clone() }],
        };
        let duration_ms = record
            .offer
            .resource
            .number("duration_s")
            .map_or(self.config.market.contract_duration_default_ms, |secs| (secs * 1000.0).round() as u64);
        let id = tx.market().next_id(MarketTable::Contracts)?;
        let contract = Contract {
            id: ContractId(id),
            mode: BarterMode::CoordinatorWithPeer,
            seller,
            buyer: self.platform_party(Vec::new()),
            price,
            commission: Micros::ZERO,
            commission_payer: CommissionPayer::Seller,
            starts_ms: now_ms,
            duration_ms: duration_ms.max(1),
            offer: Some(idlegrid_market::OfferId(offer)),
            negotiation: None,
            created_ms: now_ms,
        };
        contract.validate().map_err(|e| CoordinatorError::internal(format!("the platform's contract: {e}")))?;
        let contract_row = ContractRow {
            id,
            offer: Some(offer),
            negotiation: None,
            seller: party.id.clone(),
            buyer: self.signer.id().clone(),
            state: "awaiting_signatures".into(),
            price_micros: price.as_i64(),
            commission_micros: 0,
            created_ms: now_ms,
            signed_ms: None,
            terms: to_json(&contract),
            seller_signature: None,
            buyer_signature: Some(self.signer.sign_bytes(&contract.signing_bytes())),
        };
        tx.market().insert_contract(&contract_row)?;
        row.state = "agreed".into();
        row.updated_ms = now_ms;
        tx.market().update_offer(&row)?;
        fx.market.contracts += 1;
        tracing::info!(contract = id, offer, price = %price, "the platform buys an offer: contract awaits the seller");
        Ok(self.contract_with_execution(tx, &contract_row)?)
    }

    /// Fail active contracts whose seller's engine fell silent (past the silence the server
    /// allows engines), at the engine's last contact: they are then settled pro rata.
    pub(super) fn market_watch_sellers(&self, tx: &mut dyn Tx, now_ms: u64) -> Result<u32, StoreError> {
        let silent_before = now_ms.saturating_sub(self.config.provider_silence_ms_max);
        let mut failed = 0;
        let mut after = 0;
        loop {
            let active = tx.market().executions_in_state("active", after, 500)?;
            for exec_row in &active {
                after = exec_row.contract;
                let Some(row) = tx.market().contract(exec_row.contract)? else { continue };
                let Some(engine) = tx.provider(&row.seller)? else { continue };
                if engine.last_contact_ms >= silent_before || engine.last_contact_ms == 0 {
                    continue;
                }
                let at_ms = engine.last_contact_ms;
                let reason = "the seller's engine fell silent".to_string();
                if self.market_fail_silently(tx, &row, at_ms, reason, now_ms)? {
                    failed += 1;
                }
            }
            if active.len() < 500 {
                return Ok(failed);
            }
        }
    }
}
