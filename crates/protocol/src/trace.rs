//! A W3C trace context (`traceparent`) as it travels with a task: in the HTTP header of a
//! traced request, stored with the task, in the assignment an engine receives and in the
//! status it returns, so that the spans of every party join one trace. Parsed strictly: the
//! value comes from the network.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The name of the HTTP header that carries it.
pub const HEADER: &str = "traceparent";

/// A valid `traceparent` value of version `00`: `00-<trace id>-<parent span id>-<flags>`, in
/// lowercase hexadecimal, neither ID all zeros.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TraceParent(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid traceparent '{shown}': {why} (expected 00-<32 hex digits>-<16 hex digits>-<2 hex digits>)")]
pub struct TraceParentError {
    shown: String,
    why: &'static str,
}

fn lower_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl TraceParent {
    /// Parse a `traceparent` value (version `00` only; a later version's extra fields are
    /// refused rather than guessed at).
    pub fn parse(text: &str) -> Result<TraceParent, TraceParentError> {
        let error = |why| TraceParentError { shown: text.chars().take(64).collect(), why };
        let parts: Vec<&str> = text.split('-').collect();
        let [version, trace, span, flags] = parts[..] else { return Err(error("not four fields")) };
        if version != "00" {
            return Err(error("only version 00 is understood"));
        }
        if !lower_hex(trace, 32) || trace.bytes().all(|b| b == b'0') {
            return Err(error("the trace ID is not 32 lowercase hex digits, not all zero"));
        }
        if !lower_hex(span, 16) || span.bytes().all(|b| b == b'0') {
            return Err(error("the span ID is not 16 lowercase hex digits, not all zero"));
        }
        if !lower_hex(flags, 2) {
            return Err(error("the flags are not 2 lowercase hex digits"));
        }
        Ok(TraceParent(text.to_string()))
    }

    /// From its parts: a 16-byte trace ID, an 8-byte span ID and the flags (`None` for IDs
    /// that are all zeros, which name no trace).
    pub fn from_parts(trace_id: [u8; 16], span_id: [u8; 8], flags: u8) -> Option<TraceParent> {
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(TraceParent(format!("00-{}-{}-{flags:02x}", hex::encode(trace_id), hex::encode(span_id))))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The trace ID (32 hex digits).
    pub fn trace_id(&self) -> &str {
        &self.0[3..35]
    }

    /// The ID of the span this context names as the parent (16 hex digits).
    pub fn span_id(&self) -> &str {
        &self.0[36..52]
    }

    /// The trace flags (bit 0: sampled).
    pub fn flags(&self) -> u8 {
        u8::from_str_radix(&self.0[53..55], 16).unwrap_or(0)
    }
}

impl std::fmt::Display for TraceParent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for TraceParent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TraceParent {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        TraceParent::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_traceparent_is_taken_apart() {
        let parent = TraceParent::parse(GOOD).unwrap();
        assert_eq!(parent.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(parent.span_id(), "00f067aa0ba902b7");
        assert_eq!(parent.flags(), 1);
        assert_eq!(parent.to_string(), GOOD);
        let rebuilt = TraceParent::from_parts(
            hex::decode(parent.trace_id()).unwrap().try_into().unwrap(),
            hex::decode(parent.span_id()).unwrap().try_into().unwrap(),
            1,
        );
        assert_eq!(rebuilt, Some(parent));
    }

    #[test]
    fn malformed_values_are_refused_with_the_reason() {
        for (bad, why) in [
            ("", "four fields"),
            ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version 00"),
            ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", "trace ID"),
            ("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", "trace ID"),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "span ID"),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1", "flags"),
            ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "four fields"),
            ("00-4bf92f3577b34da6a3ce929d0e0e473é-00f067aa0ba902b7-01", "trace ID"),
        ] {
            let error = TraceParent::parse(bad).unwrap_err().to_string();
            assert!(error.contains(why), "{bad}: {error}");
        }
        assert_eq!(TraceParent::from_parts([0; 16], [1; 8], 1), None);
    }

    #[test]
    fn it_travels_as_a_string_and_bad_ones_do_not_decode() {
        let parent = TraceParent::parse(GOOD).unwrap();
        assert_eq!(serde_json::to_string(&parent).unwrap(), format!("\"{GOOD}\""));
        assert_eq!(serde_json::from_str::<TraceParent>(&format!("\"{GOOD}\"")).unwrap(), parent);
        let error = serde_json::from_str::<TraceParent>("\"00-xyz\"").unwrap_err().to_string();
        assert!(error.contains("invalid traceparent"), "{error}");
    }
}
