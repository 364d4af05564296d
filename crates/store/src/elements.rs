//! Elements: content-addressed bytes the server stores, the grants that make an element an
//! owner's, and the references jobs hold; together they say what may be read and what may go.

use idlegrid_types::{ElementHash, ElementKind, JobId, PartyId};

use crate::StoreResult;
use crate::model::*;

/// Stored elements (content-addressed bytes), who was granted them, and which jobs refer to them.
pub trait ElementsTx {
    /// Record stored bytes (no-op if known).
    fn insert_element(&mut self, hash: &ElementHash, size: u64, now_ms: u64) -> StoreResult<()>;
    fn element_size(&mut self, hash: &ElementHash) -> StoreResult<Option<u64>>;
    fn grant_element(
        &mut self,
        owner: &PartyId,
        hash: &ElementHash,
        kind: ElementKind,
        name: &str,
        now_ms: u64,
    ) -> StoreResult<()>;
    fn element_grant(&mut self, owner: &PartyId, hash: &ElementHash) -> StoreResult<Option<ElementGrant>>;
    fn revoke_element(&mut self, owner: &PartyId, hash: &ElementHash) -> StoreResult<bool>;
    fn add_job_elements(&mut self, job: JobId, hashes: &[ElementHash]) -> StoreResult<()>;
    /// Elements stored (or last released) before `created_before_ms` that no owner, no job and
    /// no task's checkpoint refers to. The age bound spares elements uploaded just before the
    /// message that will refer to them, and released ones an engine may still be fetching.
    fn unreferenced_elements(&mut self, created_before_ms: u64, limit: u32) -> StoreResult<Vec<ElementHash>>;
    /// Whether a client may read an element: it registered it, or a job of its refers to it.
    fn element_visible_to_client(&mut self, client: &PartyId, hash: &ElementHash) -> StoreResult<bool>;
    /// What an owner stores: the bytes and the number of the elements granted to it.
    fn element_usage(&mut self, owner: &PartyId) -> StoreResult<ElementUsage>;
    fn delete_element(&mut self, hash: &ElementHash) -> StoreResult<()>;
    /// An element lost a reference (a task's checkpoint replaced by a newer one): its grace
    /// period before collection starts again at `now_ms`. Whether it goes is decided then by
    /// what still refers to it, so a blob shared with another task, job or owner stays.
    fn release_element(&mut self, hash: &ElementHash, now_ms: u64) -> StoreResult<()>;
}
