//! Plain jobs (no virtual cluster) placed by the coordinator's own scheduling pass,
//! `idlegrid_scheduler::pass`: every simulated minute the engines in contact offer their free
//! slots, the waiting tasks ask for their missing replicas (excluding the engines that held one),
//! `place` decides, and `engines_to_check` / `draw_spot_checks` turn some launches into test
//! tasks with known answers, exactly as `schedule` in the coordinator does against the store.
//!
//! Simpler than the cluster run on purpose (its figures do not depend on this part): machines
//! are drawn from the same population, but each is simply on or off, with exponential sessions
//! by kind; a copy whose engine goes off is lost and its task asks again elsewhere. The part has
//! its own random stream derived from the seed, so the cluster figures stay what they were.
//!
//! Two options, off by default (the figures are then exactly those without them): `deadlines`
//! orders the waiting tasks by deadline and gives tasks at risk an extra copy
//! (`idlegrid_scheduler::deadline`, as the coordinator does); `migration` keeps a lost copy's
//! progress up to its last checkpoint upload, so the task resumes elsewhere from it. Every task
//! has a deadline drawn from a stream of its own, so both runs are judged against the same ones.

use idlegrid_assurance::{ProviderRecord, QuarantineRule, SpotCheckOutcome, SpotCheckPolicy};
use idlegrid_random::{RandomSource, Xoshiro256StarStar};
use idlegrid_scheduler::ReplicaDemand;
use idlegrid_scheduler::deadline::{self, Candidate};
use idlegrid_scheduler::pass::{self, Launch};
use idlegrid_types::PartyId;
use serde::{Deserialize, Serialize};

use crate::population::{self, Kind};

/// Mixed into the seed for this part's own random stream.
const STREAM: u64 = 0x706c_6169_6e00_0001;
/// Work of a plain task: 15 minutes on a 1 GFLOPS engine.
const WORK_GFLOP: f64 = 900.0;
/// Share of the tasks that ask for two replicas (result assurance by agreement).
const REPLICATED_SHARE: f64 = 0.2;
/// Mixed into the seed for the tasks' deadlines.
const DEADLINE_STREAM: u64 = 0x706c_6169_6e00_0002;
/// Deadlines fall this many minutes after the jobs arrive, uniformly.
const DEADLINE_MINUTES: (f64, f64) = (15.0, 180.0);
/// How often a running copy uploads its checkpoint when migration is on (minutes).
const CHECKPOINT_MINUTES: u64 = 10;

/// What the plain part does beyond the plain pass.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlainOptions {
    /// Earliest deadline first, and an extra copy for tasks at risk.
    pub deadlines: bool,
    /// A lost copy's progress is kept up to its last checkpoint.
    pub migration: bool,
}

/// What the plain jobs' part measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlainReport {
    pub tasks: u64,
    pub finished: u64,
    /// Passes run (one per simulated minute until the last task finished or the horizon).
    pub passes: u64,
    /// Copies of real tasks launched, and test tasks (spot checks) sent instead.
    pub copies: u64,
    pub spot_checks: u64,
    /// Copies lost with their engine.
    pub copies_lost: u64,
    /// Mean minutes from the jobs' arrival to a task's first launch.
    pub mean_wait_minutes: f64,
    /// What ran beyond the plain pass.
    #[serde(default)]
    pub options: PlainOptions,
    /// Tasks finished by their deadline.
    #[serde(default)]
    pub finished_by_deadline: u64,
    /// Minutes of engine work lost with copies whose engine went away.
    #[serde(default)]
    pub work_lost_minutes: u64,
}

impl PlainReport {
    /// Share of the tasks finished by their deadline.
    pub fn deadline_share(&self) -> f64 {
        if self.tasks == 0 { 0.0 } else { self.finished_by_deadline as f64 / self.tasks as f64 }
    }

    /// Mean minutes of work lost per copy lost.
    pub fn lost_per_interruption(&self) -> f64 {
        if self.copies_lost == 0 { 0.0 } else { self.work_lost_minutes as f64 / self.copies_lost as f64 }
    }
}

/// A task of a plain job.
struct Task {
    wanted: u32,
    results: u32,
    running: u32,
    /// Engines that hold or held a copy: never given another.
    held: Vec<usize>,
    first_launch: Option<u64>,
    deadline_minute: u64,
    /// Work kept in a checkpoint (GFLOP), with migration.
    done_gflop: f64,
}

/// A copy on an engine: of a task, or a test task when `task` is `None`.
struct Copy {
    task: Option<usize>,
    ends: u64,
    started: u64,
    /// The task's checkpointed work when the copy started (GFLOP).
    base_gflop: f64,
}

struct Engine {
    id: PartyId,
    kind: Kind,
    slots: u32,
    minutes_per_task: u64,
    cpu_gflops: f64,
    online: bool,
    copies: Vec<Copy>,
    record: ProviderRecord,
}

/// Mean minutes on and off for a kind: servers nearly always on, laptops in short sessions.
fn sessions(kind: Kind) -> (f64, f64) {
    match kind {
        Kind::Server => (10_000.0, 60.0),
        Kind::Office => (240.0, 240.0),
        Kind::Home => (120.0, 240.0),
        Kind::Laptop => (60.0, 120.0),
    }
}

/// Run `tasks` plain tasks on `providers` machines for at most `horizon_minutes`.
pub fn run(seed: u64, providers: u32, tasks: u64, horizon_minutes: u64, options: PlainOptions) -> PlainReport {
    let mut rng = Xoshiro256StarStar::from_seed(seed ^ STREAM);
    let mut deadlines = Xoshiro256StarStar::from_seed(seed ^ DEADLINE_STREAM);
    let archetypes = population::archetypes();
    let mut engines: Vec<Engine> = (0..providers)
        .map(|n| {
            let machine = population::machine(&archetypes, &mut rng);
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&n.to_le_bytes());
            Engine {
                id: PartyId::from_public_key(&key),
                kind: machine.kind,
                slots: machine.slots.max(1),
                minutes_per_task: minutes_for(WORK_GFLOP, machine.cpu_gflops),
                cpu_gflops: machine.cpu_gflops,
                online: rng.next_f64() < 0.5,
                copies: Vec::new(),
                record: ProviderRecord::default(),
            }
        })
        .collect();
    let mut work: Vec<Task> = (0..tasks)
        .map(|_| Task {
            wanted: if rng.next_f64() < REPLICATED_SHARE { 2 } else { 1 },
            results: 0,
            running: 0,
            held: Vec::new(),
            first_launch: None,
            deadline_minute: {
                let (low, high) = DEADLINE_MINUTES;
                (low + (high - low) * deadlines.next_f64()) as u64
            },
            done_gflop: 0.0,
        })
        .collect();
    let policy = SpotCheckPolicy::default();
    let mut report = PlainReport { tasks, options, ..PlainReport::default() };
    let mut minute = 0;
    while report.finished < tasks && minute < horizon_minutes {
        step_engines(&mut engines, &mut work, &mut report, minute, &mut rng);
        let launches = plan(&engines, &work, &policy, options.deadlines.then_some(minute), &mut rng);
        apply(&mut engines, &mut work, &mut report, minute, &launches.0, &launches.1);
        report.passes += 1;
        minute += 1;
    }
    let waits: Vec<u64> = work.iter().filter_map(|t| t.first_launch).collect();
    report.mean_wait_minutes =
        if waits.is_empty() { 0.0 } else { waits.iter().sum::<u64>() as f64 / waits.len() as f64 };
    report
}

/// Whole minutes (at least one) an engine of `gflops` needs for `work` GFLOP.
fn minutes_for(work: f64, gflops: f64) -> u64 {
    (work / gflops / 60.0).ceil().max(1.0) as u64
}

/// One minute of the engines: copies that end report, engines go on or off (losing their copies).
fn step_engines(
    engines: &mut [Engine],
    work: &mut [Task],
    report: &mut PlainReport,
    minute: u64,
    rng: &mut Xoshiro256StarStar,
) {
    let rule = QuarantineRule::default();
    let migration = report.options.migration;
    for engine in engines.iter_mut() {
        let (on, off) = sessions(engine.kind);
        let flip = if engine.online { 1.0 / on } else { 1.0 / off };
        if rng.next_f64() < flip {
            engine.online = !engine.online;
        }
        let (online, gflops) = (engine.online, engine.cpu_gflops);
        engine.copies.retain(|copy| {
            let ended = copy.ends <= minute;
            match (copy.task, online, ended) {
                // A copy beyond what its finished task needed (an extra one for a deadline).
                (Some(task), true, false) if work[task].results >= work[task].wanted => {
                    work[task].running -= 1;
                }
                (_, true, false) => return true,
                (None, true, true) => {
                    engine.record.apply_spot_check(SpotCheckOutcome::Passed, &rule);
                }
                (Some(task), true, true) => {
                    let task = &mut work[task];
                    task.running -= 1;
                    task.results += 1;
                    if task.results == task.wanted {
                        report.finished += 1;
                        if minute <= task.deadline_minute {
                            report.finished_by_deadline += 1;
                        }
                    }
                }
                (Some(task), false, _) => {
                    let task = &mut work[task];
                    task.running -= 1;
                    report.copies_lost += 1;
                    let elapsed = minute.saturating_sub(copy.started);
                    let saved = if migration { elapsed - elapsed % CHECKPOINT_MINUTES } else { 0 };
                    report.work_lost_minutes += elapsed - saved;
                    let kept = (copy.base_gflop + saved as f64 * 60.0 * gflops).min(WORK_GFLOP);
                    task.done_gflop = task.done_gflop.max(kept);
                }
                (None, false, _) => {}
            }
            false
        });
    }
}

/// The pass: rooms of the engines in contact, the waiting tasks' demands in order, and the plan
/// of the coordinator's pure functions. Returns the engines of the pass (by index) and the plan.
fn plan(
    engines: &[Engine],
    work: &[Task],
    policy: &SpotCheckPolicy,
    deadlines_at: Option<u64>,
    rng: &mut Xoshiro256StarStar,
) -> (Vec<usize>, Vec<Launch>) {
    let mut members = Vec::new();
    let mut position = vec![usize::MAX; engines.len()];
    let mut rooms = Vec::new();
    for (index, engine) in engines.iter().enumerate() {
        let room = engine.slots.saturating_sub(engine.copies.len() as u32);
        if engine.online && room > 0 {
            position[index] = members.len();
            members.push(index);
            rooms.push(room);
        }
    }
    let total: u64 = rooms.iter().map(|r| u64::from(*r)).sum();
    let order = task_order(work, deadlines_at);
    let fastest = members.iter().map(|e| engines[*e].cpu_gflops).reduce(f64::max);
    let mut demands = Vec::new();
    let mut asked = 0;
    for index in &order {
        let task = &work[*index];
        if asked >= total {
            break;
        }
        let wanted = match deadlines_at {
            Some(minute) => deadline::replicas(
                task.wanted,
                deadline::outlook(
                    minute * 60_000,
                    Some(task.deadline_minute * 60_000),
                    Some((WORK_GFLOP - task.done_gflop) / 3600.0),
                    fastest,
                ),
            ),
            None => task.wanted,
        };
        let missing = wanted.saturating_sub(task.results + task.running);
        if missing == 0 {
            demands.push(ReplicaDemand::new(0, Vec::new()));
            continue;
        }
        let excluded = task.held.iter().map(|e| position[*e]).filter(|p| *p != usize::MAX).collect();
        demands.push(ReplicaDemand::new(missing, excluded));
        asked += u64::from(missing);
    }
    let mut launches = pass::place(&rooms, &demands);
    for launch in &mut launches {
        launch.task = order[launch.task];
    }
    let checked = pass::engines_to_check(&launches, policy, true);
    let records: Vec<(PartyId, Option<ProviderRecord>)> = members
        .iter()
        .enumerate()
        .map(|(p, e)| (engines[*e].id.clone(), checked.contains(&p).then(|| engines[*e].record.clone())))
        .collect();
    pass::draw_spot_checks(&mut launches, &records, policy, rng);
    (members, launches)
}

/// The tasks in the order the pass asks for them: as they came, or by deadline (the order of
/// `idlegrid_scheduler::deadline`) when deadlines are on.
fn task_order(work: &[Task], deadlines_at: Option<u64>) -> Vec<usize> {
    let mut order: Vec<usize> = (0..work.len()).collect();
    if deadlines_at.is_some() {
        let candidate =
            |i: usize| Candidate { key: i as i64, priority: 0, deadline_ms: Some(work[i].deadline_minute * 60_000) };
        order.sort_by(|a, b| deadline::compare(&candidate(*a), &candidate(*b)));
    }
    order
}

/// Carry a plan out: a spot check takes the room for a test task (the real task waits for the
/// next pass), any other launch starts a copy.
fn apply(
    engines: &mut [Engine],
    work: &mut [Task],
    report: &mut PlainReport,
    minute: u64,
    members: &[usize],
    launches: &[Launch],
) {
    for launch in launches {
        let index = members[launch.engine];
        let engine = &mut engines[index];
        if launch.spot_check {
            let ends = minute + engine.minutes_per_task;
            engine.copies.push(Copy { task: None, ends, started: minute, base_gflop: 0.0 });
            report.spot_checks += 1;
            continue;
        }
        let task = &mut work[launch.task];
        let minutes = if task.done_gflop > 0.0 {
            minutes_for(WORK_GFLOP - task.done_gflop, engine.cpu_gflops)
        } else {
            engine.minutes_per_task
        };
        let copy =
            Copy { task: Some(launch.task), ends: minute + minutes, started: minute, base_gflop: task.done_gflop };
        engine.copies.push(copy);
        task.running += 1;
        task.held.push(index);
        task.first_launch.get_or_insert(minute);
        report.copies += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_plain_task_finishes_on_a_small_population_and_repeats_with_its_seed() {
        let report = run(3, 50, 400, 7 * 24 * 60, PlainOptions::default());
        assert_eq!(report.finished, 400, "{report:?}");
        assert!(report.copies >= 400, "{report:?}");
        assert!(report.spot_checks > 0, "{report:?}");
        assert_eq!(report, run(3, 50, 400, 7 * 24 * 60, PlainOptions::default()));
        assert_ne!(report, run(4, 50, 400, 7 * 24 * 60, PlainOptions::default()));
    }

    #[test]
    fn deadlines_and_migration_change_what_they_should_and_repeat_with_their_seed() {
        let off = run(5, 60, 600, 7 * 24 * 60, PlainOptions::default());
        let on = PlainOptions { deadlines: true, migration: true };
        let report = run(5, 60, 600, 7 * 24 * 60, on);
        assert_eq!(report, run(5, 60, 600, 7 * 24 * 60, on));
        assert_eq!((off.finished, report.finished), (600, 600), "{off:?} {report:?}");
        assert!(off.copies_lost > 0 && report.copies_lost > 0, "{off:?} {report:?}");
        // Migration keeps all but the minutes since the last checkpoint.
        assert!(report.lost_per_interruption() < CHECKPOINT_MINUTES as f64, "{report:?}");
        assert!(report.finished_by_deadline <= report.finished);
        // On this seed, earliest deadline first meets more deadlines (a figure, fixed by the seed).
        assert!(report.finished_by_deadline > off.finished_by_deadline, "{off:?} {report:?}");
        let deadlines_only = run(5, 60, 600, 7 * 24 * 60, PlainOptions { deadlines: true, migration: false });
        assert!(deadlines_only.copies >= off.copies, "extra copies for tasks at risk: {deadlines_only:?} {off:?}");
    }

    #[test]
    fn no_engine_is_given_more_than_its_slots() {
        let mut rng = Xoshiro256StarStar::from_seed(9);
        let archetypes = population::archetypes();
        let engines: Vec<Engine> = (0..20u32)
            .map(|n| {
                let machine = population::machine(&archetypes, &mut rng);
                Engine {
                    id: PartyId::from_public_key(&[n as u8; 32]),
                    kind: machine.kind,
                    slots: machine.slots.max(1),
                    minutes_per_task: 5,
                    cpu_gflops: 3.0,
                    online: n % 3 != 0,
                    copies: Vec::new(),
                    record: ProviderRecord::default(),
                }
            })
            .collect();
        let work: Vec<Task> = (0..200)
            .map(|_| Task {
                wanted: 2,
                results: 0,
                running: 0,
                held: Vec::new(),
                first_launch: None,
                deadline_minute: 60,
                done_gflop: 0.0,
            })
            .collect();
        let (members, launches) = plan(&engines, &work, &SpotCheckPolicy::default(), Some(0), &mut rng);
        let mut used = vec![0u32; engines.len()];
        for launch in &launches {
            used[members[launch.engine]] += 1;
        }
        for (engine, n) in engines.iter().zip(&used) {
            assert!(*n <= engine.slots && (engine.online || *n == 0), "{n} on an engine of {} slots", engine.slots);
        }
    }
}
