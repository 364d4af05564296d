//! Peer registration and update (D1, D3; the seed's FIG.-9A and 9B): a peer sends its
//! identity, demographics and resources; the coordinator classifies and valuates them into
//! quantified entries of the seven categories and reports the result back. Each entry keeps
//! the peer's **private share** apart: only the offerable part (`1 - private_share` of the
//! quantity) is valued for the market, and a listing can never offer more than it (see
//! [`crate::offer::plan_offer`]).
//!
//! `register` is pure: the server stores the entries it returns (replacing the peer's previous
//! ones on an update) and sends the report as the answer.

use idlegrid_types::PartyId;
use serde::{Deserialize, Serialize};

use crate::expr::{AttributeMap, Value};
use crate::resource::{Measurements, Resource, ResourceDeclaration, ResourceError, classify};
use crate::schema::Category;
use crate::valuation::{Valuation, ValuationConfig, ValuationError, valuate};

/// Most resources one peer may declare.
pub const RESOURCES_MAX: usize = 64;
/// Most demographic attributes.
pub const DEMOGRAPHICS_MAX: usize = 32;
/// Longest demographic attribute name.
pub const DEMOGRAPHIC_NAME_BYTES_MAX: usize = 64;
/// Longest demographic text value.
pub const DEMOGRAPHIC_TEXT_BYTES_MAX: usize = 256;

/// What a peer sends to register or update (the seed's "peer identity, peer demographic and
/// peer BTRCT information").
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// Free description of the peer that offers' requirements may read (`other.region`):
    /// numbers, strings or booleans.
    #[serde(default)]
    pub demographics: AttributeMap,
    pub resources: Vec<ResourceDeclaration>,
}

/// A quantified entry of the market database: one resource of one peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub owner: PartyId,
    /// The whole resource, as classified.
    pub resource: Resource,
    /// The fraction kept private (never offered, never matched).
    pub private_share: f64,
    /// The part that may be offered: the resource scaled by `1 - private_share`.
    pub offerable: Resource,
    /// The offerable part's value (0 for an entirely private resource).
    pub valuation: Valuation,
}

impl Entry {
    pub fn category(&self) -> Category {
        self.resource.category()
    }

    /// The offerable quantity, in the unit of the category's quantity (0 when all is private).
    pub fn offerable_quantity(&self) -> f64 {
        if self.private_share >= 1.0 { 0.0 } else { self.offerable.quantity() }
    }
}

/// The answer to a registration: the entries made, in the order declared.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistrationReport {
    pub peer: PartyId,
    pub entries: Vec<Entry>,
}

/// Why a registration is refused; `field()` names the place, like `resources[2].memory.read_ns`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RegistrationError {
    #[error("resources[{index}]: {error}")]
    Resource { index: usize, error: ResourceError },
    #[error("resources[{index}]: {error}")]
    Valuation { index: usize, error: ValuationError },
    #[error("{count} resources declared, at most {RESOURCES_MAX} are allowed: group them")]
    TooManyResources { count: usize },
    #[error("demographics.{name}: {reason}")]
    Demographic { name: String, reason: String },
}

impl RegistrationError {
    pub fn field(&self) -> String {
        match self {
            RegistrationError::Resource { index, error } => format!("resources[{index}].{}", error.field()),
            RegistrationError::Valuation { index, .. } => format!("resources[{index}]"),
            RegistrationError::TooManyResources { .. } => "resources".into(),
            RegistrationError::Demographic { name, .. } => format!("demographics.{name}"),
        }
    }
}

/// Classify and valuate a peer's declaration (D3). `measured` holds what the coordinator
/// measured of this peer; it beats what the peer declares.
pub fn register(
    peer: &PartyId,
    registration: &Registration,
    measured: &Measurements,
    config: &ValuationConfig,
) -> Result<RegistrationReport, RegistrationError> {
    if registration.resources.len() > RESOURCES_MAX {
        return Err(RegistrationError::TooManyResources { count: registration.resources.len() });
    }
    check_demographics(&registration.demographics)?;
    let mut entries = Vec::with_capacity(registration.resources.len());
    for (index, declaration) in registration.resources.iter().enumerate() {
        let (resource, private_share) =
            classify(declaration, measured).map_err(|error| RegistrationError::Resource { index, error })?;
        let offerable = resource.scaled(1.0 - private_share);
        let mut valuation =
            valuate(&offerable, config).map_err(|error| RegistrationError::Valuation { index, error })?;
        if private_share >= 1.0 {
            valuation.credits = idlegrid_ledger::Micros::ZERO;
        }
        entries.push(Entry { owner: peer.clone(), resource, private_share, offerable, valuation });
    }
    Ok(RegistrationReport { peer: peer.clone(), entries })
}

fn check_demographics(demographics: &AttributeMap) -> Result<(), RegistrationError> {
    let refuse = |name: &str, reason: &str| RegistrationError::Demographic {
        name: name.chars().take(DEMOGRAPHIC_NAME_BYTES_MAX).collect(),
        reason: reason.to_string(),
    };
    if demographics.0.len() > DEMOGRAPHICS_MAX {
        return Err(refuse("*", &format!("at most {DEMOGRAPHICS_MAX} attributes are allowed")));
    }
    for (name, value) in &demographics.0 {
        let valid_name = !name.is_empty()
            && name.len() <= DEMOGRAPHIC_NAME_BYTES_MAX
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            && !name.as_bytes()[0].is_ascii_digit();
        if !valid_name {
            return Err(refuse(name, "names are letters, digits and '_', not starting with a digit, at most 64 bytes"));
        }
        match value {
            Value::Number(n) if !n.is_finite() => return Err(refuse(name, "not a finite number")),
            Value::Text(text) if text.len() > DEMOGRAPHIC_TEXT_BYTES_MAX => {
                return Err(refuse(name, "longer than 256 bytes"));
            }
            Value::List(_) | Value::Undefined => return Err(refuse(name, "expected a number, a string or a boolean")),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Provenance;
    use crate::resource::tests::examples;
    use idlegrid_ledger::Micros;

    fn peer() -> PartyId {
        PartyId::from_public_key(&[1; 32])
    }

    #[test]
    fn a_peer_registers_all_seven_categories_and_reads_back_its_valuation() {
        let registration =
            Registration { demographics: AttributeMap::new().with("region", "eu"), resources: examples() };
        let measured = Measurements::new().with(Category::Computing, "mflops", 12_000.0);
        let report = register(&peer(), &registration, &measured, &ValuationConfig::default()).unwrap();
        let categories: Vec<Category> = report.entries.iter().map(Entry::category).collect();
        assert_eq!(categories, Category::ALL);
        let computing = &report.entries[0];
        assert_eq!(computing.valuation.figures[0].provenance, Provenance::Measured);
        assert_eq!(computing.valuation.credits, Micros::new(3_000_000));
        let json = serde_json::to_string(&report).unwrap();
        assert_eq!(serde_json::from_str::<RegistrationReport>(&json).unwrap(), report);
    }

    #[test]
    fn the_private_share_is_kept_out_of_the_offerable_part() {
        let mut memory = examples()[1].clone();
        memory.private_share = 0.25;
        let mut private = examples()[2].clone();
        private.private_share = 1.0;
        let registration = Registration { resources: vec![memory, private], ..Registration::default() };
        let report = register(&peer(), &registration, &Measurements::new(), &ValuationConfig::default()).unwrap();
        assert_eq!(report.entries[0].resource.quantity(), 8192.0);
        assert_eq!(report.entries[0].offerable_quantity(), 6144.0);
        assert_eq!(report.entries[1].offerable_quantity(), 0.0);
        assert_eq!(report.entries[1].valuation.credits, Micros::ZERO);
    }

    #[test]
    fn bad_registrations_name_the_field() {
        let mut resources = examples();
        resources[3].attributes.insert("count".into(), Value::Number(-2.0));
        let registration = Registration { resources, ..Registration::default() };
        let error = register(&peer(), &registration, &Measurements::new(), &ValuationConfig::default()).unwrap_err();
        assert_eq!(error.field(), "resources[3].peripherals.count");
        let too_many =
            Registration { resources: vec![examples()[0].clone(); RESOURCES_MAX + 1], ..Registration::default() };
        let error = register(&peer(), &too_many, &Measurements::new(), &ValuationConfig::default()).unwrap_err();
        assert_eq!(error.field(), "resources");
        for (name, value) in [("1st", Value::Number(1.0)), ("ok", Value::List(vec![])), ("ok", Value::Number(f64::NAN))]
        {
            let bad = Registration { demographics: AttributeMap::new().with(name, value), resources: vec![] };
            let error = register(&peer(), &bad, &Measurements::new(), &ValuationConfig::default()).unwrap_err();
            assert_eq!(error.field(), format!("demographics.{name}"));
        }
        let unknown: Result<Registration, _> = serde_json::from_str(r#"{"resources": [], "extra": 1}"#);
        assert!(unknown.is_err(), "unknown fields are refused");
    }
}
