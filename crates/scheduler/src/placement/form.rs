//! Forming a virtual node for one task: members drawn among engines that hold its elements,
//! free providers of the right speed, then providers running work of lower priority.

use super::*;

/// A node being formed: the formation's progress, its members (by slot) and the busy entries
/// its preempting members displace.
struct Forming {
    formation: NodeFormation,
    members: Vec<(u32, PlannedMember)>,
    victims: Vec<BusyKey>,
}

impl Forming {
    fn is_member(&self, slot: u32) -> bool {
        self.members.iter().any(|(s, _)| *s == slot)
    }

    /// Offer a provider to the formation; true if it was taken.
    fn offer(&mut self, slot: u32, a: &Assessment, provider: ProviderId, preempts: Option<TaskKey>) -> bool {
        match self.formation.offer(a.pi) {
            Offer::Take { .. } => {
                self.members.push((
                    slot,
                    PlannedMember {
                        provider,
                        pi: a.pi,
                        expected_seconds: a.expected_seconds,
                        holds_elements: a.holds_elements,
                        preempts,
                    },
                ));
                true
            }
            Offer::Decline => false,
        }
    }
}

impl Scheduler {
    /// Form a node for one task: members drawn among engines that hold its elements, then free
    /// providers of the right speed (random draws, then a bounded scan), then providers running
    /// work of lower priority (preempted). Committed into the scratch state once launchable.
    pub(super) fn form_node(
        &mut self,
        ctx: &TaskContext,
        carry: f64,
        relaunch: bool,
        rng: &mut SplitMix64,
        scratch: &mut PlanScratch,
        plan: &mut Plan,
    ) -> Result<(PlannedNode, f64), UnplacedReason> {
        let mut forming = Forming {
            formation: NodeFormation::new(ctx.reliability, carry, self.config.members_max),
            members: Vec::new(),
            victims: Vec::new(),
        };
        self.draw_holders(ctx, rng, &mut forming);
        self.draw_free(ctx, rng, &mut forming);
        if !forming.formation.is_complete()
            && self.config.preemption
            && scratch.preemptions < self.config.preemptions_per_plan_max
        {
            self.draw_preemptible(ctx, rng, scratch, &mut forming);
        }
        let Forming { formation, members, victims } = forming;
        if !formation.is_launchable() {
            return Err(if members.is_empty() {
                UnplacedReason::NoCandidate
            } else {
                UnplacedReason::ReliabilityUnreachable { reached: formation.reliability() }
            });
        }
        self.commit_members(&members, victims, ctx, scratch, plan);
        let pis: Vec<f64> = members.iter().map(|(_, m)| m.pi).collect();
        let node = PlannedNode {
            task: ctx.task,
            job: ctx.job,
            reliability: node_reliability(&pis),
            target_reliability: formation.target_reliability(),
            members: members.into_iter().map(|(_, m)| m).collect(),
            requested_seconds: ctx.requested_seconds,
            relaunch,
        };
        Ok((node, formation.carry_out()))
    }

    /// Engines that already hold the task's largest elements (step 1).
    fn draw_holders(&self, ctx: &TaskContext, rng: &mut SplitMix64, forming: &mut Forming) {
        for element in ctx.elements.iter().take(2) {
            let Some(holders) = self.holders.get(&element.key) else { continue };
            let count = holders.list.len() as u64;
            for _ in 0..count.min(self.config.cache_draws_max as u64) {
                if forming.formation.is_complete() {
                    break;
                }
                let slot = holders.list[rng.below(count) as usize];
                if forming.is_member(slot) {
                    continue;
                }
                let a = self.assess(slot, ctx, true, true);
                if a.failed == 0 {
                    forming.offer(slot, &a, self.record(slot).id, None);
                }
            }
        }
    }

    /// Random draws among free providers of the right effective speed (step 2), then a bounded
    /// scan from a random start when draws keep missing (step 3).
    fn draw_free(&self, ctx: &TaskContext, rng: &mut SplitMix64, forming: &mut Forming) {
        let (low, _) = ctx.buckets;
        let count = self.index.count(low, ctx.buckets.1);
        let mut misses = 0;
        while !forming.formation.is_complete() && count > 0 && misses < self.config.draws_per_member_max {
            let Some((_, slot)) = self.index.nth(low, rng.below(count as u64) as u32) else { break };
            if forming.is_member(slot) {
                misses += 1;
                continue;
            }
            let a = self.assess(slot, ctx, true, true);
            if a.failed != 0 {
                misses += 1;
                continue;
            }
            misses = 0;
            forming.offer(slot, &a, self.record(slot).id, None);
        }
        if !forming.formation.is_complete() && count > 0 {
            let start = rng.below(count as u64) as u32;
            for i in 0..count.min(self.config.scan_per_node_max) {
                if forming.formation.is_complete() {
                    break;
                }
                let Some((_, slot)) = self.index.nth(low, (start + i) % count) else { break };
                if forming.is_member(slot) {
                    continue;
                }
                let a = self.assess(slot, ctx, true, true);
                if a.failed == 0 {
                    forming.offer(slot, &a, self.record(slot).id, None);
                }
            }
        }
    }

    /// Preempt lower priorities (step 4): busy providers by class (not paying before paying),
    /// then priority, within a bounded scan.
    fn draw_preemptible(&self, ctx: &TaskContext, rng: &mut SplitMix64, scratch: &PlanScratch, forming: &mut Forming) {
        let (low, high) = ctx.buckets;
        let gap = self.config.preemption_priority_gap_min.max(0);
        let priority_max = ctx.priority.saturating_sub(gap);
        let mut examined = 0;
        // Classes in key order: not paying (0) before paying (1), then by priority.
        let mut cursor: (u8, i32) = (0, i32::MIN);
        'classes: while let Some(first) = self.busy.range((cursor.0, cursor.1, 0, 0, TaskKey(0))..).next() {
            let (class, priority) = (first.0, first.1);
            let allowed = if class == 0 {
                ctx.paying || priority <= priority_max
            } else {
                ctx.paying && priority <= priority_max
            };
            if !allowed {
                // Every later class has a higher priority or pays: out of reach too.
                break;
            }
            // From a random bucket of the range to its end, then from its start: the scan is
            // bounded, and must not keep examining the same edge bucket.
            let start = low + rng.below((high - low) as u64 + 1) as u16;
            let budget = self.config.preemption_scan_max.saturating_sub(examined) as usize;
            let upper = self
                .busy
                .range((class, priority, start, 0, TaskKey(0))..=(class, priority, high, u32::MAX, TaskKey(u64::MAX)));
            let lower = self.busy.range((class, priority, low, 0, TaskKey(0))..(class, priority, start, 0, TaskKey(0)));
            let candidates: Vec<BusyKey> = upper.chain(lower).take(budget).copied().collect();
            for key in candidates {
                examined += 1;
                if forming.formation.is_complete() {
                    break 'classes;
                }
                let (_, _, _, slot, victim) = key;
                if victim == ctx.task || forming.is_member(slot) || scratch.victims.contains(&(slot, victim)) {
                    continue;
                }
                let a = self.assess(slot, ctx, false, true);
                if a.failed == 0 && forming.offer(slot, &a, self.record(slot).id, Some(victim)) {
                    forming.victims.push(key);
                }
            }
            if examined >= self.config.preemption_scan_max || forming.formation.is_complete() {
                break;
            }
            cursor = match (class, priority) {
                (1, i32::MAX) => break,
                (c, i32::MAX) => (c + 1, i32::MIN),
                (c, p) => (c, p + 1),
            };
        }
    }

    /// Commit a launchable node into the scratch state: fill slots, take full providers out of
    /// the index, take the preempted work off the busy list.
    fn commit_members(
        &mut self,
        members: &[(u32, PlannedMember)],
        victims: Vec<BusyKey>,
        ctx: &TaskContext,
        scratch: &mut PlanScratch,
        plan: &mut Plan,
    ) {
        for (slot, member) in members {
            if member.preempts.is_some() {
                continue;
            }
            let record = self.record_mut(*slot);
            if record.plan_used == 0 {
                scratch.touched.push(*slot);
            }
            record.plan_used += 1;
            if !Self::wants_index(record)
                && let Some(at) = record.index_at
            {
                self.index_remove(*slot, at);
                scratch.removed.push((at, *slot));
            }
        }
        for key in victims {
            self.busy.remove(&key);
            scratch.busy_removed.push(key);
            scratch.victims.insert((key.3, key.4));
            scratch.preemptions += 1;
            plan.preemptions.push(Preemption { provider: self.record(key.3).id, task: key.4, by: ctx.task });
        }
    }
}
