//! The market's tables behind one accessor, `Tx::market()`: offers (and the resource each was
//! registered from), requests, negotiations with their rounds, and contracts with both
//! signatures. Each row keeps the columns the queries select on beside its document (`body`,
//! JSON written by the coordinator from the market's pure core), so the store needs no market
//! types and both backends store the same thing.

use idlegrid_types::PartyId;

use crate::StoreResult;

/// Which table a fresh id is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarketTable {
    Offers,
    Requests,
    Negotiations,
    Contracts,
}

impl MarketTable {
    pub fn name(self) -> &'static str {
        match self {
            MarketTable::Offers => "market_offers",
            MarketTable::Requests => "market_requests",
            MarketTable::Negotiations => "market_negotiations",
            MarketTable::Contracts => "market_contracts",
        }
    }
}

/// An offer: what its owner lists, valued, with which figures were measured and which declared.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferRow {
    pub id: u64,
    pub owner: PartyId,
    /// The category's name (`computing`, `memory`, ...).
    pub category: String,
    /// `open`, `withdrawn`, `agreed` (a negotiation reached a price) or `contracted`.
    pub state: String,
    /// The quantity offered, in the category's unit.
    pub quantity: f64,
    pub value_micros: i64,
    pub price_micros: i64,
    /// The part of the resource its owner keeps (never offered), 0 to 1.
    pub private_share: f64,
    /// Attributes whose figure the server measured, and those only declared.
    pub measured: Vec<String>,
    pub declared: Vec<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// Position in the order of changes, set by the store at every write (search indexes
    /// follow the table by it); ignored when writing.
    pub seq: u64,
    pub body: String,
}

/// A request: what a party asks for, kept to search again.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRow {
    pub id: u64,
    pub requester: PartyId,
    pub category: String,
    /// `open` or `withdrawn`.
    pub state: String,
    pub created_ms: u64,
    pub body: String,
}

/// A negotiation over one offer.
#[derive(Debug, Clone, PartialEq)]
pub struct NegotiationRow {
    pub id: u64,
    pub offer: u64,
    pub seller: PartyId,
    pub buyer: PartyId,
    /// `open`, `agreed` or `failed`.
    pub state: String,
    /// Proposals made so far.
    pub rounds: u32,
    /// The party whose answer it waits for (a person in the loop), while open.
    pub awaiting: Option<PartyId>,
    pub deadline_ms: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The contract an agreement became.
    pub contract: Option<u64>,
    pub body: String,
}

/// A contract: its terms (the document both parties sign) and the signatures so far.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractRow {
    pub id: u64,
    pub offer: Option<u64>,
    pub negotiation: Option<u64>,
    pub seller: PartyId,
    pub buyer: PartyId,
    /// `awaiting_signatures` or `signed`.
    pub state: String,
    pub price_micros: i64,
    pub commission_micros: i64,
    pub created_ms: u64,
    pub signed_ms: Option<u64>,
    pub terms: String,
    pub seller_signature: Option<String>,
    pub buyer_signature: Option<String>,
}

/// A signed contract's execution: where it stands and its document (what was metered, how it
/// ended, what the settlement paid), written by the coordinator from the market's core.
#[derive(Debug, Clone, PartialEq)]
pub struct ExecutionRow {
    pub contract: u64,
    /// `active`, `delivered`, `failed` or `settled`.
    pub state: String,
    /// When the contract's time is over.
    pub ends_ms: u64,
    pub updated_ms: u64,
    pub body: String,
}

/// The market's operations inside a transaction. Every `update_*` of a row never inserted
/// fails with `Conflict`, and so does an `insert_*` of an id in use.
pub trait MarketTx {
    /// One more than the largest id of the table (writers are serialised, so it is free).
    fn next_id(&mut self, table: MarketTable) -> StoreResult<u64>;

    /// Insert an offer; returns its `seq`.
    fn insert_offer(&mut self, offer: &OfferRow) -> StoreResult<u64>;
    /// Replace an offer (same id); returns its new `seq`.
    fn update_offer(&mut self, offer: &OfferRow) -> StoreResult<u64>;
    fn offer(&mut self, id: u64) -> StoreResult<Option<OfferRow>>;
    /// An owner's offers, in every state, by id.
    fn offers_of(&mut self, owner: &PartyId, limit: u32) -> StoreResult<Vec<OfferRow>>;
    /// How many open offers an owner has.
    fn open_offers_of(&mut self, owner: &PartyId) -> StoreResult<u64>;
    /// Offers written after `seq`, in the order they were written, at most `limit`.
    fn offers_changed_since(&mut self, seq: u64, limit: u32) -> StoreResult<Vec<OfferRow>>;

    fn insert_request(&mut self, request: &RequestRow) -> StoreResult<()>;
    fn update_request(&mut self, request: &RequestRow) -> StoreResult<()>;
    fn request(&mut self, id: u64) -> StoreResult<Option<RequestRow>>;
    /// A requester's requests, by id.
    fn requests_of(&mut self, requester: &PartyId, limit: u32) -> StoreResult<Vec<RequestRow>>;
    /// How many open requests a requester has.
    fn open_requests_of(&mut self, requester: &PartyId) -> StoreResult<u64>;

    fn insert_negotiation(&mut self, negotiation: &NegotiationRow) -> StoreResult<()>;
    fn update_negotiation(&mut self, negotiation: &NegotiationRow) -> StoreResult<()>;
    fn negotiation(&mut self, id: u64) -> StoreResult<Option<NegotiationRow>>;
    /// Negotiations where `party` is seller or buyer, by id.
    fn negotiations_of(&mut self, party: &PartyId, limit: u32) -> StoreResult<Vec<NegotiationRow>>;
    /// Open negotiations whose deadline is at or before `deadline_ms`, earliest first.
    fn open_negotiations_due(&mut self, deadline_ms: u64, limit: u32) -> StoreResult<Vec<NegotiationRow>>;

    fn insert_contract(&mut self, contract: &ContractRow) -> StoreResult<()>;
    fn update_contract(&mut self, contract: &ContractRow) -> StoreResult<()>;
    fn contract(&mut self, id: u64) -> StoreResult<Option<ContractRow>>;
    /// Contracts where `party` is seller or buyer, by id.
    fn contracts_of(&mut self, party: &PartyId, limit: u32) -> StoreResult<Vec<ContractRow>>;

    /// Insert or replace a contract's execution.
    fn put_execution(&mut self, execution: &ExecutionRow) -> StoreResult<()>;
    fn execution(&mut self, contract: u64) -> StoreResult<Option<ExecutionRow>>;
    /// Executions that need the server: active ones whose time is over at `now_ms`, and
    /// delivered or failed ones not yet settled; by contract, at most `limit`.
    fn executions_due(&mut self, now_ms: u64, limit: u32) -> StoreResult<Vec<ExecutionRow>>;
    /// Executions in `state` of contracts after `after_contract`, by contract, at most `limit`.
    fn executions_in_state(&mut self, state: &str, after_contract: u64, limit: u32) -> StoreResult<Vec<ExecutionRow>>;
}

/// Attribute names as one column: comma-separated (names are identifiers, never commas).
pub(crate) fn join_names(names: &[String]) -> String {
    names.join(",")
}

pub(crate) fn split_names(text: &str) -> Vec<String> {
    if text.is_empty() { Vec::new() } else { text.split(',').map(str::to_string).collect() }
}

pub(crate) fn not_inserted(what: &str, id: u64) -> crate::StoreError {
    crate::StoreError::Conflict(format!("{what} {id} was never inserted"))
}

pub(crate) fn id_in_use(what: &str, id: u64) -> crate::StoreError {
    crate::StoreError::Conflict(format!("{what} {id} exists already"))
}
