//! Tests of the simulator: seeded runs are repeatable and the reliability promises hold.

use super::*;
use proptest::prelude::*;

fn small(seed: u64, model: ReliabilityModel) -> SimConfig {
    SimConfig { seed, providers: 2_000, tasks: 8_000, warmup_days: 2, horizon_days: 7, model, ..SimConfig::default() }
}

fn tiny(seed: u64) -> SimConfig {
    SimConfig {
        seed,
        providers: 300,
        tasks: 600,
        warmup_days: 1,
        horizon_days: 3,
        job_classes: JobClass::tiling(4, 1.0, 0.75),
        ..SimConfig::default()
    }
}

#[test]
fn same_seed_same_report() {
    let first = run(small(7, ReliabilityModel::Simplified));
    let second = run(small(7, ReliabilityModel::Simplified));
    assert_eq!(first, second);
    assert_eq!(first.to_string(), second.to_string());
    let other = run(small(8, ReliabilityModel::Simplified));
    assert_ne!(first, other);
}

#[test]
fn the_simplified_model_keeps_its_promises() {
    let report = run(small(1, ReliabilityModel::Simplified));
    assert_eq!(report.tasks_finished, report.tasks, "{report}");
    assert_eq!(report.rows.len(), 2);
    for row in &report.rows {
        assert!(row.share_within_requested >= row.reliability, "{report}");
        assert!((row.duplication_ratio_product() - 1.0).abs() <= 0.2, "{report}");
        assert!(row.duplication_ratio() <= 1.2, "{report}");
        assert!(row.power_ratio() > 0.9 && row.power_ratio() <= 1.0 + 1e-9, "{report}");
        assert!(row.members_per_node >= 1.0);
    }
    // More reliability costs more copies.
    assert!(report.rows[1].copies_per_task > report.rows[0].copies_per_task);
    assert!(report.provider_utilisation > 0.0 && report.provider_utilisation < 1.0);
    let text = report.to_string();
    assert!(text.contains("| requested r |") && text.contains("| 0.99 |"), "{text}");
}

#[test]
fn the_full_model_keeps_its_promises_with_fewer_copies() {
    // The full version needs a week of history (a whole signature).
    let week = |model| SimConfig { warmup_days: 7, providers: 1_500, tasks: 6_000, ..small(1, model) };
    let simplified = run(week(ReliabilityModel::Simplified));
    let full = run(week(ReliabilityModel::Full));
    assert_eq!(full.tasks_finished, full.tasks, "{full}");
    for (row, simple) in full.rows.iter().zip(&simplified.rows) {
        assert!(row.share_within_requested >= row.reliability, "{full}");
        assert!((row.duplication_ratio_product() - 1.0).abs() <= 0.2, "{full}");
        // Never more copies than the formula with the mean pi asks for (an upper bound: Jensen).
        assert!(row.duplication_ratio() <= 1.2, "{full}");
        assert!(row.copies_per_task < simple.copies_per_task, "{full}\n{simplified}");
    }
}

#[test]
fn progress_is_reported_until_done() {
    let mut seen: Vec<SimProgress> = Vec::new();
    let report = run_with_progress(tiny(3), &mut |p| seen.push(*p));
    assert!(seen.len() > 24, "{}", seen.len());
    assert!(seen.windows(2).all(|w| w[0].simulated_hours <= w[1].simulated_hours));
    assert!(seen.iter().any(|p| p.phase == SimPhase::WarmUp));
    let last = seen.last().unwrap();
    assert_eq!(last.phase, SimPhase::Done);
    assert_eq!(last.tasks_finished, report.tasks_finished);
    assert_eq!(last.tasks_total, 600);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Any seed: the same seed gives the same report.
    #[test]
    fn any_seed_is_deterministic(seed in any::<u64>()) {
        prop_assert_eq!(run(tiny(seed)), run(tiny(seed)));
    }
}
