//! Bodies of the market's data-carrying contracts (`/v1/market/contracts/{id}/storage`,
//! `/file`, `/relay`): the blob a storage buyer hands over, the file a seller attaches, the relay
//! of internet access, and what each contract's execution shows of its category.

use idlegrid_types::{ElementHash, ElementRef};
use serde::{Deserialize, Serialize};

/// An element of a contract: the storage buyer's blob, the file sold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElementBody {
    pub element: ElementRef,
}

/// Where a buyer of internet access fetches elements through the seller's engine: its relay's
/// address and a ticket (valid until `expires_ms`) that the relay checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayInfo {
    pub contract: u64,
    pub address: String,
    pub ticket: String,
    pub expires_ms: u64,
}

/// Bytes a party counted over an internet access contract (the seller's engine served them,
/// the buyer received them). Numbered from 1 per reporter; a repeat counts once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BytesBody {
    pub seq: u64,
    pub bytes: u64,
}

/// What a contract's execution shows of its category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DataExecution {
    /// Storage: the blob the seller's engine keeps and its proofs.
    Storage {
        element: Option<ElementHash>,
        size: u64,
        /// The engine said it keeps the blob.
        stored: bool,
        passed: u64,
        failed: u64,
        /// Storage is proven from the contract's start up to this time.
        proven_until_ms: u64,
    },
    /// A file: the one the contract names, whether the seller attached it and the buyer has it.
    File { sha256: String, size_bytes: u64, attached: bool, downloaded: bool },
    /// Internet access: bytes contracted, as each side counted, and the lower of the two.
    Bandwidth { bytes_contracted: u64, seller_bytes: u64, buyer_bytes: u64, delivered_bytes: u64 },
}

/// What the server signs in a relay ticket: the engine that relays, the contract, the expiry.
/// A ticket is `{contract}.{expires_ms}.{signature hex}`, signed with the server's assignment
/// key, which every engine knows.
pub fn relay_signed_bytes(engine: &idlegrid_types::PartyId, contract: u64, expires_ms: u64) -> Vec<u8> {
    format!("idlegrid-relay\n{engine}\n{contract}\n{expires_ms}").into_bytes()
}

/// The parts of a relay ticket: contract, expiry, signature; `None` if malformed.
pub fn relay_ticket_parts(ticket: &str) -> Option<(u64, u64, &str)> {
    let mut parts = ticket.splitn(3, '.');
    let contract = parts.next()?.parse().ok()?;
    let expires_ms = parts.next()?.parse().ok()?;
    let signature = parts.next().filter(|s| !s.is_empty() && s.len() <= 256)?;
    Some((contract, expires_ms, signature))
}

/// The header a buyer presents its relay ticket in.
pub const RELAY_TICKET_HEADER: &str = "x-idlegrid-relay-ticket";
