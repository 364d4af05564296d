//! Provider profiles (P5.1): what an engine reports of itself (`NodeProfile`) and the CPU speed
//! that benchmark tasks measure on it, kept together as one JSON document per provider.
//!
//! Where things live, with the store unchanged:
//! - The profile is the `profile` column of the providers table (`set_provider_profile`,
//!   `provider_profile`).
//! - The benchmark runs as an ordinary task of a hidden job owned by the server's own party
//!   (the ID of its assignment-signing key): a few tasks of the same module and size, each with
//!   its own seed, created once per database (again if the size or the module changes) with
//!   their answers, and recorded under the meta key `benchmark_job`. The job is stored as
//!   `completed` with all counts zero and its tasks stay `created`: nothing schedules them, no
//!   census counts them, nothing purges them, and nobody but the server's party owns it. Each
//!   benchmark is an assignment of one of these tasks, so tickets, re-sends on a new session,
//!   reconciliation and reclaiming of silent engines work as for any task; it has no work
//!   record (nobody is billed, the provider is not paid for it).
//! - A benchmark in flight is named in the provider's profile (assignment and time sent);
//!   everything else it needs follows from its assignment row (time placed) and its task row
//!   (size and seed, hence the expected answer and the work). Nothing per assignment is written
//!   to meta, so nothing needs deleting afterwards.

use std::collections::HashMap;

use idlegrid_protocol::Payload;
use idlegrid_protocol::messages::{AssignmentState, AssignmentStatus, NodeState, ServerToProvider};
use idlegrid_random::RandomSource;
use idlegrid_scheduler::profile::BenchmarkAverage;
use idlegrid_store::{AssignmentRow, AssignmentRowState, JobRow, NewTask, StoreError, TaskKey, TaskRow, Tx};
use idlegrid_types::{ElementHash, JobCounts, JobId, JobProperties, JobState, PartyId, TaskLimitsSpec, Untrusted};
use serde::{Deserialize, Serialize};

use crate::benchmark;
use crate::error::Reject;
use crate::session::{Ctx, push};
use crate::{Coordinator, Effects};

const BENCHMARK_JOB_KEY: &str = "benchmark_job";

/// Measurements above this are refused as implausible (a slot is one core).
pub const BENCHMARK_GFLOPS_MAX: f64 = 10_000.0;
/// How many seeds (tasks) the benchmark draws from: an engine cannot keep one answer for all.
const BENCHMARK_SEEDS: u32 = 8;
/// A benchmark lost without an answer (engine gone, task handed back, engine-side failure) is
/// sent again after this long, or after the interval if that is shorter.
pub const BENCHMARK_RETRY_MS: u64 = 10 * 60 * 1000;
/// Benchmarks run before the tasks an engine has staged (it gets one only with a free slot, so
/// it preempts nothing).
const BENCHMARK_PRIORITY: i32 = idlegrid_types::limits::PRIORITY_ABS_MAX;

/// What the server knows of a provider's computer. Fields it does not know are kept as they are
/// when the document is rewritten.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderProfile {
    /// Reported by the engine (`NodeProfile`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cores: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine_version: Option<String>,
    /// The owner's requirement over jobs (`NodeProfile`), checked when reported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_requirement: Option<String>,
    /// CPU speed of one slot, smoothed over benchmark runs (GFLOPS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_gflops: Option<BenchmarkAverage>,
    /// When the last good measurement arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_measured_ms: Option<u64>,
    /// The benchmark the engine holds now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub benchmark: Option<BenchmarkInFlight>,
    /// No benchmark is sent before this time.
    #[serde(default)]
    pub benchmark_next_ms: u64,
    /// Bandwidth to the server, smoothed over element downloads (MB/s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth_mb_per_s: Option<BenchmarkAverage>,
    /// Availability recorded per minute (`AvailabilityHistory`, base64; see `cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub availability: Option<String>,
    /// Benchmarks answered wrongly (not measurements; for result assurance to judge).
    #[serde(default)]
    pub benchmark_wrong: u32,
    /// Whatever else others store in the document.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

impl ProviderProfile {
    /// The measured speed of one slot, if any benchmark succeeded.
    pub fn measured_gflops(&self) -> Option<f64> {
        self.cpu_gflops.and_then(|average| average.value())
    }

    /// The measured bandwidth to the server, if any download was measured.
    pub fn measured_bandwidth(&self) -> Option<f64> {
        self.bandwidth_mb_per_s.and_then(|average| average.value())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BenchmarkInFlight {
    pub assignment: idlegrid_types::AssignmentId,
    pub sent_ms: u64,
}

/// The benchmark tasks of this database.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BenchmarkSetup {
    pub job: JobId,
    pub size: u32,
    pub module: ElementHash,
    pub tasks: Vec<BenchmarkTask>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BenchmarkTask {
    pub key: TaskKey,
    pub seed: u32,
    pub answer: [u8; 8],
}

/// The seconds a benchmark run counts for. The engine reports the CPU time its task used, but
/// an engine must not be able to claim to be arbitrarily fast by under-reporting it: the run
/// counts for at least a quarter of the time between the placement and the answer (room for
/// the download, the compilation and the channel's delays, which the server sees but cannot
/// tell apart), and never less than 1 ms. An honest engine's CPU time exceeds the floor; a
/// lying one's measurement is capped at 4 times what the server observed.
pub fn benchmark_seconds(cpu_ms: u64, wall_ms: u64) -> f64 {
    cpu_ms.max(wall_ms / 4).max(1) as f64 / 1000.0
}

/// The benchmark module's element: its bytes must be in the element store for engines to
/// download (the server shell puts them there at start).
pub fn benchmark_element() -> idlegrid_types::ElementRef {
    let bytes = benchmark::module_bytes();
    idlegrid_types::ElementRef { hash: ElementHash::of(bytes), size: bytes.len() as u64 }
}

/// Create the benchmark job and tasks if the database has none of this size and module (once
/// per database); otherwise load them.
pub(crate) fn install_benchmark(
    tx: &mut dyn Tx,
    owner: &PartyId,
    size: u32,
    random: &mut dyn RandomSource,
) -> Result<BenchmarkSetup, StoreError> {
    let size = size.clamp(1, benchmark::SIZE_MAX);
    let element = benchmark_element();
    tx.insert_element(&element.hash, element.size, 0)?;
    if let Some(existing) = load_benchmark(tx)? {
        if existing.size == size && existing.module == element.hash && tx.job(existing.job)?.is_some() {
            return Ok(existing);
        }
        // Another size or module: the old tasks go; an engine holding one is told to drop it
        // when it answers.
        tx.delete_job(existing.job)?;
    }
    let job = JobId::random();
    let matrices = 3 * (size as u64).pow(2) * 8;
    let properties = JobProperties {
        name: "benchmark".into(),
        priority: BENCHMARK_PRIORITY,
        task_limits: TaskLimitsSpec {
            memory_bytes_max: (matrices + (16 << 20)).next_multiple_of(1 << 20),
            cpu_seconds_max: 600,
            result_bytes_max: 1024,
            checkpoint_bytes_max: 1 << 20,
            native_nans: false,
        },
        attempts_max: 1,
        ..JobProperties::default()
    };
    let row = JobRow {
        id: job,
        client: owner.clone(),
        properties,
        state: JobState::Completed,
        counts: JobCounts::default(),
        created_ms: 0,
        hold: None,
    };
    tx.insert_job(&row)?;
    tx.add_job_elements(job, &[element.hash])?;
    let seeds: Vec<u32> = (0..BENCHMARK_SEEDS).map(|_| random.next_u64() as u32).collect();
    let new: Vec<NewTask> = seeds
        .iter()
        .enumerate()
        .map(|(index, seed)| NewTask {
            index: index as u64,
            priority: BENCHMARK_PRIORITY,
            executable: element.hash,
            data: Default::default(),
            params: benchmark::params(size, *seed),
            trace: None,
        })
        .collect();
    tx.insert_tasks(job, &new)?;
    let mut tasks = Vec::with_capacity(seeds.len());
    for (index, seed) in seeds.into_iter().enumerate() {
        let key = tx
            .task(job, index as u64)?
            .ok_or_else(|| {
                idlegrid_store::StoreError::domain(idlegrid_store::DomainKind::Broken, "a benchmark task vanished")
            })?
            .key;
        tasks.push(BenchmarkTask { key, seed, answer: benchmark::expected_answer(size, seed) });
    }
    let setup = BenchmarkSetup { job, size, module: element.hash, tasks };
    tx.set_meta(BENCHMARK_JOB_KEY, &serde_json::to_vec(&setup).expect("serializes"))?;
    // An internal job of the server's own: nothing an operator acts on.
    tracing::debug!(%job, size, "benchmark tasks created");
    Ok(setup)
}

/// The benchmark tasks of this database, if it has any.
pub(crate) fn load_benchmark(tx: &mut dyn Tx) -> Result<Option<BenchmarkSetup>, StoreError> {
    Ok(tx.meta(BENCHMARK_JOB_KEY)?.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
}

impl Coordinator {
    /// The benchmark module's bytes, when this database has benchmark tasks: the shell stores
    /// them in the element store at start (they are assembled, not read from anywhere).
    pub fn benchmark_module(&self) -> Option<&'static [u8]> {
        self.benchmark.as_ref().map(|_| benchmark::module_bytes())
    }

    /// A provider's profile, if it ever reported one.
    pub fn provider_profile(&self, tx: &mut dyn Tx, provider: &PartyId) -> Result<Option<ProviderProfile>, StoreError> {
        Ok(tx.provider_profile(provider)?.and_then(|json| serde_json::from_str(&json).ok()))
    }

    pub(crate) fn save_profile(
        &self,
        tx: &mut dyn Tx,
        provider: &PartyId,
        profile: &ProviderProfile,
    ) -> Result<(), StoreError> {
        let json = serde_json::to_string(profile).expect("profiles serialize");
        tx.set_provider_profile(provider, &json)
    }

    /// The engine reported its computer: update those fields, keep the measurements.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn profile_reported(
        &self,
        tx: &mut dyn Tx,
        provider: &PartyId,
        os: String,
        arch: String,
        cores: u32,
        memory_bytes: u64,
        disk_bytes: u64,
        engine_version: String,
        job_requirement: Option<String>,
    ) -> Result<(), StoreError> {
        let mut profile = self.provider_profile(tx, provider)?.unwrap_or_default();
        profile.job_requirement = job_requirement;
        profile.os = Some(os);
        profile.arch = Some(arch);
        profile.cores = Some(cores);
        profile.memory_bytes = Some(memory_bytes);
        profile.disk_bytes = Some(disk_bytes);
        profile.engine_version = Some(engine_version);
        self.save_profile(tx, provider, &profile)
    }

    /// The power rating of one of the engine's slots: its measured speed, or the default until
    /// a benchmark measured it.
    pub(crate) fn engine_power_gflops(&self, tx: &mut dyn Tx, provider: &PartyId) -> Result<f64, StoreError> {
        let measured = self.provider_profile(tx, provider)?.and_then(|p| p.measured_gflops());
        Ok(measured.unwrap_or(self.config.engine_power_gflops_default))
    }

    /// Whether a task is one of the benchmark's.
    pub(crate) fn is_benchmark(&self, task: &TaskRow) -> bool {
        self.benchmark.as_ref().is_some_and(|setup| setup.job == task.job)
    }

    /// Give every engine with room a benchmark that is due (maintenance).
    pub(crate) fn send_due_benchmarks(
        &self,
        tx: &mut dyn Tx,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<u32, StoreError> {
        if self.benchmark.is_none() || self.config.benchmark_interval_ms.is_none() {
            return Ok(0);
        }
        let mut sent = 0;
        for room in tx.providers_with_room(now_ms.saturating_sub(self.config.provider_silence_ms_max))? {
            if self.benchmark_if_due(tx, &room.id, now_ms, fx)? {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Place a benchmark on the engine if one is due (it reported its profile, holds none now,
    /// and its last one is older than the interval) and the engine has a free slot and room in
    /// its queue. True if one was placed.
    pub(crate) fn benchmark_if_due(
        &self,
        tx: &mut dyn Tx,
        provider: &PartyId,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<bool, StoreError> {
        let (Some(setup), Some(interval)) = (&self.benchmark, self.config.benchmark_interval_ms) else {
            return Ok(false);
        };
        if setup.tasks.is_empty() {
            return Ok(false);
        }
        // Only engines that said what they are (NodeProfile) are measured.
        let Some(mut profile) = self.provider_profile(tx, provider)? else { return Ok(false) };
        if profile.os.is_none() {
            return Ok(false);
        }
        if let Some(flight) = profile.benchmark {
            if matches!(tx.assignment(flight.assignment)?, Some(a) if a.state == AssignmentRowState::Active) {
                return Ok(false);
            }
            // Ended without an answer (reclaimed, dropped by the engine): try again later.
            profile.benchmark_next_ms =
                profile.benchmark_next_ms.max(flight.sent_ms.saturating_add(BENCHMARK_RETRY_MS.min(interval)));
            profile.benchmark = None;
        }
        if now_ms < profile.benchmark_next_ms {
            return Ok(false);
        }
        let Some(row) = tx.provider(provider)? else { return Ok(false) };
        let Some(session) = row.session else { return Ok(false) };
        if row.state != NodeState::Active || row.assigned >= row.capacity || row.assigned >= row.slots {
            return Ok(false);
        }
        if crate::assurance::load_record(tx, provider)?.is_quarantined() {
            return Ok(false);
        }
        let pick = &setup.tasks[self.random().below(setup.tasks.len() as u64) as usize];
        let (Some(task), Some(job)) = (tx.task_by_key(pick.key)?, tx.job(setup.job)?) else {
            tracing::warn!(task = pick.key, "a benchmark task is missing: no benchmarks until the server restarts");
            return Ok(false);
        };
        let mut message = match self.assignment_for(tx, &task, &job, &mut HashMap::new())? {
            Ok(message) => message,
            Err(hash) => {
                tracing::warn!(%hash, "the benchmark module is not stored: no benchmark sent");
                return Ok(false);
            }
        };
        let id = tx.insert_assignment(task.key, provider, now_ms)?;
        message.assignment = id;
        message.ticket = self.ticket(provider, id, now_ms);
        push(tx, fx, session, None, &ServerToProvider::Task(self.sign(message)), None)?;
        profile.benchmark = Some(BenchmarkInFlight { assignment: id, sent_ms: now_ms });
        self.save_profile(tx, provider, &profile)?;
        tracing::debug!(%provider, assignment = %id, size = setup.size, "benchmark sent");
        Ok(true)
    }

    /// A status of a benchmark: only its final answer matters. A right answer is a measurement
    /// of the engine's speed; a wrong one is not (and is counted); a run lost without an answer
    /// is sent again later. Never delivered to anybody.
    pub(crate) fn benchmark_status(
        &self,
        ctx: &mut Ctx<'_>,
        assignment: AssignmentRow,
        task: TaskRow,
        status: AssignmentStatus,
    ) -> Result<(), Reject> {
        let id = status.assignment;
        if status.state == AssignmentState::Running {
            return Ok(());
        }
        if assignment.state != AssignmentRowState::Active || !ctx.tx.end_assignment(id, ctx.now)? {
            return Ok(()); // a late answer of a benchmark that ended already
        }
        let provider = ctx.party.id.clone();
        let now = ctx.now;
        let interval = self.config.benchmark_interval_ms.unwrap_or(u64::MAX);
        let mut profile = self.provider_profile(ctx.tx, &provider)?.unwrap_or_default();
        if profile.benchmark.is_some_and(|flight| flight.assignment == id) {
            profile.benchmark = None;
        }
        let retry = now.saturating_add(BENCHMARK_RETRY_MS.min(interval));
        let next = now.saturating_add(interval);
        let known = self.benchmark.as_ref().and_then(|setup| setup.tasks.iter().find(|t| t.key == task.key));
        let size = benchmark::parse_params(&task.params).map(|(n, _)| n);
        profile.benchmark_next_ms = match status.state {
            AssignmentState::Running => unreachable!("handled above"),
            AssignmentState::Succeeded => {
                match (known, size, &status.result) {
                    (Some(known), Some(n), Some(Payload::Inline(answer))) if answer[..] == known.answer[..] => {
                        let wall_ms = now.saturating_sub(assignment.created_ms);
                        let seconds = benchmark_seconds(status.cpu_ms, wall_ms);
                        let sample = benchmark::flops(n) / seconds / 1e9;
                        let mut average = profile.cpu_gflops.unwrap_or_default();
                        match average.record(sample, BENCHMARK_GFLOPS_MAX) {
                            Ok(mean) => {
                                profile.cpu_gflops = Some(average);
                                profile.cpu_measured_ms = Some(now);
                                tracing::info!(%provider, sample_gflops = sample, gflops = mean, cpu_ms = status.cpu_ms, wall_ms, "benchmark measured");
                            }
                            Err(error) => tracing::warn!(%provider, %error, "benchmark measurement refused"),
                        }
                    }
                    _ => {
                        profile.benchmark_wrong = profile.benchmark_wrong.saturating_add(1);
                        tracing::warn!(%provider, assignment = %id, "benchmark answered wrongly: not a measurement");
                    }
                }
                next
            }
            AssignmentState::Failed => {
                let failure = status.failure.unwrap_or(idlegrid_types::TaskFailureInfo {
                    kind: idlegrid_types::FailureKind::Engine,
                    message: String::new(),
                });
                let reason: String = failure.message.chars().take(200).collect();
                if failure.kind.is_deterministic() {
                    // The module runs everywhere: a failure of it says something about the engine.
                    tracing::warn!(%provider, assignment = %id, reason = %Untrusted(&reason), "benchmark failed on the engine");
                    next
                } else {
                    tracing::info!(%provider, assignment = %id, reason = %Untrusted(&reason), "benchmark not run (engine-side failure)");
                    retry
                }
            }
            AssignmentState::Suspended | AssignmentState::Removed => retry,
        };
        self.save_profile(ctx.tx, &provider, &profile)?;
        Ok(())
    }
}
