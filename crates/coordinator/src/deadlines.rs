//! Deadlines and every job's power and cost limits in the scheduling pass, carried out over the
//! store: the pure decisions are `idlegrid_scheduler::deadline` (order, outlook, extra replica)
//! and `idlegrid_scheduler::job_limits` (budgets); this module reads what they need, tells the
//! client once per job when a deadline will be missed or a limit holds its tasks back, and adds
//! their lines to `idlegrid job explain`.

use std::collections::HashMap;

use idlegrid_protocol::messages::JobExplanation as ExplanationMessage;
use idlegrid_scheduler::ReplicaDemand;
use idlegrid_scheduler::deadline::{self, Candidate, Outlook};
use idlegrid_scheduler::job_limits::{self, Held, JobBudget};
use idlegrid_store::{JobRow, ProviderRoom, QueuedTask, StoreError, TaskRow, Tx};
use idlegrid_types::{JobId, JobProperties};

use crate::Coordinator;
use crate::pass::Launch;
use crate::schedule::Jobs;

/// The scheduling hint that estimates a task's work when the job asks for no virtual cluster.
pub const WORK_HINT: &str = "work_per_task_gflop_hours";

/// A job's estimate of one task's work, GFLOP-hours: its cluster's figure, else the hint.
pub fn work_per_task(properties: &JobProperties) -> Option<f64> {
    properties.cluster.as_ref().and_then(|c| c.work_per_task_gflop_hours).or_else(|| {
        properties
            .scheduling_hints
            .get(WORK_HINT)
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|v| v.is_finite() && *v >= 0.0)
    })
}

impl Coordinator {
    /// The queued candidates of a pass: the head of the queue and the head of the tasks with a
    /// deadline, in the pass's order (priority, earliest deadline, age), at most `limit`.
    pub(crate) fn queued_candidates(&self, tx: &mut dyn Tx, limit: u32) -> Result<Vec<QueuedTask>, StoreError> {
        let plain = |q: &QueuedTask| Candidate { key: q.key, priority: q.priority, deadline_ms: None };
        let queued: Vec<Candidate> = tx.queued_tasks(limit)?.iter().map(plain).collect();
        let with_deadline: Vec<Candidate> = tx
            .queued_tasks_with_deadline(limit)?
            .into_iter()
            .map(|(q, deadline)| Candidate { deadline_ms: Some(deadline), ..plain(&q) })
            .collect();
        let merged = deadline::merge(&queued, &with_deadline, limit as usize);
        Ok(merged.into_iter().map(|c| QueuedTask { key: c.key, priority: c.priority }).collect())
    }

    /// Measured speed of each engine with room, GFLOPS.
    pub(crate) fn room_powers(&self, tx: &mut dyn Tx, rooms: &[ProviderRoom]) -> Result<Vec<f64>, StoreError> {
        rooms.iter().map(|room| self.engine_power_gflops(tx, &room.id)).collect()
    }

    /// Give plain tasks at risk of missing their deadline an extra replica, and tell the client
    /// of each job that will miss its deadline (once per job).
    pub(crate) fn apply_deadlines(
        &self,
        tx: &mut dyn Tx,
        tasks: &[TaskRow],
        demands: &mut [ReplicaDemand],
        jobs: &mut Jobs,
        fastest_gflops: Option<f64>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        for (task, demand) in tasks.iter().zip(demands.iter_mut()) {
            let Some(job) = jobs.get(tx, task.job)? else { continue };
            let Some(deadline) = job.properties.deadline_unix_ms else { continue };
            if crate::assurance::is_assured(job) {
                continue;
            }
            let work = work_per_task(&job.properties);
            let outlook = deadline::outlook(now_ms, Some(deadline), work, fastest_gflops);
            demand.wanted = deadline::replicas(demand.wanted, outlook);
            if outlook == Outlook::Late {
                let line = deadline::explain(now_ms, Some(deadline), work, fastest_gflops).unwrap_or_default();
                let job = job.clone();
                self.notify_once(tx, &job, "deadline_missed", &line, now_ms)?;
            }
        }
        Ok(())
    }

    /// Where the tasks go within every job's maximum power and maximum cost; the client of a
    /// job held back is told once.
    pub(crate) fn place_within_limits(
        &self,
        tx: &mut dyn Tx,
        room_sizes: &[u32],
        powers: &[f64],
        tasks: &[TaskRow],
        demands: &[ReplicaDemand],
        jobs: &mut Jobs,
        now_ms: u64,
    ) -> Result<Vec<Launch>, StoreError> {
        let mut index: HashMap<JobId, usize> = HashMap::new();
        let mut budgets: Vec<JobBudget> = Vec::new();
        let mut ids: Vec<JobId> = Vec::new();
        let mut job_of = Vec::with_capacity(tasks.len());
        for task in tasks {
            let next = index.len();
            let slot = *index.entry(task.job).or_insert(next);
            if slot == budgets.len() {
                let budget = match jobs.get(tx, task.job)? {
                    Some(job) => {
                        let job = job.clone();
                        self.job_budget(tx, &job)?
                    }
                    None => JobBudget::default(),
                };
                budgets.push(budget);
                ids.push(task.job);
            }
            job_of.push(slot);
        }
        let (launches, held) = job_limits::place_within(room_sizes, demands, &job_of, powers, &mut budgets);
        for (slot, why) in held {
            let Some(job) = jobs.get(tx, ids[slot])? else { continue };
            if why == Held::Power {
                // What the client asked for: its tasks wait for running ones to end.
                tracing::debug!(job = %job.id, "job at its maximum power");
                continue;
            }
            let job = job.clone();
            let line = held_line(&job.properties, why);
            self.notify_once(tx, &job, "held", &line, now_ms)?;
        }
        Ok(launches)
    }

    /// What a job may still take: its maximum power less the measured power of the engines
    /// running it, its maximum cost less the estimated cost of the tasks it ran and runs.
    fn job_budget(&self, tx: &mut dyn Tx, job: &JobRow) -> Result<JobBudget, StoreError> {
        let properties = &job.properties;
        let cost_per_task = work_per_task(properties).map(|work| work * self.price_per_gflop_hour() * 1e6);
        let cost_limited = properties.cost_max_micros.is_some() && cost_per_task.is_some();
        if properties.power_max_gflops.is_none() && !cost_limited {
            return Ok(JobBudget::default());
        }
        let running = tx.active_assignments_of_job(job.id)?;
        let mut power_left = properties.power_max_gflops;
        if let Some(left) = &mut power_left {
            for assignment in &running {
                *left -= self.engine_power_gflops(tx, &assignment.provider)?;
            }
        }
        let mut budget = JobBudget { power_left_gflops: power_left, ..JobBudget::default() };
        if let (Some(max), Some(per_task)) = (properties.cost_max_micros, cost_per_task) {
            let ran = job.counts.succeeded + job.counts.failed + running.len() as u64;
            budget.cost_left_micros = Some(max as f64 - ran as f64 * per_task);
            budget.cost_per_launch_micros = per_task;
        }
        Ok(budget)
    }

    /// Queue a notice about a job unless this kind was sent for it already, and log it.
    fn notify_once(
        &self,
        tx: &mut dyn Tx,
        job: &JobRow,
        kind: &str,
        reason: &str,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let key = format!("notice/{kind}/{}", job.id);
        if tx.meta(&key)?.is_some() {
            return Ok(());
        }
        tx.set_meta(&key, &now_ms.to_be_bytes())?;
        tracing::info!(job = %job.id, kind, reason, "job notice");
        self.notify(tx, job, kind, Some(reason), now_ms)
    }

    /// Add the lines about a job's deadline and limits to its explanation.
    pub(crate) fn explain_limits(
        &self,
        tx: &mut dyn Tx,
        job: &JobRow,
        message: &mut ExplanationMessage,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let properties = &job.properties;
        let mut lines = Vec::new();
        if properties.deadline_unix_ms.is_some() {
            let heard = tx.providers_heard_since(now_ms.saturating_sub(self.config.provider_silence_ms_max), 10_000)?;
            let mut fastest: Option<f64> = None;
            for row in heard.iter().filter(|p| p.session.is_some()) {
                let power = self.engine_power_gflops(tx, &row.id)?;
                fastest = Some(fastest.map_or(power, |f: f64| f.max(power)));
            }
            let work = work_per_task(properties);
            lines.extend(deadline::explain(now_ms, properties.deadline_unix_ms, work, fastest));
        }
        let budget = self.job_budget(tx, job)?;
        if let Some(left) = budget.power_left_gflops
            && let Some(max) = properties.power_max_gflops
        {
            lines.push(format!("power: {:.2} of at most {max} GFLOPS in use", max - left));
        }
        if let (Some(left), Some(max)) = (budget.cost_left_micros, properties.cost_max_micros) {
            let committed = (max as f64 - left) / 1e6;
            lines.push(format!("cost: about {committed:.2} of at most {:.2} committed", max as f64 / 1e6));
        }
        for line in lines {
            message.text.push_str(&line);
            message.text.push('\n');
            message.blockers.push(line);
        }
        Ok(())
    }
}

/// Why a job gets no more placements, in words.
fn held_line(properties: &JobProperties, why: Held) -> String {
    match why {
        Held::Power => format!(
            "power_max_gflops = {}: one more engine would take the job past its maximum power; its tasks wait for running ones to end",
            properties.power_max_gflops.unwrap_or_default()
        ),
        Held::Cost => format!(
            "cost_max = {:.2}: one more task (estimated from {WORK_HINT}) would take the job's spend past its maximum cost; no more tasks are placed",
            properties.cost_max_micros.unwrap_or_default() as f64 / 1e6
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_comes_from_the_cluster_then_the_hint() {
        let mut properties = JobProperties::default();
        assert_eq!(work_per_task(&properties), None);
        properties.scheduling_hints.insert(WORK_HINT.into(), " 2.5 ".into());
        assert_eq!(work_per_task(&properties), Some(2.5));
        properties.cluster =
            Some(idlegrid_types::VirtualClusterRequest { work_per_task_gflop_hours: Some(7.0), ..Default::default() });
        assert_eq!(work_per_task(&properties), Some(7.0));
        properties.cluster = None;
        for bad in ["-1", "NaN", "inf", "lots"] {
            properties.scheduling_hints.insert(WORK_HINT.into(), bad.into());
            assert_eq!(work_per_task(&properties), None, "{bad}");
        }
    }

    #[test]
    fn held_lines_name_the_property() {
        let properties =
            JobProperties { power_max_gflops: Some(2.0), cost_max_micros: Some(1_500_000), ..JobProperties::default() };
        assert!(held_line(&properties, Held::Power).contains("power_max_gflops = 2"));
        assert!(held_line(&properties, Held::Cost).contains("cost_max = 1.50"));
    }
}
