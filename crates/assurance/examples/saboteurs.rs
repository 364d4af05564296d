//! The saboteur simulation's table:
//! `cargo run --release -p idlegrid-assurance --example saboteurs -- --tasks 1000000 --seed 1`
//!
//! Options: --providers N, --tasks N, --seed N, --fractions 0.1,0.2,0.3, --rates 0.1,1,
//! --honest-error-rate X, --no-rejoin, --json; for the credibility policy: --target 0.9999,
//! --spot-checks RATE,NEW_PROVIDER_RATE,NEW_PROVIDER_CHECKS, --only-credibility.

use std::time::Instant;

use idlegrid_assurance::sim::{SimConfig, simulate_with_progress};
use idlegrid_assurance::{SpotCheckPolicy, ValidationPolicy};

fn list(text: &str) -> Vec<f64> {
    text.split(',').map(|x| x.trim().parse().unwrap_or_else(|_| panic!("not a number: {x}"))).collect()
}

fn main() {
    let mut config = SimConfig::default();
    let mut json = false;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--providers" => config.providers = value().parse().expect("--providers N"),
            "--tasks" => config.tasks = value().parse().expect("--tasks N"),
            "--seed" => config.seed = value().parse().expect("--seed N"),
            "--fractions" => config.saboteur_fractions = list(&value()),
            "--rates" => config.sabotage_rates = list(&value()),
            "--honest-error-rate" => config.honest_error_rate = value().parse().expect("--honest-error-rate X"),
            "--no-rejoin" => config.saboteurs_rejoin = false,
            "--json" => json = true,
            // Tune the credibility policy (every policy with spot checks, and its target).
            "--target" => {
                let target: f64 = value().parse().expect("--target X");
                for tested in &mut config.policies {
                    if let ValidationPolicy::Credibility { replicas_max, .. } = tested.policy {
                        tested.policy = ValidationPolicy::Credibility { target, replicas_max };
                        tested.name = format!("credibility {target}");
                    }
                }
            }
            "--spot-checks" => {
                let values = list(&value());
                let [rate, new_provider_rate, new_provider_checks] = values[..] else {
                    panic!("--spot-checks RATE,NEW_RATE,NEW_CHECKS")
                };
                for tested in &mut config.policies {
                    if matches!(tested.policy, ValidationPolicy::Credibility { .. }) {
                        tested.spot_checks = SpotCheckPolicy {
                            rate,
                            new_provider_rate,
                            new_provider_checks: new_provider_checks as u32,
                        };
                    }
                }
            }
            "--only-credibility" => {
                config.policies.retain(|tested| matches!(tested.policy, ValidationPolicy::Credibility { .. }))
            }
            other => panic!("unknown option {other}"),
        }
    }
    let started = Instant::now();
    let report = simulate_with_progress(&config, &mut |row| {
        eprintln!(
            "[{:>6.1} s] {} f={} s={}: error {:.2e}, cost {:.3}",
            started.elapsed().as_secs_f64(),
            row.policy,
            row.saboteur_fraction,
            row.sabotage_rate,
            row.error_rate(),
            row.cost_per_task()
        );
    })
    .unwrap_or_else(|error| panic!("{error}"));
    if json {
        println!("{}", serde_json::to_string_pretty(&report).expect("the report serializes"));
    } else {
        println!("{report}");
    }
    eprintln!("wall time {:.1} s", started.elapsed().as_secs_f64());
}
