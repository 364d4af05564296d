//! The decisions of the coordinator's scheduling pass for jobs without a virtual cluster, apart
//! from the store. The coordinator's `schedule` reads a snapshot (engines with room, candidate
//! tasks and what each asks), asks [`place`] where the tasks go, reads the validation records
//! of the engines [`engines_to_check`] names, asks [`draw_spot_checks`] which placements become
//! test tasks, and applies the result in one transaction. The simulator (`idlegrid-sim`) runs
//! the same functions for its plain jobs. All are pure: the same snapshot and random stream give
//! the same plan.

use crate::rooms::{ReplicaDemand, place_replicas};
use idlegrid_assurance::{NextAssignment, ProviderRecord, SpotCheckPolicy};
use idlegrid_random::RandomSource;
use idlegrid_types::PartyId;

/// One launch a pass decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Launch {
    /// Index of the task among the pass's demands.
    pub task: usize,
    /// Index of the engine among the pass's rooms.
    pub engine: usize,
    /// Offer the room to a test task with a known answer first; when one is sent, the task
    /// waits for the next pass.
    pub spot_check: bool,
}

/// Where the tasks go, in demand order (the guarantees are `place_replicas`'s: no engine over
/// its room, no task twice on one engine or on an engine it excludes).
pub fn place(rooms: &[u32], demands: &[ReplicaDemand]) -> Vec<Launch> {
    place_replicas(rooms, demands)
        .into_iter()
        .map(|(task, engine)| Launch { task, engine, spot_check: false })
        .collect()
}

/// The engines whose validation records [`draw_spot_checks`] needs: those that get a launch,
/// once each, and none when no spot check can be sent this pass.
pub fn engines_to_check(launches: &[Launch], policy: &SpotCheckPolicy, known_answers: bool) -> Vec<usize> {
    if !known_answers || !(policy.rate > 0.0 || policy.new_provider_rate > 0.0) {
        return Vec::new();
    }
    let mut engines: Vec<usize> = launches.iter().map(|launch| launch.engine).collect();
    engines.sort_unstable();
    engines.dedup();
    engines
}

/// Mark launches that become spot checks: one draw per launch, in plan order, with the
/// probability the policy gives the engine's record. Engines without a record in `records`
/// (see [`engines_to_check`]) are never checked; a quarantined engine is never given work at all,
/// so the pass has filtered it out already and a draw for it is simply no spot check.
pub fn draw_spot_checks(
    launches: &mut [Launch],
    records: &[(PartyId, Option<ProviderRecord>)],
    policy: &SpotCheckPolicy,
    random: &mut dyn RandomSource,
) {
    for launch in launches {
        let Some((id, Some(record))) = records.get(launch.engine) else { continue };
        launch.spot_check = matches!(policy.next_assignment(record, id, random), Ok(NextAssignment::SpotCheck));
    }
}

#[cfg(test)]
mod tests {
    use idlegrid_random::Xoshiro256StarStar;
    use proptest::prelude::*;

    use super::*;

    fn party(n: usize) -> PartyId {
        PartyId::from_public_key(&[n as u8; 32])
    }

    fn policy(rate: f64) -> SpotCheckPolicy {
        SpotCheckPolicy { rate, new_provider_rate: rate, ..SpotCheckPolicy::default() }
    }

    fn records(engines: usize, checked: &[usize]) -> Vec<(PartyId, Option<ProviderRecord>)> {
        (0..engines).map(|e| (party(e), checked.contains(&e).then(ProviderRecord::default))).collect()
    }

    fn demand(wanted: u32, excluded: Vec<usize>) -> ReplicaDemand {
        ReplicaDemand::new(wanted, excluded)
    }

    #[test]
    fn spot_checks_need_a_rate_and_known_answers() {
        let launches = place(&[2, 1], &[demand(1, vec![]), demand(1, vec![]), demand(1, vec![])]);
        assert_eq!(launches.len(), 3);
        assert!(engines_to_check(&launches, &policy(0.0), true).is_empty());
        assert!(engines_to_check(&launches, &policy(0.5), false).is_empty());
        assert_eq!(engines_to_check(&launches, &policy(0.5), true), vec![0, 1]);
    }

    #[test]
    fn a_certain_rate_checks_every_launch_with_a_record_and_none_without() {
        let mut launches = place(&[3, 3], &(0..6).map(|_| demand(1, vec![])).collect::<Vec<_>>());
        let mut random = Xoshiro256StarStar::from_seed(1);
        draw_spot_checks(&mut launches, &records(2, &[1]), &policy(1.0), &mut random);
        for launch in &launches {
            assert_eq!(launch.spot_check, launch.engine == 1, "{launch:?}");
        }
        draw_spot_checks(&mut launches, &records(2, &[0, 1]), &policy(0.0), &mut random);
        assert!(launches.iter().all(|launch| !launch.spot_check));
    }

    /// The plan as a naive reading of `place`'s guarantees: each demand in turn takes, one by
    /// one, the allowed engine it does not hold yet with the most room left (ties: lowest index).
    fn reference(rooms: &[u32], demands: &[ReplicaDemand]) -> Vec<Launch> {
        let mut left = rooms.to_vec();
        let mut plan = Vec::new();
        for (task, demand) in demands.iter().enumerate() {
            let mut held: Vec<usize> = Vec::new();
            while (held.len() as u32) < demand.wanted {
                let best = (0..left.len())
                    .filter(|e| left[*e] > 0 && !demand.excluded.contains(e) && !held.contains(e))
                    .max_by(|a, b| left[*a].cmp(&left[*b]).then(b.cmp(a)));
                let Some(engine) = best else { break };
                left[engine] -= 1;
                held.push(engine);
                plan.push(Launch { task, engine, spot_check: false });
            }
        }
        plan
    }

    /// Every demand one engine set can meet: 1 to 3 placements, excluding any subset of the
    /// engines.
    fn all_demands(engines: usize) -> Vec<ReplicaDemand> {
        let mut all = Vec::new();
        for wanted in 1..=3 {
            for mask in 0..(1usize << engines) {
                let excluded = (0..engines).filter(|e| mask & (1 << e) != 0).collect();
                all.push(demand(wanted, excluded));
            }
        }
        all
    }

    #[test]
    fn plans_match_the_naive_reading_on_every_small_case() {
        let mut cases = 0u64;
        for engines in 0..=3usize {
            let demands = all_demands(engines);
            let mut sequences: Vec<Vec<ReplicaDemand>> = vec![Vec::new()];
            for _ in 0..3 {
                let longer: Vec<Vec<ReplicaDemand>> = sequences
                    .iter()
                    .filter(|s| s.len() == sequences.last().map_or(0, Vec::len))
                    .flat_map(|s| demands.iter().map(move |d| [s.clone(), vec![d.clone()]].concat()))
                    .collect();
                sequences.extend(longer);
            }
            for rooms_code in 0..3usize.pow(engines as u32) {
                let rooms: Vec<u32> = (0..engines).map(|e| (rooms_code / 3usize.pow(e as u32) % 3) as u32).collect();
                for sequence in &sequences {
                    assert_eq!(place(&rooms, sequence), reference(&rooms, sequence), "rooms {rooms:?}, {sequence:?}");
                    cases += 1;
                }
            }
        }
        assert!(cases > 300_000, "{cases} cases");
    }

    proptest! {
        #[test]
        fn plans_respect_rooms_and_exclusions_and_repeat_with_their_seed(
            rooms in proptest::collection::vec(0u32..4, 1..8),
            wants in proptest::collection::vec((1u32..4, proptest::collection::vec(0usize..8, 0..3)), 0..20),
            rate in 0.0f64..1.0,
            seed in any::<u64>(),
        ) {
            let demands: Vec<ReplicaDemand> = wants.into_iter().map(|(w, ex)| demand(w, ex)).collect();
            let plan = |seed: u64| {
                let mut launches = place(&rooms, &demands);
                let engines = engines_to_check(&launches, &policy(rate), true);
                let all = records(rooms.len(), &engines);
                draw_spot_checks(&mut launches, &all, &policy(rate), &mut Xoshiro256StarStar::from_seed(seed));
                launches
            };
            let launches = plan(seed);
            prop_assert_eq!(&launches, &plan(seed));
            let mut used = vec![0u32; rooms.len()];
            for launch in &launches {
                used[launch.engine] += 1;
                prop_assert!(!demands[launch.task].excluded.contains(&launch.engine));
            }
            for (engine, n) in used.iter().enumerate() {
                prop_assert!(*n <= rooms[engine]);
            }
            for (task, demand) in demands.iter().enumerate() {
                let mut engines: Vec<usize> =
                    launches.iter().filter(|l| l.task == task).map(|l| l.engine).collect();
                prop_assert!(engines.len() as u32 <= demand.wanted);
                let placed = engines.len();
                engines.sort_unstable();
                engines.dedup();
                prop_assert_eq!(engines.len(), placed, "one engine twice for task {}", task);
            }
        }
    }
}
