//! Contracts (D5, D6): what an agreement binds each party to, in one of the seed's three barter
//! modes, with a canonical byte encoding that both parties sign with their Ed25519 keys.
//!
//! - **Coordinator with peer** (FIG.-4 to 6): the platform itself is a party (it signs with the
//!   server's key); no commission.
//! - **Peer with peer through the coordinator** (FIG.-7): the platform takes a commission, paid
//!   by the seller, the buyer or shared.
//! - **Peer with peer on their own** (FIG.-7, last sentence): registered for execution only, no
//!   commission.
//!
//! A party's identity is the hash of its public key (`PartyId::from_public_key`, as everywhere
//! in Idlegrid), so a contract carries both public keys and a signature is checked against the
//! key *and* the key against the party: a contract signed with any other key is refused.
//!
//! The signed bytes ([`Contract::signing_bytes`]) are a fixed binary layout, not JSON: a domain
//! tag, then every field in order, integers big-endian, floats as their IEEE bits, strings and
//! lists length-prefixed. Two programs that agree on the contract agree on the bytes.

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use idlegrid_ledger::Micros;
use idlegrid_types::PartyId;
use serde::{Deserialize, Serialize};

use crate::negotiation::{NegotiationId, Role};
use crate::offer::OfferId;
use crate::resource::{Provenance, Resource};
use crate::schema::{Category, DURATION_S_MAX};

/// A contract's identity, given by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ContractId(pub u64);

impl std::fmt::Display for ContractId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The seed's three ways to barter (D6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BarterMode {
    CoordinatorWithPeer,
    PeerWithPeerCoordinated,
    PeerWithPeerDirect,
}

/// Who pays the platform's commission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommissionPayer {
    Seller,
    Buyer,
    /// Half each (the buyer's half rounded down).
    Shared,
}

/// Something a party gives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Consideration {
    /// A resource (the quantity is the resource's own, see [`Resource::quantity`]).
    Resource { resource: Resource },
    /// Money moved through the ledger.
    Money { amount: Micros },
}

/// An Ed25519 public key, hex on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; 32]);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", hex::encode(self.0))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<PublicKey, D::Error> {
        let text = String::deserialize(deserializer)?;
        let mut key = [0u8; 32];
        hex::decode_to_slice(&text, &mut key)
            .map_err(|_| serde::de::Error::custom("a public key is 64 hexadecimal characters"))?;
        Ok(PublicKey(key))
    }
}

/// One side of a contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContractParty {
    pub party: PartyId,
    pub public_key: PublicKey,
    pub gives: Vec<Consideration>,
}

/// Most considerations one party may give in one contract.
pub const CONSIDERATIONS_MAX: usize = 16;

/// What two parties agreed. The seller gives the offered resource; the buyer pays `price`
/// (and may give resources too: a barter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contract {
    pub id: ContractId,
    pub mode: BarterMode,
    pub seller: ContractParty,
    pub buyer: ContractParty,
    /// Money the buyer pays the seller for the whole contract (0 for a pure exchange).
    pub price: Micros,
    /// The platform's commission (0 unless peer with peer through the coordinator).
    pub commission: Micros,
    pub commission_payer: CommissionPayer,
    pub starts_ms: u64,
    pub duration_ms: u64,
    pub offer: Option<OfferId>,
    pub negotiation: Option<NegotiationId>,
    pub created_ms: u64,
}

/// A contract and both signatures (hex), as stored and registered for execution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignedContract {
    pub contract: Contract,
    pub seller_signature: String,
    pub buyer_signature: String,
}

/// Why a contract is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ContractError {
    #[error("{0}")]
    Invalid(String),
    #[error("the {role}'s public key is not the key of party {party}: sign with the key you registered")]
    KeyMismatch { role: &'static str, party: PartyId },
    #[error("the {role}'s public key is not a valid Ed25519 key")]
    BadKey { role: &'static str },
    #[error(
        "the {role}'s signature does not match the contract: it was signed with another key or the contract was altered"
    )]
    BadSignature { role: &'static str },
}

impl Contract {
    /// Check the terms: distinct parties whose keys are theirs, the mode's commission rule,
    /// amounts not negative, a duration, something given.
    pub fn validate(&self) -> Result<(), ContractError> {
        let invalid = |reason: &str| Err(ContractError::Invalid(reason.to_string()));
        if self.seller.party == self.buyer.party {
            return invalid("seller and buyer must be different parties");
        }
        for (role, side) in [("seller", &self.seller), ("buyer", &self.buyer)] {
            if PartyId::from_public_key(&side.public_key.0) != side.party {
                return Err(ContractError::KeyMismatch { role, party: side.party.clone() });
            }
            if side.gives.len() > CONSIDERATIONS_MAX {
                return invalid(&format!(
                    "the {role} gives more than {CONSIDERATIONS_MAX} things: make several contracts"
                ));
            }
            for consideration in &side.gives {
                if let Consideration::Money { amount } = consideration
                    && !amount.is_positive()
                {
                    return invalid(&format!("money the {role} gives must be positive"));
                }
            }
        }
        if self.price.is_negative() || self.commission.is_negative() {
            return invalid("price and commission must not be negative");
        }
        if self.mode != BarterMode::PeerWithPeerCoordinated && self.commission != Micros::ZERO {
            return invalid("only a peer-with-peer trade through the coordinator carries a commission");
        }
        if self.duration_ms == 0 || self.duration_ms as f64 > DURATION_S_MAX * 1000.0 {
            return invalid("duration_ms must be from 1 ms to ten years");
        }
        if self.seller.gives.is_empty() && self.buyer.gives.is_empty() && self.price == Micros::ZERO {
            return invalid("a contract must give something");
        }
        Ok(())
    }

    /// The canonical bytes both parties sign.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut out = Encoder(b"idlegrid-market-contract-v1\0".to_vec());
        out.u64(self.id.0);
        out.u8(match self.mode {
            BarterMode::CoordinatorWithPeer => 1,
            BarterMode::PeerWithPeerCoordinated => 2,
            BarterMode::PeerWithPeerDirect => 3,
        });
        out.party(&self.seller);
        out.party(&self.buyer);
        out.i64(self.price.as_i64());
        out.i64(self.commission.as_i64());
        out.u8(match self.commission_payer {
            CommissionPayer::Seller => 1,
            CommissionPayer::Buyer => 2,
            CommissionPayer::Shared => 3,
        });
        out.u64(self.starts_ms);
        out.u64(self.duration_ms);
        out.option(self.offer.map(|o| o.0));
        out.option(self.negotiation.map(|n| n.0));
        out.u64(self.created_ms);
        out.0
    }

    /// Sign as one party (hex signature): what a client does with its key, and the server for
    /// the platform in coordinator-with-peer contracts.
    pub fn sign(&self, key: &SigningKey) -> String {
        hex::encode(key.sign(&self.signing_bytes()).to_bytes())
    }

    /// When the contract ends.
    /// Check one side's signature (hex, over [`Contract::signing_bytes`]) against the public key
    /// the contract names for that side, so that each party can sign on its own, in any order.
    pub fn verify_signature(&self, role: Role, signature: &str) -> Result<(), ContractError> {
        let (name, side) = match role {
            Role::Seller => ("seller", &self.seller),
            Role::Buyer => ("buyer", &self.buyer),
        };
        if PartyId::from_public_key(&side.public_key.0) != side.party {
            return Err(ContractError::KeyMismatch { role: name, party: side.party.clone() });
        }
        let key = VerifyingKey::from_bytes(&side.public_key.0).map_err(|_| ContractError::BadKey { role: name })?;
        let mut raw = [0u8; 64];
        hex::decode_to_slice(signature, &mut raw).map_err(|_| ContractError::BadSignature { role: name })?;
        key.verify_strict(&self.signing_bytes(), &Signature::from_bytes(&raw))
            .map_err(|_| ContractError::BadSignature { role: name })
    }

    pub fn ends_ms(&self) -> u64 {
        self.starts_ms.saturating_add(self.duration_ms)
    }

    /// The commission's part paid by the buyer (the rest is the seller's).
    pub fn buyer_commission(&self) -> Micros {
        match self.commission_payer {
            CommissionPayer::Seller => Micros::ZERO,
            CommissionPayer::Buyer => self.commission,
            CommissionPayer::Shared => Micros::new(self.commission.as_i64() / 2),
        }
    }
}

impl SignedContract {
    /// Check the terms and both signatures.
    pub fn verify(&self) -> Result<(), ContractError> {
        self.contract.validate()?;
        self.contract.verify_signature(Role::Seller, &self.seller_signature)?;
        self.contract.verify_signature(Role::Buyer, &self.buyer_signature)
    }
}

struct Encoder(Vec<u8>);

impl Encoder {
    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }
    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }
    fn i64(&mut self, value: i64) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }
    fn f64(&mut self, value: f64) {
        // -0.0 and 0.0 are the same amount: one encoding.
        let value = if value == 0.0 { 0.0 } else { value };
        self.u64(value.to_bits());
    }
    fn bytes(&mut self, bytes: &[u8]) {
        self.u64(bytes.len() as u64);
        self.0.extend_from_slice(bytes);
    }
    fn option(&mut self, value: Option<u64>) {
        match value {
            Some(value) => {
                self.u8(1);
                self.u64(value);
            }
            None => self.u8(0),
        }
    }
    fn party(&mut self, side: &ContractParty) {
        self.0.extend_from_slice(side.party.as_bytes());
        self.0.extend_from_slice(&side.public_key.0);
        self.u64(side.gives.len() as u64);
        for consideration in &side.gives {
            match consideration {
                Consideration::Resource { resource } => {
                    self.u8(1);
                    self.resource(resource);
                }
                Consideration::Money { amount } => {
                    self.u8(2);
                    self.i64(amount.as_i64());
                }
            }
        }
    }
    fn resource(&mut self, resource: &Resource) {
        self.u8(Category::ALL.iter().position(|c| *c == resource.category()).unwrap_or(0) as u8);
        let figures: Vec<_> = resource.figures().collect();
        self.u64(figures.len() as u64);
        for (name, _, figure) in figures {
            self.bytes(name.as_bytes());
            self.f64(figure.value);
            self.u8(if figure.provenance == Provenance::Measured { 1 } else { 2 });
        }
        let texts: Vec<_> = resource.texts().collect();
        self.u64(texts.len() as u64);
        for (name, text) in texts {
            self.bytes(name.as_bytes());
            self.bytes(text.as_bytes());
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
