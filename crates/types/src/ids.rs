//! Identifiers. Each is a newtype so that a job ID can never be passed where a session ID is
//! expected, and each parses untrusted text with a clear error.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// Text that does not parse as the identifier it claims to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} '{text}': {reason}")]
pub struct IdError {
    pub kind: &'static str,
    pub text: String,
    pub reason: &'static str,
}

fn shorten(text: &str) -> String {
    text.chars().take(80).collect()
}

macro_rules! serde_via_str {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = std::borrow::Cow::<str>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

/// Identity of a client or provider: the first 16 bytes of the SHA-256 of its Ed25519 public
/// key, in lowercase hex (P4.1).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PartyId([u8; 16]);

impl PartyId {
    pub fn from_public_key(public_key: &[u8; 32]) -> PartyId {
        let digest = Sha256::digest(public_key);
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        PartyId(id)
    }

    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for PartyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PartyId({self})")
    }
}

impl FromStr for PartyId {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, IdError> {
        let error = |reason| IdError { kind: "party id", text: shorten(text), reason };
        if text.len() != 32 {
            return Err(error("expected 32 hexadecimal characters"));
        }
        let mut id = [0u8; 16];
        hex::decode_to_slice(text, &mut id).map_err(|_| error("not hexadecimal"))?;
        Ok(PartyId(id))
    }
}

serde_via_str!(PartyId);

/// What a registered party is allowed to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Submits jobs and collects results.
    Client,
    /// Runs a compute engine.
    Provider,
    /// Runs the platform: revokes parties, reads every instance's health and logs. Only keys
    /// the server was started with (`--operator`) may register as one.
    Operator,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Provider => "provider",
            Role::Operator => "operator",
        }
    }
}

impl FromStr for Role {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, IdError> {
        match text {
            "client" => Ok(Role::Client),
            "provider" => Ok(Role::Provider),
            "operator" => Ok(Role::Operator),
            _ => Err(IdError {
                kind: "role",
                text: shorten(text),
                reason: "expected 'client', 'provider' or 'operator'",
            }),
        }
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(uuid::Uuid);

        impl $name {
            pub fn random() -> Self {
                $name(uuid::Uuid::new_v4())
            }
            pub fn as_uuid(&self) -> &uuid::Uuid {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(text: &str) -> Result<Self, IdError> {
                uuid::Uuid::parse_str(text)
                    .map($name)
                    .map_err(|_| IdError { kind: $kind, text: shorten(text), reason: "expected a UUID like 123e4567-e89b-12d3-a456-426614174000" })
            }
        }

        serde_via_str!($name);
    };
}

uuid_id!(
    /// A job, named by the client that creates it, so that creation needs no round trip.
    JobId,
    "job id"
);
uuid_id!(
    /// One reliable message channel between a party and the server (P8.5).
    SessionId,
    "session id"
);

/// A task's number within its job, chosen by the client (usually 0, 1, 2, ...).
pub type TaskIndex = u64;

/// One placement of a task on one engine. Engines see only assignment IDs, never job or task
/// identifiers (P6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AssignmentId(pub u64);

impl fmt::Display for AssignmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "a{}", self.0)
    }
}

/// SHA-256 of an element's bytes: elements are content-addressed (P4.4).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ElementHash([u8; 32]);

impl ElementHash {
    pub fn of(bytes: &[u8]) -> ElementHash {
        ElementHash(Sha256::digest(bytes).into())
    }

    pub fn from_bytes(bytes: [u8; 32]) -> ElementHash {
        ElementHash(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// A short prefix for logs and progress messages.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for ElementHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for ElementHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ElementHash({})", self.short())
    }
}

impl FromStr for ElementHash {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, IdError> {
        let error = |reason| IdError { kind: "element hash", text: shorten(text), reason };
        if text.len() != 64 {
            return Err(error("expected 64 hexadecimal characters (a SHA-256)"));
        }
        let mut hash = [0u8; 32];
        hex::decode_to_slice(text, &mut hash).map_err(|_| error("not hexadecimal"))?;
        Ok(ElementHash(hash))
    }
}

serde_via_str!(ElementHash);

/// A reference to an element: what messages carry instead of the element's bytes (P8.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ElementRef {
    pub hash: ElementHash,
    pub size: u64,
}

/// Executable elements are task code; data elements are task input (and large outputs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ElementKind {
    Executable,
    Data,
}

impl ElementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ElementKind::Executable => "executable",
            ElementKind::Data => "data",
        }
    }
}

impl FromStr for ElementKind {
    type Err = IdError;
    fn from_str(text: &str) -> Result<Self, IdError> {
        match text {
            "executable" => Ok(ElementKind::Executable),
            "data" => Ok(ElementKind::Data),
            _ => Err(IdError { kind: "element kind", text: shorten(text), reason: "expected 'executable' or 'data'" }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn party_id_is_a_hash_of_the_public_key_and_round_trips() {
        let id = PartyId::from_public_key(&[7u8; 32]);
        assert_eq!(id.to_string().len(), 32);
        assert_eq!(id.to_string().parse::<PartyId>().unwrap(), id);
        assert_ne!(id, PartyId::from_public_key(&[8u8; 32]));
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<PartyId>(&json).unwrap(), id);
    }

    #[test]
    fn bad_identifiers_are_rejected_with_a_reason() {
        let err = "xyz".parse::<PartyId>().unwrap_err();
        assert_eq!(err.to_string(), "invalid party id 'xyz': expected 32 hexadecimal characters");
        assert!("zz".repeat(16).parse::<PartyId>().unwrap_err().to_string().contains("not hexadecimal"));
        assert!("not-a-uuid".parse::<JobId>().unwrap_err().to_string().contains("invalid job id"));
        assert!("00".parse::<ElementHash>().is_err());
        assert!(serde_json::from_str::<JobId>("\"nope\"").is_err());
        assert!("robot".parse::<Role>().is_err());
    }

    #[test]
    fn element_hash_is_sha256() {
        let hash = ElementHash::of(b"abc");
        assert_eq!(hash.to_string(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(hash.to_string().parse::<ElementHash>().unwrap(), hash);
    }
}
