//! Property tests over the public API: whatever results arrive, an accepted result has the
//! agreement or credibility its policy asks for, never rests on quarantined providers alone,
//! and the simulation is a function of its seed.

use std::collections::BTreeMap;

use idlegrid_assurance::sim::{SimConfig, simulate};
use idlegrid_assurance::*;
use idlegrid_random::Xoshiro256StarStar;
use idlegrid_types::{AssignmentId, ElementHash, PartyId};
use proptest::prelude::*;

fn provider(n: usize) -> PartyId {
    PartyId::from_public_key(&[n as u8 + 1; 32])
}

fn digest(answer: u8) -> ResultDigest {
    ElementHash::of(&[answer])
}

fn policy_strategy() -> impl Strategy<Value = ValidationPolicy> {
    prop_oneof![
        Just(ValidationPolicy::None),
        (1u32..4, 0u32..3, 0u32..4).prop_map(|(min_agreeing, extra_target, extra_max)| ValidationPolicy::Quorum {
            min_agreeing,
            target_replicas: min_agreeing + extra_target,
            replicas_max: min_agreeing + extra_target + extra_max,
        }),
        (2u32..4, 1u32..20, 0.0f64..1.0, 0u32..4).prop_map(
            |(min_agreeing, trusted_after, check_probability_min, extra)| ValidationPolicy::Adaptive {
                min_agreeing,
                trusted_after,
                check_probability_min,
                replicas_max: min_agreeing + extra,
            }
        ),
        (prop_oneof![Just(0.9), Just(0.99), Just(0.999), Just(0.9999)], 1u32..12)
            .prop_map(|(target, replicas_max)| ValidationPolicy::Credibility { target, replicas_max }),
    ]
}

#[derive(Debug, Clone)]
struct ProviderSetup {
    spot_checks_passed: u64,
    consecutive_valid: u64,
    quarantined: bool,
    /// The answer this provider returns (0 is the truth; saboteurs agree on 1).
    answer: u8,
}

fn provider_strategy() -> impl Strategy<Value = ProviderSetup> {
    (
        prop_oneof![Just(0u64), 1u64..30, 30u64..2000],
        0u64..300,
        prop::bool::weighted(0.3),
        prop_oneof![3 => Just(0u8), 2 => Just(1u8), 1 => Just(2u8)],
    )
        .prop_map(|(spot_checks_passed, consecutive_valid, quarantined, answer)| ProviderSetup {
            spot_checks_passed,
            consecutive_valid,
            quarantined,
            answer,
        })
}

struct Run {
    policy: ValidationPolicy,
    model: CredibilityModel,
    records: BTreeMap<PartyId, ProviderRecord>,
    answers: BTreeMap<PartyId, u8>,
}

impl Run {
    fn new(policy: ValidationPolicy, f: f64, setups: &[ProviderSetup]) -> Run {
        let mut records = BTreeMap::new();
        let mut answers = BTreeMap::new();
        for (n, setup) in setups.iter().enumerate() {
            let mut record = ProviderRecord {
                spot_checks_passed_since_invalid: setup.spot_checks_passed,
                consecutive_valid: setup.consecutive_valid,
                ..ProviderRecord::default()
            };
            if setup.quarantined {
                record.quarantine_by_operator();
                // Its history is kept, so credibility must come from the quarantine alone.
                record.spot_checks_passed_since_invalid = setup.spot_checks_passed;
                record.consecutive_valid = setup.consecutive_valid;
            }
            records.insert(provider(n), record);
            answers.insert(provider(n), setup.answer);
        }
        Run { policy, model: CredibilityModel::new(f).unwrap(), records, answers }
    }

    /// Drive one task to its end with the providers in order; return every decision.
    fn drive(&self, seed: u64, typical: Option<f64>) -> (TaskAssurance, Vec<Decision>) {
        let mut task = TaskAssurance::new(self.policy).unwrap();
        let mut random = Xoshiro256StarStar::from_seed(seed);
        let mut decisions = Vec::new();
        let mut next_provider = 0usize;
        for _ in 0..100 {
            let mut context = DecisionContext {
                records: &self.records,
                model: &self.model,
                comparator: &mut ByteEquality,
                random: &mut random,
                typical_credibility: typical,
            };
            let decision = task.decide(&mut context).unwrap();
            let action = decision.action.clone();
            decisions.push(decision);
            let Action::Launch { replicas } = action else { break };
            if next_provider >= self.records.len() {
                break;
            }
            let mut launched = Vec::new();
            for _ in 0..replicas {
                if next_provider >= self.records.len() {
                    break;
                }
                let party = provider(next_provider);
                let assignment = AssignmentId(next_provider as u64);
                task.replica_launched(assignment, party.clone()).unwrap();
                launched.push((assignment, party));
                next_provider += 1;
            }
            // Everything asked for is running on providers in good standing: nothing more to
            // do until a result arrives, however often the server decides.
            if launched.len() == replicas as usize
                && launched.iter().all(|(_, party)| !self.records[party].is_quarantined())
            {
                for _ in 0..2 {
                    let mut context = DecisionContext {
                        records: &self.records,
                        model: &self.model,
                        comparator: &mut ByteEquality,
                        random: &mut random,
                        typical_credibility: typical,
                    };
                    let waiting = task.decide(&mut context).unwrap();
                    assert_eq!(waiting.action, Action::Wait, "{:?} with {} running", self.policy, launched.len());
                    assert!(waiting.judgements.is_empty() && waiting.cancel.is_empty());
                }
            }
            for (assignment, party) in launched {
                task.replica_result(assignment, digest(self.answers[&party])).unwrap();
            }
        }
        (task, decisions)
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    /// An accepted result always has the agreement or credibility its policy requires, rests on
    /// no quarantined provider, and every provider is judged against it truthfully.
    #[test]
    fn accepted_results_meet_their_policy(
        policy in policy_strategy(),
        f in 0.05f64..0.5,
        setups in prop::collection::vec(provider_strategy(), 1..12),
        seed in any::<u64>(),
        typical in prop::option::of(0.5f64..0.99999),
    ) {
        let run = Run::new(policy, f, &setups);
        let (task, decisions) = run.drive(seed, typical);
        let mut judged = std::collections::BTreeSet::new();
        for decision in &decisions {
            for judgement in &decision.judgements {
                // Without re-verification, each replica is judged at most once.
                prop_assert!(judged.insert(judgement.assignment), "judged twice: {judgement:?}");
                prop_assert!(judgement.previous.is_none());
            }
            let Action::Accept(acceptance) = &decision.action else { continue };
            prop_assert!(!acceptance.agreeing.is_empty());
            for party in &acceptance.agreeing {
                prop_assert!(!run.records[party].is_quarantined(), "quarantined provider {party} supports an accepted result");
                prop_assert_eq!(digest(run.answers[party]), acceptance.canonical.digest);
            }
            for party in &acceptance.disagreeing {
                prop_assert!(!run.records[party].is_quarantined());
                prop_assert_ne!(digest(run.answers[party]), acceptance.canonical.digest);
            }
            let agreeing = acceptance.agreeing.len() as u32;
            match policy {
                ValidationPolicy::None => {}
                ValidationPolicy::Quorum { min_agreeing, .. } => prop_assert!(agreeing >= min_agreeing),
                ValidationPolicy::Adaptive { min_agreeing, trusted_after, .. } => {
                    if acceptance.checked {
                        prop_assert!(agreeing >= min_agreeing);
                    } else {
                        let record = &run.records[&acceptance.agreeing[0]];
                        prop_assert!(agreeing == 1 && record.consecutive_valid >= u64::from(trusted_after));
                    }
                }
                ValidationPolicy::Credibility { target, .. } => {
                    // Sarmenta's formula in product form, independently of the crate's log-odds.
                    let odds = |parties: &[PartyId]| parties.iter().map(|p| {
                        let c = run.model.provider_credibility(&run.records[p]);
                        c / (1.0 - c)
                    }).product::<f64>();
                    let replicas = task.replicas();
                    let mut groups: BTreeMap<ResultDigest, Vec<PartyId>> = BTreeMap::new();
                    for replica in replicas.iter().filter(|r| !r.discarded) {
                        if let Some(d) = replica.digest {
                            groups.entry(d).or_default().push(replica.provider.clone());
                        }
                    }
                    let total: f64 = groups.values().map(|parties| odds(parties)).sum();
                    let credibility = odds(&groups[&acceptance.canonical.digest]) / (1.0 + total);
                    prop_assert!(credibility >= target - 1e-9, "credibility {credibility} < target {target}");
                    prop_assert!((credibility - acceptance.credibility).abs() < 1e-9);
                }
            }
        }
        // Quarantined providers alone never make a result.
        if setups.iter().all(|s| s.quarantined) {
            prop_assert!(decisions.iter().all(|d| !matches!(d.action, Action::Accept(_))));
        }
    }

    /// Arbitrary events, valid or not, never panic, and decisions never exceed the budget.
    #[test]
    fn arbitrary_events_never_panic(
        policy in policy_strategy(),
        events in prop::collection::vec((0u8..6, 0u64..6, 0usize..6, 0u8..3, prop::bool::ANY), 0..40),
        quarantined in prop::collection::vec(prop::bool::ANY, 6),
    ) {
        let mut records: BTreeMap<PartyId, ProviderRecord> = BTreeMap::new();
        for (n, &q) in quarantined.iter().enumerate().take(5) {
            let mut record = ProviderRecord::default();
            if q { record.quarantine_by_operator(); }
            records.insert(provider(n), record);
        }
        let model = CredibilityModel::default();
        let mut random = Xoshiro256StarStar::from_seed(7);
        let mut task = TaskAssurance::new(policy).unwrap();
        for (kind, assignment, party, answer, equivalent) in events {
            let assignment = AssignmentId(assignment);
            let _ = match kind {
                0 => task.replica_launched(assignment, provider(party)),
                1 => task.replica_result(assignment, digest(answer)),
                2 => task.replica_lost(assignment),
                3 => task.record_comparison(assignment, AssignmentId(u64::from(answer)), if equivalent { Comparison::Equivalent } else { Comparison::Failed }),
                _ => {
                    // Provider 5 has no record: an error, never a panic.
                    let mut deferred = DeferredValidator;
                    let mut context = DecisionContext {
                        records: &records,
                        model: &model,
                        comparator: if equivalent { &mut ByteEquality } else { &mut deferred },
                        random: &mut random,
                        typical_credibility: None,
                    };
                    match task.decide(&mut context) {
                        Ok(decision) => {
                            if let Action::Launch { replicas } = decision.action {
                                prop_assert!((1..=REPLICAS_LIMIT).contains(&replicas));
                            }
                            if let Action::Accept(acceptance) = decision.action {
                                for party in &acceptance.agreeing {
                                    prop_assert!(!records[party].is_quarantined());
                                }
                            }
                            Ok(())
                        }
                        Err(error) => {
                            prop_assert!(!error.to_string().is_empty());
                            Ok(())
                        }
                    }
                }
            };
        }
    }

    /// Provider credibility grows with passed spot checks, stays in [1 - f, 1), and an extra
    /// agreeing provider never lowers a result's credibility.
    #[test]
    fn credibility_is_monotone_and_bounded(f in 0.01f64..0.99, k in 0u64..100_000, others in prop::collection::vec(0.01f64..0.999, 0..5), extra in 0.5f64..0.9999) {
        let model = CredibilityModel::new(f).unwrap();
        let c = model.credibility_after_spot_checks(k);
        let next = model.credibility_after_spot_checks(k + 1);
        prop_assert!(c >= 1.0 - f && c < 1.0 && next >= c, "f {f} k {k}: {c} then {next}");
        let group = group_log_odds([c]);
        let rest: Vec<f64> = others.iter().map(|&o| group_log_odds([o])).collect();
        let before = result_credibilities(&[vec![group], rest.clone()].concat())[0];
        let after = result_credibilities(&[vec![group + log_odds(extra)], rest].concat())[0];
        prop_assert!(after >= before - 1e-12, "{before} -> {after}");
        prop_assert!((0.0..=1.0).contains(&before));
    }

    /// The same seed gives the same report; the planner never checks at rate zero.
    #[test]
    fn the_simulation_is_a_function_of_its_seed(seed in any::<u64>()) {
        let config = SimConfig { seed, providers: 30, tasks: 400, saboteur_fractions: vec![0.2], sabotage_rates: vec![0.5], ..SimConfig::default() };
        let first = simulate(&config).unwrap();
        let second = simulate(&config).unwrap();
        prop_assert_eq!(&first, &second);
        prop_assert_eq!(first.to_string(), second.to_string());
        for row in &first.rows {
            if row.policy != "credibility 0.9999" {
                prop_assert_eq!(row.spot_checks, 0);
            }
        }
    }
}

#[test]
fn different_seeds_give_different_runs() {
    let config = SimConfig {
        providers: 30,
        tasks: 2000,
        saboteur_fractions: vec![0.2],
        sabotage_rates: vec![0.5],
        ..SimConfig::default()
    };
    let first = simulate(&config).unwrap();
    let other = simulate(&SimConfig { seed: 2, ..config }).unwrap();
    assert_ne!(first.rows, other.rows);
}
