//! Offers and requests (D4, X6). An **offer** lists part of a peer's entry on the market, with
//! its value, an asking price, and a requirement (and rank) over whoever asks for it; a
//! **request** asks for a category with ranges, the value the requester gives in exchange, and
//! its own requirement and rank over offers. A match needs both requirements to hold
//! (two-sided, as ClassAds' matchmaking).
//!
//! `plan_offer` refuses a listing that would offer more than the entry's offerable part minus
//! what is already listed: the private share is never offered (D1).

use idlegrid_ledger::Micros;
use idlegrid_types::PartyId;
use serde::{Deserialize, Serialize};

use crate::expr::{AttributeMap, Attributes, Expr, Value};
use crate::registration::Entry;
use crate::resource::Resource;
use crate::schema::Category;
use crate::valuation::{Method, ValuationConfig, ValuationError, valuate};

/// An offer's identity, given by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OfferId(pub u64);

impl std::fmt::Display for OfferId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A listing as the owner asks for it: how much of an entry, at what price, on what terms.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listing {
    /// How much to offer, in the unit of the category's quantity; `None`: all that is left.
    #[serde(default)]
    pub quantity: Option<f64>,
    /// The asking price; `None`: the valuation.
    #[serde(default)]
    pub price: Option<Micros>,
    /// What a requester must satisfy (`other.` is the requester).
    #[serde(default)]
    pub requirements: Option<Expr>,
    /// The owner's preference among requesters (higher first).
    #[serde(default)]
    pub rank: Option<Expr>,
    /// When the offer leaves the market (ms since the epoch); `None`: until withdrawn.
    #[serde(default)]
    pub expires_ms: Option<u64>,
}

/// An offer on the market: what the search index holds and what is stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    pub id: OfferId,
    pub owner: PartyId,
    /// The listed part of the owner's resource.
    pub resource: Resource,
    /// Its valuation (for a file: the asking price; see `method`).
    pub value: Micros,
    pub method: Method,
    /// The asking price.
    pub price: Micros,
    pub requirements: Option<Expr>,
    pub rank: Option<Expr>,
    /// The owner's demographics, which requests' requirements may read.
    pub owner_attributes: AttributeMap,
    pub expires_ms: Option<u64>,
}

/// Why a listing is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ListingError {
    #[error("quantity is {0}: it must be a positive, finite number")]
    InvalidQuantity(String),
    #[error(
        "quantity {requested} {unit} is more than is offerable: {offerable} {unit} after the private share, of which {listed} {unit} are already listed"
    )]
    ExceedsOfferable { requested: f64, offerable: f64, listed: f64, unit: &'static str },
    #[error("nothing of this resource is offerable: it is all private or already listed")]
    NothingOfferable,
    #[error("price must not be negative")]
    NegativePrice,
    #[error("expires_ms is in the past")]
    Expired,
    #[error("{0}")]
    Valuation(#[from] ValuationError),
}

impl ListingError {
    pub fn field(&self) -> &'static str {
        match self {
            ListingError::InvalidQuantity(_)
            | ListingError::ExceedsOfferable { .. }
            | ListingError::NothingOfferable => "quantity",
            ListingError::NegativePrice => "price",
            ListingError::Expired => "expires_ms",
            ListingError::Valuation(_) => "quantity",
        }
    }
}

/// Plan an offer of part of `entry`. `listed` is the quantity of this entry already on offer
/// (the store sums its live offers). The offer's resource is the entry's offerable resource
/// scaled to the quantity; its value is recomputed for that part.
pub fn plan_offer(
    id: OfferId,
    entry: &Entry,
    listed: f64,
    listing: &Listing,
    owner_attributes: &AttributeMap,
    config: &ValuationConfig,
    now_ms: u64,
) -> Result<Offer, ListingError> {
    let offerable = entry.offerable_quantity();
    let listed = if listed.is_finite() { listed.max(0.0) } else { offerable };
    let left = offerable - listed;
    // A hair of tolerance so that offering "all that is left" after floating-point sums works.
    let tolerance = offerable * 1e-9;
    if left <= tolerance {
        return Err(ListingError::NothingOfferable);
    }
    let quantity = listing.quantity.unwrap_or(left);
    if !quantity.is_finite() || quantity <= 0.0 {
        return Err(ListingError::InvalidQuantity(quantity.to_string()));
    }
    if quantity > left + tolerance {
        let unit = entry.offerable.quantity_unit();
        return Err(ListingError::ExceedsOfferable { requested: quantity, offerable, listed, unit });
    }
    if listing.price.is_some_and(Micros::is_negative) {
        return Err(ListingError::NegativePrice);
    }
    if listing.expires_ms.is_some_and(|expires| expires <= now_ms) {
        return Err(ListingError::Expired);
    }
    let resource = entry.offerable.scaled((quantity / offerable).min(1.0));
    let valuation = valuate(&resource, config)?;
    Ok(Offer {
        id,
        owner: entry.owner.clone(),
        value: valuation.credits,
        method: valuation.method,
        price: listing.price.unwrap_or(valuation.credits),
        resource,
        requirements: listing.requirements.clone(),
        rank: listing.rank.clone(),
        owner_attributes: owner_attributes.clone(),
        expires_ms: listing.expires_ms,
    })
}

impl Offer {
    pub fn category(&self) -> Category {
        self.resource.category()
    }
}

/// An offer as requests' requirements see it: the resource's attributes, `price` and `value`
/// (credits), `owner` (party ID), `offer` (its ID), then the owner's demographics.
impl Attributes for Offer {
    fn attribute(&self, name: &str) -> Option<Value> {
        match name {
            "price" => Some(Value::Number(self.price.to_f64_units())),
            "value" => Some(Value::Number(self.value.to_f64_units())),
            "owner" => Some(Value::Text(self.owner.to_string())),
            "offer" => Some(Value::Number(self.id.0 as f64)),
            _ => self.resource.attribute(name).or_else(|| self.owner_attributes.attribute(name)),
        }
    }
}

/// Most results a page may hold.
pub const PAGE_LIMIT_MAX: usize = 100;
/// Furthest a page may start.
pub const PAGE_OFFSET_MAX: usize = 1000;

/// What a peer looks for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub requester: PartyId,
    pub category: Category,
    /// Smallest quantity wanted, in the category's quantity unit.
    #[serde(default)]
    pub quantity_min: Option<f64>,
    #[serde(default)]
    pub quantity_max: Option<f64>,
    /// The value the requester gives in exchange: offers closest to it come first (the seed's
    /// "closest matched pair", FIG.-9D). `None`: cheapest first.
    #[serde(default)]
    pub value_target: Option<Micros>,
    /// Highest asking price accepted.
    #[serde(default)]
    pub price_max: Option<Micros>,
    /// What an offer must satisfy (`other.` is the offer).
    #[serde(default)]
    pub requirements: Option<Expr>,
    /// Preference among offers (higher first); `None`: by value distance.
    #[serde(default)]
    pub rank: Option<Expr>,
    /// The requester as offers' requirements see it (`other.region`); `party` is added.
    #[serde(default)]
    pub attributes: AttributeMap,
    #[serde(default)]
    pub offset: usize,
    #[serde(default = "default_limit")]
    pub limit: usize,
}

fn default_limit() -> usize {
    20
}

/// Why a request cannot be searched.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    #[error("{field} is {value}: it must be a finite number, at least 0")]
    InvalidNumber { field: &'static str, value: String },
    #[error("quantity_min is more than quantity_max")]
    EmptyRange,
    #[error("{field} must not be negative")]
    NegativeAmount { field: &'static str },
    #[error("limit must be from 1 to {PAGE_LIMIT_MAX} and offset at most {PAGE_OFFSET_MAX}")]
    Page,
}

impl RequestError {
    pub fn field(&self) -> &'static str {
        match self {
            RequestError::InvalidNumber { field, .. } | RequestError::NegativeAmount { field } => field,
            RequestError::EmptyRange => "quantity_min",
            RequestError::Page => "limit",
        }
    }
}

impl Request {
    /// A request for `category` with no bounds, first page.
    pub fn new(requester: PartyId, category: Category) -> Request {
        Request {
            requester,
            category,
            quantity_min: None,
            quantity_max: None,
            value_target: None,
            price_max: None,
            requirements: None,
            rank: None,
            attributes: AttributeMap::new(),
            offset: 0,
            limit: default_limit(),
        }
    }

    pub fn validate(&self) -> Result<(), RequestError> {
        for (field, value) in [("quantity_min", self.quantity_min), ("quantity_max", self.quantity_max)] {
            if let Some(value) = value
                && (!value.is_finite() || value < 0.0)
            {
                return Err(RequestError::InvalidNumber { field, value: value.to_string() });
            }
        }
        if let (Some(min), Some(max)) = (self.quantity_min, self.quantity_max)
            && min > max
        {
            return Err(RequestError::EmptyRange);
        }
        if self.value_target.is_some_and(Micros::is_negative) {
            return Err(RequestError::NegativeAmount { field: "value_target" });
        }
        if self.price_max.is_some_and(Micros::is_negative) {
            return Err(RequestError::NegativeAmount { field: "price_max" });
        }
        if self.limit == 0 || self.limit > PAGE_LIMIT_MAX || self.offset > PAGE_OFFSET_MAX {
            return Err(RequestError::Page);
        }
        Ok(())
    }
}

/// A request as offers' requirements see it: its attributes, and `party` (the requester's ID),
/// `category`, `value_target` (credits).
impl Attributes for Request {
    fn attribute(&self, name: &str) -> Option<Value> {
        match name {
            "party" => Some(Value::Text(self.requester.to_string())),
            "category" => Some(Value::Text(self.category.name().to_string())),
            "value_target" => self.value_target.map(|v| Value::Number(v.to_f64_units())),
            _ => self.attributes.attribute(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registration::{Registration, register};
    use crate::resource::Measurements;
    use crate::resource::tests::examples;

    fn entry(index: usize, private_share: f64) -> Entry {
        let mut declaration = examples()[index].clone();
        declaration.private_share = private_share;
        let registration = Registration { resources: vec![declaration], ..Registration::default() };
        let peer = PartyId::from_public_key(&[2; 32]);
        register(&peer, &registration, &Measurements::new(), &ValuationConfig::default()).unwrap().entries.remove(0)
    }

    fn plan(entry: &Entry, listed: f64, listing: &Listing) -> Result<Offer, ListingError> {
        plan_offer(OfferId(1), entry, listed, listing, &AttributeMap::new(), &ValuationConfig::default(), 1000)
    }

    #[test]
    fn a_listing_offers_part_of_the_offerable_share_and_is_valued_for_it() {
        let memory = entry(1, 0.5);
        let offer = plan(&memory, 0.0, &Listing { quantity: Some(2048.0), ..Listing::default() }).unwrap();
        assert_eq!(offer.resource.quantity(), 2048.0);
        assert_eq!(offer.price, offer.value);
        let whole = plan(&memory, 0.0, &Listing::default()).unwrap();
        assert_eq!(whole.resource.quantity(), 4096.0, "by default, all of the offerable part");
        assert!(offer.value < whole.value);
        assert_eq!(offer.attribute("memory_mb"), Some(Value::Number(2048.0)));
        assert_eq!(offer.attribute("category"), Some("memory".into()));
    }

    #[test]
    fn a_listing_beyond_the_offerable_share_is_refused() {
        let memory = entry(1, 0.5);
        let error = plan(&memory, 0.0, &Listing { quantity: Some(5000.0), ..Listing::default() }).unwrap_err();
        assert_eq!(
            error,
            ListingError::ExceedsOfferable { requested: 5000.0, offerable: 4096.0, listed: 0.0, unit: "MB" }
        );
        assert_eq!(error.field(), "quantity");
        let error = plan(&memory, 3000.0, &Listing { quantity: Some(2000.0), ..Listing::default() }).unwrap_err();
        assert!(matches!(error, ListingError::ExceedsOfferable { .. }));
        assert_eq!(plan(&memory, 4096.0, &Listing::default()).unwrap_err(), ListingError::NothingOfferable);
        let private = entry(1, 1.0);
        assert_eq!(plan(&private, 0.0, &Listing::default()).unwrap_err(), ListingError::NothingOfferable);
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let error = plan(&memory, 0.0, &Listing { quantity: Some(bad), ..Listing::default() }).unwrap_err();
            assert!(matches!(error, ListingError::InvalidQuantity(_)), "{bad}");
        }
        let error = plan(&memory, 0.0, &Listing { price: Some(Micros::new(-1)), ..Listing::default() }).unwrap_err();
        assert_eq!(error.field(), "price");
        let error = plan(&memory, 0.0, &Listing { expires_ms: Some(10), ..Listing::default() }).unwrap_err();
        assert_eq!(error, ListingError::Expired);
    }

    #[test]
    fn requests_are_validated_and_seen_by_offers() {
        let requester = PartyId::from_public_key(&[3; 32]);
        let mut request = Request::new(requester.clone(), Category::Memory);
        request.validate().unwrap();
        assert_eq!(request.attribute("party"), Some(Value::Text(requester.to_string())));
        request.quantity_min = Some(f64::NAN);
        assert_eq!(request.validate().unwrap_err().field(), "quantity_min");
        request.quantity_min = Some(10.0);
        request.quantity_max = Some(5.0);
        assert_eq!(request.validate().unwrap_err(), RequestError::EmptyRange);
        request.quantity_max = None;
        request.limit = 0;
        assert_eq!(request.validate().unwrap_err().field(), "limit");
        request.limit = 10;
        request.price_max = Some(Micros::new(-5));
        assert_eq!(request.validate().unwrap_err().field(), "price_max");
        let json = r#"{"requester":"00000000000000000000000000000000","category":"memory","requirements":"other.memory_mb >="}"#;
        assert!(serde_json::from_str::<Request>(json).unwrap_err().to_string().contains("column"));
    }
}
