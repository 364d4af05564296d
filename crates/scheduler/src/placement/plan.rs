//! The planning pass (pure, seeded) and the application of a plan once carried out.

use super::*;

impl Scheduler {
    /// What to do now: replace failed nodes, launch waiting tasks on new virtual nodes, preempt
    /// where needed. The model is left unchanged; call `apply` once the plan is carried out.
    pub fn plan(&mut self, now_ms: u64, seed: u64) -> Plan {
        let mut rng = SplitMix64::new(seed);
        let mut plan = Plan { now_ms, ..Plan::default() };
        let mut scratch = PlanScratch::default();
        let mut jobs: HashMap<JobKey, JobScratch> = HashMap::new();
        let mut heap: BinaryHeap<(i32, Reverse<u64>, TaskKey, bool)> = BinaryHeap::new();

        for key in self.failed_nodes(now_ms) {
            let task = &self.tasks[&key];
            let node = task.node.as_ref().expect("failed node is running");
            let abandoned = node.members.iter().map(|m| self.record(m.slot).id).collect();
            plan.failed_nodes.push(FailedNode { task: key, job: task.job, abandoned });
            let job = &self.jobs[&task.job];
            jobs.entry(task.job)
                .or_insert(JobScratch { nodes_delta: 0, carry: job.carry, blocked: false })
                .nodes_delta -= 1;
            heap.push((task.priority, Reverse(task.seq), key, true));
        }
        for job_key in &self.jobs_waiting {
            let job = &self.jobs[job_key];
            if let Some((Reverse(priority), seq, task)) = job.waiting.first() {
                heap.push((*priority, Reverse(*seq), *task, false));
            }
        }

        while let Some((priority, Reverse(seq), key, relaunch)) = heap.pop() {
            if plan.nodes.len() >= self.config.nodes_per_plan_max as usize {
                break;
            }
            let job_key = self.tasks[&key].job;
            let job = &self.jobs[&job_key];
            let state = jobs.entry(job_key).or_insert(JobScratch { nodes_delta: 0, carry: job.carry, blocked: false });
            if state.blocked {
                continue;
            }
            let limit = job.spec.nodes_max.map_or(i64::MAX, |n| n as i64);
            if job.nodes_running as i64 + state.nodes_delta >= limit {
                state.blocked = true;
                continue;
            }
            let carry = state.carry;
            let Ok(ctx) = self.task_context(key, now_ms) else { continue };
            match self.form_node(&ctx, carry, relaunch, &mut rng, &mut scratch, &mut plan) {
                Ok((node, carry_out)) => {
                    let state = jobs.get_mut(&job_key).expect("job scratch exists");
                    state.nodes_delta += 1;
                    state.carry = carry_out;
                    plan.nodes.push(node);
                }
                Err(reason) => {
                    jobs.get_mut(&job_key).expect("job scratch exists").blocked = true;
                    plan.unplaced.push(Unplaced { job: job_key, task: key, reason });
                }
            }
            if !relaunch && !jobs[&job_key].blocked {
                let job = &self.jobs[&job_key];
                let next = job
                    .waiting
                    .range((std::ops::Bound::Excluded((Reverse(priority), seq, key)), std::ops::Bound::Unbounded))
                    .next();
                if let Some((Reverse(priority), seq, task)) = next {
                    heap.push((*priority, Reverse(*seq), *task, false));
                }
            }
        }

        // Put the model back as it was.
        while let Some((at, slot)) = scratch.removed.pop() {
            if let Some(moved) = self.index.restore(at, slot) {
                self.record_mut(moved.slot).index_at = Some(moved.to);
            }
            self.record_mut(slot).index_at = Some(at);
        }
        for slot in scratch.touched.drain(..) {
            self.record_mut(slot).plan_used = 0;
        }
        for key in scratch.busy_removed.drain(..) {
            self.busy.insert(key);
        }
        if now_ms >= self.config.silence_ms_max {
            plan.silence_examined_ms = Some(now_ms - self.config.silence_ms_max);
            plan.rechecked = self.recheck.iter().copied().collect();
        }
        let mut carries: Vec<(JobKey, f64)> = jobs.into_iter().map(|(job, s)| (job, s.carry)).collect();
        carries.sort_by_key(|(job, _)| *job);
        plan.carries = carries;
        plan
    }

    /// Tasks whose nodes have failed: enough members silent for `silence_ms_max`. Highest
    /// priority first, then oldest.
    fn failed_nodes(&self, now_ms: u64) -> Vec<TaskKey> {
        let cutoff = now_ms.saturating_sub(self.config.silence_ms_max);
        if now_ms < self.config.silence_ms_max {
            return Vec::new();
        }
        let silent = |slot: u32| {
            let record = self.record(slot);
            !record.connected && record.last_contact_ms <= cutoff
        };
        let mut seen = HashSet::new();
        let mut failed = Vec::new();
        let mut examine = |key: &TaskKey, failed: &mut Vec<TaskKey>| {
            if !seen.insert(*key) {
                return;
            }
            let Some(node) = self.tasks.get(key).and_then(|t| t.node.as_ref()) else { return };
            let silent_members = node.members.iter().filter(|m| silent(m.slot)).count();
            let threshold = (self.config.silent_members_for_failure as usize).min(node.members.len()).max(1);
            if silent_members >= threshold {
                failed.push(*key);
            }
        };
        for key in &self.recheck {
            examine(key, &mut failed);
        }
        let from = match self.silence_examined_ms {
            Some(examined) if examined >= cutoff => std::ops::Bound::Excluded((cutoff, u32::MAX)),
            Some(examined) => std::ops::Bound::Excluded((examined, u32::MAX)),
            None => std::ops::Bound::Unbounded,
        };
        for (_, slot) in self.silent_watch.range((from, std::ops::Bound::Included((cutoff, u32::MAX)))) {
            for key in &self.record(*slot).copies {
                examine(key, &mut failed);
            }
        }
        failed.sort_by_key(|key| {
            let task = &self.tasks[key];
            (Reverse(task.priority), task.seq)
        });
        failed
    }

    /// Record a plan that has been carried out. Parts that no longer fit the model (a provider
    /// gone, a slot taken, a task finished meanwhile) are skipped and counted.
    pub fn apply(&mut self, plan: &Plan) -> ApplyReport {
        let mut report = ApplyReport::default();
        for failed in &plan.failed_nodes {
            let Some(task) = self.tasks.get(&failed.task) else { continue };
            let Some(node) = &task.node else { continue };
            let slots: Vec<u32> = node.members.iter().map(|m| m.slot).collect();
            for slot in slots {
                self.remove_copy(failed.task, slot);
            }
            report.nodes_failed += 1;
        }
        for preemption in &plan.preemptions {
            let Some(slot) = self.provider_slots.get(&preemption.provider).copied() else { continue };
            let running_there = self
                .tasks
                .get(&preemption.task)
                .and_then(|t| t.node.as_ref())
                .is_some_and(|n| n.members.iter().any(|m| m.slot == slot));
            if running_there {
                report.copies_preempted += 1;
                if self.remove_copy(preemption.task, slot) {
                    report.tasks_requeued.push(preemption.task);
                }
            }
        }
        for node in &plan.nodes {
            let waiting = self.tasks.get(&node.task).is_some_and(|t| t.node.is_none());
            if !waiting {
                report.nodes_skipped += 1;
                report.members_skipped += node.members.len() as u32;
                continue;
            }
            let mut members: Vec<(u32, f64)> = Vec::with_capacity(node.members.len());
            for member in &node.members {
                let usable = self.provider_slots.get(&member.provider).copied().filter(|slot| {
                    let record = self.record(*slot);
                    record.connected && record.free_slots() > 0 && !members.iter().any(|(s, _)| s == slot)
                });
                match usable {
                    Some(slot) => members.push((slot, member.pi)),
                    None => report.members_skipped += 1,
                }
            }
            if members.is_empty() {
                report.nodes_skipped += 1;
                continue;
            }
            report.nodes_launched += 1;
            report.copies_launched += members.len() as u32;
            self.launch(node.task, &members, plan.now_ms);
        }
        for (job, carry) in &plan.carries {
            if let Some(job) = self.jobs.get_mut(job) {
                job.carry = *carry;
            }
        }
        if let Some(examined) = plan.silence_examined_ms {
            self.silence_examined_ms = Some(self.silence_examined_ms.map_or(examined, |e| e.max(examined)));
        }
        for key in &plan.rechecked {
            self.recheck.remove(key);
        }
        report
    }
}
