//! Worked examples of the per-task state machine.

use std::collections::BTreeMap;

use idlegrid_types::{AssignmentId, ElementHash, PartyId};

use crate::*;
use idlegrid_random::{RandomSource, Xoshiro256StarStar};

fn provider(n: u8) -> PartyId {
    PartyId::from_public_key(&[n; 32])
}

fn digest(text: &str) -> ResultDigest {
    ElementHash::of(text.as_bytes())
}

fn assignment(n: u64) -> AssignmentId {
    AssignmentId(n)
}

/// A random source that returns the same number every time, to steer adaptive replication's
/// draw, and counts the draws.
struct Fixed {
    value: u64,
    draws: u32,
}

impl RandomSource for Fixed {
    fn next_u64(&mut self) -> u64 {
        self.draws += 1;
        self.value
    }
}

/// A unit draw of about `u`.
fn draw_of(u: f64) -> Fixed {
    Fixed { value: ((u * (1u64 << 53) as f64) as u64) << 11, draws: 0 }
}

struct Fixture {
    records: BTreeMap<PartyId, ProviderRecord>,
    model: CredibilityModel,
    random: Xoshiro256StarStar,
    typical: Option<f64>,
}

impl Fixture {
    fn new(providers: u8) -> Fixture {
        let records = (1..=providers).map(|n| (provider(n), ProviderRecord::default())).collect();
        Fixture {
            records,
            model: CredibilityModel::new(0.2).unwrap(),
            random: Xoshiro256StarStar::from_seed(1),
            typical: None,
        }
    }

    fn with_spot_checks(mut self, n: u8, passed: u64) -> Fixture {
        self.records.get_mut(&provider(n)).unwrap().spot_checks_passed_since_invalid = passed;
        self
    }

    fn decide(&mut self, task: &mut TaskAssurance) -> Decision {
        self.decide_with(task, &mut ByteEquality)
    }

    fn decide_with(&mut self, task: &mut TaskAssurance, comparator: &mut dyn ResultComparator) -> Decision {
        let mut context = DecisionContext {
            records: &self.records,
            model: &self.model,
            comparator,
            random: &mut self.random,
            typical_credibility: self.typical,
        };
        task.decide(&mut context).unwrap()
    }

    fn apply(&mut self, decision: &Decision) {
        for judgement in &decision.judgements {
            self.records.get_mut(&judgement.provider).unwrap().apply_judgement(judgement.kind, judgement.previous);
        }
    }
}

/// Launch replica `n` on provider `n` and give it `result`.
fn returns(task: &mut TaskAssurance, n: u8, result: &str) {
    task.replica_launched(assignment(n.into()), provider(n)).unwrap();
    task.replica_result(assignment(n.into()), digest(result)).unwrap();
}

fn kinds(decision: &Decision) -> Vec<(u64, JudgementKind, Option<JudgementKind>)> {
    decision.judgements.iter().map(|j| (j.assignment.0, j.kind, j.previous)).collect()
}

fn accepted(decision: &Decision) -> &Acceptance {
    match &decision.action {
        Action::Accept(acceptance) => acceptance,
        other => panic!("expected an acceptance, got {other:?}"),
    }
}

#[test]
fn quorum_two_of_three_with_one_dissenter() {
    let mut fixture = Fixture::new(3);
    let mut task =
        TaskAssurance::new(ValidationPolicy::Quorum { min_agreeing: 2, target_replicas: 3, replicas_max: 5 }).unwrap();
    assert_eq!(fixture.decide(&mut task).action, Action::Launch { replicas: 3 });
    for n in 1..=3 {
        task.replica_launched(assignment(n.into()), provider(n)).unwrap();
    }
    assert_eq!(fixture.decide(&mut task).action, Action::Wait);
    task.replica_result(assignment(1), digest("A")).unwrap();
    task.replica_result(assignment(2), digest("B")).unwrap();
    // One agreeing result is missing and one replica still runs: wait for it.
    assert_eq!(fixture.decide(&mut task).action, Action::Wait);
    task.replica_result(assignment(3), digest("A")).unwrap();
    let decision = fixture.decide(&mut task);
    let acceptance = accepted(&decision);
    assert_eq!(acceptance.canonical, ReturnedResult { assignment: assignment(1), digest: digest("A") });
    assert_eq!(acceptance.agreeing, vec![provider(1), provider(3)]);
    assert_eq!(acceptance.disagreeing, vec![provider(2)]);
    assert!(acceptance.checked);
    assert_eq!(acceptance.revision, Revision::First);
    // Three new providers (0.8 each): odds 4 * 4 = 16 for A, 4 for B: 16 / 21.
    assert!((acceptance.credibility - 16.0 / 21.0).abs() < 1e-12);
    assert_eq!(
        kinds(&decision),
        vec![(1, JudgementKind::Agreed, None), (2, JudgementKind::Disagreed, None), (3, JudgementKind::Agreed, None)]
    );
    assert!(decision.cancel.is_empty());
    // Deciding again changes nothing and emits nothing.
    let again = fixture.decide(&mut task);
    assert_eq!((again.action, again.judgements.len()), (Action::Settled, 0));
}

#[test]
fn quorum_two_launches_one_more_on_disagreement_and_gives_up_at_the_limit() {
    let mut fixture = Fixture::new(4);
    let mut task =
        TaskAssurance::new(ValidationPolicy::Quorum { min_agreeing: 2, target_replicas: 2, replicas_max: 3 }).unwrap();
    assert_eq!(fixture.decide(&mut task).action, Action::Launch { replicas: 2 });
    returns(&mut task, 1, "A");
    returns(&mut task, 2, "B");
    assert_eq!(fixture.decide(&mut task).action, Action::Launch { replicas: 1 });
    returns(&mut task, 3, "C");
    let decision = fixture.decide(&mut task);
    assert_eq!(
        decision.action,
        Action::Inconclusive(Inconclusive {
            reason: InconclusiveReason::ReplicasExhausted { results: 3, groups: 3, validator_failures: 0 },
            withdrawn: None
        })
    );
    assert!(decision.judgements.is_empty());
    assert!(task.is_inconclusive());
    assert!(matches!(task.replica_launched(assignment(4), provider(4)), Err(AssuranceError::TaskFinished { .. })));
}

#[test]
fn quorum_accepts_as_soon_as_it_can_and_cancels_the_rest_then_judges_late_results() {
    let mut fixture = Fixture::new(3);
    let mut task =
        TaskAssurance::new(ValidationPolicy::Quorum { min_agreeing: 2, target_replicas: 3, replicas_max: 5 }).unwrap();
    fixture.decide(&mut task);
    for n in 1..=3 {
        task.replica_launched(assignment(n.into()), provider(n)).unwrap();
    }
    task.replica_result(assignment(1), digest("A")).unwrap();
    task.replica_result(assignment(2), digest("A")).unwrap();
    let decision = fixture.decide(&mut task);
    assert_eq!(accepted(&decision).agreeing, vec![provider(1), provider(2)]);
    assert_eq!(decision.cancel, vec![assignment(3)]);
    // The cancelled replica's result arrives anyway, and differs: it is judged invalid.
    task.replica_result(assignment(3), digest("B")).unwrap();
    let late = fixture.decide(&mut task);
    assert_eq!(late.action, Action::Settled);
    assert_eq!(kinds(&late), vec![(3, JudgementKind::Disagreed, None)]);
}

#[test]
fn losses_do_not_count_against_the_limit() {
    let mut fixture = Fixture::new(4);
    let mut task =
        TaskAssurance::new(ValidationPolicy::Quorum { min_agreeing: 2, target_replicas: 2, replicas_max: 2 }).unwrap();
    fixture.decide(&mut task);
    task.replica_launched(assignment(1), provider(1)).unwrap();
    task.replica_launched(assignment(2), provider(2)).unwrap();
    task.replica_lost(assignment(2)).unwrap();
    assert_eq!(fixture.decide(&mut task).action, Action::Launch { replicas: 1 });
    returns(&mut task, 3, "A");
    task.replica_result(assignment(1), digest("A")).unwrap();
    assert_eq!(accepted(&fixture.decide(&mut task)).agreeing, vec![provider(1), provider(3)]);
}

#[test]
fn adaptive_replication_after_a_long_clean_record_and_after_one_invalid_result() {
    let policy =
        ValidationPolicy::Adaptive { min_agreeing: 2, trusted_after: 10, check_probability_min: 0.05, replicas_max: 6 };
    let mut fixture = Fixture::new(3);
    fixture.records.get_mut(&provider(1)).unwrap().consecutive_valid = 100;
    let decide = |fixture: &Fixture, task: &mut TaskAssurance, random: &mut Fixed| {
        let mut context = DecisionContext {
            records: &fixture.records,
            model: &fixture.model,
            comparator: &mut ByteEquality,
            random,
            typical_credibility: None,
        };
        task.decide(&mut context).unwrap()
    };

    // 100 consecutive valid results: checked with probability max(0.05, 10 / 100) = 0.1.
    // A draw of 0.5 accepts the single result unchecked.
    let mut task = TaskAssurance::new(policy).unwrap();
    let mut random = draw_of(0.5);
    assert_eq!(decide(&fixture, &mut task, &mut random).action, Action::Launch { replicas: 1 });
    // While the one replica runs there is nothing to do.
    task.replica_launched(assignment(1), provider(1)).unwrap();
    assert_eq!(decide(&fixture, &mut task, &mut random).action, Action::Wait);
    task.replica_result(assignment(1), digest("A")).unwrap();
    let decision = decide(&fixture, &mut task, &mut random);
    let acceptance = accepted(&decision);
    assert!(!acceptance.checked);
    assert_eq!(acceptance.agreeing, vec![provider(1)]);
    assert_eq!(kinds(&decision), vec![(1, JudgementKind::Unchecked, None)]);
    assert_eq!(random.draws, 1);

    // A draw of 0.09 (< 0.1) checks it: one more replica, then a quorum of 2.
    let mut task = TaskAssurance::new(policy).unwrap();
    let mut random = draw_of(0.09);
    decide(&fixture, &mut task, &mut random);
    returns(&mut task, 1, "A");
    assert_eq!(decide(&fixture, &mut task, &mut random).action, Action::Launch { replicas: 1 });
    // The draw is kept: deciding again does not draw again, nor change its mind.
    assert_eq!(decide(&fixture, &mut task, &mut draw_of(0.99)).action, Action::Launch { replicas: 1 });
    returns(&mut task, 2, "B");
    assert_eq!(decide(&fixture, &mut task, &mut random).action, Action::Launch { replicas: 1 });
    returns(&mut task, 3, "B");
    let decision = decide(&fixture, &mut task, &mut random);
    assert_eq!(accepted(&decision).agreeing, vec![provider(2), provider(3)]);
    assert_eq!(random.draws, 1);
    // Provider 1 was caught with a wrong result: its record starts over...
    fixture.apply(&decision);
    assert_eq!(fixture.records[&provider(1)].consecutive_valid, 0);
    assert_eq!(fixture.records[&provider(1)].invalid, 1);

    // ...so its next result is always checked, without a draw.
    let mut task = TaskAssurance::new(policy).unwrap();
    let mut random = draw_of(0.99);
    decide(&fixture, &mut task, &mut random);
    returns(&mut task, 1, "A");
    assert_eq!(decide(&fixture, &mut task, &mut random).action, Action::Launch { replicas: 1 });
    assert_eq!(random.draws, 0);

    // The check probability falls with the record, but not below the minimum: at 1000
    // consecutive valid results it is max(0.05, 0.01) = 0.05.
    fixture.records.get_mut(&provider(1)).unwrap().consecutive_valid = 1000;
    for (draw, checked) in [(0.049, true), (0.051, false)] {
        let mut task = TaskAssurance::new(policy).unwrap();
        let mut random = draw_of(draw);
        decide(&fixture, &mut task, &mut random);
        returns(&mut task, 1, "A");
        let action = decide(&fixture, &mut task, &mut random).action;
        assert_eq!(matches!(action, Action::Launch { .. }), checked, "draw {draw}: {action:?}");
    }
}

#[test]
fn credibility_policy_by_hand() {
    let policy = ValidationPolicy::Credibility { target: 0.9999, replicas_max: 16 };
    // Without a typical credibility, new providers (0.8, log-odds ln 4 = 1.386) are assumed:
    // ln(9999) = 9.210 needs ceil(9.210 / 1.386) = 7 agreeing results.
    let mut fixture = Fixture::new(4);
    let mut task = TaskAssurance::new(policy).unwrap();
    assert_eq!(fixture.decide(&mut task).action, Action::Launch { replicas: 7 });

    // Providers that passed 10 spot checks (0.990803, log-odds ln 107.73 = 4.680): 2 results.
    let mut fixture = Fixture::new(4).with_spot_checks(1, 10).with_spot_checks(2, 10);
    let typical = fixture.model.credibility_after_spot_checks(10);
    fixture.typical = Some(typical);
    let mut task = TaskAssurance::new(policy).unwrap();
    assert_eq!(fixture.decide(&mut task).action, Action::Launch { replicas: 2 });
    returns(&mut task, 1, "A");
    returns(&mut task, 2, "A");
    // Odds 107.73^2 = 11606: credibility 11606 / 11607 = 0.999914 >= 0.9999.
    let decision = fixture.decide(&mut task);
    let acceptance = accepted(&decision);
    assert!((acceptance.credibility - 0.999914).abs() < 1e-6, "{}", acceptance.credibility);
    assert!(acceptance.checked);

    // One of them new instead: odds 107.73 * 4 = 430.9, credibility 0.99768: short by
    // ln(9999) - ln(430.9) = 3.144 < 4.680, so one more replica.
    let mut fixture = Fixture::new(4).with_spot_checks(1, 10);
    fixture.typical = Some(typical);
    let mut task = TaskAssurance::new(policy).unwrap();
    fixture.decide(&mut task);
    returns(&mut task, 1, "A");
    returns(&mut task, 3, "A");
    assert_eq!(fixture.decide(&mut task).action, Action::Launch { replicas: 1 });

    // A provider with 920 spot checks passed is credible alone (0.99990003): accepted
    // unchecked, and a new provider that differs lowers it below the target.
    let mut fixture = Fixture::new(4).with_spot_checks(1, 920);
    let mut task = TaskAssurance::new(policy).unwrap();
    fixture.decide(&mut task);
    returns(&mut task, 1, "A");
    let decision = fixture.decide(&mut task);
    assert!(!accepted(&decision).checked);
    assert_eq!(kinds(&decision), vec![(1, JudgementKind::Unchecked, None)]);
    let mut task = TaskAssurance::new(policy).unwrap();
    fixture.decide(&mut task);
    returns(&mut task, 1, "A");
    returns(&mut task, 2, "B");
    assert!(matches!(fixture.decide(&mut task).action, Action::Launch { .. }));
}

#[test]
fn a_failing_validator_never_accepts() {
    let mut fixture = Fixture::new(4);
    let mut task =
        TaskAssurance::new(ValidationPolicy::Quorum { min_agreeing: 2, target_replicas: 2, replicas_max: 4 }).unwrap();
    let mut trapping = |_: &ReturnedResult, _: &ReturnedResult| Comparison::Failed;
    assert_eq!(fixture.decide_with(&mut task, &mut trapping).action, Action::Launch { replicas: 2 });
    // Identical bytes, but the job's validator is authoritative and it fails every time.
    returns(&mut task, 1, "A");
    returns(&mut task, 2, "A");
    assert_eq!(fixture.decide_with(&mut task, &mut trapping).action, Action::Launch { replicas: 1 });
    returns(&mut task, 3, "A");
    returns(&mut task, 4, "A");
    let decision = fixture.decide_with(&mut task, &mut trapping);
    // Comparisons: 2 vs 1; 3 vs 1, 2; 4 vs 1, 2, 3: six failures.
    assert_eq!(
        decision.action,
        Action::Inconclusive(Inconclusive {
            reason: InconclusiveReason::ReplicasExhausted { results: 4, groups: 4, validator_failures: 6 },
            withdrawn: None
        })
    );
}

#[test]
fn a_tolerant_validator_run_outside_the_decision() {
    let mut fixture = Fixture::new(3);
    let mut task = TaskAssurance::new(ValidationPolicy::quorum(2)).unwrap();
    fixture.decide_with(&mut task, &mut DeferredValidator);
    returns(&mut task, 1, "3.14159");
    returns(&mut task, 2, "3.14160");
    let decision = fixture.decide_with(&mut task, &mut DeferredValidator);
    let first = ReturnedResult { assignment: assignment(1), digest: digest("3.14159") };
    let second = ReturnedResult { assignment: assignment(2), digest: digest("3.14160") };
    assert_eq!(decision.action, Action::Compare { pairs: vec![(first, second)] });
    // Until the outcome is recorded, the same question comes back.
    assert_eq!(
        fixture.decide_with(&mut task, &mut DeferredValidator).action,
        Action::Compare { pairs: vec![(first, second)] }
    );
    assert!(task.record_comparison(assignment(2), assignment(1), Comparison::Pending).is_err());
    assert!(task.record_comparison(assignment(1), assignment(9), Comparison::Equivalent).is_err());
    // Recorded in either order.
    task.record_comparison(assignment(2), assignment(1), Comparison::Equivalent).unwrap();
    let decision = fixture.decide_with(&mut task, &mut DeferredValidator);
    assert_eq!(accepted(&decision).canonical, first);
}

#[test]
fn a_quarantined_provider_alone_never_makes_a_result() {
    let mut fixture = Fixture::new(3);
    fixture.records.get_mut(&provider(1)).unwrap().quarantine_by_operator();
    let mut task = TaskAssurance::new(ValidationPolicy::None).unwrap();
    fixture.decide(&mut task);
    returns(&mut task, 1, "forged");
    let decision = fixture.decide(&mut task);
    assert_eq!(decision.action, Action::Launch { replicas: 1 });
    assert_eq!(kinds(&decision), vec![(1, JudgementKind::Discarded, None)]);
    returns(&mut task, 2, "A");
    let decision = fixture.decide(&mut task);
    assert_eq!(accepted(&decision).agreeing, vec![provider(2)]);
}

#[test]
fn reverification_after_quarantine_replaces_a_forged_result() {
    let mut fixture = Fixture::new(4);
    let mut task = TaskAssurance::new(ValidationPolicy::quorum(2)).unwrap();
    fixture.decide(&mut task);
    returns(&mut task, 1, "forged");
    returns(&mut task, 2, "forged");
    let decision = fixture.decide(&mut task);
    assert_eq!(accepted(&decision).revision, Revision::First);
    fixture.apply(&decision);

    // Provider 1 fails a spot check: the task is decided again without it.
    let consequence = fixture
        .records
        .get_mut(&provider(1))
        .unwrap()
        .apply_spot_check(SpotCheckOutcome::Failed, &QuarantineRule::default());
    assert_eq!(consequence, SpotCheckConsequence::Quarantined);
    let decision = fixture.decide(&mut task);
    assert_eq!(decision.action, Action::Launch { replicas: 1 });
    assert_eq!(kinds(&decision), vec![(1, JudgementKind::Discarded, Some(JudgementKind::Agreed))]);
    assert!(task.is_open());
    // The replacement replicas disagree with the survivor and agree with each other.
    returns(&mut task, 3, "A");
    assert_eq!(fixture.decide(&mut task).action, Action::Launch { replicas: 1 });
    returns(&mut task, 4, "A");
    let decision = fixture.decide(&mut task);
    let acceptance = accepted(&decision);
    assert_eq!(acceptance.revision, Revision::Replaced { previous: digest("forged") });
    assert_eq!(acceptance.canonical.digest, digest("A"));
    assert_eq!(
        kinds(&decision),
        vec![
            (2, JudgementKind::Disagreed, Some(JudgementKind::Agreed)),
            (3, JudgementKind::Agreed, None),
            (4, JudgementKind::Agreed, None)
        ]
    );
    fixture.apply(&decision);
    assert_eq!((fixture.records[&provider(2)].valid, fixture.records[&provider(2)].invalid), (0, 1));
}

#[test]
fn reverification_confirms_a_result_that_still_has_its_quorum() {
    let mut fixture = Fixture::new(4);
    let mut task =
        TaskAssurance::new(ValidationPolicy::Quorum { min_agreeing: 2, target_replicas: 3, replicas_max: 5 }).unwrap();
    fixture.decide(&mut task);
    returns(&mut task, 1, "A");
    returns(&mut task, 2, "A");
    returns(&mut task, 3, "A");
    fixture.decide(&mut task);
    fixture.records.get_mut(&provider(3)).unwrap().quarantine_by_operator();
    let decision = fixture.decide(&mut task);
    assert_eq!(accepted(&decision).revision, Revision::Confirmed);
    assert_eq!(accepted(&decision).agreeing, vec![provider(1), provider(2)]);
    assert_eq!(kinds(&decision), vec![(3, JudgementKind::Discarded, Some(JudgementKind::Agreed))]);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let mut fixture = Fixture::new(2);
    let mut task = TaskAssurance::new(ValidationPolicy::quorum(2)).unwrap();
    assert!(matches!(task.replica_result(assignment(7), digest("A")), Err(AssuranceError::UnknownAssignment { .. })));
    assert!(matches!(task.replica_lost(assignment(7)), Err(AssuranceError::UnknownAssignment { .. })));
    task.replica_launched(assignment(1), provider(1)).unwrap();
    assert!(matches!(
        task.replica_launched(assignment(1), provider(2)),
        Err(AssuranceError::DuplicateAssignment { .. })
    ));
    assert!(matches!(
        task.replica_launched(assignment(2), provider(1)),
        Err(AssuranceError::ProviderAlreadyHasReplica { .. })
    ));
    task.replica_result(assignment(1), digest("A")).unwrap();
    task.replica_result(assignment(1), digest("A")).unwrap();
    assert!(matches!(task.replica_result(assignment(1), digest("B")), Err(AssuranceError::ConflictingResult { .. })));
    assert!(matches!(task.replica_lost(assignment(1)), Err(AssuranceError::ReplicaNotRunning { .. })));
    // A provider the caller has no record for.
    task.replica_launched(assignment(3), provider(9)).unwrap();
    let mut context = DecisionContext {
        records: &fixture.records,
        model: &fixture.model,
        comparator: &mut ByteEquality,
        random: &mut fixture.random,
        typical_credibility: None,
    };
    assert!(matches!(task.decide(&mut context), Err(AssuranceError::UnknownProvider { .. })));
    // NaN where a number is needed.
    fixture.records.insert(provider(9), ProviderRecord::default());
    let nan_model = CredibilityModel { assumed_saboteur_fraction: f64::NAN };
    let mut context = DecisionContext {
        records: &fixture.records,
        model: &nan_model,
        comparator: &mut ByteEquality,
        random: &mut fixture.random,
        typical_credibility: None,
    };
    assert!(matches!(task.decide(&mut context), Err(AssuranceError::InvalidParameter { .. })));
    let mut context = DecisionContext {
        records: &fixture.records,
        model: &fixture.model,
        comparator: &mut ByteEquality,
        random: &mut fixture.random,
        typical_credibility: Some(f64::NAN),
    };
    assert!(matches!(task.decide(&mut context), Err(AssuranceError::InvalidParameter { .. })));
    assert!(TaskAssurance::new(ValidationPolicy::Credibility { target: f64::INFINITY, replicas_max: 4 }).is_err());
}

#[test]
fn the_state_round_trips_through_json_mid_task() {
    let mut fixture = Fixture::new(3);
    let mut task = TaskAssurance::new(ValidationPolicy::quorum(2)).unwrap();
    fixture.decide(&mut task);
    returns(&mut task, 1, "A");
    returns(&mut task, 2, "B");
    fixture.decide(&mut task);
    let json = serde_json::to_string(&task).unwrap();
    let mut restored: TaskAssurance = serde_json::from_str(&json).unwrap();
    assert_eq!(restored, task);
    returns(&mut restored, 3, "B");
    assert_eq!(accepted(&fixture.decide(&mut restored)).agreeing, vec![provider(2), provider(3)]);
    assert_eq!(restored.providers().len(), 3);
}
