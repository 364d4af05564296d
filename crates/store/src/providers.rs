//! Providers: their state, slots and load, their profile (the hardware they declared and the
//! server measured), and the record of their results that result assurance keeps (quarantine).

use idlegrid_protocol::messages::NodeState;
use idlegrid_types::{PartyId, SessionId};

use crate::StoreResult;
use crate::model::*;

/// Providers: their state, load and profile, and what the server remembers of their results.
pub trait ProvidersTx {
    fn upsert_provider(
        &mut self,
        id: &PartyId,
        state: NodeState,
        slots: u32,
        capacity: u32,
        now_ms: u64,
    ) -> StoreResult<()>;
    fn set_provider_profile(&mut self, id: &PartyId, profile_json: &str) -> StoreResult<()>;
    /// The profile last set (JSON), if the provider is known and has one.
    fn provider_profile(&mut self, id: &PartyId) -> StoreResult<Option<String>>;
    fn set_provider_session(&mut self, id: &PartyId, session: Option<SessionId>) -> StoreResult<()>;
    fn touch_provider(&mut self, id: &PartyId, now_ms: u64) -> StoreResult<()>;
    fn provider(&mut self, id: &PartyId) -> StoreResult<Option<ProviderRow>>;
    /// Active providers heard from since `contact_since_ms` that can take more tasks.
    fn providers_with_room(&mut self, contact_since_ms: u64) -> StoreResult<Vec<ProviderRoom>>;
    /// Up to `limit` providers heard from since `contact_since_ms`, in any state, by ID.
    fn providers_heard_since(&mut self, contact_since_ms: u64, limit: u32) -> StoreResult<Vec<ProviderRow>>;
    /// What the server remembers of a provider's results (opaque JSON), if anything.
    fn provider_record(&mut self, provider: &PartyId) -> StoreResult<Option<String>>;
    /// Insert or replace a provider's record; `quarantined` is kept in its own column for the query below.
    fn set_provider_record(&mut self, provider: &PartyId, record: &str, quarantined: bool) -> StoreResult<()>;
    /// Every quarantined provider.
    fn quarantined_providers(&mut self) -> StoreResult<Vec<PartyId>>;
}
