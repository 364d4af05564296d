//! Engines that look silent are asked before they lose their tasks: once an engine has not
//! been heard from for [`ASK_AFTER_PERCENT`] of `provider_silence_ms_max`, the maintenance
//! pass sends it `GetTaskStatus` for each task it holds (once per silence), so a live engine
//! whose polls were delayed answers and keeps its work; one that stays silent past the limit
//! loses its tasks as before. When it was asked is kept per engine in the metadata.

use std::collections::BTreeMap;

use idlegrid_protocol::messages::ServerToProvider;
use idlegrid_store::{StoreError, Tx};
use idlegrid_types::{AssignmentId, PartyId};

use crate::session::push;
use crate::{Coordinator, Effects};

/// Share (percent) of the silence limit after which an engine is asked about its tasks.
pub const ASK_AFTER_PERCENT: u64 = 60;

/// What to do about an engine holding tasks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    /// Heard from recently, or asked already since it was last heard from.
    Wait,
    /// Silent long enough to be asked how its tasks are.
    Ask,
    /// Silent past the limit: its tasks are taken back (by the reclaiming pass).
    Reclaim,
}

/// The decision for an engine last heard from at `last_contact_ms`, asked at `asked_ms` (if
/// ever).
pub fn probe(now_ms: u64, last_contact_ms: u64, asked_ms: Option<u64>, silence_ms_max: u64) -> Probe {
    let silent_for = now_ms.saturating_sub(last_contact_ms);
    if silent_for > silence_ms_max {
        return Probe::Reclaim;
    }
    let looks_silent = silent_for.saturating_mul(100) >= silence_ms_max.saturating_mul(ASK_AFTER_PERCENT);
    let asked_since_contact = asked_ms.is_some_and(|asked| asked > last_contact_ms);
    if looks_silent && !asked_since_contact { Probe::Ask } else { Probe::Wait }
}

fn asked_key(provider: &PartyId) -> String {
    format!("silence_asked:{provider}")
}

impl Coordinator {
    /// Ask engines that look silent about their tasks; returns how many engines were asked.
    pub(crate) fn ask_silent_looking(&self, tx: &mut dyn Tx, now_ms: u64, fx: &mut Effects) -> Result<u32, StoreError> {
        let silence = self.config.provider_silence_ms_max;
        // Every engine that may look silent (`probe` decides): last heard at or before this.
        let since = now_ms.saturating_sub(silence.saturating_mul(ASK_AFTER_PERCENT) / 100).saturating_add(1);
        let mut held: BTreeMap<PartyId, Vec<AssignmentId>> = BTreeMap::new();
        for assignment in tx.silent_assignments(since, 1000)? {
            held.entry(assignment.provider).or_default().push(assignment.id);
        }
        let mut asked = 0;
        for (provider, assignments) in held {
            let Some(row) = tx.provider(&provider)? else { continue };
            let Some(session) = row.session else { continue };
            let key = asked_key(&provider);
            let asked_ms =
                tx.meta(&key)?.and_then(|bytes| <[u8; 8]>::try_from(bytes.as_slice()).ok()).map(u64::from_be_bytes);
            if probe(now_ms, row.last_contact_ms, asked_ms, silence) != Probe::Ask {
                continue;
            }
            for assignment in assignments {
                push(tx, fx, session, None, &ServerToProvider::GetTaskStatus { assignment }, None)?;
            }
            tx.set_meta(&key, &now_ms.to_be_bytes())?;
            asked += 1;
        }
        Ok(asked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engines_are_asked_once_per_silence_then_reclaimed() {
        let silence = 10_000;
        assert_eq!(probe(1_000, 1_000, None, silence), Probe::Wait);
        assert_eq!(probe(6_999, 1_000, None, silence), Probe::Wait);
        assert_eq!(probe(7_000, 1_000, None, silence), Probe::Ask);
        assert_eq!(probe(7_000, 1_000, Some(7_000), silence), Probe::Wait, "asked already");
        assert_eq!(probe(7_000, 1_000, Some(500), silence), Probe::Ask, "asked in an earlier silence");
        assert_eq!(probe(11_000, 1_000, Some(7_000), silence), Probe::Wait);
        assert_eq!(probe(11_001, 1_000, Some(7_000), silence), Probe::Reclaim);
        assert_eq!(probe(0, 1_000, None, silence), Probe::Wait, "a contact after now is no silence");
    }

    #[test]
    fn every_case_of_a_small_grid_follows_the_rule() {
        for silence in [0u64, 1, 99, 100, 1_000, 15_000] {
            for contact in [0u64, 5, 1_000] {
                for now in (0..=20_000).step_by(7) {
                    for asked in [None, Some(0), Some(contact), Some(now)] {
                        let got = probe(now, contact, asked, silence);
                        let silent_for = now.saturating_sub(contact);
                        let expected = if silent_for > silence {
                            Probe::Reclaim
                        } else if silent_for * 100 >= silence * ASK_AFTER_PERCENT && asked.is_none_or(|a| a <= contact)
                        {
                            Probe::Ask
                        } else {
                            Probe::Wait
                        };
                        assert_eq!(got, expected, "now {now} contact {contact} asked {asked:?} silence {silence}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_silent_looking_engine_is_asked_once_and_keeps_its_tasks_by_answering() {
        use idlegrid_protocol::messages::{NodeState, ProviderToServer};
        use idlegrid_types::Role;

        use crate::tests::{World, assignments, launched_job};

        let asks = |world: &mut World, engine: &mut crate::tests::Peer| -> Vec<AssignmentId> {
            world
                .poll::<ServerToProvider>(engine)
                .into_iter()
                .filter_map(|(_, m)| match m {
                    ServerToProvider::GetTaskStatus { assignment } => Some(assignment),
                    _ => None,
                })
                .collect()
        };
        let mut world = World::new();
        let (_client, _job, _) = launched_job(&mut world, 2);
        let mut engine = world.join(Role::Provider);
        let ready = ProviderToServer::NodeStatus { state: NodeState::Active, slots: 1, queue_capacity: 4 };
        world.engine_send(&mut engine, vec![ready]);
        let mut held: Vec<AssignmentId> = assignments(&mut world, &mut engine).iter().map(|a| a.assignment).collect();
        held.sort();
        assert_eq!(held.len(), 2);
        let silence = world.coordinator.config().provider_silence_ms_max;

        world.now += silence / 2;
        world.maintain();
        assert!(asks(&mut world, &mut engine).is_empty(), "not asked while heard from recently");
        // The poll above was a contact: silent-looking from 60% of the limit after it.
        world.now += silence * 7 / 10;
        assert_eq!(world.maintain().assignments_reclaimed, 0);
        let mut asked = asks(&mut world, &mut engine);
        asked.sort();
        assert_eq!(asked, held, "asked about each task it holds");
        // The poll was a contact again; silent-looking again later: asked again, once.
        world.now += silence * 7 / 10;
        world.maintain();
        world.maintain();
        assert_eq!(asks(&mut world, &mut engine).len(), 2, "asked once per silence");

        // Silent past the limit: the tasks are taken back, without another question.
        world.now += silence + 1;
        assert_eq!(world.maintain().assignments_reclaimed, 2);
    }
}
