//! Resources as the market knows them (D2, D3): a category and its attributes, each figure
//! with its provenance. A peer *declares* what it has (`ResourceDeclaration`, loose, from the
//! network); the coordinator *classifies* it against the category's schema, replacing declared
//! figures by the ones it measured itself (the engine's benchmark, sampled bandwidth, the
//! availability the scheduler keeps): **a measured figure beats a declared one**. The result,
//! `Resource`, is valid by construction: every figure finite, within its bounds, every required
//! attribute present.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::expr::{Attributes, Value};
use crate::schema::{Category, Schema};

/// Where a figure comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provenance {
    /// Measured by the coordinator (benchmarks, sampled bandwidth, observed availability).
    Measured,
    /// Stated by the peer.
    Declared,
}

/// A number and its provenance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub value: f64,
    pub provenance: Provenance,
}

/// Why a declaration or a measurement is refused. `field()` names the attribute as
/// `category.attribute`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResourceError {
    #[error(
        "unknown category '{0}': use computing, memory, storage, peripherals, files, internet_access or money (or I to VII)"
    )]
    UnknownCategory(String),
    #[error("{category}.{attribute} is not an attribute of {category}: known are {known}")]
    UnknownAttribute { category: Category, attribute: String, known: String },
    #[error("{category}.{attribute} is missing: {category} needs it")]
    MissingAttribute { category: Category, attribute: String },
    #[error("{category}.{attribute} is {value}: {reason}")]
    InvalidValue { category: Category, attribute: String, value: String, reason: String },
    #[error("private_share is {0}: it must be a fraction from 0 to 1 (the part kept private)")]
    InvalidShare(String),
}

impl ResourceError {
    /// The attribute at fault, as `category.attribute` (or the field of the declaration).
    pub fn field(&self) -> String {
        match self {
            ResourceError::UnknownCategory(_) => "category".into(),
            ResourceError::UnknownAttribute { category, attribute, .. }
            | ResourceError::MissingAttribute { category, attribute }
            | ResourceError::InvalidValue { category, attribute, .. } => format!("{category}.{attribute}"),
            ResourceError::InvalidShare(_) => "private_share".into(),
        }
    }
}

/// What a peer declares about one resource, as it arrives from the network or a file.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceDeclaration {
    /// The category's name or numeral (`memory`, `II`).
    pub category: String,
    /// Attribute values: numbers, or strings for text attributes.
    pub attributes: BTreeMap<String, Value>,
    /// The fraction of the resource kept for the peer's own use, never offered (D1). 0 to 1.
    #[serde(default)]
    pub private_share: f64,
}

/// What the coordinator measured about a peer, by category and attribute.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Measurements(pub BTreeMap<Category, BTreeMap<String, f64>>);

impl Measurements {
    pub fn new() -> Measurements {
        Measurements::default()
    }

    pub fn with(mut self, category: Category, attribute: &str, value: f64) -> Measurements {
        self.0.entry(category).or_default().insert(attribute.to_string(), value);
        self
    }

    fn get(&self, category: Category, attribute: &str) -> Option<f64> {
        self.0.get(&category).and_then(|values| values.get(attribute)).copied()
    }
}

/// A classified, valid resource: its category, numbers and texts in the order of the
/// category's schema. Serialized as `{category, attributes: {name: {value, provenance} or
/// "text"}}` and validated again when read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ResourceWire", into = "ResourceWire")]
pub struct Resource {
    category: Category,
    /// Inline rather than boxed: a search reads them for every candidate, and one pointer
    /// less is one cache miss less per candidate over a million offers.
    numbers: [Option<Figure>; NUMBERS_MAX],
    texts: Box<[Option<String>]>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResourceWire {
    category: Category,
    attributes: BTreeMap<String, AttributeWire>,
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum AttributeWire {
    Number(Figure),
    Text(String),
}

impl From<Resource> for ResourceWire {
    fn from(resource: Resource) -> ResourceWire {
        let schema = resource.category.schema();
        let mut attributes = BTreeMap::new();
        for (spec, figure) in schema.numbers.iter().zip(resource.numbers.iter()) {
            if let Some(figure) = figure {
                attributes.insert(spec.name.to_string(), AttributeWire::Number(*figure));
            }
        }
        for (spec, text) in schema.texts.iter().zip(resource.texts.into_vec()) {
            if let Some(text) = text {
                attributes.insert(spec.name.to_string(), AttributeWire::Text(text));
            }
        }
        ResourceWire { category: resource.category, attributes }
    }
}

impl TryFrom<ResourceWire> for Resource {
    type Error = ResourceError;
    fn try_from(wire: ResourceWire) -> Result<Resource, ResourceError> {
        let mut declared = BTreeMap::new();
        let mut measured = Measurements::new();
        for (name, attribute) in wire.attributes {
            match attribute {
                AttributeWire::Number(Figure { value, provenance: Provenance::Measured }) => {
                    measured = measured.with(wire.category, &name, value);
                }
                AttributeWire::Number(figure) => {
                    declared.insert(name, Value::Number(figure.value));
                }
                AttributeWire::Text(text) => {
                    declared.insert(name, Value::Text(text));
                }
            }
        }
        build(wire.category, &declared, &measured)
    }
}

/// Classify a declaration: its category, its attributes checked against the schema, measured
/// figures in place of declared ones. Returns the resource and the private share.
pub fn classify(declaration: &ResourceDeclaration, measured: &Measurements) -> Result<(Resource, f64), ResourceError> {
    let category = Category::from_name(declaration.category.trim())
        .ok_or_else(|| ResourceError::UnknownCategory(declaration.category.chars().take(40).collect()))?;
    let share = declaration.private_share;
    if !share.is_finite() || !(0.0..=1.0).contains(&share) {
        return Err(ResourceError::InvalidShare(share.to_string()));
    }
    if category == Category::Files && share != 0.0 && share != 1.0 {
        return Err(ResourceError::InvalidShare(format!(
            "{share} for a file (a file is either offered, 0, or private, 1)"
        )));
    }
    Ok((build(category, &declaration.attributes, measured)?, share))
}

fn build(
    category: Category,
    declared: &BTreeMap<String, Value>,
    measured: &Measurements,
) -> Result<Resource, ResourceError> {
    let schema = category.schema();
    let invalid = |attribute: &str, value: String, reason: String| ResourceError::InvalidValue {
        category,
        attribute: attribute.to_string(),
        value,
        reason,
    };
    for name in declared.keys() {
        if schema.number_index(name).is_none() && schema.text_index(name).is_none() {
            return Err(unknown(schema, name));
        }
    }
    if let Some(values) = measured.0.get(&category)
        && let Some(name) = values.keys().find(|name| schema.number_index(name).is_none())
    {
        return Err(unknown(schema, name));
    }
    let mut numbers = Vec::with_capacity(schema.numbers.len());
    for spec in schema.numbers {
        let figure = match (measured.get(category, spec.name), declared.get(spec.name)) {
            (Some(value), _) => Some(Figure { value, provenance: Provenance::Measured }),
            (None, Some(Value::Number(value))) => Some(Figure { value: *value, provenance: Provenance::Declared }),
            (None, Some(other)) => {
                return Err(invalid(spec.name, other.to_string(), format!("expected a number in {}", spec.unit)));
            }
            (None, None) if spec.required => {
                return Err(ResourceError::MissingAttribute { category, attribute: spec.name.into() });
            }
            (None, None) => None,
        };
        if let Some(figure) = figure {
            check_number(spec, figure.value).map_err(|reason| invalid(spec.name, figure.value.to_string(), reason))?;
        }
        numbers.push(figure);
    }
    let mut texts = Vec::with_capacity(schema.texts.len());
    for spec in schema.texts {
        let text = match declared.get(spec.name) {
            Some(Value::Text(text)) => {
                Some(check_text(spec, text).map_err(|reason| invalid(spec.name, shorten(text), reason))?)
            }
            Some(other) => return Err(invalid(spec.name, other.to_string(), "expected a string".into())),
            None if spec.required => {
                return Err(ResourceError::MissingAttribute { category, attribute: spec.name.into() });
            }
            None => None,
        };
        texts.push(text);
    }
    if category == Category::Computing && numbers[0].is_none() && numbers[1].is_none() {
        return Err(ResourceError::MissingAttribute { category, attribute: "mflops".into() });
    }
    Ok(Resource { category, numbers: inline(numbers), texts: texts.into() })
}

/// Most numeric attributes of any category.
const NUMBERS_MAX: usize = 7;

fn inline(numbers: Vec<Option<Figure>>) -> [Option<Figure>; NUMBERS_MAX] {
    let mut inline = [None; NUMBERS_MAX];
    for (slot, figure) in inline.iter_mut().zip(numbers) {
        *slot = figure;
    }
    inline
}

fn unknown(schema: &Schema, name: &str) -> ResourceError {
    ResourceError::UnknownAttribute {
        category: schema.category,
        attribute: shorten(name),
        known: schema.attribute_names().join(", "),
    }
}

fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

fn check_number(spec: &crate::schema::NumberSpec, value: f64) -> Result<(), String> {
    if !value.is_finite() {
        return Err("not a finite number".into());
    }
    if value < 0.0 {
        return Err("it must not be negative".into());
    }
    if value < spec.min {
        return Err(format!("it must be at least {} {}", spec.min, spec.unit));
    }
    if value > spec.max {
        return Err(format!("it must be at most {} {}", spec.max, spec.unit));
    }
    if spec.whole && value.fract() != 0.0 {
        return Err("it must be a whole number".into());
    }
    Ok(())
}

fn check_text(spec: &crate::schema::TextSpec, text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("it is empty".into());
    }
    if text.len() > spec.bytes_max {
        return Err(format!("it is longer than {} bytes", spec.bytes_max));
    }
    if text.chars().any(char::is_control) {
        return Err("it contains control characters".into());
    }
    if !spec.one_of.is_empty() && !spec.one_of.contains(&text) {
        return Err(format!("expected one of {}", spec.one_of.join(", ")));
    }
    if spec.sha256 && (text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit())) {
        return Err("expected a SHA-256 as 64 hexadecimal characters".into());
    }
    Ok(if spec.sha256 { text.to_ascii_lowercase() } else { text.to_string() })
}

impl Resource {
    pub fn category(&self) -> Category {
        self.category
    }

    /// A numeric attribute and its provenance.
    pub fn figure(&self, name: &str) -> Option<Figure> {
        self.category.schema().number_index(name).and_then(|n| self.numbers[n])
    }

    /// A numeric attribute's value.
    pub fn number(&self, name: &str) -> Option<f64> {
        self.figure(name).map(|figure| figure.value)
    }

    /// A text attribute.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.category.schema().text_index(name).and_then(|n| self.texts[n].as_deref())
    }

    /// Every numeric attribute present, with its name and unit, in schema order.
    pub fn figures(&self) -> impl Iterator<Item = (&'static str, &'static str, Figure)> + '_ {
        self.category
            .schema()
            .numbers
            .iter()
            .zip(self.numbers.iter())
            .filter_map(|(spec, f)| f.map(|f| (spec.name, spec.unit, f)))
    }

    /// Every text attribute present, with its name.
    pub fn texts(&self) -> impl Iterator<Item = (&'static str, &str)> + '_ {
        self.category
            .schema()
            .texts
            .iter()
            .zip(self.texts.iter())
            .filter_map(|(spec, t)| t.as_deref().map(|t| (spec.name, t)))
    }

    /// The amount of the resource, in the unit of its quantity attribute (see [`crate::schema`]):
    /// what a private share and a listing are fractions of.
    pub fn quantity(&self) -> f64 {
        match self.category {
            Category::Computing => self.number("mflops").or_else(|| self.number("mips")).unwrap_or(0.0),
            Category::Memory => self.number("memory_mb").unwrap_or(0.0),
            Category::Storage => self.number("capacity_mb").unwrap_or(0.0),
            Category::Peripherals => self.number("count").unwrap_or(1.0),
            Category::Files => 1.0,
            Category::InternetAccess => self.number("speed_mbit_s").unwrap_or(0.0),
            Category::Money => self.number("amount").unwrap_or(0.0),
        }
    }

    /// The name of the quantity's attribute and its unit.
    pub fn quantity_unit(&self) -> &'static str {
        match self.category {
            Category::Computing if self.number("mflops").is_some() => "MFLOPS",
            Category::Computing => "MIPS",
            Category::Memory | Category::Storage => "MB",
            Category::Peripherals => "devices",
            Category::Files => "copies",
            Category::InternetAccess => "Mbit/s",
            Category::Money => "credits or entries",
        }
    }

    /// The same resource with every attribute that grows with the quantity multiplied by
    /// `share` (0 to 1). A peripheral's `count` is kept whole (rounded down, at least 1).
    pub fn scaled(&self, share: f64) -> Resource {
        let share = if share.is_finite() { share.clamp(0.0, 1.0) } else { 0.0 };
        let schema = self.category.schema();
        let numbers = schema
            .numbers
            .iter()
            .zip(self.numbers.iter())
            .map(|(spec, figure)| {
                figure.map(|figure| {
                    if !spec.scales {
                        return figure;
                    }
                    let mut value = figure.value * share;
                    if spec.whole {
                        value = value.floor().max(spec.min);
                    }
                    Figure { value: value.max(spec.min.min(figure.value)), provenance: figure.provenance }
                })
            })
            .collect();
        Resource { category: self.category, numbers: inline(numbers), texts: self.texts.clone() }
    }
}

/// A resource seen by the requirement language: its attributes by name, `category`, and
/// `measured`, the list of attributes the coordinator measured.
impl Attributes for Resource {
    fn attribute(&self, name: &str) -> Option<Value> {
        if let Some(number) = self.number(name) {
            return Some(Value::Number(number));
        }
        if let Some(text) = self.text(name) {
            return Some(Value::Text(text.to_string()));
        }
        match name {
            "category" => Some(Value::Text(self.category.name().to_string())),
            "quantity" => Some(Value::Number(self.quantity())),
            "measured" => Some(Value::List(
                self.figures()
                    .filter(|(_, _, f)| f.provenance == Provenance::Measured)
                    .map(|(name, _, _)| Value::Text(name.to_string()))
                    .collect(),
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
