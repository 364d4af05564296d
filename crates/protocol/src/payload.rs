//! Bytes inside messages: small ones inline (base64 in JSON), large ones as a reference to an
//! element that travels on the data channel (P8.1).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use idlegrid_types::ElementRef;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    Inline(#[serde(with = "base64_bytes")] Vec<u8>),
    Element(ElementRef),
}

impl Payload {
    /// Size of the bytes this payload stands for.
    pub fn len(&self) -> u64 {
        match self {
            Payload::Inline(bytes) => bytes.len() as u64,
            Payload::Element(element) => element.size,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Serde adapter: `Vec<u8>` as a base64 string.
pub mod base64_bytes {
    use super::*;

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = std::borrow::Cow::<str>::deserialize(d)?;
        STANDARD.decode(text.as_bytes()).map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}

/// Serde adapter: an optional `f32` that must be finite when present (see [`finite_f32`]).
pub fn finite_f32_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f32>, D::Error> {
    match Option::<f64>::deserialize(d)? {
        None => Ok(None),
        Some(value) if (value as f32).is_finite() => Ok(Some(value as f32)),
        Some(_) => Err(serde::de::Error::custom("expected a finite number within the range of a 32-bit float")),
    }
}

/// Serde adapter: an `f32` that must be finite. JSON numbers beyond the range of `f32` (such as
/// `1e39`) would otherwise decode as infinity, which JSON cannot carry back (it encodes as
/// `null`): a message would decode on one side and fail to decode once forwarded.
pub fn finite_f32<'de, D: Deserializer<'de>>(d: D) -> Result<f32, D::Error> {
    let value = f64::deserialize(d)? as f32;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(serde::de::Error::custom("expected a finite number within the range of a 32-bit float"))
    }
}
