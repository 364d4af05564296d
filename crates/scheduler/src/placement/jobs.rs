//! Events about jobs and tasks: added, changed, finished, removed; copies launched and ended.

use super::*;

impl Scheduler {
    pub(super) fn effective_reliability(&self, spec: &JobSpec) -> f64 {
        spec.reliability.unwrap_or(self.config.reliability_default).max(self.config.reliability_default)
    }

    pub fn add_job(&mut self, key: JobKey, spec: JobSpec) -> Result<(), SchedulerError> {
        spec.validate()?;
        if self.jobs.contains_key(&key) {
            return Err(SchedulerError::DuplicateJob(key));
        }
        let reliability = self.effective_reliability(&spec);
        self.jobs.insert(
            key,
            JobRecord { spec, reliability, waiting: BTreeSet::new(), tasks: 0, nodes_running: 0, carry: 0.0 },
        );
        Ok(())
    }

    /// Change a job's requirements (for example its node limit). Waiting tasks that follow the
    /// job's priority move with it; running copies keep the priority they were launched with.
    pub fn update_job(&mut self, key: JobKey, spec: JobSpec) -> Result<(), SchedulerError> {
        spec.validate()?;
        let reliability = self.effective_reliability(&spec);
        let job = self.jobs.get_mut(&key).ok_or(SchedulerError::UnknownJob(key))?;
        let priority_changed = job.spec.priority != spec.priority;
        job.spec = spec;
        job.reliability = reliability;
        if priority_changed {
            let priority = job.spec.priority;
            let waiting = std::mem::take(&mut job.waiting);
            for (Reverse(old), seq, task) in waiting {
                let record = self.tasks.get_mut(&task).expect("waiting task exists");
                if record.explicit_priority.is_none() {
                    record.priority = priority;
                }
                let _ = old;
                job.waiting.insert((Reverse(record.priority), seq, task));
            }
        }
        Ok(())
    }

    /// Forget a job that has no tasks left.
    pub fn remove_job(&mut self, key: JobKey) -> Result<(), SchedulerError> {
        let job = self.jobs.get(&key).ok_or(SchedulerError::UnknownJob(key))?;
        if job.tasks > 0 {
            return Err(SchedulerError::JobHasTasks { job: key, tasks: job.tasks });
        }
        self.jobs.remove(&key);
        self.jobs_waiting.remove(&key);
        self.job_terms.remove(&key);
        Ok(())
    }

    pub fn job_power(&self, key: JobKey) -> Result<JobPower, SchedulerError> {
        let job = self.jobs.get(&key).ok_or(SchedulerError::UnknownJob(key))?;
        let c = job.spec.node.cpu_gflops;
        Ok(JobPower {
            nodes_running: job.nodes_running,
            nodes_max: job.spec.nodes_max,
            node_cpu_gflops: c,
            power_delivered_gflops: job.nodes_running as f64 * c,
            power_requested_gflops: job.spec.nodes_max.map(|n| n as f64 * c),
            tasks_waiting: job.waiting.len() as u64,
            tasks: job.tasks,
            reliability: job.reliability,
        })
    }

    /// A task of `job` waiting to be placed.
    pub fn add_task(&mut self, job_key: JobKey, key: TaskKey, spec: TaskSpec) -> Result<(), SchedulerError> {
        validate_elements(&spec.elements)?;
        if self.tasks.contains_key(&key) {
            return Err(SchedulerError::DuplicateTask(key));
        }
        let config_shape = self.config.mean_task;
        let job = self.jobs.get_mut(&job_key).ok_or(SchedulerError::UnknownJob(job_key))?;
        if job.spec.shared_elements.len() + spec.elements.len() > TASK_ELEMENTS_MAX {
            return Err(SchedulerError::TooMany {
                what: "elements of a task",
                count: job.spec.shared_elements.len() + spec.elements.len(),
                limit: TASK_ELEMENTS_MAX,
            });
        }
        let listed = !job.spec.shared_elements.is_empty() || !spec.elements.is_empty();
        let data_in_mb = if listed {
            job.spec.shared_elements.iter().chain(&spec.elements).map(|e| e.size_mb).sum()
        } else {
            job.spec.shape.unwrap_or(config_shape).data_in_mb
        };
        let priority = spec.priority.unwrap_or(job.spec.priority);
        let seq = self.next_seq;
        self.next_seq += 1;
        job.waiting.insert((Reverse(priority), seq, key));
        job.tasks += 1;
        self.jobs_waiting.insert(job_key);
        self.tasks_waiting += 1;
        self.tasks.insert(
            key,
            TaskRecord {
                job: job_key,
                explicit_priority: spec.priority,
                priority,
                seq,
                elements: spec.elements.into_boxed_slice(),
                data_in_mb,
                node: None,
            },
        );
        Ok(())
    }

    /// The task finished (first result wins): forget it. Returns the other members, whose
    /// copies are to be removed.
    pub fn task_finished(&mut self, key: TaskKey, winner: ProviderId) -> Result<Vec<ProviderId>, SchedulerError> {
        let members = self.forget_task(key)?;
        Ok(members.into_iter().filter(|p| *p != winner).collect())
    }

    /// The task was cancelled or failed for good: forget it. Returns the members whose copies
    /// are to be removed.
    pub fn remove_task(&mut self, key: TaskKey) -> Result<Vec<ProviderId>, SchedulerError> {
        self.forget_task(key)
    }

    pub(super) fn forget_task(&mut self, key: TaskKey) -> Result<Vec<ProviderId>, SchedulerError> {
        let task = self.tasks.get(&key).ok_or(SchedulerError::UnknownTask(key))?;
        let job_key = task.job;
        let mut members = Vec::new();
        if let Some(node) = &task.node {
            let slots: Vec<u32> = node.members.iter().map(|m| m.slot).collect();
            for slot in slots {
                members.push(self.record(slot).id);
                self.remove_copy(key, slot);
            }
        }
        // remove_copy may have put it back in the waiting set.
        self.recheck.remove(&key);
        let task = self.tasks.remove(&key).expect("task exists");
        let job = self.jobs.get_mut(&job_key).expect("job of a task exists");
        if let Some(node) = &task.node {
            let _ = node;
            job.nodes_running -= 1;
            self.nodes_running -= 1;
        } else if job.waiting.remove(&(Reverse(task.priority), task.seq, key)) {
            self.tasks_waiting -= 1;
        }
        if job.waiting.is_empty() {
            self.jobs_waiting.remove(&job_key);
        }
        job.tasks -= 1;
        Ok(members)
    }

    /// One copy ended without a result (the engine lost it, handed it back, or the coordinator
    /// reclaimed it). Returns true if the task lost its last copy and waits again.
    pub fn copy_ended(&mut self, key: TaskKey, provider: ProviderId) -> Result<bool, SchedulerError> {
        let slot = self.slot_of(provider)?;
        let task = self.tasks.get(&key).ok_or(SchedulerError::UnknownTask(key))?;
        let on_it = task.node.as_ref().is_some_and(|n| n.members.iter().any(|m| m.slot == slot));
        if !on_it {
            return Err(SchedulerError::NotRunningThere { task: key, provider });
        }
        Ok(self.remove_copy(key, slot))
    }

    /// Record a node that already runs (after a restart, from the store's assignments).
    pub fn restore_node(
        &mut self,
        key: TaskKey,
        members: &[ProviderId],
        launched_ms: u64,
    ) -> Result<(), SchedulerError> {
        let task = self.tasks.get(&key).ok_or(SchedulerError::UnknownTask(key))?;
        if task.node.is_some() {
            return Err(SchedulerError::AlreadyRunning(key));
        }
        let mut slots = Vec::new();
        for id in members {
            let slot = self.slot_of(*id)?;
            if !slots.contains(&slot) {
                slots.push(slot);
            }
        }
        let pis: Vec<(u32, f64)> = slots.iter().map(|s| (*s, self.record(*s).pi_simplified)).collect();
        self.launch(key, &pis, launched_ms);
        Ok(())
    }

    /// The providers running a task, or empty if it waits.
    pub fn members_of(&self, key: TaskKey) -> Result<Vec<ProviderId>, SchedulerError> {
        let task = self.tasks.get(&key).ok_or(SchedulerError::UnknownTask(key))?;
        Ok(task.node.iter().flat_map(|n| n.members.iter().map(|m| self.record(m.slot).id)).collect())
    }

    /// Register a node for a waiting task (no capacity checks: callers check).
    pub(super) fn launch(&mut self, key: TaskKey, members: &[(u32, f64)], now_ms: u64) {
        let task = self.tasks.get_mut(&key).expect("task exists");
        let job = self.jobs.get_mut(&task.job).expect("job exists");
        if job.waiting.remove(&(Reverse(task.priority), task.seq, key)) {
            self.tasks_waiting -= 1;
        }
        if job.waiting.is_empty() {
            self.jobs_waiting.remove(&task.job);
        }
        job.nodes_running += 1;
        self.nodes_running += 1;
        let class = job.spec.paying as u8;
        let priority = task.priority;
        task.node = Some(NodeRecord {
            members: members.iter().map(|(slot, pi)| NodeMember { slot: *slot, pi: *pi }).collect(),
            launched_ms: now_ms,
            class,
            priority,
        });
        for (slot, _) in members {
            let record = self.providers[*slot as usize].as_mut().expect("member exists");
            record.copies.push(key);
            self.copies_running += 1;
            self.busy.insert((class, priority, record.busy_bucket, *slot, key));
            if !record.connected && record.copies.len() == 1 {
                self.silent_watch.insert((record.last_contact_ms, *slot));
            }
            self.refresh_index(*slot);
        }
    }

    /// Remove one copy; returns true if that was the node's last and the task waits again.
    pub(super) fn remove_copy(&mut self, key: TaskKey, slot: u32) -> bool {
        let Some(task) = self.tasks.get_mut(&key) else { return false };
        let Some(node) = task.node.as_mut() else { return false };
        let Some(index) = node.members.iter().position(|m| m.slot == slot) else { return false };
        node.members.swap_remove(index);
        let (class, priority) = (node.class, node.priority);
        let emptied = node.members.is_empty();
        let record = self.providers[slot as usize].as_mut().expect("member exists");
        if let Some(i) = record.copies.iter().position(|t| *t == key) {
            record.copies.swap_remove(i);
            self.copies_running -= 1;
        }
        self.busy.remove(&(class, priority, record.busy_bucket, slot, key));
        if !record.connected && record.copies.is_empty() {
            self.silent_watch.remove(&(record.last_contact_ms, slot));
        }
        self.refresh_index(slot);
        if !emptied {
            self.recheck_if_silent(key);
        }
        if emptied {
            self.recheck.remove(&key);
            let task = self.tasks.get_mut(&key).expect("task exists");
            task.node = None;
            let job = self.jobs.get_mut(&task.job).expect("job exists");
            job.nodes_running -= 1;
            self.nodes_running -= 1;
            job.waiting.insert((Reverse(task.priority), task.seq, key));
            self.jobs_waiting.insert(task.job);
            self.tasks_waiting += 1;
        }
        emptied
    }

    /// After a node lost a member: if enough of the others were already silent past a limit
    /// that a plan examined, the crossing scan will not look at them again; remember the node.
    pub(super) fn recheck_if_silent(&mut self, key: TaskKey) {
        let Some(examined) = self.silence_examined_ms else { return };
        let Some(node) = self.tasks.get(&key).and_then(|t| t.node.as_ref()) else { return };
        let crossed = node
            .members
            .iter()
            .filter(|m| {
                let record = self.record(m.slot);
                !record.connected && record.last_contact_ms <= examined
            })
            .count();
        let threshold = (self.config.silent_members_for_failure as usize).min(node.members.len()).max(1);
        if crossed >= threshold {
            self.recheck.insert(key);
        }
    }

    // ---- the candidate test ----------------------------------------------------------------
}
