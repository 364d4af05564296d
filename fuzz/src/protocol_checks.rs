//! Checks of the wire (crates/protocol) against arbitrary input: message decoding, element
//! tickets, identifiers and request signatures.
//!
//! Shared by the fuzz targets (`cargo +nightly fuzz run decode_messages|tickets`) and the
//! stable replay test `crates/protocol/tests/decode_corpus.rs`, which includes this file. It
//! uses only crates that both can see: `idlegrid_protocol`, `idlegrid_types`, `serde`,
//! `serde_json`. A check panics when it finds a bug.

use std::fmt::Debug;

use idlegrid_protocol::auth::{Claim, Identity, body_hash, parse_public_key, verify_bytes};
use idlegrid_protocol::messages::{
    Assignment, AssignmentStatus, ClientToServer, JobInfo, Message, ProviderToServer, ServerToClient, ServerToProvider,
    TaskSpec, TaskStatusReport,
};
use idlegrid_protocol::ticket::{Ticket, TicketError};
use idlegrid_protocol::wire::{
    Envelope, ErrorBody, HealthReply, OpenSessionRequest, PollQuery, PollReply, PostBatch, PostReply, RegisterRequest,
    RegisterResponse, SessionInfo,
};
use idlegrid_types::{AssignmentId, ElementHash, JobId, PartyId, SessionId};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Decode `data` as every type that travels on the wire. Decoding never panics; whatever
/// decodes encodes, decodes again to an equal value, and encodes again to the same bytes.
/// Returns how many types accepted the input (for corpus statistics).
pub fn check_decode(data: &[u8]) -> usize {
    let mut accepted = 0;
    let mut count = |ok: bool| accepted += ok as usize;
    // The catalogue, one enum per direction, and all of it.
    count(round_trip::<ClientToServer>(data).is_some());
    count(round_trip::<ServerToClient>(data).is_some());
    count(round_trip::<ServerToProvider>(data).is_some());
    count(round_trip::<ProviderToServer>(data).is_some());
    count(round_trip::<Message>(data).is_some());
    // HTTP bodies, as the server and the parties decode them.
    count(round_trip::<PostBatch<ClientToServer>>(data).is_some());
    count(round_trip::<PostBatch<ProviderToServer>>(data).is_some());
    count(round_trip_poll::<ServerToClient>(data));
    count(round_trip_poll::<ServerToProvider>(data));
    count(round_trip::<Envelope<ServerToProvider>>(data).is_some());
    count(round_trip::<RegisterRequest>(data).is_some());
    count(round_trip::<RegisterResponse>(data).is_some());
    count(round_trip::<OpenSessionRequest>(data).is_some());
    count(round_trip::<SessionInfo>(data).is_some());
    count(round_trip::<PostReply>(data).is_some());
    count(round_trip::<PollQuery>(data).is_some());
    count(round_trip::<ErrorBody>(data).is_some());
    count(round_trip::<HealthReply>(data).is_some());
    // Payloads inside messages.
    count(round_trip::<TaskSpec>(data).is_some());
    count(round_trip::<TaskStatusReport>(data).is_some());
    count(round_trip::<AssignmentStatus>(data).is_some());
    count(round_trip::<JobInfo>(data).is_some());
    if let Some(assignment) = round_trip::<Assignment>(data) {
        accepted += 1;
        // What the server signs must be the same bytes on both ends: the engine recomputes
        // them from the assignment it decoded.
        let again: Assignment = serde_json::from_slice(&serde_json::to_vec(&assignment).unwrap()).unwrap();
        assert_eq!(assignment.signed_bytes(), again.signed_bytes(), "signed bytes of an assignment changed in transit");
    }
    accepted
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) -> Option<T> {
    let value: T = serde_json::from_slice(data).ok()?;
    let name = std::any::type_name::<T>();
    let encoded =
        serde_json::to_vec(&value).unwrap_or_else(|e| panic!("a decoded {name} does not encode: {e}\n{value:?}"));
    let again: T = serde_json::from_slice(&encoded).unwrap_or_else(|e| {
        panic!(
            "a decoded {name} does not decode after encoding: {e}\ninput: {}\nencoded: {}",
            String::from_utf8_lossy(data),
            String::from_utf8_lossy(&encoded)
        )
    });
    assert_eq!(again, value, "{name} changed in a round trip; encoded: {}", String::from_utf8_lossy(&encoded));
    let encoded_again = serde_json::to_vec(&again).unwrap();
    assert_eq!(encoded_again, encoded, "{name} encodes differently after a round trip");
    Some(value)
}

/// Poll replies have no `PartialEq` (the server's side holds raw JSON): compare the messages.
fn round_trip_poll<M: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) -> bool {
    let Ok(reply) = serde_json::from_slice::<PollReply<M>>(data) else { return false };
    let encoded = serde_json::to_vec(&reply).expect("a decoded poll reply encodes");
    let again: PollReply<M> = serde_json::from_slice(&encoded).unwrap_or_else(|e| {
        panic!(
            "a decoded poll reply does not decode after encoding: {e}\nencoded: {}",
            String::from_utf8_lossy(&encoded)
        )
    });
    assert_eq!(again.messages, reply.messages, "a poll reply changed in a round trip");
    true
}

/// The server's ticket secret in these checks.
pub const TICKET_SECRET: &[u8] = b"fuzzing secret of the server";

fn party(seed: u8) -> PartyId {
    PartyId::from_public_key(&[seed; 32])
}

/// Element tickets, identifiers and signature headers against arbitrary input.
pub fn check_tickets(data: &[u8]) {
    check_ticket_text(data);
    check_ticket_forgery(data);
    let text = String::from_utf8_lossy(data);
    for piece in text.split(['.', '/', '\n', ' ', '?', '&', '=']) {
        check_identifiers(piece);
    }
    check_identifiers(&text);
    check_signature_headers(&text);
}

/// Verifying any text as a ticket never panics, and what verifies grants only what it names,
/// to the one engine it names, until it expires.
pub fn check_ticket_text(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let presenter = party(1);
    for now in [0, 1_700_000_000_000, u64::MAX] {
        match Ticket::verify(&text, TICKET_SECRET, &presenter, now) {
            Ok(ticket) => {
                assert_eq!(ticket.holder, presenter);
                assert!(now <= ticket.expires_unix_ms, "an expired ticket verified");
            }
            Err(TicketError::Malformed | TicketError::BadSeal | TicketError::WrongHolder | TicketError::Expired) => {}
        }
    }
}

/// Tickets built from the input: the genuine one verifies for its holder until it expires and
/// for nobody else; changing any one byte of it never yields a ticket that grants anything
/// else (a change that keeps it valid, such as the case of a hex digit of the seal, must
/// decode to the very same grant).
pub fn check_ticket_forgery(data: &[u8]) {
    let mut bytes = data.iter().copied().chain(std::iter::repeat(0)).take(20);
    let mut next = || bytes.next().unwrap_or(0);
    let holder = party(next());
    let assignment = u64::from_le_bytes(std::array::from_fn(|_| next()));
    let expires = u64::from_le_bytes(std::array::from_fn(|_| next()));
    let position = u16::from_le_bytes([next(), next()]) as usize;
    let replacement = next();
    let ticket = Ticket { holder: holder.clone(), assignment: AssignmentId(assignment), expires_unix_ms: expires };
    let issued = ticket.issue(TICKET_SECRET);
    assert_eq!(Ticket::verify(&issued, TICKET_SECRET, &holder, expires), Ok(ticket.clone()));
    assert_eq!(Ticket::verify(&issued, TICKET_SECRET, &holder, 0), Ok(ticket.clone()));
    if expires < u64::MAX {
        assert_eq!(Ticket::verify(&issued, TICKET_SECRET, &holder, expires + 1), Err(TicketError::Expired));
    }
    let thief = if holder == party(2) { party(3) } else { party(2) };
    assert_eq!(Ticket::verify(&issued, TICKET_SECRET, &thief, 0), Err(TicketError::WrongHolder));
    assert_eq!(Ticket::verify(&issued, b"another server", &holder, 0), Err(TicketError::BadSeal));

    let mut altered = issued.clone().into_bytes();
    let at = position % altered.len();
    if altered[at] != replacement {
        altered[at] = replacement;
        if let Ok(altered) = String::from_utf8(altered)
            && let Ok(granted) = Ticket::verify(&altered, TICKET_SECRET, &holder, 0)
        {
            assert_eq!(granted, ticket, "an altered ticket ({altered}) grants something else than {issued}");
        }
    }
}

/// Parsing identifiers never panics; whatever parses prints in canonical form and parses back
/// to the same value.
pub fn check_identifiers(text: &str) {
    if let Ok(hash) = text.parse::<ElementHash>() {
        let printed = hash.to_string();
        assert_eq!(printed.parse::<ElementHash>().unwrap(), hash);
        assert_eq!(printed, text.to_ascii_lowercase(), "an element hash has one spelling but case");
    }
    if let Ok(id) = text.parse::<PartyId>() {
        let printed = id.to_string();
        assert_eq!(printed.parse::<PartyId>().unwrap(), id);
        assert_eq!(printed, text.to_ascii_lowercase(), "a party id has one spelling but case");
    }
    if let Ok(id) = text.parse::<JobId>() {
        assert_eq!(id.to_string().parse::<JobId>().unwrap(), id);
    }
    if let Ok(id) = text.parse::<SessionId>() {
        assert_eq!(id.to_string().parse::<SessionId>().unwrap(), id);
    }
    // The content address of any bytes round-trips.
    let hash = ElementHash::of(text.as_bytes());
    assert_eq!(hash.to_string().parse::<ElementHash>().unwrap(), hash);
}

/// Signature headers and signed assignments with arbitrary text: refused, never a panic, and
/// never accepted for a key that did not sign.
pub fn check_signature_headers(text: &str) {
    let parts: Vec<&str> = text.splitn(4, '\n').collect();
    let get = |i: usize| parts.get(i).copied();
    let signer = Identity::from_seed([9; 32]);
    let key = parse_public_key(&signer.public_key_hex()).unwrap();
    if let Ok(claim) = Claim::parse(get(0), get(1), get(2)) {
        let body = body_hash(get(3).unwrap_or("").as_bytes());
        // Only the signer can produce a valid signature over a request, and it never signed
        // this one (the fuzzer does not hold the key; the corpus has genuine signatures of
        // other requests only).
        let verified = claim.verify(&key, "DELETE", "/v1/never/signed", &body, claim.time_ms);
        assert!(verified.is_err(), "a forged signature verified");
    }
    let _ = parse_public_key(text);
    let _ = verify_bytes(&signer.public_key_hex(), text.as_bytes(), text);
    let _ = verify_bytes(text, text.as_bytes(), &signer.sign_bytes(text.as_bytes()));
    // A genuine signature over this text verifies; over other text it does not.
    let signature = signer.sign_bytes(text.as_bytes());
    assert!(verify_bytes(&signer.public_key_hex(), text.as_bytes(), &signature).is_ok());
    let mut other = text.as_bytes().to_vec();
    other.push(b'!');
    assert!(verify_bytes(&signer.public_key_hex(), &other, &signature).is_err());
}
