//! Element tickets (P4.4): the server lets one engine download the elements of a task it was
//! assigned, for a limited time. A ticket names the engine and its expiry and is sealed with an
//! HMAC-SHA256 under a server secret; it covers all elements of that assignment.

use hmac::{Hmac, KeyInit, Mac};
use idlegrid_types::{AssignmentId, PartyId};
use sha2::Sha256;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TicketError {
    #[error("malformed ticket")]
    Malformed,
    #[error("the ticket was issued to another engine")]
    WrongHolder,
    #[error("the ticket expired; ask the server for the task again")]
    Expired,
    #[error("the ticket's seal is invalid")]
    BadSeal,
}

/// What a valid ticket grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub holder: PartyId,
    pub assignment: AssignmentId,
    pub expires_unix_ms: u64,
}

fn seal(secret: &[u8], text: &str) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(text.as_bytes());
    mac.finalize().into_bytes().to_vec()
}

impl Ticket {
    /// Encode as `holder.assignment.expiry.seal`.
    pub fn issue(&self, secret: &[u8]) -> String {
        let text = format!("{}.{}.{}", self.holder, self.assignment.0, self.expires_unix_ms);
        let seal = hex::encode(seal(secret, &text));
        format!("{text}.{seal}")
    }

    /// Check a ticket presented by `presenter` at `now_ms`.
    pub fn verify(encoded: &str, secret: &[u8], presenter: &PartyId, now_ms: u64) -> Result<Ticket, TicketError> {
        let (text, seal_hex) = encoded.rsplit_once('.').ok_or(TicketError::Malformed)?;
        let mut parts = text.split('.');
        let (Some(holder), Some(assignment), Some(expiry), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TicketError::Malformed);
        };
        let seal_bytes = hex::decode(seal_hex).map_err(|_| TicketError::Malformed)?;
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC takes keys of any length");
        mac.update(text.as_bytes());
        mac.verify_slice(&seal_bytes).map_err(|_| TicketError::BadSeal)?;
        let ticket = Ticket {
            holder: holder.parse().map_err(|_| TicketError::Malformed)?,
            assignment: AssignmentId(assignment.parse().map_err(|_| TicketError::Malformed)?),
            expires_unix_ms: expiry.parse().map_err(|_| TicketError::Malformed)?,
        };
        if &ticket.holder != presenter {
            return Err(TicketError::WrongHolder);
        }
        if now_ms > ticket.expires_unix_ms {
            return Err(TicketError::Expired);
        }
        Ok(ticket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::Identity;

    #[test]
    fn tickets_bind_holder_and_expiry() {
        let secret = b"server secret";
        let engine = Identity::generate().id().clone();
        let ticket = Ticket { holder: engine.clone(), assignment: AssignmentId(42), expires_unix_ms: 10_000 };
        let encoded = ticket.issue(secret);
        assert_eq!(Ticket::verify(&encoded, secret, &engine, 9_999).unwrap(), ticket);
        assert_eq!(Ticket::verify(&encoded, secret, &engine, 10_001), Err(TicketError::Expired));
        let thief = Identity::generate().id().clone();
        assert_eq!(Ticket::verify(&encoded, secret, &thief, 0), Err(TicketError::WrongHolder));
        assert_eq!(Ticket::verify(&encoded, b"other secret", &engine, 0), Err(TicketError::BadSeal));
        let forged = encoded.replace(".10000.", ".99999.");
        assert_eq!(Ticket::verify(&forged, secret, &engine, 0), Err(TicketError::BadSeal));
        assert_eq!(Ticket::verify("nonsense", secret, &engine, 0), Err(TicketError::Malformed));
    }
}
