//! Engines' element caches in placement (P5.6): what each engine reports holding
//! (`CacheContents`, asked for with `GetCacheContents` when its session starts, and sent by the
//! engine whenever its cache changes) is kept through `tx.caches()`, and the scheduling pass
//! ranks engines for each task by `idlegrid_scheduler::affinity` (download time of what an
//! engine misses, weighed against its free room).

use std::collections::HashMap;

use idlegrid_protocol::ErrorCode;
use idlegrid_scheduler::ReplicaDemand;
use idlegrid_scheduler::affinity::{self, EngineSupply};
use idlegrid_store::{ProviderRoom, StoreError, TaskRow, Tx};
use idlegrid_types::{ElementHash, PartyId};

use crate::Coordinator;
use crate::error::{Reject, report};

/// The most elements one `CacheContents` may list.
pub const CACHE_REPORT_ELEMENTS_MAX: usize = 20_000;

impl Coordinator {
    /// An engine said what its cache holds: it replaces what it said before.
    pub(crate) fn cache_reported(
        &self,
        tx: &mut dyn Tx,
        provider: &PartyId,
        elements: &[ElementHash],
        now_ms: u64,
    ) -> Result<(), Reject> {
        if elements.len() > CACHE_REPORT_ELEMENTS_MAX {
            return Err(report(
                ErrorCode::LimitExceeded,
                format!(
                    "CacheContents lists {} elements; at most {CACHE_REPORT_ELEMENTS_MAX} are accepted",
                    elements.len()
                ),
            ));
        }
        tx.caches().set_cache_contents(provider, elements, now_ms)?;
        Ok(())
    }

    /// Give each unranked demand a rank of the engines by what they hold of its task's
    /// elements (`tasks[i]` is the task of `demands[i]`). Demands the job ranks itself keep
    /// their rank; nothing changes when no engine holds any of the elements.
    pub(crate) fn prefer_cached(
        &self,
        tx: &mut dyn Tx,
        rooms: &[ProviderRoom],
        tasks: &[TaskRow],
        demands: &mut [ReplicaDemand],
    ) -> Result<(), StoreError> {
        let unranked: Vec<usize> = (0..demands.len().min(tasks.len())).filter(|i| demands[*i].rank.is_none()).collect();
        if unranked.is_empty() || rooms.is_empty() {
            return Ok(());
        }
        let mut wanted: Vec<ElementHash> = unranked.iter().flat_map(|i| task_elements(&tasks[*i])).collect();
        wanted.sort_unstable();
        wanted.dedup();
        let holders = tx.caches().cache_holders(&wanted)?;
        if holders.is_empty() {
            return Ok(());
        }
        let index: HashMap<&PartyId, usize> = rooms.iter().enumerate().map(|(i, room)| (&room.id, i)).collect();
        let mut engines = Vec::with_capacity(rooms.len());
        for room in rooms {
            let bandwidth = self.provider_profile(tx, &room.id)?.and_then(|p| p.measured_bandwidth());
            engines.push(EngineSupply { holds: Default::default(), bandwidth_mb_per_s: bandwidth, room: room.room });
        }
        for (provider, element) in holders {
            if let Some(engine) = index.get(&provider) {
                engines[*engine].holds.insert(element);
            }
        }
        let mut sizes: HashMap<ElementHash, u64> = HashMap::new();
        for i in unranked {
            let mut elements = Vec::new();
            for hash in task_elements(&tasks[i]) {
                let size = match sizes.get(&hash) {
                    Some(size) => *size,
                    None => {
                        let size = tx.element_size(&hash)?.unwrap_or(0);
                        sizes.insert(hash, size);
                        size
                    }
                };
                elements.push((hash, size));
            }
            demands[i].rank = affinity::rank(&elements, &engines);
        }
        Ok(())
    }
}

/// Every element an engine downloads to run the task.
fn task_elements(task: &TaskRow) -> Vec<ElementHash> {
    let mut elements = vec![task.executable];
    elements.extend(task.data.values().copied());
    elements.extend(task.checkpoint);
    elements
}

#[cfg(test)]
mod tests {
    use idlegrid_protocol::messages::{ProviderToServer, ServerToProvider};
    use idlegrid_store::Store;
    use idlegrid_types::Role;

    use super::*;
    use crate::tests::World;

    fn profile() -> ProviderToServer {
        ProviderToServer::NodeProfile {
            os: "linux".into(),
            arch: "x86_64".into(),
            cores: 2,
            memory_bytes: 1 << 30,
            disk_bytes: 1 << 30,
            engine_version: env!("CARGO_PKG_VERSION").into(),
            job_requirement: None,
        }
    }

    #[test]
    fn an_engine_is_asked_for_its_cache_and_its_report_is_kept_within_bounds() {
        let mut world = World::new();
        let mut engine = world.join(Role::Provider);
        world.engine_send(&mut engine, vec![profile()]);
        let asked = world.poll::<ServerToProvider>(&mut engine);
        assert!(asked.iter().any(|(_, m)| matches!(m, ServerToProvider::GetCacheContents)), "{asked:?}");

        let held = vec![ElementHash::of(b"a"), ElementHash::of(b"b")];
        world.engine_send(&mut engine, vec![ProviderToServer::CacheContents { elements: held.clone() }]);
        let too_many = vec![ElementHash::of(b"c"); CACHE_REPORT_ELEMENTS_MAX + 1];
        world.engine_send(&mut engine, vec![ProviderToServer::CacheContents { elements: too_many }]);
        let errors: Vec<String> = world
            .poll::<ServerToProvider>(&mut engine)
            .into_iter()
            .filter_map(|(_, m)| match m {
                ServerToProvider::Error(report) => Some(report.message),
                _ => None,
            })
            .collect();
        assert!(errors.iter().any(|e| e.contains("at most 20000")), "{errors:?}");
        let id = engine.party.id.clone();
        let mut kept = world.store.write(|tx| tx.caches().cache_contents(&id)).unwrap();
        kept.sort();
        let mut expected = held;
        expected.sort();
        assert_eq!(kept, expected, "a refused report leaves the last one");
    }

    #[test]
    fn a_heartbeat_is_a_contact() {
        let mut world = World::new();
        let mut engine = world.join(Role::Provider);
        world.engine_send(&mut engine, vec![profile()]);
        world.now += 60_000;
        world.engine_send(&mut engine, vec![ProviderToServer::Heartbeat]);
        let id = engine.party.id.clone();
        let provider = world.store.write(|tx| tx.provider(&id)).unwrap().expect("a provider row");
        assert_eq!(provider.last_contact_ms, world.now);
    }
}
