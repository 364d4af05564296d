//! Key-based identity (P4.1): every party holds an Ed25519 key; its ID is a hash of the public
//! key; every request is signed over its method, path, time and body hash, so that the server
//! can check who sent it and that it was not altered. Requests older or newer than the allowed
//! clock skew are refused, which bounds replays (message sequence numbers make replays of
//! channel messages harmless anyway).

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use idlegrid_types::PartyId;
use sha2::{Digest, Sha256};

/// How far a request's time may differ from the server's clock.
pub const CLOCK_SKEW_MS_MAX: u64 = 5 * 60 * 1000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing header {0}: requests must be signed (register first, then sign each request with your key)")]
    MissingHeader(&'static str),
    #[error("malformed header {0}")]
    MalformedHeader(&'static str),
    #[error(
        "request time is {skew_ms} ms away from the server's clock (at most {CLOCK_SKEW_MS_MAX} ms allowed): check the clock of this machine"
    )]
    ClockSkew { skew_ms: u64 },
    #[error("the signature does not match the request")]
    BadSignature,
    #[error("invalid public key")]
    BadPublicKey,
    #[error("unknown party {0}: register first")]
    UnknownParty(String),
    #[error("cannot read the key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
}

/// A party's private key and the ID derived from it.
#[derive(Clone)]
pub struct Identity {
    key: SigningKey,
    id: PartyId,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").field("id", &self.id).finish_non_exhaustive()
    }
}

/// Values of the three signature headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    pub id: String,
    pub time_ms: String,
    pub signature: String,
}

/// SHA-256 of a request body, hex, as it enters the signed text.
pub fn body_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

fn signed_text(method: &str, path_and_query: &str, time_ms: u64, body_sha256_hex: &str) -> String {
    format!("idlegrid-v1\n{}\n{path_and_query}\n{time_ms}\n{body_sha256_hex}", method.to_ascii_uppercase())
}

impl Identity {
    pub fn generate() -> Identity {
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        Identity::from_seed(seed)
    }

    pub fn from_seed(seed: [u8; 32]) -> Identity {
        let key = SigningKey::from_bytes(&seed);
        let id = PartyId::from_public_key(&key.verifying_key().to_bytes());
        Identity { key, id }
    }

    pub fn id(&self) -> &PartyId {
        &self.id
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    /// Load the key from `path`, or create it there (mode 0600) if it does not exist.
    pub fn load_or_create(path: &std::path::Path) -> Result<Identity, AuthError> {
        let error = |reason: String| AuthError::KeyFile { path: path.display().to_string(), reason };
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let mut seed = [0u8; 32];
                hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| error("not a 64-character hex key".into()))?;
                Ok(Identity::from_seed(seed))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = Identity::generate();
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| error(e.to_string()))?;
                }
                let text = hex::encode(identity.key.to_bytes());
                let tmp = path.with_extension("tmp");
                write_private(&tmp, text.as_bytes()).map_err(|e| error(e.to_string()))?;
                std::fs::rename(&tmp, path).map_err(|e| error(e.to_string()))?;
                Ok(identity)
            }
            Err(e) => Err(error(e.to_string())),
        }
    }

    pub fn sign(&self, method: &str, path_and_query: &str, time_ms: u64, body_sha256_hex: &str) -> SignedHeaders {
        let text = signed_text(method, path_and_query, time_ms, body_sha256_hex);
        let signature = self.key.sign(text.as_bytes());
        SignedHeaders {
            id: self.id.to_string(),
            time_ms: time_ms.to_string(),
            signature: hex::encode(signature.to_bytes()),
        }
    }
}

fn write_private(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

impl Identity {
    /// The private key as PKCS#8 v1 DER (RFC 8410), for TLS client certificates.
    pub fn private_key_pkcs8_der(&self) -> Vec<u8> {
        // SEQUENCE { INTEGER 0, SEQUENCE { OID 1.3.101.112 }, OCTET STRING { OCTET STRING seed } }
        const PREFIX: [u8; 16] =
            [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];
        let mut der = PREFIX.to_vec();
        der.extend_from_slice(&self.key.to_bytes());
        der
    }

    /// The raw Ed25519 public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Sign arbitrary bytes (hex signature), e.g. a task assignment.
    pub fn sign_bytes(&self, bytes: &[u8]) -> String {
        hex::encode(self.key.sign(bytes).to_bytes())
    }
}

/// Check a hex signature made by [`Identity::sign_bytes`] with the hex public key.
pub fn verify_bytes(public_key_hex: &str, bytes: &[u8], signature_hex: &str) -> Result<(), AuthError> {
    let key = parse_public_key(public_key_hex)?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| AuthError::BadPublicKey)?;
    let mut signature = [0u8; 64];
    hex::decode_to_slice(signature_hex, &mut signature).map_err(|_| AuthError::BadSignature)?;
    key.verify(bytes, &Signature::from_bytes(&signature)).map_err(|_| AuthError::BadSignature)
}

/// Parse a hex Ed25519 public key from a registration request.
pub fn parse_public_key(hex_text: &str) -> Result<[u8; 32], AuthError> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(hex_text, &mut key).map_err(|_| AuthError::BadPublicKey)?;
    VerifyingKey::from_bytes(&key).map_err(|_| AuthError::BadPublicKey)?;
    Ok(key)
}

/// The claimed identity and time of a request, before its signature is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub id: PartyId,
    pub time_ms: u64,
    signature: [u8; 64],
}

impl Claim {
    /// Read the headers (`None` for a missing header).
    pub fn parse(id: Option<&str>, time_ms: Option<&str>, signature: Option<&str>) -> Result<Claim, AuthError> {
        use crate::wire::{HEADER_ID, HEADER_SIGNATURE, HEADER_TIME};
        let id = id.ok_or(AuthError::MissingHeader(HEADER_ID))?;
        let time_ms = time_ms.ok_or(AuthError::MissingHeader(HEADER_TIME))?;
        let signature = signature.ok_or(AuthError::MissingHeader(HEADER_SIGNATURE))?;
        let id = id.parse().map_err(|_| AuthError::MalformedHeader(HEADER_ID))?;
        let time_ms = time_ms.parse().map_err(|_| AuthError::MalformedHeader(HEADER_TIME))?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(signature, &mut sig).map_err(|_| AuthError::MalformedHeader(HEADER_SIGNATURE))?;
        Ok(Claim { id, time_ms, signature: sig })
    }

    /// Check the claim against the party's public key and the server's clock.
    pub fn verify(
        &self,
        public_key: &[u8; 32],
        method: &str,
        path_and_query: &str,
        body_sha256_hex: &str,
        now_ms: u64,
    ) -> Result<(), AuthError> {
        let skew_ms = now_ms.abs_diff(self.time_ms);
        if skew_ms > CLOCK_SKEW_MS_MAX {
            return Err(AuthError::ClockSkew { skew_ms });
        }
        if PartyId::from_public_key(public_key) != self.id {
            return Err(AuthError::BadSignature);
        }
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| AuthError::BadPublicKey)?;
        let text = signed_text(method, path_and_query, self.time_ms, body_sha256_hex);
        key.verify(text.as_bytes(), &Signature::from_bytes(&self.signature)).map_err(|_| AuthError::BadSignature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_request_verifies_and_any_change_breaks_it() {
        let identity = Identity::generate();
        let key = parse_public_key(&identity.public_key_hex()).unwrap();
        let body = body_hash(b"{\"x\":1}");
        let h = identity.sign("post", "/v1/sessions", 1_000_000, &body);
        let claim = Claim::parse(Some(&h.id), Some(&h.time_ms), Some(&h.signature)).unwrap();
        assert_eq!(&claim.id, identity.id());
        claim.verify(&key, "POST", "/v1/sessions", &body, 1_000_500).unwrap();
        assert_eq!(claim.verify(&key, "POST", "/v1/sessionz", &body, 1_000_000), Err(AuthError::BadSignature));
        assert_eq!(claim.verify(&key, "GET", "/v1/sessions", &body, 1_000_000), Err(AuthError::BadSignature));
        assert_eq!(
            claim.verify(&key, "POST", "/v1/sessions", &body_hash(b"{}"), 1_000_000),
            Err(AuthError::BadSignature)
        );
        assert!(matches!(
            claim.verify(&key, "POST", "/v1/sessions", &body, 1_000_000 + CLOCK_SKEW_MS_MAX + 1),
            Err(AuthError::ClockSkew { .. })
        ));
        let other = Identity::generate();
        let other_key = parse_public_key(&other.public_key_hex()).unwrap();
        assert_eq!(claim.verify(&other_key, "POST", "/v1/sessions", &body, 1_000_000), Err(AuthError::BadSignature));
    }

    #[test]
    fn signed_bytes_verify_and_tampering_is_caught() {
        let server = Identity::generate();
        let signature = server.sign_bytes(b"assignment 7");
        verify_bytes(&server.public_key_hex(), b"assignment 7", &signature).unwrap();
        assert_eq!(verify_bytes(&server.public_key_hex(), b"assignment 8", &signature), Err(AuthError::BadSignature));
        assert_eq!(
            verify_bytes(&Identity::generate().public_key_hex(), b"assignment 7", &signature),
            Err(AuthError::BadSignature)
        );
        assert_eq!(verify_bytes(&server.public_key_hex(), b"assignment 7", "zz"), Err(AuthError::BadSignature));
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        assert_eq!(Claim::parse(None, Some("1"), Some("ab")), Err(AuthError::MissingHeader("x-idlegrid-id")));
        let id = Identity::generate().id().to_string();
        assert_eq!(
            Claim::parse(Some(&id), Some("soon"), Some("ab")),
            Err(AuthError::MalformedHeader("x-idlegrid-time"))
        );
        assert_eq!(
            Claim::parse(Some(&id), Some("1"), Some("ab")),
            Err(AuthError::MalformedHeader("x-idlegrid-signature"))
        );
    }

    #[test]
    fn key_file_is_created_once_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/identity.key");
        let a = Identity::load_or_create(&path).unwrap();
        let b = Identity::load_or_create(&path).unwrap();
        assert_eq!(a.id(), b.id());
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(Identity::load_or_create(&path), Err(AuthError::KeyFile { .. })));
    }
}
