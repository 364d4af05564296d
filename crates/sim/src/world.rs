//! The event loop: simulated machines, copies of tasks and the real scheduler.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use idlegrid_random::{RandomSource, Xoshiro256StarStar};
use idlegrid_scheduler::availability::{AvailabilityHistory, MinuteState};
use idlegrid_scheduler::placement::{
    ElementRef, JobSpec, NodeRequirements, ProviderUpdate, ReliabilityModel, Scheduler, TaskSpec,
};
use idlegrid_scheduler::timing::{
    BandFit, NodeSpeed, TaskShape, expected_seconds, requested_seconds, weighted_availability,
};
use idlegrid_scheduler::vnode::{duplication_for, reliability_mass};
use idlegrid_scheduler::{Connectivity, ElementKey, JobKey, ProviderId, ProviderProfile, TaskKey};

use crate::population::{Archetype, MINUTES_PER_WEEK, Machine, archetypes, machine};
use crate::{ReliabilityRow, SimConfig, SimPhase, SimProgress, SimReport};

/// 2024-01-01 00:00 UTC, a Monday: the simulation's week starts line up with the signatures'.
const START_MS: u64 = 1_704_067_200_000;
const MINUTE_MS: u64 = 60_000;
const HOUR_MS: u64 = 3_600_000;
const DAY_MS: u64 = 24 * HOUR_MS;
const WEEK_MS: u64 = MINUTES_PER_WEEK as u64 * MINUTE_MS;
/// Minutes from the Unix epoch (a Thursday) to the start of its week (Monday 00:00 UTC).
const EPOCH_MINUTE_OF_WEEK: u64 = 3 * 1440;
/// Relative noise of a benchmark measurement.
const MEASUREMENT_SIGMA: f64 = 0.05;
/// How often a provider's weekly signature is sent to the scheduler (full version).
const SIGNATURE_PUSH_MS: u64 = 6 * HOUR_MS;
const URGENT_PRIORITY: i32 = 10;

mod providers;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// A process of a provider: `toggle` false means "rates change, draw again".
    Power {
        provider: u32,
        epoch: u32,
        toggle: bool,
    },
    Owner {
        provider: u32,
        epoch: u32,
        toggle: bool,
    },
    Link {
        provider: u32,
        epoch: u32,
        toggle: bool,
    },
    /// A copy may have finished its current phase.
    Phase {
        copy: u32,
        epoch: u32,
    },
    Depart {
        provider: u32,
    },
    Forget {
        provider: u32,
    },
    Join,
    /// A plan: `tick` for the regular ones (which also sample the power), else after a result.
    Plan {
        tick: bool,
    },
    StartJobs,
    Urgent,
    Progress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct State {
    online: bool,
    cpu: bool,
    bandwidth: bool,
}

struct SimProvider {
    machine: Machine,
    /// What the benchmarks measured (with noise).
    profile: ProviderProfile,
    online: bool,
    owner_active: bool,
    link_up: bool,
    departed: bool,
    registered: bool,
    power_epoch: u32,
    owner_epoch: u32,
    link_epoch: u32,
    history: AvailabilityHistory,
    /// History is recorded up to this time.
    recorded_ms: u64,
    signature_pushed_ms: u64,
    copies: Vec<u32>,
    /// Bit j: holds the executable of job j.
    cached_jobs: u64,
    /// In contact since (for utilisation), while in the running phase.
    contact_since_ms: Option<u64>,
}

impl SimProvider {
    fn state(&self) -> State {
        State { online: self.online, cpu: self.online && !self.owner_active, bandwidth: self.online && self.link_up }
    }

    fn id(index: u32) -> ProviderId {
        ProviderId(index as u64)
    }
}

struct Copy {
    task: u32,
    provider: u32,
    /// 0 download, 1 compute, 2 upload.
    phase: u8,
    remaining: f64,
    last_ms: u64,
    started_ms: u64,
    epoch: u32,
    alive: bool,
}

struct SimTask {
    job: u16,
    first_launch_ms: u64,
    finished_ms: u64,
    copies: u32,
    relaunched: bool,
}

struct SimJob {
    key: JobKey,
    class: usize,
    row: usize,
    executable: ElementKey,
    requested_ms: f64,
    node_cpu_gflops: f64,
    nodes_max: u32,
    urgent: bool,
    power_requested_sum: f64,
    power_delivered_sum: f64,
    power_ticks: u64,
}

#[derive(Default)]
struct RowStats {
    tasks: u64,
    finished: u64,
    within: u64,
    copies_of_finished: u64,
    members: u64,
    pi_sum: f64,
    /// Sum of ln(1 - pi) over the members launched.
    log_failure_sum: f64,
    first_nodes: u64,
    first_members: u64,
    relaunched: u64,
}

pub(crate) struct World {
    config: SimConfig,
    archetypes: Vec<Archetype>,
    rng: Xoshiro256StarStar,
    now_ms: u64,
    run_start_ms: u64,
    end_ms: u64,
    events: BinaryHeap<Reverse<(u64, u64, Event)>>,
    seq: u64,
    providers: Vec<SimProvider>,
    copies: Vec<Copy>,
    free_copies: Vec<u32>,
    tasks: Vec<SimTask>,
    jobs: Vec<SimJob>,
    rows: Vec<RowStats>,
    scheduler: Scheduler,
    live: bool,
    plan_pending: bool,
    /// Slots of providers in contact now, and copies running now.
    contact_slots_now: u64,
    copies_now: u64,
    saturated_utilisation_sum: f64,
    saturated_ticks: u64,
    tasks_total: u64,
    tasks_finished: u64,
    providers_initial: u64,
    providers_joined: u64,
    providers_departed: u64,
    busy_slot_ms: f64,
    useful_slot_ms: f64,
    contact_slot_ms: f64,
    nodes_failed: u64,
    copies_preempted: u64,
    plans: u64,
    events_handled: u64,
}

impl World {
    pub fn new(config: SimConfig) -> World {
        let scheduler = Scheduler::new(config.scheduler.clone()).expect("valid scheduler configuration");
        let run_start_ms = START_MS + config.warmup_days as u64 * DAY_MS;
        World {
            archetypes: archetypes(),
            rng: Xoshiro256StarStar::from_seed(config.seed),
            now_ms: START_MS,
            run_start_ms,
            end_ms: run_start_ms + config.horizon_days.max(1) as u64 * DAY_MS,
            events: BinaryHeap::new(),
            seq: 0,
            providers: Vec::new(),
            copies: Vec::new(),
            free_copies: Vec::new(),
            tasks: Vec::new(),
            jobs: Vec::new(),
            rows: Vec::new(),
            scheduler,
            live: false,
            plan_pending: false,
            contact_slots_now: 0,
            copies_now: 0,
            saturated_utilisation_sum: 0.0,
            saturated_ticks: 0,
            tasks_total: config.tasks,
            tasks_finished: 0,
            providers_initial: config.providers as u64,
            providers_joined: 0,
            providers_departed: 0,
            busy_slot_ms: 0.0,
            useful_slot_ms: 0.0,
            contact_slot_ms: 0.0,
            nodes_failed: 0,
            copies_preempted: 0,
            plans: 0,
            events_handled: 0,
            config,
        }
    }

    fn at(&mut self, time_ms: u64, event: Event) {
        self.seq += 1;
        self.events.push(Reverse((time_ms.max(self.now_ms), self.seq, event)));
    }

    pub fn run(mut self, progress: &mut dyn FnMut(&SimProgress)) -> SimReport {
        for _ in 0..self.config.providers {
            self.add_provider();
        }
        self.at(self.run_start_ms, Event::StartJobs);
        self.at(START_MS + HOUR_MS, Event::Progress);
        while let Some(Reverse((time_ms, _, event))) = self.events.pop() {
            if time_ms > self.end_ms {
                break;
            }
            self.now_ms = time_ms;
            self.events_handled += 1;
            match event {
                Event::Power { provider, epoch, toggle } => self.on_power(provider, epoch, toggle),
                Event::Owner { provider, epoch, toggle } => self.on_owner(provider, epoch, toggle),
                Event::Link { provider, epoch, toggle } => self.on_link(provider, epoch, toggle),
                Event::Phase { copy, epoch } => self.on_phase(copy, epoch),
                Event::Depart { provider } => self.on_depart(provider),
                Event::Forget { provider } => self.on_forget(provider),
                Event::Join => {
                    self.providers_joined += 1;
                    let index = self.add_provider();
                    if self.live {
                        self.register(index);
                    }
                }
                Event::Plan { tick } => self.on_plan(tick),
                Event::StartJobs => self.start_jobs(),
                Event::Urgent => self.add_urgent_job(),
                Event::Progress => {
                    progress(&self.progress(if self.live { SimPhase::Running } else { SimPhase::WarmUp }));
                    self.at(self.now_ms + HOUR_MS, Event::Progress);
                }
            }
            if self.live && self.tasks_finished >= self.tasks_total {
                break;
            }
        }
        progress(&self.progress(SimPhase::Done));
        self.report()
    }

    fn progress(&self, phase: SimPhase) -> SimProgress {
        SimProgress {
            phase,
            simulated_hours: (self.now_ms.saturating_sub(START_MS)) as f64 / HOUR_MS as f64,
            tasks_finished: self.tasks_finished,
            tasks_total: self.tasks_total,
        }
    }

    // ---- providers ---------------------------------------------------------------------------

    fn start_copy(&mut self, task: u32, provider: u32) {
        let job = &self.jobs[self.tasks[task as usize].job as usize];
        let p = &self.providers[provider as usize];
        let class = &self.config.job_classes[job.class];
        let executable = if p.cached_jobs & (1 << (self.tasks[task as usize].job as u64 % 64)) != 0 {
            0.0
        } else {
            class.executable_mb
        };
        let copy = Copy {
            task,
            provider,
            phase: 0,
            remaining: class.data_in_mb + executable,
            last_ms: self.now_ms,
            started_ms: self.now_ms,
            epoch: 0,
            alive: true,
        };
        let index = match self.free_copies.pop() {
            Some(i) => {
                self.copies[i as usize] = copy;
                i
            }
            None => {
                self.copies.push(copy);
                (self.copies.len() - 1) as u32
            }
        };
        self.providers[provider as usize].copies.push(index);
        self.copies_now += 1;
        self.reschedule(index);
    }

    fn on_phase(&mut self, index: u32, epoch: u32) {
        let copy = &self.copies[index as usize];
        if !copy.alive || copy.epoch != epoch {
            return;
        }
        let (provider, task, phase) = (copy.provider, copy.task, copy.phase);
        let state = self.providers[provider as usize].state();
        self.advance(index, state);
        let job = self.tasks[task as usize].job as usize;
        let class = &self.config.job_classes[self.jobs[job].class];
        let (work, data_out) = (class.work_gflop, class.data_out_mb);
        match phase {
            0 => {
                let copy = &mut self.copies[index as usize];
                copy.phase = 1;
                copy.remaining = work;
                let bit = 1u64 << (job as u64 % 64);
                let p = &mut self.providers[provider as usize];
                if p.cached_jobs & bit == 0 {
                    p.cached_jobs |= bit;
                    let cached = p.cached_jobs;
                    let held: Vec<ElementKey> = (0..self.jobs.len())
                        .filter(|j| cached & (1 << (*j as u64 % 64)) != 0)
                        .map(|j| self.jobs[j].executable)
                        .collect();
                    if p.registered {
                        self.scheduler.set_cache_contents(SimProvider::id(provider), &held).expect("registered");
                    }
                }
                self.reschedule(index);
            }
            1 => {
                let copy = &mut self.copies[index as usize];
                copy.phase = 2;
                copy.remaining = data_out;
                self.reschedule(index);
            }
            _ => self.finish_task(index),
        }
    }

    /// The first result of a task reached the server.
    fn finish_task(&mut self, index: u32) {
        let (task, provider) = (self.copies[index as usize].task, self.copies[index as usize].provider);
        let t = &mut self.tasks[task as usize];
        if t.finished_ms != u64::MAX {
            self.end_copy(index, false);
            return;
        }
        t.finished_ms = self.now_ms;
        self.tasks_finished += 1;
        let job = &self.jobs[t.job as usize];
        let row = &mut self.rows[job.row];
        row.finished += 1;
        row.copies_of_finished += t.copies as u64;
        if ((self.now_ms - t.first_launch_ms) as f64) <= job.requested_ms {
            row.within += 1;
        }
        let others =
            self.scheduler.task_finished(TaskKey(task as u64), SimProvider::id(provider)).expect("running task");
        self.end_copy(index, true);
        for other in others {
            self.end_copy_of(task, other.0 as u32, false);
        }
        // The coordinator schedules whenever room appears; results at the same instant share a plan.
        if !self.plan_pending {
            self.plan_pending = true;
            self.at(self.now_ms, Event::Plan { tick: false });
        }
    }

    fn end_copy(&mut self, index: u32, won: bool) {
        let copy = &mut self.copies[index as usize];
        if !copy.alive {
            return;
        }
        copy.alive = false;
        copy.epoch = copy.epoch.wrapping_add(1);
        self.copies_now -= 1;
        let duration = (self.now_ms - copy.started_ms) as f64;
        self.busy_slot_ms += duration;
        if won {
            self.useful_slot_ms += duration;
        }
        let provider = copy.provider;
        let copies = &mut self.providers[provider as usize].copies;
        if let Some(i) = copies.iter().position(|c| *c == index) {
            copies.swap_remove(i);
        }
        self.free_copies.push(index);
    }

    fn end_copy_of(&mut self, task: u32, provider: u32, won: bool) {
        let found =
            self.providers[provider as usize].copies.iter().copied().find(|c| self.copies[*c as usize].task == task);
        if let Some(index) = found {
            self.end_copy(index, won);
        }
    }

    // ---- jobs --------------------------------------------------------------------------------

    fn start_jobs(&mut self) {
        self.live = true;
        for index in 0..self.providers.len() as u32 {
            if !self.providers[index as usize].departed {
                self.register(index);
            }
        }
        let urgent_tasks = (self.config.tasks as f64 * self.config.urgent_task_share).round() as u64;
        let regular = self.config.tasks - urgent_tasks.min(self.config.tasks);
        let classes = self.config.job_classes.clone();
        let share_total: f64 = classes.iter().map(|c| c.task_share).sum();
        let reliabilities = self.config.reliabilities.clone();
        self.rows = reliabilities.iter().map(|_| RowStats::default()).collect();
        let mut assigned = 0u64;
        let jobs_count = classes.len() * reliabilities.len();
        for (class_index, class) in classes.iter().enumerate() {
            let nodes_max = self.node_limits(class, &reliabilities);
            for (row, reliability) in reliabilities.iter().enumerate() {
                let job_number = self.jobs.len();
                let count = if job_number + 1 == jobs_count {
                    regular - assigned
                } else {
                    (regular as f64 * class.task_share / share_total / reliabilities.len() as f64).round() as u64
                };
                assigned += count;
                self.add_job(class_index, row, *reliability, nodes_max[row], 0, count);
            }
        }
        self.at(self.now_ms, Event::Plan { tick: true });
        if urgent_tasks > 0 {
            self.at(self.now_ms + (self.config.urgent_after_hours * HOUR_MS as f64) as u64, Event::Urgent);
        }
    }

    /// A higher-priority job for the class with the most waiting work, asking for twice the
    /// power the class's candidates offer on average: more than is free, so it preempts.
    fn add_urgent_job(&mut self) {
        let urgent_tasks = (self.config.tasks as f64 * self.config.urgent_task_share).round() as u64;
        let mut busiest = (0, 0);
        for job in &self.jobs {
            let waiting = self.scheduler.job_power(job.key).expect("job exists").tasks_waiting;
            if waiting > busiest.1 {
                busiest = (job.class, waiting);
            }
        }
        let class = self.config.job_classes[busiest.0].clone();
        let reliability = self.config.reliabilities.first().copied().unwrap_or(0.9);
        let all = self.node_limits(&class, &[reliability]);
        // Twice the class's average capacity: more than is free at any hour.
        let nodes_max = (2.0 * all[0] as f64 / self.config.load.max(0.01)) as u32;
        self.add_job(busiest.0, 0, reliability, nodes_max, URGENT_PRIORITY, urgent_tasks);
    }

    /// Nodes each job of `class` may run: `load` of the slot capacity its candidates offer on
    /// average (slots x share of time in contact), shared among the reliabilities in proportion
    /// to the members each needs.
    fn node_limits(&self, class: &crate::JobClass, reliabilities: &[f64]) -> Vec<u32> {
        let config = self.scheduler.config();
        let shape = TaskShape {
            work_gflop: class.work_gflop,
            data_in_mb: class.data_in_mb + class.executable_mb,
            data_out_mb: class.data_out_mb,
        };
        let node = NodeSpeed { cpu_gflops: class.node_cpu_gflops, bandwidth_mb_per_s: class.node_bandwidth_mb_per_s };
        let requested = requested_seconds(&shape, &node);
        let bandwidth_min = config.band.effective_bandwidth_min(&shape, &node);
        let (mut capacity, mut pi_sum, mut candidates) = (0.0, 0.0, 0u64);
        for p in self.providers.iter().filter(|p| p.registered) {
            let Some(r) = p.history.ratings() else { continue };
            if r.window_minutes < config.rating_window_minutes_min {
                continue;
            }
            let (c, b) = (p.profile.cpu_gflops, p.profile.bandwidth_mb_per_s);
            let expected = expected_seconds(&shape, c, b, r.cpu, r.bandwidth);
            let pi = weighted_availability(r.cpu, r.bandwidth, c, b, &config.mean_task);
            if config.band.fit(expected, expected, requested) == BandFit::Within
                && b * r.bandwidth >= bandwidth_min
                && pi >= config.pi_min
            {
                capacity += p.machine.slots as f64 * r.bandwidth;
                pi_sum += pi;
                candidates += 1;
            }
        }
        let mean_pi = if candidates > 0 { pi_sum / candidates as f64 } else { 0.5 };
        let needs: Vec<f64> = reliabilities
            .iter()
            .map(|r| duplication_for(r.max(config.reliability_default), mean_pi).clamp(1.0, config.members_max as f64))
            .collect();
        let total: f64 = needs.iter().sum();
        needs.iter().map(|_| ((self.config.load * capacity / total).floor() as u32).max(1)).collect()
    }

    fn add_job(&mut self, class_index: usize, row: usize, reliability: f64, nodes_max: u32, priority: i32, tasks: u64) {
        let class = self.config.job_classes[class_index].clone();
        let number = self.jobs.len();
        let key = JobKey(number as u64);
        let executable = ElementKey(0xE000_0000_0000_0000 | number as u64);
        let shape = TaskShape {
            work_gflop: class.work_gflop,
            data_in_mb: class.data_in_mb + class.executable_mb,
            data_out_mb: class.data_out_mb,
        };
        let node = NodeSpeed { cpu_gflops: class.node_cpu_gflops, bandwidth_mb_per_s: class.node_bandwidth_mb_per_s };
        let spec = JobSpec {
            priority,
            paying: true,
            node: NodeRequirements {
                cpu_gflops: class.node_cpu_gflops,
                bandwidth_mb_per_s: class.node_bandwidth_mb_per_s,
                memory_mb: 0,
                disk_mb: 0,
                connectivity: Connectivity::Intermittent,
            },
            reliability: Some(reliability),
            shape: Some(shape),
            nodes_max: Some(nodes_max),
            model: self.config.model,
            shared_elements: vec![ElementRef { key: executable, size_mb: class.executable_mb }],
        };
        self.scheduler.add_job(key, spec).expect("valid job");
        self.jobs.push(SimJob {
            key,
            class: class_index,
            row,
            executable,
            requested_ms: requested_seconds(&shape, &node) * 1000.0,
            node_cpu_gflops: class.node_cpu_gflops,
            nodes_max,
            urgent: priority == URGENT_PRIORITY,
            power_requested_sum: 0.0,
            power_delivered_sum: 0.0,
            power_ticks: 0,
        });
        self.rows[row].tasks += tasks;
        for _ in 0..tasks {
            let index = self.tasks.len() as u64;
            let data = ElementRef { key: ElementKey(index), size_mb: class.data_in_mb };
            self.scheduler
                .add_task(key, TaskKey(index), TaskSpec { priority: None, elements: vec![data] })
                .expect("valid task");
            self.tasks.push(SimTask {
                job: number as u16,
                first_launch_ms: u64::MAX,
                finished_ms: u64::MAX,
                copies: 0,
                relaunched: false,
            });
        }
    }

    fn on_plan(&mut self, tick: bool) {
        if !tick {
            self.plan_pending = false;
        }
        let seed = self.rng.next_u64();
        let plan = self.scheduler.plan(self.now_ms, seed);
        let report = self.scheduler.apply(&plan);
        debug_assert_eq!(report.members_skipped, 0);
        self.plans += 1;
        for failed in &plan.failed_nodes {
            self.nodes_failed += 1;
            let task = failed.task.0 as u32;
            if !self.tasks[task as usize].relaunched {
                self.tasks[task as usize].relaunched = true;
                let row = self.jobs[self.tasks[task as usize].job as usize].row;
                self.rows[row].relaunched += 1;
            }
            for provider in &failed.abandoned {
                self.end_copy_of(task, provider.0 as u32, false);
            }
        }
        for preemption in &plan.preemptions {
            self.copies_preempted += 1;
            self.end_copy_of(preemption.task.0 as u32, preemption.provider.0 as u32, false);
        }
        for node in &plan.nodes {
            let task = node.task.0 as u32;
            let members = self.scheduler.members_of(node.task).expect("planned task exists");
            for member in &members {
                self.start_copy(task, member.0 as u32);
            }
            let row = self.jobs[self.tasks[task as usize].job as usize].row;
            let stats = &mut self.rows[row];
            stats.members += node.members.len() as u64;
            stats.pi_sum += node.members.iter().map(|m| m.pi).sum::<f64>();
            stats.log_failure_sum -= node.members.iter().map(|m| reliability_mass(m.pi)).sum::<f64>();
            let t = &mut self.tasks[task as usize];
            t.copies += members.len() as u32;
            if t.first_launch_ms == u64::MAX {
                t.first_launch_ms = self.now_ms;
                stats.first_nodes += 1;
                stats.first_members += members.len() as u64;
            }
        }
        if !tick {
            return;
        }
        let mut saturated = true;
        for job in &mut self.jobs {
            let power = self.scheduler.job_power(job.key).expect("job exists");
            if power.tasks_waiting > 0 {
                job.power_ticks += 1;
                job.power_requested_sum += job.nodes_max as f64 * job.node_cpu_gflops;
                job.power_delivered_sum += power.power_delivered_gflops;
            } else {
                saturated = false;
            }
        }
        if saturated && self.contact_slots_now > 0 {
            self.saturated_ticks += 1;
            self.saturated_utilisation_sum += self.copies_now as f64 / self.contact_slots_now as f64;
        }
        if self.tasks_finished < self.tasks_total {
            self.at(self.now_ms + self.config.plan_interval_seconds.max(1) as u64 * 1000, Event::Plan { tick: true });
        }
    }

    fn report(mut self) -> SimReport {
        // Close the books on copies still running and providers still in contact.
        for index in 0..self.copies.len() {
            if self.copies[index].alive {
                self.busy_slot_ms += (self.now_ms - self.copies[index].started_ms) as f64;
            }
        }
        for p in &mut self.providers {
            if let Some(since) = p.contact_since_ms.take() {
                self.contact_slot_ms += (self.now_ms - since) as f64 * p.machine.slots as f64;
            }
        }
        let mut power: Vec<(f64, f64)> = vec![(0.0, 0.0); self.rows.len()];
        let mut urgent_power = (0.0, 0.0);
        for job in &self.jobs {
            if job.power_ticks > 0 {
                let averages = (
                    job.power_requested_sum / job.power_ticks as f64,
                    job.power_delivered_sum / job.power_ticks as f64,
                );
                let target = if job.urgent { &mut urgent_power } else { &mut power[job.row] };
                target.0 += averages.0;
                target.1 += averages.1;
            }
        }
        let rows = self
            .rows
            .iter()
            .zip(&self.config.reliabilities)
            .zip(power)
            .map(|((s, reliability), (requested, delivered))| {
                let mean_pi = if s.members > 0 { s.pi_sum / s.members as f64 } else { 0.0 };
                // The pi whose N-fold product gives the members' product: 1 - geometric mean of 1 - pi.
                let product_pi = if s.members > 0 { 1.0 - (s.log_failure_sum / s.members as f64).exp() } else { 0.0 };
                let effective = reliability.max(self.config.scheduler.reliability_default);
                ReliabilityRow {
                    reliability: *reliability,
                    tasks: s.tasks,
                    finished: s.finished,
                    finished_within_requested: s.within,
                    share_within_requested: if s.finished > 0 { s.within as f64 / s.finished as f64 } else { 0.0 },
                    copies_per_task: if s.finished > 0 { s.copies_of_finished as f64 / s.finished as f64 } else { 0.0 },
                    members_per_node: if s.first_nodes > 0 {
                        s.first_members as f64 / s.first_nodes as f64
                    } else {
                        0.0
                    },
                    mean_pi,
                    duplication_formula: duplication_for(effective, mean_pi),
                    product_pi,
                    duplication_formula_product: duplication_for(effective, product_pi),
                    power_requested_gflops: requested,
                    power_delivered_gflops: delivered,
                    tasks_relaunched: s.relaunched,
                }
            })
            .collect();
        SimReport {
            seed: self.config.seed,
            model: self.config.model,
            providers_initial: self.providers_initial,
            providers_joined: self.providers_joined,
            providers_departed: self.providers_departed,
            tasks: self.tasks_total,
            tasks_finished: self.tasks_finished,
            rows,
            simulated_hours: self.now_ms.saturating_sub(self.run_start_ms) as f64 / HOUR_MS as f64,
            provider_utilisation: if self.contact_slot_ms > 0.0 {
                self.busy_slot_ms / self.contact_slot_ms
            } else {
                0.0
            },
            provider_utilisation_saturated: if self.saturated_ticks > 0 {
                self.saturated_utilisation_sum / self.saturated_ticks as f64
            } else {
                0.0
            },
            useful_share: if self.busy_slot_ms > 0.0 { self.useful_slot_ms / self.busy_slot_ms } else { 0.0 },
            urgent_power_requested_gflops: urgent_power.0,
            urgent_power_delivered_gflops: urgent_power.1,
            nodes_failed: self.nodes_failed,
            copies_preempted: self.copies_preempted,
            plans: self.plans,
            events: self.events_handled,
            plain: crate::PlainReport::default(),
            plain_before: None,
        }
    }
}
