//! Proofs of storage over a contract's time: issued on schedule, correct answers metered, wrong
//! and missing ones fail at the time proven, repeats and strays ignored; the settlement pays
//! the share of time proven.

use idlegrid_random::Xoshiro256StarStar;

use super::*;
use crate::contract::tests::contract;
use crate::execution::{ExecEvent, ExecState, Execution};
use crate::settlement::{Fraction, answer_challenge, prepare_challenges};

const BLOB: &[u8] = b"the buyer's encrypted blob, kept by the seller's engine for the whole contract";

/// A contract from 1 000 ms for 3 600 000 ms, its blob handed over at 2 000, challenged every
/// 100 000 ms, answers due within 10 000 ms.
fn proofs() -> (Contract, StorageProofs) {
    let contract = contract();
    let mut random = Xoshiro256StarStar::from_seed(7);
    let prepared = prepare_challenges(BLOB, 5, 16, &mut random).unwrap();
    let proofs = StorageProofs::new(&contract, "ab".repeat(32), BLOB.len() as u64, prepared, 100_000, 10_000, 2_000);
    (contract, proofs)
}

fn issue(proofs: &mut StorageProofs, now_ms: u64) -> (u32, Challenge) {
    match proofs.tick(now_ms) {
        ProofStep::Issue { number, challenge } => (number, challenge),
        other => panic!("expected a challenge at {now_ms}, got {other:?}"),
    }
}

#[test]
fn challenges_come_on_schedule_and_correct_answers_meter_the_time_proven() {
    let (contract, mut proofs) = proofs();
    assert_eq!(proofs.tick(101_999), ProofStep::Idle, "not before a period");
    let (number, challenge) = issue(&mut proofs, 102_000);
    assert_eq!(number, 0);
    assert_eq!(proofs.tick(105_000), ProofStep::Idle, "one outstanding at a time");
    let answer = answer_challenge(&challenge, BLOB).unwrap();
    let step = proofs.answer(0, &answer, 103_000);
    let expected = MeterRecord { contract: contract.id, seq: 1, from_ms: 1_000, to_ms: 103_000, units: 102_000 };
    assert_eq!(step, ProofStep::Proven(expected));
    assert_eq!(proofs.answer(0, &answer, 104_000), ProofStep::Idle, "a repeated answer changes nothing");
    assert_eq!(proofs.tick(150_000), ProofStep::Idle, "the next one a period after the last");
    let (number, challenge) = issue(&mut proofs, 202_000);
    assert_eq!(number, 1);
    let answer = answer_challenge(&challenge, BLOB).unwrap().to_uppercase();
    let ProofStep::Proven(record) = proofs.answer(1, &answer, 202_500) else { panic!("upper case hex is accepted") };
    assert_eq!((record.seq, record.from_ms, record.to_ms, record.units), (2, 103_000, 202_500, 99_500));
    assert_eq!((proofs.passed, proofs.failed, proofs.proven_until_ms), (2, 0, 202_500));
}

#[test]
fn a_wrong_answer_fails_at_the_time_proven_and_settles_pro_rata() {
    let (contract, mut proofs) = proofs();
    let (execution, _) = Execution::start(&contract, 1_000);
    let (_, challenge) = issue(&mut proofs, 102_000);
    let ProofStep::Proven(record) = proofs.answer(0, &answer_challenge(&challenge, BLOB).unwrap(), 361_000) else {
        panic!("correct")
    };
    let (execution, _) = execution.apply(&contract, &ExecEvent::Meter { record }).unwrap();
    let (_, challenge) = issue(&mut proofs, 461_000);
    let mut altered = BLOB.to_vec();
    altered.iter_mut().for_each(|b| *b ^= 0x55);
    let step = proofs.answer(1, &answer_challenge(&challenge, &altered).unwrap(), 462_000);
    let ProofStep::Fail { at_ms, reason } = step else { panic!("a wrong answer fails: {step:?}") };
    assert_eq!(at_ms, 361_000);
    assert!(reason.contains("challenge 2"), "{reason}");
    assert_eq!(proofs.failed, 1);
    let (execution, _) = execution.apply(&contract, &ExecEvent::Fail { at_ms, reason }).unwrap();
    let (settled, outcome) = execution.apply(&contract, &ExecEvent::Settle { at_ms: 470_000 }).unwrap();
    assert_eq!(settled.state, ExecState::Settled);
    assert_eq!(settled.fraction, Some(Fraction::new(360_000, 3_600_000)), "a tenth of the time was proven");
    assert!(!outcome.transfers.is_empty());
}

#[test]
fn an_unanswered_challenge_fails_after_the_answer_time() {
    let (_, mut proofs) = proofs();
    issue(&mut proofs, 102_000);
    assert_eq!(proofs.tick(112_000), ProofStep::Idle, "still within the answer time");
    let ProofStep::Fail { at_ms, reason } = proofs.tick(112_001) else { panic!("overdue") };
    assert_eq!(at_ms, 1_000, "nothing proven: from the start");
    assert!(reason.contains("did not answer"), "{reason}");
    assert_eq!(proofs.answer(0, "late", 113_000), ProofStep::Idle, "a late answer changes nothing");
}

#[test]
fn nothing_is_proven_past_the_end_and_challenges_stop_when_drawn_out() {
    let (mut contract, _) = proofs();
    contract.duration_ms = 150_000; // ends at 151 000
    let mut random = Xoshiro256StarStar::from_seed(1);
    let prepared = prepare_challenges(BLOB, 2, 8, &mut random).unwrap();
    let mut proofs = StorageProofs::new(&contract, String::new(), BLOB.len() as u64, prepared, 100_000, 10_000, 2_000);
    let (_, challenge) = issue(&mut proofs, 102_000);
    let answer = answer_challenge(&challenge, BLOB).unwrap();
    assert!(matches!(proofs.answer(0, &answer, 102_000), ProofStep::Proven(_)));
    let (_, challenge) = issue(&mut proofs, 202_000);
    let ProofStep::Proven(record) = proofs.answer(1, &answer_challenge(&challenge, BLOB).unwrap(), 203_000) else {
        panic!("correct")
    };
    assert_eq!((record.from_ms, record.to_ms), (102_000, 151_000), "clamped to the contract's end");
    assert_eq!(proofs.tick(900_000), ProofStep::Idle, "past the end, nothing more is asked");
    assert_eq!(proofs.answer(7, "stray", 900_000), ProofStep::Idle);
}

#[test]
fn the_period_is_stretched_so_the_challenges_last() {
    assert_eq!(challenge_period(3_600_000, 60_000), 60_000);
    assert_eq!(challenge_period(3_600_000_000, 60_000), 3_600_000);
    assert_eq!(challenge_period(0, 0), 1);
    assert_eq!(challenges_needed(3_600_000, 60_000), 61);
    assert_eq!(challenges_needed(u64::MAX, 1), CHALLENGES_MAX);
    assert_eq!(challenges_needed(0, 0), 1);
}
