//! `idlegrid sim`: the simulations behind the scheduler's and the assurance's promises, with a
//! progress bar and the report as a Markdown table.
//!
//! - `placement`: providers that come and go (weekly availability, departures), jobs asking
//!   for a reliability r; reports the share of tasks finished within the requested time and
//!   the copies launched per task.
//! - `saboteurs`: a fraction f of providers lies with probability s; reports the error rate of
//!   accepted results and the redundancy cost of each validation policy.
//! - `market`: peers register resources, search, match and negotiate with seeded strategies;
//!   reports agreement rate, rounds to agreement, surplus split and commission per pair of
//!   strategies.

use std::time::Instant;

use clap::{Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Subcommand)]
pub enum SimCommand {
    /// Placement onto virtual nodes with a requested reliability, by simulation.
    Placement {
        #[arg(long, default_value_t = 100_000)]
        providers: u32,
        #[arg(long, default_value_t = 1_000_000)]
        tasks: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long, value_enum, default_value_t = Model::Simplified)]
        model: Model,
        /// Requested reliabilities, one row each.
        #[arg(long, value_delimiter = ',', default_value = "0.9,0.99")]
        reliabilities: Vec<f64>,
        /// Share of the candidates' capacity the jobs ask for.
        #[arg(long, default_value_t = 0.5)]
        load: f64,
        /// Plain jobs: earliest deadline first and an extra copy for tasks at risk; prints the
        /// share finished by their deadline against a run without, on the same seed.
        #[arg(long)]
        deadlines: bool,
        /// Plain jobs: a copy whose engine goes away resumes elsewhere from its last
        /// checkpoint; prints the work lost per interruption against a run without.
        #[arg(long)]
        migration: bool,
    },
    /// Validation policies against saboteurs, by simulation.
    Saboteurs {
        #[arg(long, default_value_t = 10_000)]
        providers: u32,
        /// Tasks per row (policy x f x s).
        #[arg(long, default_value_t = 1_000_000)]
        tasks: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Fractions f of providers that are saboteurs.
        #[arg(long, value_delimiter = ',', default_value = "0.1,0.2,0.3")]
        fractions: Vec<f64>,
        /// Probabilities s that a saboteur lies on a task.
        #[arg(long, value_delimiter = ',', default_value = "0.1,1")]
        rates: Vec<f64>,
    },
    /// The bartering market: registration, search, match and automatic negotiation.
    Market {
        #[arg(long, default_value_t = 2000)]
        peers: u32,
        #[arg(long, default_value_t = 20_000)]
        negotiations: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Most proposals per negotiation.
        #[arg(long, default_value_t = 20)]
        rounds_max: u32,
        /// The platform's commission on peer-with-peer trades through it (fraction of price).
        #[arg(long, default_value_t = 0.05)]
        commission_rate: f64,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Model {
    /// pi from the 7-day availability averages.
    Simplified,
    /// Completion probability from the weekly signature by dynamic programming.
    Full,
}

fn bar(length: u64, unit: &str) -> ProgressBar {
    let bar = ProgressBar::new(length);
    let template = format!("{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit} {{msg}}");
    bar.set_style(ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar
}

pub fn run(command: SimCommand) -> anyhow::Result<()> {
    let started = Instant::now();
    match command {
        SimCommand::Placement { providers, tasks, seed, model, reliabilities, load, deadlines, migration } => {
            anyhow::ensure!(providers > 0 && tasks > 0, "--providers and --tasks must be at least 1");
            anyhow::ensure!(reliabilities.iter().all(|r| (0.0..1.0).contains(r)), "--reliabilities must be in [0, 1)");
            anyhow::ensure!(load > 0.0 && load.is_finite(), "--load must be positive");
            let config = idlegrid_sim::SimConfig {
                providers,
                tasks,
                seed,
                reliabilities,
                load,
                model: match model {
                    Model::Simplified => idlegrid_sim::ReliabilityModel::Simplified,
                    Model::Full => idlegrid_sim::ReliabilityModel::Full,
                },
                plain_options: idlegrid_sim::PlainOptions { deadlines, migration },
                ..idlegrid_sim::SimConfig::default()
            };
            let progress = bar(tasks, "tasks");
            let report = idlegrid_sim::run_with_progress(config, &mut |p| {
                progress.set_position(p.tasks_finished);
                progress.set_message(format!("{:?}, simulated day {:.1}", p.phase, p.simulated_hours / 24.0));
            });
            progress.finish_and_clear();
            println!("{report}");
        }
        SimCommand::Saboteurs { providers, tasks, seed, fractions, rates } => {
            anyhow::ensure!(providers > 0 && tasks > 0, "--providers and --tasks must be at least 1");
            anyhow::ensure!(
                fractions.iter().chain(&rates).all(|x| (0.0..=1.0).contains(x)),
                "--fractions and --rates must be in [0, 1]"
            );
            let config = idlegrid_assurance::sim::SimConfig {
                providers,
                tasks,
                seed,
                saboteur_fractions: fractions,
                sabotage_rates: rates,
                ..idlegrid_assurance::sim::SimConfig::default()
            };
            let rows = (config.policies.len() * config.saboteur_fractions.len() * config.sabotage_rates.len()) as u64;
            let progress = bar(rows, "rows");
            let report = idlegrid_assurance::sim::simulate_with_progress(&config, &mut |row| {
                progress.inc(1);
                progress.set_message(format!("{} f={} s={}", row.policy, row.saboteur_fraction, row.sabotage_rate));
            })?;
            progress.finish_and_clear();
            println!("{report}");
        }
        SimCommand::Market { peers, negotiations, seed, rounds_max, commission_rate } => {
            let config = idlegrid_market::sim::SimConfig {
                peers,
                negotiations,
                seed,
                rounds_max,
                commission_rate,
                ..idlegrid_market::sim::SimConfig::default()
            };
            let report = idlegrid_market::sim::simulate(&config)?;
            println!("{report}");
            anyhow::ensure!(report.left_open == 0, "{} negotiations did not end: this is a bug", report.left_open);
        }
    }
    eprintln!("wall time {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}
