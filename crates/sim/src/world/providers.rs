//! Providers in the simulated world: their arrival, power, owner and link cycles, departure,
//! history and ratings, and the progress of the copies they run.

use super::*;

impl World {
    pub(super) fn add_provider(&mut self) -> u32 {
        let machine = machine(&self.archetypes, &mut self.rng);
        let noise = |rng: &mut Xoshiro256StarStar, value: f64| value * (MEASUREMENT_SIGMA * rng.normal()).exp();
        let profile = ProviderProfile {
            cpu_gflops: noise(&mut self.rng, machine.cpu_gflops),
            bandwidth_mb_per_s: noise(&mut self.rng, machine.bandwidth_mb_per_s),
            memory_mb: machine.memory_mb,
            disk_mb: machine.disk_mb,
            cores: machine.slots,
            connectivity: machine.connectivity,
        };
        let index = self.providers.len() as u32;
        self.providers.push(SimProvider {
            machine,
            profile,
            online: false,
            owner_active: false,
            link_up: true,
            departed: false,
            registered: false,
            power_epoch: 0,
            owner_epoch: 0,
            link_epoch: 0,
            history: AvailabilityHistory::new(),
            recorded_ms: self.now_ms,
            signature_pushed_ms: 0,
            copies: Vec::new(),
            cached_jobs: 0,
            contact_since_ms: None,
        });
        // Start in the state the habits make likely now.
        let (block, _) = self.block(index);
        if self.rng.chance(block.p_online) {
            let p = &mut self.providers[index as usize];
            p.online = true;
            p.owner_active = self.rng.chance(block.owner_active_share);
            self.schedule_owner(index);
            self.schedule_link(index);
        }
        self.schedule_power(index);
        let lifetime = self.rng.exponential(self.config.lifetime_days_mean * DAY_MS as f64) as u64;
        if self.now_ms + lifetime < self.end_ms {
            self.at(self.now_ms + lifetime, Event::Depart { provider: index });
        }
        index
    }

    /// Local minute of the week and milliseconds to its block's end.
    pub(super) fn block(&self, index: u32) -> (crate::population::Block, u64) {
        let p = &self.providers[index as usize];
        let archetype = &self.archetypes[p.machine.archetype as usize];
        let local_ms = (self.now_ms as i64
            + p.machine.utc_offset_minutes as i64 * MINUTE_MS as i64
            + (EPOCH_MINUTE_OF_WEEK * MINUTE_MS) as i64)
            .rem_euclid(WEEK_MS as i64) as u64;
        let (block, end_minute) = archetype.block_at((local_ms / MINUTE_MS) as u32);
        (*block, (end_minute as u64 * MINUTE_MS).saturating_sub(local_ms).max(1))
    }

    /// Schedule a memoryless transition of mean `mean_minutes`, or a redraw at the block's end.
    pub(super) fn draw(&mut self, mean_minutes: f64, to_block_end_ms: u64) -> (u64, bool) {
        let duration = if mean_minutes.is_finite() {
            self.rng.exponential(mean_minutes * MINUTE_MS as f64)
        } else {
            f64::INFINITY
        };
        if duration < to_block_end_ms as f64 {
            (self.now_ms + (duration as u64).max(1), true)
        } else {
            (self.now_ms + to_block_end_ms, false)
        }
    }

    pub(super) fn schedule_power(&mut self, index: u32) {
        if self.providers[index as usize].departed {
            return;
        }
        let (block, to_end) = self.block(index);
        let p_online = block.p_online.clamp(0.001, 0.995);
        let mean = if self.providers[index as usize].online {
            block.session_minutes
        } else {
            block.session_minutes * (1.0 - p_online) / p_online
        };
        let (time, toggle) = self.draw(mean, to_end);
        let p = &mut self.providers[index as usize];
        p.power_epoch = p.power_epoch.wrapping_add(1);
        let epoch = p.power_epoch;
        self.at(time, Event::Power { provider: index, epoch, toggle });
    }

    pub(super) fn schedule_owner(&mut self, index: u32) {
        let p = &mut self.providers[index as usize];
        p.owner_epoch = p.owner_epoch.wrapping_add(1);
        if !p.online || p.departed {
            return;
        }
        let active = p.owner_active;
        let (block, to_end) = self.block(index);
        let share = block.owner_active_share;
        let mean = if active {
            block.owner_active_minutes
        } else if share > 0.0 {
            block.owner_active_minutes * (1.0 - share) / share
        } else {
            f64::INFINITY
        };
        let (time, toggle) = self.draw(mean, to_end);
        let epoch = self.providers[index as usize].owner_epoch;
        self.at(time, Event::Owner { provider: index, epoch, toggle });
    }

    pub(super) fn schedule_link(&mut self, index: u32) {
        let p = &mut self.providers[index as usize];
        p.link_epoch = p.link_epoch.wrapping_add(1);
        let Some((up, down)) = self.archetypes[p.machine.archetype as usize].link_flaps else { return };
        if !p.online || p.departed {
            return;
        }
        let mean = if p.link_up { up } else { down };
        let epoch = p.link_epoch;
        let duration = self.rng.exponential(mean * MINUTE_MS as f64) as u64;
        self.at(self.now_ms + duration.max(1), Event::Link { provider: index, epoch, toggle: true });
    }

    pub(super) fn on_power(&mut self, index: u32, epoch: u32, toggle: bool) {
        let p = &self.providers[index as usize];
        if epoch != p.power_epoch || p.departed {
            return;
        }
        if toggle {
            let before = p.state();
            let online = !p.online;
            let (block, _) = self.block(index);
            let owner_active = online && self.rng.chance(block.owner_active_share);
            let p = &mut self.providers[index as usize];
            p.online = online;
            p.owner_active = owner_active;
            p.link_up = true;
            self.schedule_owner(index);
            self.schedule_link(index);
            self.changed(index, before);
        }
        self.schedule_power(index);
    }

    pub(super) fn on_owner(&mut self, index: u32, epoch: u32, toggle: bool) {
        let p = &self.providers[index as usize];
        if epoch != p.owner_epoch || p.departed || !p.online {
            return;
        }
        if toggle {
            let before = p.state();
            self.providers[index as usize].owner_active ^= true;
            self.changed(index, before);
        }
        self.schedule_owner(index);
    }

    pub(super) fn on_link(&mut self, index: u32, epoch: u32, toggle: bool) {
        let p = &self.providers[index as usize];
        if epoch != p.link_epoch || p.departed || !p.online {
            return;
        }
        if toggle {
            let before = p.state();
            self.providers[index as usize].link_up ^= true;
            self.changed(index, before);
        }
        self.schedule_link(index);
    }

    pub(super) fn on_depart(&mut self, index: u32) {
        let p = &self.providers[index as usize];
        if p.departed {
            return;
        }
        let before = p.state();
        self.providers_departed += 1;
        let p = &mut self.providers[index as usize];
        p.departed = true;
        p.online = false;
        p.power_epoch = p.power_epoch.wrapping_add(1);
        p.owner_epoch = p.owner_epoch.wrapping_add(1);
        p.link_epoch = p.link_epoch.wrapping_add(1);
        self.changed(index, before);
        let forget = self.now_ms + (self.config.forget_after_hours * HOUR_MS as f64) as u64;
        self.at(forget, Event::Forget { provider: index });
        let join = self.now_ms + self.rng.exponential(HOUR_MS as f64) as u64;
        self.at(join, Event::Join);
    }

    pub(super) fn on_forget(&mut self, index: u32) {
        if !self.providers[index as usize].registered {
            return;
        }
        self.providers[index as usize].registered = false;
        let lost = self.scheduler.remove_provider(SimProvider::id(index)).expect("registered provider");
        for task in lost {
            self.end_copy_of(task.0 as u32, index, false);
        }
    }

    /// Bring the history up to now with the state that held since the last record.
    pub(super) fn record_history(&mut self, index: u32, state: State) {
        let now = self.now_ms;
        let p = &mut self.providers[index as usize];
        let from = p.recorded_ms / MINUTE_MS;
        let to = now / MINUTE_MS;
        if to > from {
            p.history
                .record(from, to, MinuteState { cpu: state.cpu, bandwidth: state.bandwidth })
                .expect("spans of the simulation are valid");
        }
        p.recorded_ms = now;
    }

    /// After a change of a provider's state: history, copies, scheduler.
    pub(super) fn changed(&mut self, index: u32, before: State) {
        let after = self.providers[index as usize].state();
        if after == before {
            return;
        }
        self.record_history(index, before);
        // Copies progressed at the old rates until now; reschedule at the new ones.
        let copies = self.providers[index as usize].copies.clone();
        for copy in copies {
            self.advance(copy, before);
            self.reschedule(copy);
        }
        if before.bandwidth != after.bandwidth {
            let slots = self.providers[index as usize].machine.slots as f64;
            let p = &mut self.providers[index as usize];
            if after.bandwidth {
                if self.live {
                    p.contact_since_ms = Some(self.now_ms);
                    self.contact_slots_now += slots as u64;
                }
            } else if let Some(since) = p.contact_since_ms.take() {
                self.contact_slot_ms += (self.now_ms - since) as f64 * slots;
                self.contact_slots_now -= slots as u64;
            }
        }
        if self.live && self.providers[index as usize].registered {
            let id = SimProvider::id(index);
            if before.bandwidth != after.bandwidth {
                if after.bandwidth {
                    self.scheduler.provider_connected(id, self.now_ms).expect("registered");
                } else {
                    self.scheduler.provider_disconnected(id, self.now_ms).expect("registered");
                }
            }
            self.push_ratings(index);
        }
    }

    pub(super) fn push_ratings(&mut self, index: u32) {
        let id = SimProvider::id(index);
        let p = &mut self.providers[index as usize];
        if let Some(ratings) = p.history.ratings() {
            self.scheduler.update_ratings(id, ratings).expect("ratings from a history are valid");
        }
        if self.config.model == ReliabilityModel::Full && self.now_ms >= p.signature_pushed_ms + SIGNATURE_PUSH_MS {
            p.signature_pushed_ms = self.now_ms;
            self.scheduler.update_signature(id, p.history.signature()).expect("registered");
        }
    }

    /// Tell the scheduler about a provider (at the start of the jobs, or when it joins).
    pub(super) fn register(&mut self, index: u32) {
        let state = self.providers[index as usize].state();
        self.record_history(index, state);
        let p = &mut self.providers[index as usize];
        p.registered = true;
        if state.bandwidth {
            p.contact_since_ms = Some(self.now_ms);
            self.contact_slots_now += p.machine.slots as u64;
        }
        let update =
            ProviderUpdate { profile: p.profile.clone(), ratings: p.history.ratings(), slots: p.machine.slots };
        let id = SimProvider::id(index);
        self.scheduler.upsert_provider(id, update).expect("valid profile");
        if self.config.model == ReliabilityModel::Full {
            p.signature_pushed_ms = self.now_ms;
            self.scheduler.update_signature(id, p.history.signature()).expect("registered");
        }
        if state.bandwidth {
            self.scheduler.provider_connected(id, self.now_ms).expect("registered");
        }
    }

    // ---- copies ------------------------------------------------------------------------------

    pub(super) fn rate(&self, copy: &Copy, state: State) -> f64 {
        let p = &self.providers[copy.provider as usize];
        match copy.phase {
            1 if state.cpu => p.machine.cpu_gflops,
            0 | 2 if state.bandwidth => p.machine.bandwidth_mb_per_s,
            _ => 0.0,
        }
    }

    pub(super) fn advance(&mut self, index: u32, state: State) {
        let rate = self.rate(&self.copies[index as usize], state);
        let now = self.now_ms;
        let copy = &mut self.copies[index as usize];
        copy.remaining -= rate * (now - copy.last_ms) as f64 / 1000.0;
        copy.last_ms = now;
    }

    pub(super) fn reschedule(&mut self, index: u32) {
        let state = self.providers[self.copies[index as usize].provider as usize].state();
        let rate = self.rate(&self.copies[index as usize], state);
        let copy = &mut self.copies[index as usize];
        copy.epoch = copy.epoch.wrapping_add(1);
        if rate > 0.0 {
            let epoch = copy.epoch;
            let ms = (copy.remaining.max(0.0) / rate * 1000.0).ceil() as u64;
            self.at(self.now_ms + ms, Event::Phase { copy: index, epoch });
        }
    }
}
