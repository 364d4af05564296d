//! The bartering market as a service (D1-D5, X6): the market's pure core (`idlegrid-market`)
//! carried out over the store, one transaction per request.
//!
//! - **Offers**: a peer's declaration is classified and valued by `register` (figures the
//!   server measured, the engine's benchmark and sampled bandwidth, beat declared ones; the
//!   coefficients are the server's `ValuationConfig`), then listed by `plan_offer`, which never
//!   lists the private share. The row keeps which figures were measured and which declared.
//! - **Search**: an in-memory `Index`, rebuilt from the store at start and brought up to date
//!   before each search from the offers written since (each write gives the offer a new `seq`),
//!   so several instances sharing one database see each other's offers. Only searches touch
//!   the index, and they write no offer, so a rolled-back transaction never leaves it ahead of
//!   the store.
//! - **Negotiations**: `Negotiation::start` and `step` decide; two automatic sides negotiate
//!   to the end in one request; a person's turn waits for `accept`, `reject` or `counter`.
//! - **Contracts**: an agreement becomes a contract with canonical signing bytes; each party
//!   signs with its registered key and the server checks each signature with the core. The
//!   offer leaves the market (agreed, then contracted) in the same transaction.
//! - **Notices**: a proposal waiting for a person, an agreement and a signed contract are sent
//!   to the parties' notice channels (webhook, e-mail), queued in the same transaction.

use std::sync::{Mutex, MutexGuard};

use idlegrid_ledger::Micros;
use idlegrid_market::contract::{
    BarterMode, CommissionPayer, Consideration, Contract, ContractId, ContractParty, PublicKey, SignedContract,
};
use idlegrid_market::negotiation::{
    Agent, Event, Negotiation, NegotiationError, NegotiationId, Negotiator, Role, Setup, Status, Strategy,
};
use idlegrid_market::registration::RegistrationError;
use idlegrid_market::resource::ResourceError;
use idlegrid_market::{
    Category, Index, Measurements, Offer, OfferId, Registration, Request, Resource, Valuation, ValuationConfig, Value,
    plan_offer, register, valuate,
};
use idlegrid_protocol::ErrorCode;
use idlegrid_protocol::market::{
    BuyerTerms, ContractInfo, NegotiateBody, NegotiationInfo, OfferBody, OfferInfo, RequestBody, RequestInfo,
    SearchReply, SellerTerms,
};
use idlegrid_store::{ContractRow, MarketTable, NegotiationRow, OfferRow, RequestRow, StoreError, Tx};
use idlegrid_types::{PartyId, Role as PartyRole};
use serde::{Deserialize, Serialize};

use crate::money::Notice;
use crate::{Coordinator, CoordinatorError, Effects, ErrorKind, Party};

#[path = "market_compute.rs"]
mod compute;
#[path = "market_data.rs"]
pub mod data;
#[path = "market_draw.rs"]
mod draws;
#[path = "market_execution.rs"]
mod execution;
#[path = "market_memory.rs"]
mod memory;
#[path = "market_peripherals.rs"]
mod peripherals;
#[path = "market_platform.rs"]
mod platform;
#[path = "market_served.rs"]
mod served;

/// Most rows one listing returns.
pub const LISTED_MAX: u32 = 1000;
/// Offers read from the store per step when the index catches up.
const SYNC_BATCH: u32 = 1000;

/// The market's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketConfig {
    /// Coefficients of every category's valuation.
    pub valuation: ValuationConfig,
    /// Share of the price the platform takes on a trade between peers through it (paid by
    /// the seller). Default 0.02.
    pub commission_rate: f64,
    /// Proposals a negotiation may have when its buyer does not say. Default 20.
    pub rounds_default: u32,
    /// How long a negotiation stays open when its buyer does not say. Default a day.
    pub deadline_default_ms: u64,
    /// Longest a negotiation may stay open. Default 30 days.
    pub deadline_max_ms: u64,
    /// How long a contract runs when the resource has no duration (files, money). Default a day.
    pub contract_duration_default_ms: u64,
    /// Open offers one party may have. Default 10,000.
    pub open_offers_per_party_max: u64,
    /// Open (kept) requests one party may have. Default 1,000.
    pub open_requests_per_party_max: u64,
    /// How storage, files and internet access contracts are carried out.
    pub data: data::DataConfig,
}

impl Default for MarketConfig {
    fn default() -> MarketConfig {
        MarketConfig {
            valuation: ValuationConfig::default(),
            commission_rate: 0.02,
            rounds_default: 20,
            deadline_default_ms: 24 * 3600 * 1000,
            deadline_max_ms: 30 * 24 * 3600 * 1000,
            contract_duration_default_ms: 24 * 3600 * 1000,
            open_offers_per_party_max: 10_000,
            open_requests_per_party_max: 1_000,
            data: data::DataConfig::default(),
        }
    }
}

/// How many market operations a transaction made (Prometheus counters, counted on commit).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MarketCounts {
    pub offers: u64,
    pub searches: u64,
    pub negotiations: u64,
    pub contracts: u64,
    pub contracts_signed: u64,
}

impl MarketCounts {
    pub fn merge(&mut self, other: MarketCounts) {
        self.offers += other.offers;
        self.searches += other.searches;
        self.negotiations += other.negotiations;
        self.contracts += other.contracts;
        self.contracts_signed += other.contracts_signed;
    }
}

/// The search index and how far into the offers' change order it has read.
#[derive(Default)]
pub(crate) struct MarketIndex {
    index: Index,
    seq: u64,
}

pub(crate) type SharedIndex = Mutex<MarketIndex>;

/// What the store keeps of an offer (the row's body).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct OfferRecord {
    /// The listed part, valued, with its requirements.
    offer: Offer,
    /// The whole resource as registered.
    resource: Resource,
    private_share: f64,
    /// The valuation of the listed part, figure by figure.
    valuation: Valuation,
    terms: SellerTerms,
}

fn corrupt(what: &str, error: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {error}"))
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("market documents serialize")
}

fn not_found(message: String) -> CoordinatorError {
    CoordinatorError::not_found(message)
}

fn registration_error(error: RegistrationError) -> CoordinatorError {
    CoordinatorError::bad_request(match error {
        RegistrationError::Resource { error: ResourceError::UnknownCategory(_), .. } => {
            format!("resource.category: {}", registration_inner(&error))
        }
        RegistrationError::Resource { .. } | RegistrationError::Valuation { .. } => {
            format!("resource: {}", registration_inner(&error))
        }
        RegistrationError::Demographic { name, reason } => format!("attributes.{name}: {reason}"),
        other => other.to_string(),
    })
}

fn registration_inner(error: &RegistrationError) -> String {
    match error {
        RegistrationError::Resource { error, .. } => error.to_string(),
        RegistrationError::Valuation { error, .. } => error.to_string(),
        other => other.to_string(),
    }
}

fn negotiation_error(error: NegotiationError) -> CoordinatorError {
    let message = error.to_string();
    match error {
        NegotiationError::NegativePrice | NegotiationError::InvalidSetup(_) => CoordinatorError::bad_request(message),
        NegotiationError::NotAParty(_) => CoordinatorError::forbidden(message),
        NegotiationError::Closed(_)
        | NegotiationError::Expired
        | NegotiationError::NotYourTurn(_)
        | NegotiationError::Automatic(_)
        | NegotiationError::NothingToAccept
        | NegotiationError::NoRoundsLeft => CoordinatorError::conflict(message),
    }
}

fn category(name: &str) -> Result<Category, CoordinatorError> {
    Category::from_name(name.trim()).ok_or_else(|| {
        CoordinatorError::bad_request(format!(
            "category: {}",
            ResourceError::UnknownCategory(idlegrid_types::Untrusted(name).to_string().chars().take(40).collect())
        ))
    })
}

fn figure_names(resource: &Resource, measured: bool) -> Vec<String> {
    resource
        .figures()
        .filter(|(_, _, figure)| (figure.provenance == idlegrid_market::Provenance::Measured) == measured)
        .map(|(name, _, _)| name.to_string())
        .collect()
}

fn offer_info(row: &OfferRow, record: &OfferRecord) -> OfferInfo {
    OfferInfo {
        id: row.id,
        owner: row.owner.clone(),
        state: row.state.clone(),
        category: row.category.clone(),
        quantity: row.quantity,
        unit: record.offer.resource.quantity_unit().to_string(),
        private_share: row.private_share,
        price: record.offer.price,
        valuation: record.valuation.clone(),
        measured: row.measured.clone(),
        declared: row.declared.clone(),
        negotiation: match record.terms {
            SellerTerms::Automatic { .. } => "automatic".into(),
            SellerTerms::Person => "person".into(),
        },
        requirements: record.offer.requirements.clone(),
        created_ms: row.created_ms,
        updated_ms: row.updated_ms,
        expires_ms: record.offer.expires_ms,
    }
}

fn offer_record(row: &OfferRow) -> Result<OfferRecord, StoreError> {
    serde_json::from_str(&row.body).map_err(|e| corrupt(&format!("offer {}", row.id), e))
}

fn negotiation_of(row: &NegotiationRow) -> Result<Negotiation, StoreError> {
    serde_json::from_str(&row.body).map_err(|e| corrupt(&format!("negotiation {}", row.id), e))
}

fn negotiation_info(row: &NegotiationRow, negotiation: &Negotiation) -> NegotiationInfo {
    NegotiationInfo { view: negotiation.view(), awaiting: row.awaiting.clone(), contract: row.contract }
}

fn contract_info(row: &ContractRow) -> Result<ContractInfo, StoreError> {
    Ok(ContractInfo {
        id: row.id,
        state: row.state.clone(),
        terms: serde_json::from_str(&row.terms).map_err(|e| corrupt(&format!("contract {}", row.id), e))?,
        seller_signature: row.seller_signature.clone(),
        buyer_signature: row.buyer_signature.clone(),
        signed_ms: row.signed_ms,
        execution: None,
    })
}

/// The person whose move an open negotiation waits for, if that side is a person.
fn awaiting(negotiation: &Negotiation) -> Option<PartyId> {
    if negotiation.is_closed() {
        return None;
    }
    let role = negotiation.turn();
    let negotiator = match role {
        Role::Seller => &negotiation.setup.seller_negotiator,
        Role::Buyer => &negotiation.setup.buyer_negotiator,
    };
    matches!(negotiator, Negotiator::Person).then(|| negotiation.party(role).clone())
}

fn state_name(status: &Status) -> &'static str {
    match status {
        Status::Open => "open",
        Status::Agreed { .. } => "agreed",
        Status::Failed { .. } => "failed",
    }
}

/// A notice about the market (sent only to parties that chose notice channels).
fn market_notice(kind: &str, what: String, now_ms: u64) -> Notice {
    Notice {
        kind: kind.to_string(),
        job: None,
        name: what,
        succeeded: 0,
        failed: 0,
        reason: None,
        at_ms: now_ms,
        webhook_url: None,
        webhook_secret: None,
        email: None,
    }
}

/// What a party asks a negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Accept,
    Reject,
    Counter(Micros),
}

impl Coordinator {
    pub(crate) fn market_index(&self) -> MutexGuard<'_, MarketIndex> {
        self.market_index.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Bring the search index up to date with the offers written since it last looked.
    pub(crate) fn sync_market_index(&self, tx: &mut dyn Tx) -> Result<MutexGuard<'_, MarketIndex>, StoreError> {
        let mut state = self.market_index();
        loop {
            let rows = tx.market().offers_changed_since(state.seq, SYNC_BATCH)?;
            for row in &rows {
                state.seq = row.seq;
                if row.state == "open" {
                    let record = offer_record(row)?;
                    state.index.insert(record.offer);
                } else {
                    state.index.remove(OfferId(row.id));
                }
            }
            if rows.len() < SYNC_BATCH as usize {
                return Ok(state);
            }
        }
    }

    /// Offers in the search index (for tests and health).
    pub fn market_offers_indexed(&self) -> usize {
        self.market_index().index.len()
    }

    /// Figures the server measured itself for what `party` declares: an engine's benchmarked
    /// speed (per slot, times the cores offered) and its sampled bandwidth.
    fn market_measurements(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        body: &OfferBody,
    ) -> Result<Measurements, StoreError> {
        let mut measured = Measurements::new();
        if party.role != PartyRole::Provider {
            return Ok(measured);
        }
        let Some(profile) = self.provider_profile(tx, &party.id)? else { return Ok(measured) };
        match Category::from_name(body.resource.category.trim()) {
            Some(Category::Computing) => {
                if let Some(gflops) = profile.measured_gflops() {
                    let cores = match body.resource.attributes.get("cores") {
                        Some(Value::Number(cores)) if cores.is_finite() && *cores >= 1.0 => *cores,
                        _ => f64::from(profile.cores.unwrap_or(1).max(1)),
                    };
                    measured = measured.with(Category::Computing, "mflops", gflops * 1000.0 * cores);
                }
            }
            Some(Category::InternetAccess) => {
                if let Some(mb_per_s) = profile.measured_bandwidth() {
                    measured = measured.with(Category::InternetAccess, "speed_mbit_s", mb_per_s * 8.0);
                }
            }
            _ => {}
        }
        Ok(measured)
    }

    /// Register an offer, or with `replace` update one of the caller's open offers: classify
    /// and value the resource, list the offerable part, answer with the valuation.
    pub fn market_offer(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        body: &OfferBody,
        replace: Option<u64>,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<OfferInfo, CoordinatorError> {
        let config = &self.config.market;
        let previous = match replace {
            Some(id) => {
                let row = self.own_offer(tx, party, id)?;
                if row.state != "open" {
                    return Err(CoordinatorError::conflict(format!(
                        "offer {id} is {}: only an open offer can be updated",
                        row.state
                    )));
                }
                // A negotiation under way goes on about the terms it started with.
                let negotiating = tx.market().negotiations_of(&party.id, LISTED_MAX)?;
                if negotiating.iter().any(|n| n.offer == id && n.state == "open") {
                    return Err(CoordinatorError::conflict(format!(
                        "offer {id} is being negotiated: wait until its negotiations end, or withdraw it and offer anew"
                    )));
                }
                Some(row)
            }
            None => None,
        };
        let measured = self.market_measurements(tx, party, body)?;
        let registration =
            Registration { demographics: body.attributes.clone(), resources: vec![body.resource.clone()] };
        let mut report =
            register(&party.id, &registration, &measured, &config.valuation).map_err(registration_error)?;
        let entry = report.entries.remove(0);
        if entry.private_share >= 1.0 {
            return Err(CoordinatorError::bad_request(
                "resource.private_share is 1: the whole resource is kept private, and a private share is never offered; lower private_share to offer part of it",
            ));
        }
        let id = match &previous {
            Some(row) => row.id,
            None => {
                let open = tx.market().open_offers_of(&party.id)?;
                if open >= config.open_offers_per_party_max {
                    return Err(CoordinatorError::new(
                        ErrorKind::Conflict,
                        ErrorCode::LimitExceeded,
                        format!(
                            "you have {open} open offers, the most allowed: withdraw some (idlegrid market withdraw N) before offering more"
                        ),
                    ));
                }
                tx.market().next_id(MarketTable::Offers)?
            }
        };
        let offer = plan_offer(OfferId(id), &entry, 0.0, &body.listing, &body.attributes, &config.valuation, now_ms)
            .map_err(|e| CoordinatorError::bad_request(format!("listing.{}: {e}", e.field())))?;
        if let SellerTerms::Automatic { reservation, strategy } = &body.negotiation {
            let agent = Agent {
                opening: offer.price,
                reservation: reservation.unwrap_or(offer.price),
                strategy: strategy.unwrap_or(Strategy::LINEAR),
            };
            if !agent.is_valid(Role::Seller) {
                return Err(CoordinatorError::bad_request(format!(
                    "negotiation: the reservation must be from 0 to the asking price ({}), and the strategy's parameter in bounds",
                    offer.price
                )));
            }
        }
        let valuation =
            valuate(&offer.resource, &config.valuation).map_err(|e| CoordinatorError::bad_request(e.to_string()))?;
        let record = OfferRecord {
            resource: entry.resource.clone(),
            private_share: entry.private_share,
            valuation,
            terms: body.negotiation.clone(),
            offer,
        };
        let row = OfferRow {
            id,
            owner: party.id.clone(),
            category: record.offer.category().name().to_string(),
            state: "open".into(),
            quantity: record.offer.resource.quantity(),
            value_micros: record.offer.value.as_i64(),
            price_micros: record.offer.price.as_i64(),
            private_share: record.private_share,
            measured: figure_names(&record.offer.resource, true),
            declared: figure_names(&record.offer.resource, false),
            created_ms: previous.as_ref().map_or(now_ms, |row| row.created_ms),
            updated_ms: now_ms,
            seq: 0,
            body: to_json(&record),
        };
        match previous {
            Some(_) => tx.market().update_offer(&row)?,
            None => tx.market().insert_offer(&row)?,
        };
        fx.market.offers += 1;
        tracing::info!(offer = id, owner = %party.id, category = %row.category, value = %record.offer.value, "market offer registered");
        Ok(offer_info(&row, &record))
    }

    fn own_offer(&self, tx: &mut dyn Tx, party: &Party, id: u64) -> Result<OfferRow, CoordinatorError> {
        match tx.market().offer(id)? {
            Some(row) if row.owner == party.id => Ok(row),
            _ => Err(not_found(format!("you have no offer {id}"))),
        }
    }

    /// Take an open offer off the market.
    pub fn market_withdraw(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: u64,
        now_ms: u64,
    ) -> Result<OfferInfo, CoordinatorError> {
        let mut row = self.own_offer(tx, party, id)?;
        if row.state != "open" {
            return Err(CoordinatorError::conflict(format!(
                "offer {id} is {}: only an open offer can be withdrawn",
                row.state
            )));
        }
        row.state = "withdrawn".into();
        row.updated_ms = now_ms;
        tx.market().update_offer(&row)?;
        Ok(offer_info(&row, &offer_record(&row)?))
    }

    /// The caller's offers, every state, by number.
    pub fn market_offers_of(&self, tx: &mut dyn Tx, party: &Party) -> Result<Vec<OfferInfo>, CoordinatorError> {
        let rows = tx.market().offers_of(&party.id, LISTED_MAX)?;
        rows.iter().map(|row| Ok(offer_info(row, &offer_record(row)?))).collect()
    }

    fn market_request(&self, party: &Party, body: &RequestBody) -> Result<Request, CoordinatorError> {
        let mut request = Request::new(party.id.clone(), category(&body.category)?);
        request.quantity_min = body.quantity_min;
        request.quantity_max = body.quantity_max;
        request.value_target = body.value_target;
        request.price_max = body.price_max;
        request.requirements = body.requirements.clone();
        request.rank = body.rank.clone();
        request.attributes = body.attributes.clone();
        request.offset = body.offset.unwrap_or(0);
        request.limit = body.limit.unwrap_or(request.limit);
        request.validate().map_err(|e| CoordinatorError::bad_request(e.to_string()))?;
        Ok(request)
    }

    /// Ranked candidates for what the caller asks; with `keep`, the request is stored to be
    /// searched again.
    pub fn market_search(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        body: &RequestBody,
        keep: bool,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<SearchReply, CoordinatorError> {
        let request = self.market_request(party, body)?;
        let kept = if keep {
            let open = tx.market().open_requests_of(&party.id)?;
            if open >= self.config.market.open_requests_per_party_max {
                return Err(CoordinatorError::new(
                    ErrorKind::Conflict,
                    ErrorCode::LimitExceeded,
                    format!(
                        "you have {open} open requests, the most allowed: withdraw some (idlegrid market withdraw-request N) before asking for more"
                    ),
                ));
            }
            let id = tx.market().next_id(MarketTable::Requests)?;
            tx.market().insert_request(&RequestRow {
                id,
                requester: party.id.clone(),
                category: request.category.name().to_string(),
                state: "open".into(),
                created_ms: now_ms,
                body: to_json(body),
            })?;
            Some(id)
        } else {
            None
        };
        let index = self.sync_market_index(tx)?;
        let page = index.index.search(&request, now_ms).map_err(|e| CoordinatorError::bad_request(e.to_string()))?;
        fx.market.searches += 1;
        Ok(SearchReply { request: kept, page })
    }

    /// Search again for one of the caller's kept requests.
    pub fn market_search_again(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: u64,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<SearchReply, CoordinatorError> {
        let row = match tx.market().request(id)? {
            Some(row) if row.requester == party.id => row,
            _ => return Err(not_found(format!("you have no request {id}"))),
        };
        if row.state != "open" {
            return Err(CoordinatorError::conflict(format!(
                "request {id} is {}: only an open request is searched again",
                row.state
            )));
        }
        let body: RequestBody = serde_json::from_str(&row.body).map_err(|e| corrupt(&format!("request {id}"), e))?;
        let mut reply = self.market_search(tx, party, &body, false, now_ms, fx)?;
        reply.request = Some(id);
        Ok(reply)
    }

    /// Take one of the caller's kept requests off the market: it is no longer searched again
    /// and no longer counts towards the party's bound.
    pub fn market_withdraw_request(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: u64,
    ) -> Result<RequestInfo, CoordinatorError> {
        let mut row = match tx.market().request(id)? {
            Some(row) if row.requester == party.id => row,
            _ => return Err(not_found(format!("you have no request {id}"))),
        };
        if row.state != "open" {
            return Err(CoordinatorError::conflict(format!(
                "request {id} is {}: only an open request can be withdrawn",
                row.state
            )));
        }
        row.state = "withdrawn".into();
        tx.market().update_request(&row)?;
        let request = serde_json::from_str(&row.body).map_err(|e| corrupt(&format!("request {id}"), e))?;
        Ok(RequestInfo { id: row.id, state: row.state, created_ms: row.created_ms, request })
    }

    /// The caller's kept requests.
    pub fn market_requests_of(&self, tx: &mut dyn Tx, party: &Party) -> Result<Vec<RequestInfo>, CoordinatorError> {
        let rows = tx.market().requests_of(&party.id, LISTED_MAX)?;
        rows.iter()
            .map(|row| {
                let request =
                    serde_json::from_str(&row.body).map_err(|e| corrupt(&format!("request {}", row.id), e))?;
                Ok(RequestInfo { id: row.id, state: row.state.clone(), created_ms: row.created_ms, request })
            })
            .collect()
    }

    /// Open a negotiation over an offer as its buyer. Two automatic sides negotiate to the end
    /// here; a person's turn waits for them.
    pub fn market_negotiate(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        body: &NegotiateBody,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<NegotiationInfo, CoordinatorError> {
        let config = &self.config.market;
        let Some(offer_row) = tx.market().offer(body.offer)? else {
            return Err(not_found(format!("there is no offer {}", body.offer)));
        };
        if offer_row.state != "open" {
            return Err(CoordinatorError::conflict(format!(
                "offer {} is {}: it is no longer negotiable",
                offer_row.id, offer_row.state
            )));
        }
        if offer_row.owner == party.id {
            return Err(CoordinatorError::bad_request("you cannot negotiate over your own offer"));
        }
        let record = offer_record(&offer_row)?;
        if record.offer.expires_ms.is_some_and(|expires| expires <= now_ms) {
            return Err(CoordinatorError::conflict(format!("offer {} has expired", offer_row.id)));
        }
        let rounds_max = body.rounds_max.unwrap_or(config.rounds_default);
        let deadline_ms = match body.deadline_secs {
            Some(secs) => {
                let ms = secs.saturating_mul(1000);
                if ms == 0 || ms > config.deadline_max_ms {
                    return Err(CoordinatorError::bad_request(format!(
                        "deadline_secs must be from 1 to {}",
                        config.deadline_max_ms / 1000
                    )));
                }
                now_ms + ms
            }
            None => now_ms + config.deadline_default_ms,
        };
        let seller_negotiator = match &record.terms {
            SellerTerms::Automatic { reservation, strategy } => Negotiator::Automatic(Agent {
                opening: record.offer.price,
                reservation: reservation.unwrap_or(record.offer.price),
                strategy: strategy.unwrap_or(Strategy::LINEAR),
            }),
            SellerTerms::Person => Negotiator::Person,
        };
        let (buyer_negotiator, first) = match &body.buyer {
            BuyerTerms::Automatic { opening, reservation, strategy } => (
                Negotiator::Automatic(Agent {
                    opening: *opening,
                    reservation: *reservation,
                    strategy: strategy.unwrap_or(Strategy::LINEAR),
                }),
                None,
            ),
            BuyerTerms::Person { price } => (Negotiator::Person, Some(*price)),
        };
        let id = tx.market().next_id(MarketTable::Negotiations)?;
        let setup = Setup {
            id: NegotiationId(id),
            offer: OfferId(offer_row.id),
            seller: offer_row.owner.clone(),
            buyer: party.id.clone(),
            seller_negotiator,
            buyer_negotiator,
            opener: Role::Buyer,
            rounds_max,
            deadline_ms,
        };
        let (mut negotiation, _) = Negotiation::start(setup, now_ms).map_err(negotiation_error)?;
        if let Some(price) = first {
            let event = Event::Counter { by: party.id.clone(), price };
            negotiation = negotiation.step(&event, now_ms).map_err(negotiation_error)?.0;
        }
        let mut row = NegotiationRow {
            id,
            offer: offer_row.id,
            seller: offer_row.owner.clone(),
            buyer: party.id.clone(),
            state: String::new(),
            rounds: 0,
            awaiting: None,
            deadline_ms,
            created_ms: now_ms,
            updated_ms: now_ms,
            contract: None,
            body: String::new(),
        };
        self.settle_step(tx, &mut row, &negotiation, now_ms, fx)?;
        tx.market().insert_negotiation(&row)?;
        fx.market.negotiations += 1;
        tracing::info!(negotiation = id, offer = offer_row.id, state = %row.state, rounds = row.rounds, "market negotiation opened");
        Ok(negotiation_info(&row, &negotiation))
    }

    /// Fill the row from the negotiation's new state; an agreement becomes a contract and takes
    /// the offer off the market.
    fn settle_step(
        &self,
        tx: &mut dyn Tx,
        row: &mut NegotiationRow,
        negotiation: &Negotiation,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<(), CoordinatorError> {
        row.state = state_name(&negotiation.status).to_string();
        row.rounds = negotiation.proposals.len() as u32;
        row.awaiting = awaiting(negotiation);
        row.updated_ms = now_ms;
        row.body = to_json(negotiation);
        if let Some(party) = &row.awaiting {
            let last = negotiation.proposals.last().map_or(String::new(), |p| format!(" (last proposal {})", p.price));
            let what = format!("negotiation {} over offer {} waits for your answer{last}", row.id, row.offer);
            self.send_notice(tx, party, market_notice("market_awaiting", what, now_ms), now_ms)?;
        }
        if let Status::Agreed { price, .. } = negotiation.status {
            let contract = self.make_contract(tx, negotiation, price, now_ms, fx)?;
            row.contract = Some(contract);
            let what = format!("negotiation {} agreed at {price}: sign contract {contract}", row.id);
            for party in [&row.seller, &row.buyer] {
                self.send_notice(tx, party, market_notice("market_agreed", what.clone(), now_ms), now_ms)?;
            }
        }
        Ok(())
    }

    fn make_contract(
        &self,
        tx: &mut dyn Tx,
        negotiation: &Negotiation,
        price: Micros,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<u64, CoordinatorError> {
        let offer_id = negotiation.setup.offer.0;
        let Some(mut offer_row) = tx.market().offer(offer_id)? else {
            return Err(CoordinatorError::internal(format!("offer {offer_id} of a negotiation is missing")));
        };
        if offer_row.state != "open" {
            return Err(CoordinatorError::conflict(format!(
                "offer {offer_id} is {}: another negotiation reached it first",
                offer_row.state
            )));
        }
        let record = offer_record(&offer_row)?;
        let side =
            |tx: &mut dyn Tx, party: &PartyId, gives: Vec<Consideration>| -> Result<ContractParty, CoordinatorError> {
                let row =
                    tx.party(party)?.ok_or_else(|| CoordinatorError::internal(format!("party {party} is missing")))?;
                Ok(ContractParty { party: party.clone(), public_key: PublicKey(row.public_key), gives })
            };
        let seller = side(
            tx,
            &negotiation.setup.seller,
            vec![Consideration::Resource { resource: record.offer.resource.clone() }],
        )?;
        let buyer = side(tx, &negotiation.setup.buyer, Vec::new())?;
        let commission = Micros::new((price.as_i64() as f64 * self.config.market.commission_rate).round() as i64);
        let duration_ms = record
            .offer
            .resource
            .number("duration_s")
            .map_or(self.config.market.contract_duration_default_ms, |secs| (secs * 1000.0).round() as u64);
        let id = tx.market().next_id(MarketTable::Contracts)?;
        let contract = Contract {
            id: ContractId(id),
            mode: BarterMode::PeerWithPeerCoordinated,
            seller,
            buyer,
            price,
            commission,
            commission_payer: CommissionPayer::Seller,
            starts_ms: now_ms,
            duration_ms: duration_ms.max(1),
            offer: Some(OfferId(offer_id)),
            negotiation: Some(negotiation.setup.id),
            created_ms: now_ms,
        };
        contract
            .validate()
            .map_err(|e| CoordinatorError::internal(format!("the agreement makes no valid contract: {e}")))?;
        tx.market().insert_contract(&ContractRow {
            id,
            offer: Some(offer_id),
            negotiation: Some(negotiation.setup.id.0),
            seller: negotiation.setup.seller.clone(),
            buyer: negotiation.setup.buyer.clone(),
            state: "awaiting_signatures".into(),
            price_micros: price.as_i64(),
            commission_micros: commission.as_i64(),
            created_ms: now_ms,
            signed_ms: None,
            terms: to_json(&contract),
            seller_signature: None,
            buyer_signature: None,
        })?;
        offer_row.state = "agreed".into();
        offer_row.updated_ms = now_ms;
        tx.market().update_offer(&offer_row)?;
        fx.market.contracts += 1;
        tracing::info!(contract = id, offer = offer_id, price = %price, "market agreement: contract awaits signatures");
        Ok(id)
    }

    fn party_negotiation(&self, tx: &mut dyn Tx, party: &Party, id: u64) -> Result<NegotiationRow, CoordinatorError> {
        match tx.market().negotiation(id)? {
            Some(row) if row.seller == party.id || row.buyer == party.id => Ok(row),
            _ => Err(not_found(format!("you take part in no negotiation {id}"))),
        }
    }

    /// A person's answer to the last proposal: accept, reject or counter.
    pub fn market_answer(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: u64,
        answer: Answer,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<NegotiationInfo, CoordinatorError> {
        let mut row = self.party_negotiation(tx, party, id)?;
        let negotiation = negotiation_of(&row)?;
        let by = party.id.clone();
        let event = match answer {
            Answer::Accept => Event::Accept { by },
            Answer::Reject => Event::Reject { by },
            Answer::Counter(price) => Event::Counter { by, price },
        };
        let (next, _) = negotiation.step(&event, now_ms).map_err(negotiation_error)?;
        self.settle_step(tx, &mut row, &next, now_ms, fx)?;
        tx.market().update_negotiation(&row)?;
        tracing::info!(negotiation = id, state = %row.state, rounds = row.rounds, "market negotiation answered");
        Ok(negotiation_info(&row, &next))
    }

    pub fn market_negotiation(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: u64,
    ) -> Result<NegotiationInfo, CoordinatorError> {
        let row = self.party_negotiation(tx, party, id)?;
        Ok(negotiation_info(&row, &negotiation_of(&row)?))
    }

    pub fn market_negotiations_of(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
    ) -> Result<Vec<NegotiationInfo>, CoordinatorError> {
        let rows = tx.market().negotiations_of(&party.id, LISTED_MAX)?;
        rows.iter().map(|row| Ok(negotiation_info(row, &negotiation_of(row)?))).collect()
    }

    /// Close negotiations whose deadline passed and settle contracts due (maintenance); returns
    /// how many negotiations were closed.
    pub fn market_close_due(&self, tx: &mut dyn Tx, now_ms: u64) -> Result<u32, StoreError> {
        let mut closed = 0;
        for mut row in tx.market().open_negotiations_due(now_ms, 1000)? {
            let negotiation = negotiation_of(&row)?;
            let Ok((next, _)) = negotiation.step(&Event::Tick, now_ms) else { continue };
            row.state = state_name(&next.status).to_string();
            row.awaiting = awaiting(&next);
            row.updated_ms = now_ms;
            row.body = to_json(&next);
            tx.market().update_negotiation(&row)?;
            closed += 1;
        }
        self.market_watch_sellers(tx, now_ms)?;
        self.market_settle_due(tx, now_ms)?;
        Ok(closed)
    }

    fn party_contract(&self, tx: &mut dyn Tx, party: &Party, id: u64) -> Result<ContractRow, CoordinatorError> {
        match tx.market().contract(id)? {
            Some(row) if row.seller == party.id || row.buyer == party.id => Ok(row),
            _ => Err(not_found(format!("you are party to no contract {id}"))),
        }
    }

    /// A contract with its execution, if it started.
    fn contract_with_execution(&self, tx: &mut dyn Tx, row: &ContractRow) -> Result<ContractInfo, StoreError> {
        let mut info = contract_info(row)?;
        info.execution = self.execution_info(tx, row.id)?;
        Ok(info)
    }

    pub fn market_contract(&self, tx: &mut dyn Tx, party: &Party, id: u64) -> Result<ContractInfo, CoordinatorError> {
        let row = self.party_contract(tx, party, id)?;
        Ok(self.contract_with_execution(tx, &row)?)
    }

    pub fn market_contracts_of(&self, tx: &mut dyn Tx, party: &Party) -> Result<Vec<ContractInfo>, CoordinatorError> {
        let rows = tx.market().contracts_of(&party.id, LISTED_MAX)?;
        rows.iter().map(|row| Ok(self.contract_with_execution(tx, row)?)).collect()
    }

    /// A party signs a contract it is party to. The signature must verify against the key the
    /// contract names for the party (its registered key); with both signatures the contract is
    /// signed and its offer contracted, in this transaction. Signing again with the same
    /// signature changes nothing.
    pub fn market_sign(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        id: u64,
        signature: &str,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<ContractInfo, CoordinatorError> {
        let mut row = self.party_contract(tx, party, id)?;
        let info = contract_info(&row)?;
        let role = if row.seller == party.id { Role::Seller } else { Role::Buyer };
        let slot = match role {
            Role::Seller => &mut row.seller_signature,
            Role::Buyer => &mut row.buyer_signature,
        };
        if let Some(existing) = slot.as_deref() {
            if existing == signature {
                return Ok(self.contract_with_execution(tx, &row)?);
            }
            return Err(CoordinatorError::conflict(format!("you signed contract {id} already")));
        }
        info.terms
            .verify_signature(role, signature)
            .map_err(|e| CoordinatorError::bad_request(format!("signature: {e}")))?;
        *slot = Some(signature.to_string());
        if let (Some(seller_signature), Some(buyer_signature)) = (&row.seller_signature, &row.buyer_signature) {
            let signed = SignedContract {
                contract: info.terms.clone(),
                seller_signature: seller_signature.clone(),
                buyer_signature: buyer_signature.clone(),
            };
            signed.verify().map_err(|e| CoordinatorError::bad_request(format!("signature: {e}")))?;
            row.state = "signed".into();
            row.signed_ms = Some(now_ms);
            if let Some(offer_id) = row.offer
                && let Some(mut offer_row) = tx.market().offer(offer_id)?
            {
                offer_row.state = "contracted".into();
                offer_row.updated_ms = now_ms;
                tx.market().update_offer(&offer_row)?;
            }
            fx.market.contracts_signed += 1;
            let what = format!("contract {id} is signed by both parties");
            for party in [&row.seller, &row.buyer] {
                self.send_notice(tx, party, market_notice("market_signed", what.clone(), now_ms), now_ms)?;
            }
            tracing::info!(contract = id, "market contract signed by both parties");
        }
        tx.market().update_contract(&row)?;
        if row.state == "signed" {
            self.market_start(tx, &row, now_ms)?;
        }
        Ok(self.contract_with_execution(tx, &row)?)
    }
}
