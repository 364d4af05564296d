//! Bodies of the market's HTTP endpoints (`/v1/market/...`): offers and what the server made of
//! them, requests and their ranked candidates, negotiations and contracts. The resources,
//! requirement expressions, valuations, negotiation states and contract terms are the market's
//! own types (`idlegrid-market`), so a client computes the bytes it signs exactly as the server
//! verifies them. Amounts are micro-credits (`Micros`, an integer).

use idlegrid_ledger::Micros;
use idlegrid_market::contract::{Contract, SignedContract};
use idlegrid_market::execution::Execution;
use idlegrid_market::expr::AttributeMap;
use idlegrid_market::negotiation::{NegotiationView, Strategy};
use idlegrid_market::search::SearchPage;
use idlegrid_market::settlement::Transfer;
use idlegrid_market::{Expr, Listing, ResourceDeclaration, Valuation};
use idlegrid_types::PartyId;
use serde::{Deserialize, Serialize};

pub use idlegrid_market as core;

/// An offer to register, or to replace one of the caller's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferBody {
    /// The resource: its category, attributes, and the share kept private (never offered).
    pub resource: ResourceDeclaration,
    /// How much of the offerable part to list, at what price, for whom.
    #[serde(default)]
    pub listing: Listing,
    /// How the owner negotiates over this offer.
    #[serde(default)]
    pub negotiation: SellerTerms,
    /// The owner's attributes that requesters' requirements may test (region, ...).
    #[serde(default)]
    pub attributes: AttributeMap,
}

/// How a seller negotiates: automatically within a reservation price, or in person (each
/// proposal waits for the owner to accept, reject or counter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum SellerTerms {
    Automatic {
        /// The lowest price accepted; default: the asking price (firm).
        #[serde(default)]
        reservation: Option<Micros>,
        /// Default: linear concession.
        #[serde(default)]
        strategy: Option<Strategy>,
    },
    Person,
}

impl Default for SellerTerms {
    fn default() -> SellerTerms {
        SellerTerms::Automatic { reservation: None, strategy: None }
    }
}

/// An offer as the server registered it: quantified, valued, each figure marked measured or
/// declared. Reservation prices are never shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferInfo {
    pub id: u64,
    pub owner: PartyId,
    /// open, withdrawn, agreed (a negotiation reached a price) or contracted.
    pub state: String,
    pub category: String,
    /// The quantity offered, in `unit`.
    pub quantity: f64,
    pub unit: String,
    /// The share of the resource its owner keeps, never offered.
    pub private_share: f64,
    pub price: Micros,
    /// The valuation of what is offered: credits, method, and every figure with its provenance.
    pub valuation: Valuation,
    /// Attributes the server measured itself, and those only declared.
    pub measured: Vec<String>,
    pub declared: Vec<String>,
    /// automatic or person.
    pub negotiation: String,
    pub requirements: Option<Expr>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// When the offer leaves the market (ms since the epoch); `None`: until withdrawn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_ms: Option<u64>,
}

/// What a party asks for; searched at once, and kept when posted as a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestBody {
    /// computing, memory, storage, peripherals, files, internet_access or money (or I to VII).
    pub category: String,
    #[serde(default)]
    pub quantity_min: Option<f64>,
    #[serde(default)]
    pub quantity_max: Option<f64>,
    /// Candidates closest to this value come first.
    #[serde(default)]
    pub value_target: Option<Micros>,
    #[serde(default)]
    pub price_max: Option<Micros>,
    /// Over the offer's attributes (`other.memory_mb >= 1024 && other.price < 5`).
    #[serde(default)]
    pub requirements: Option<Expr>,
    /// Higher first.
    #[serde(default)]
    pub rank: Option<Expr>,
    /// The requester's attributes that offers' requirements may test.
    #[serde(default)]
    pub attributes: AttributeMap,
    #[serde(default)]
    pub offset: Option<usize>,
    #[serde(default)]
    pub limit: Option<usize>,
}

/// Ranked candidates, and the request's number when it was kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchReply {
    pub request: Option<u64>,
    pub page: SearchPage,
}

/// A request as kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestInfo {
    pub id: u64,
    pub state: String,
    pub created_ms: u64,
    pub request: RequestBody,
}

/// Open a negotiation over an offer, as its buyer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NegotiateBody {
    pub offer: u64,
    pub buyer: BuyerTerms,
    /// Most proposals (default 20).
    #[serde(default)]
    pub rounds_max: Option<u32>,
    /// Seconds until the negotiation closes as failed (default a day).
    #[serde(default)]
    pub deadline_secs: Option<u64>,
}

/// How the buyer negotiates: automatically from an opening to a reservation price, or in
/// person, opening with `price`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum BuyerTerms {
    Automatic {
        opening: Micros,
        reservation: Micros,
        #[serde(default)]
        strategy: Option<Strategy>,
    },
    Person {
        price: Micros,
    },
}

/// A negotiation as its parties see it (no reservation prices).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NegotiationInfo {
    #[serde(flatten)]
    pub view: NegotiationView,
    /// The party whose answer it waits for, while open.
    pub awaiting: Option<PartyId>,
    /// The contract an agreement became.
    pub contract: Option<u64>,
}

/// A counter-offer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterBody {
    pub price: Micros,
}

/// A contract: its terms (what is signed: `Contract::signing_bytes`) and the signatures so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContractInfo {
    pub id: u64,
    /// awaiting_signatures or signed.
    pub state: String,
    pub terms: Contract,
    pub seller_signature: Option<String>,
    pub buyer_signature: Option<String>,
    pub signed_ms: Option<u64>,
    /// How the signed contract is carried out (absent until it starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution: Option<ExecutionInfo>,
}

/// A contract's execution: its state (active, delivered, failed, settled), what was metered,
/// and the transfers made when it started (escrow) and when it was settled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutionInfo {
    pub execution: Execution,
    pub escrow: Vec<Transfer>,
    pub settlement: Vec<Transfer>,
    /// The sweepstakes draw that delivered it (money of kind sweepstakes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draw: Option<DrawInfo>,
    /// What was carried out of a storage, file or internet access contract.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<crate::market_data::DataExecution>,
}

/// A seller's sweepstakes draw: how many winners to draw among the entries of its contracts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrawBody {
    pub winners: u32,
    /// Credits the seller pays each winner (none when absent).
    #[serde(default)]
    pub prize: Micros,
}

/// A sweepstakes draw, reproducible by anyone: `settlement::draw(entries, winners.len(), seed)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrawInfo {
    pub seed: u64,
    /// Each buyer and its entries, one pair per contract.
    pub entries: Vec<(PartyId, u64)>,
    pub winners: Vec<PartyId>,
    pub contracts: Vec<u64>,
    pub drawn_ms: u64,
    /// Credits paid to each winner from the seller's account (a transfer per winner, its
    /// key derived from the draw's first contract, so it is paid once).
    #[serde(default)]
    pub prize: Micros,
}

/// A metering record the seller reports: units delivered over a span (see
/// `Execution::units_contracted` for the unit). Numbered from 1; sending the same record again
/// changes nothing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterBody {
    pub seq: u64,
    pub from_ms: u64,
    pub to_ms: u64,
    pub units: u64,
}

/// Why a party says the contract failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailBody {
    pub reason: String,
}

/// A contract both parties signed on their own (peer with peer, directly), registered for
/// execution without commission.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterBody {
    pub contract: SignedContract,
}

/// A party's Ed25519 signature (hex) of a contract's signing bytes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignBody {
    pub signature: String,
}

/// A contract a provider serves as seller, as its engine's status page shows it: sent to the
/// engine when its session starts and whenever one of its contracts starts, is metered or ends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServedContract {
    pub contract: u64,
    /// The category the seller gives (`computing`, `memory`, ...).
    pub category: String,
    pub buyer: PartyId,
    /// active, delivered, failed or settled.
    pub state: String,
    /// Units metered so far, of `contracted` (`unit`: ms of service or deliveries).
    pub metered: u64,
    pub contracted: u64,
    pub unit: String,
}

/// Most bytes of a peripheral use's input, and of its output (both travel inline).
pub const PERIPHERAL_BYTES_MAX: usize = 64 * 1024;

/// The buyer's use of a peripheral it bought: the input for the seller's handler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeripheralUseBody {
    #[serde(with = "crate::payload::base64_bytes")]
    pub input: Vec<u8>,
}

/// A peripheral use and what came of it: `waiting` (for the seller's engine), `done` (with the
/// handler's output) or `failed` (with the reason).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeripheralUseInfo {
    pub contract: u64,
    pub number: u64,
    pub kind: String,
    pub state: String,
    #[serde(default, with = "crate::payload::base64_bytes")]
    pub output: Vec<u8>,
    #[serde(default)]
    pub error: Option<String>,
}
