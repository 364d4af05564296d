//! Parties (who holds which key), sessions and their outboxes, revocations, and the wake-up of
//! sessions across server instances.

use idlegrid_types::{PartyId, SessionId};

use crate::StoreResult;
use crate::model::*;

/// Parties, their sessions with the outboxes of messages waiting for them, and revocations.
pub trait SessionsTx {
    /// Insert a party; returns false if the ID exists already (with whatever key it has).
    fn insert_party(&mut self, party: &PartyRow) -> StoreResult<bool>;
    fn party(&mut self, id: &PartyId) -> StoreResult<Option<PartyRow>>;
    /// Tell every server instance sharing the database that these sessions have new messages,
    /// when (and only if) this transaction commits. One process needs nothing: its own wakers
    /// suffice, so the default does nothing.
    fn announce_wakes(&mut self, _sessions: &[SessionId]) -> StoreResult<()> {
        Ok(())
    }
    /// Record a revocation; returns false if the party was revoked already (the first
    /// reason and time are kept).
    fn revoke_party(&mut self, revocation: &RevocationRow) -> StoreResult<bool>;
    fn revocation(&mut self, party: &PartyId) -> StoreResult<Option<RevocationRow>>;
    /// Every revocation, oldest first.
    fn revocations(&mut self) -> StoreResult<Vec<RevocationRow>>;
    fn insert_session(&mut self, party: &PartyId, session: &SessionRow) -> StoreResult<()>;
    fn session(&mut self, id: SessionId) -> StoreResult<Option<OwnedSession>>;
    fn set_session_inbound(&mut self, id: SessionId, inbound_acked: u64, now_ms: u64) -> StoreResult<()>;
    fn touch_session(&mut self, id: SessionId, now_ms: u64) -> StoreResult<()>;
    /// Delete a session with its outbox and attachments.
    fn delete_session(&mut self, id: SessionId) -> StoreResult<()>;
    fn sessions_idle_since(&mut self, before_ms: u64, limit: u32) -> StoreResult<Vec<SessionId>>;
    /// Append a message; returns its sequence number. `result` links a final result so that it
    /// is marked delivered when the party acknowledges the message.
    fn push_outbox(
        &mut self,
        session: SessionId,
        reply_to: Option<u64>,
        body: &str,
        result: Option<i64>,
    ) -> StoreResult<u64>;
    fn outbox_after(&mut self, session: SessionId, after: u64, limit: u32) -> StoreResult<Vec<OutboxRow>>;
    /// Drop messages up to `upto`; returns the result ids they carried.
    fn ack_outbox(&mut self, session: SessionId, upto: u64) -> StoreResult<Vec<i64>>;
}
