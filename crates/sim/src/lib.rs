//! A deterministic simulation of many intermittent providers (X2), driving the real scheduler
//! (`idlegrid-scheduler`): profiles, availability histories, placement, replacement of silent
//! nodes and preemption are the production code; only the machines, their owners and the clock
//! are simulated.
//!
//! - Simulated time in milliseconds from a Monday 00:00 UTC; events in a heap ordered by time
//!   then by insertion, so equal times resolve the same way every run.
//! - One seeded `Xoshiro256StarStar` (written in the scheduler crate, not taken from a
//!   dependency) for everything; same seed, same report.
//! - Providers (`population`): office and home desktops with diurnal habits in their own time
//!   zones, always-on servers, laptops with short sessions and a flaky network; slow and fast
//!   machines; churn (a provider leaves for good without notice, mid-task or not, and a new one
//!   joins); owners who come back (CPU taken) while the engine stays in contact.
//! - Availability is recorded per minute into the real `AvailabilityHistory` of each provider;
//!   the scheduler sees only what a server would see: measured speeds, ratings, signatures,
//!   contacts, caches, results.
//! - Jobs: for each requested reliability, one job per node class; node limits (the power
//!   requested) are set from the population's candidates after the warm-up, at `load` of the
//!   capacity they offer on average, so that the requested power is feasible.
//! - The scheduler plans every `plan_interval_seconds` (these plans also sample the power) and
//!   right after every result, as the coordinator does when room appears; plans are applied at
//!   once. Preempted and abandoned copies stop at once; a departed provider is forgotten after
//!   `forget_after_hours` (the coordinator's reaper).
//! - A task is launched when its virtual node is formed (the seed's definition); it finishes
//!   within `T_R` if its first result reaches the server at most `T_R` after its first launch.
//!   A relaunched or preempted task restarts from scratch (no checkpoints in the simulation),
//!   which only makes the measured share lower.
//!
//! - Plain jobs (`plain`, no virtual cluster) run apart, after the cluster run, on their own
//!   random stream: the coordinator's pure scheduling pass (`idlegrid_scheduler::pass`) places
//!   them minute by minute and draws spot checks, as the coordinator does against the store.
//!
//! `run(config)` returns a `SimReport`; its `Display` is a Markdown table.

mod plain;
mod population;
mod world;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use idlegrid_scheduler::placement::ReliabilityModel;
use idlegrid_scheduler::placement::SchedulerConfig;
pub use plain::{PlainOptions, PlainReport};
pub use population::{Kind, archetypes};

/// A kind of task and node that jobs ask for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobClass {
    pub name: String,
    pub node_cpu_gflops: f64,
    pub node_bandwidth_mb_per_s: f64,
    pub work_gflop: f64,
    /// Data of each task, besides the job's executable.
    pub data_in_mb: f64,
    pub data_out_mb: f64,
    /// The job's executable, downloaded once per engine and then cached.
    pub executable_mb: f64,
    /// Share of the tasks.
    pub task_share: f64,
}

impl JobClass {
    /// `count` classes whose candidate bands tile the effective speeds from `first_cpu_gflops`
    /// up: each class's node speed is the previous one's divided by `1 - faster_fraction_max`,
    /// so that every provider of an effective speed in range is a candidate of one class. Tasks
    /// take 15 minutes on the requested node; equal shares.
    pub fn tiling(count: usize, first_cpu_gflops: f64, faster_fraction_max_complement: f64) -> Vec<JobClass> {
        (0..count)
            .map(|k| {
                let cpu = first_cpu_gflops / faster_fraction_max_complement.powi(k as i32);
                JobClass {
                    name: format!("{cpu:.2} GFLOPS"),
                    node_cpu_gflops: cpu,
                    node_bandwidth_mb_per_s: 1.0,
                    work_gflop: cpu * 900.0,
                    data_in_mb: 4.0,
                    data_out_mb: 1.0,
                    executable_mb: 2.0,
                    task_share: 1.0,
                }
            })
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimConfig {
    pub seed: u64,
    pub providers: u32,
    pub tasks: u64,
    /// One row of the report each; every reliability gets one job per class.
    pub reliabilities: Vec<f64>,
    pub job_classes: Vec<JobClass>,
    pub model: ReliabilityModel,
    pub scheduler: SchedulerConfig,
    /// Days of availability history before the jobs arrive.
    pub warmup_days: u32,
    /// Simulated days after the jobs arrive before the run stops.
    pub horizon_days: u32,
    pub plan_interval_seconds: u32,
    /// Share of the average candidate capacity that the jobs of a class request.
    pub load: f64,
    /// Mean time before a provider leaves for good (and a new one joins).
    pub lifetime_days_mean: f64,
    /// Silent this long, a provider is forgotten (the coordinator's reaper).
    pub forget_after_hours: f64,
    /// Share of the tasks in an urgent, higher-priority job that arrives during the run for the
    /// class with the most waiting work and asks for more power than its candidates offer, so it
    /// preempts (it counts in the row of the first reliability).
    pub urgent_task_share: f64,
    pub urgent_after_hours: f64,
    /// Plain tasks (jobs without a virtual cluster), as a share of `tasks`, run apart after the
    /// cluster run; 0 runs none.
    pub plain_task_share: f64,
    /// Deadlines and migration in the plain part; when either is on, the part also runs
    /// without them on the same seed, for comparison.
    pub plain_options: PlainOptions,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            providers: 100_000,
            tasks: 1_000_000,
            reliabilities: vec![0.9, 0.99],
            job_classes: JobClass::tiling(12, 0.5, 0.75),
            model: ReliabilityModel::Simplified,
            scheduler: SchedulerConfig::default(),
            warmup_days: 7,
            horizon_days: 21,
            plan_interval_seconds: 60,
            load: 0.5,
            lifetime_days_mean: 60.0,
            forget_after_hours: 24.0,
            urgent_task_share: 0.03,
            urgent_after_hours: 0.5,
            plain_task_share: 0.25,
            plain_options: PlainOptions::default(),
        }
    }
}

/// Where a run is, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SimPhase {
    /// Recording availability before the jobs arrive.
    WarmUp,
    Running,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SimProgress {
    pub phase: SimPhase,
    pub simulated_hours: f64,
    pub tasks_finished: u64,
    pub tasks_total: u64,
}

/// One requested reliability.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityRow {
    pub reliability: f64,
    pub tasks: u64,
    pub finished: u64,
    pub finished_within_requested: u64,
    /// Of the finished tasks, the share whose first result came within `T_R` of the launch.
    pub share_within_requested: f64,
    /// Copies launched per finished task, replacements and preemption victims included.
    pub copies_per_task: f64,
    /// Members per node at first launch.
    pub members_per_node: f64,
    /// Mean `pi` of the members launched.
    pub mean_pi: f64,
    /// The seed's `N = ln(1 - r) / ln(1 - pi)` with the mean `pi`.
    pub duplication_formula: f64,
    /// The average `pi` that fits the product formula: `1 - exp(mean ln(1 - pi_i))`, so that
    /// `(1 - pi)^N = prod(1 - pi_i)`. Above the mean `pi` when members differ (Jensen), so the
    /// formula with the mean `pi` overstates the members a node needs.
    pub product_pi: f64,
    /// `N` with that average: the members per node the formula `r = 1 - prod(1 - pi_i)` asks
    /// for, on average, from the members actually drawn.
    pub duplication_formula_product: f64,
    /// Time-averaged power (GFLOPS) requested and delivered while the jobs had waiting tasks,
    /// summed over the jobs of this reliability (the urgent job apart).
    pub power_requested_gflops: f64,
    pub power_delivered_gflops: f64,
    pub tasks_relaunched: u64,
}

impl ReliabilityRow {
    /// Copies per task over the formula's N with the mean `pi`.
    pub fn duplication_ratio(&self) -> f64 {
        self.copies_per_task / self.duplication_formula
    }

    /// Copies per task over the formula's N with the product-consistent `pi`.
    pub fn duplication_ratio_product(&self) -> f64 {
        self.copies_per_task / self.duplication_formula_product
    }

    pub fn power_ratio(&self) -> f64 {
        self.power_delivered_gflops / self.power_requested_gflops
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    pub seed: u64,
    pub model: ReliabilityModel,
    pub providers_initial: u64,
    pub providers_joined: u64,
    pub providers_departed: u64,
    pub tasks: u64,
    pub tasks_finished: u64,
    pub rows: Vec<ReliabilityRow>,
    /// Simulated hours from the jobs' arrival to the last result (or the horizon).
    pub simulated_hours: f64,
    /// Copy-slot time over slot time in contact, over the whole run.
    pub provider_utilisation: f64,
    /// The same while every job had waiting tasks (mean over the regular plans).
    pub provider_utilisation_saturated: f64,
    /// Share of copy time spent by the copies that won.
    pub useful_share: f64,
    /// The urgent job asks for more than its class offers; what it asked for and got.
    pub urgent_power_requested_gflops: f64,
    pub urgent_power_delivered_gflops: f64,
    pub nodes_failed: u64,
    pub copies_preempted: u64,
    pub plans: u64,
    pub events: u64,
    /// The plain jobs' part.
    #[serde(default)]
    pub plain: PlainReport,
    /// The plain part without deadlines and migration, when `plain` ran with them.
    #[serde(default)]
    pub plain_before: Option<PlainReport>,
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Simulation, seed {}, {:?} reliability model: {} providers (+{} joined, {} departed), {} tasks ({} finished) in {:.1} simulated hours",
            self.seed,
            self.model,
            self.providers_initial,
            self.providers_joined,
            self.providers_departed,
            self.tasks,
            self.tasks_finished,
            self.simulated_hours
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "| requested r | tasks | finished | within T_R | share within T_R | copies per task | members per node | mean pi | N (mean pi) | copies / N | product pi | N (product pi) | copies / N (product) | power requested (GFLOPS) | power delivered (GFLOPS) | delivered / requested | relaunched |"
        )?;
        writeln!(f, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")?;
        for row in &self.rows {
            writeln!(
                f,
                "| {} | {} | {} | {} | {:.5} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} | {:.0} | {:.4} | {} |",
                row.reliability,
                row.tasks,
                row.finished,
                row.finished_within_requested,
                row.share_within_requested,
                row.copies_per_task,
                row.members_per_node,
                row.mean_pi,
                row.duplication_formula,
                row.duplication_ratio(),
                row.product_pi,
                row.duplication_formula_product,
                row.duplication_ratio_product(),
                row.power_requested_gflops,
                row.power_delivered_gflops,
                row.power_ratio(),
                row.tasks_relaunched,
            )?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "Provider utilisation {:.3} over the run, {:.3} while every job had waiting tasks (copy time over slot time in contact); share of copy time in the copies that won {:.3}; {} nodes failed and replaced; {} copies preempted by the urgent job, which asked for {:.0} GFLOPS (twice what its class offers) and got {:.0}; {} plans, {} events.",
            self.provider_utilisation,
            self.provider_utilisation_saturated,
            self.useful_share,
            self.nodes_failed,
            self.copies_preempted,
            self.urgent_power_requested_gflops,
            self.urgent_power_delivered_gflops,
            self.plans,
            self.events
        )?;
        let p = &self.plain;
        if p.tasks > 0 {
            writeln!(f)?;
            writeln!(
                f,
                "Plain jobs (no virtual cluster, the coordinator's scheduling pass): {} tasks, {} finished in {} passes; {} copies launched, {} lost with their engine; {} spot checks sent; mean wait before the first launch {:.1} minutes.",
                p.tasks, p.finished, p.passes, p.copies, p.copies_lost, p.spot_checks, p.mean_wait_minutes
            )?;
        }
        if let Some(before) = &self.plain_before {
            writeln!(
                f,
                "Plain jobs with deadlines {} and migration {} against without (same seed): finished by their deadline {:.4} (before {:.4}); work lost per interruption {:.2} minutes (before {:.2}); copies {} (before {}), lost {} (before {}).",
                on_off(p.options.deadlines),
                on_off(p.options.migration),
                p.deadline_share(),
                before.deadline_share(),
                p.lost_per_interruption(),
                before.lost_per_interruption(),
                p.copies,
                before.copies,
                p.copies_lost,
                before.copies_lost
            )?;
        }
        Ok(())
    }
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// Run a simulation to the end.
pub fn run(config: SimConfig) -> SimReport {
    run_with_progress(config, &mut |_| {})
}

/// Run a simulation, calling `progress` every simulated hour.
pub fn run_with_progress(config: SimConfig, progress: &mut dyn FnMut(&SimProgress)) -> SimReport {
    let plain_tasks = (config.tasks as f64 * config.plain_task_share).round() as u64;
    let (seed, providers, horizon_minutes) = (config.seed, config.providers, u64::from(config.horizon_days) * 24 * 60);
    let options = config.plain_options;
    let mut report = world::World::new(config).run(progress);
    if plain_tasks > 0 {
        report.plain = plain::run(seed, providers, plain_tasks, horizon_minutes, options);
        if options != PlainOptions::default() {
            let before = plain::run(seed, providers, plain_tasks, horizon_minutes, PlainOptions::default());
            report.plain_before = Some(before);
        }
    }
    report
}

#[cfg(test)]
mod tests;
