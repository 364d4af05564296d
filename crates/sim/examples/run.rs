//! Run the simulation from the command line:
//! `cargo run --release -p idlegrid-sim --example run -- --providers 100000 --tasks 1000000 --seed 1`
//!
//! Options: --providers N, --tasks N, --seed N, --model simplified|full, --load X,
//! --warmup-days N, --horizon-days N, --reliabilities 0.9,0.99. Progress goes to stderr every
//! simulated day (every `EVERY` hours if set), the Markdown report to stdout.

use std::time::Instant;

use idlegrid_sim::{ReliabilityModel, SimConfig, SimPhase, run_with_progress};

fn main() {
    let mut config = SimConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--providers" => config.providers = value().parse().expect("--providers N"),
            "--tasks" => config.tasks = value().parse().expect("--tasks N"),
            "--seed" => config.seed = value().parse().expect("--seed N"),
            "--load" => config.load = value().parse().expect("--load X"),
            "--warmup-days" => config.warmup_days = value().parse().expect("--warmup-days N"),
            "--horizon-days" => config.horizon_days = value().parse().expect("--horizon-days N"),
            "--reliabilities" => {
                config.reliabilities =
                    value().split(',').map(|r| r.parse().expect("--reliabilities 0.9,0.99")).collect()
            }
            "--model" => {
                config.model = match value().as_str() {
                    "full" => ReliabilityModel::Full,
                    _ => ReliabilityModel::Simplified,
                }
            }
            other => panic!("unknown option {other}"),
        }
    }
    let started = Instant::now();
    let mut last_hours = -1.0f64;
    let report = run_with_progress(config, &mut |p| {
        if p.phase == SimPhase::Done
            || p.simulated_hours - last_hours
                >= std::env::var("EVERY").ok().and_then(|v| v.parse().ok()).unwrap_or(24.0)
        {
            last_hours = p.simulated_hours;
            eprintln!(
                "[{:>7.1} s] {:?} day {:.1}: {} of {} tasks finished",
                started.elapsed().as_secs_f64(),
                p.phase,
                p.simulated_hours / 24.0,
                p.tasks_finished,
                p.tasks_total
            );
        }
    });
    println!("{report}");
    eprintln!("wall time {:.1} s", started.elapsed().as_secs_f64());
}
