//! What each engine's element cache holds, behind `Tx::caches()`: the set an engine last
//! reported (`CacheContents`), replaced whole by each report, so that the scheduling pass can
//! prefer engines that already hold a task's elements (P5.6).

use idlegrid_types::{ElementHash, PartyId};

use crate::StoreResult;

pub trait CacheTx {
    /// Replace what `provider`'s cache holds with `elements` (duplicates are kept once).
    fn set_cache_contents(&mut self, provider: &PartyId, elements: &[ElementHash], now_ms: u64) -> StoreResult<()>;
    /// What `provider`'s cache held at its last report, sorted; empty when it never reported.
    fn cache_contents(&mut self, provider: &PartyId) -> StoreResult<Vec<ElementHash>>;
    /// Which of `elements` each engine holds: `(engine, element)` pairs, sorted.
    fn cache_holders(&mut self, elements: &[ElementHash]) -> StoreResult<Vec<(PartyId, ElementHash)>>;
}
