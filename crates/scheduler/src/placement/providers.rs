//! Events about providers: profiles, ratings, signatures, contacts, caches; and the speed
//! index of providers with a free slot they keep current.

use super::*;

impl Scheduler {
    /// Register a provider or replace its profile, ratings and slots. A new provider starts
    /// disconnected until `provider_connected`.
    pub fn upsert_provider(&mut self, id: ProviderId, update: ProviderUpdate) -> Result<(), SchedulerError> {
        update.profile.validate()?;
        if let Some(ratings) = &update.ratings {
            ratings.validate()?;
        }
        if update.slots > SLOTS_MAX {
            return Err(SchedulerError::TooMany {
                what: "slots",
                count: update.slots as usize,
                limit: SLOTS_MAX as usize,
            });
        }
        let slot = match self.provider_slots.get(&id) {
            Some(slot) => *slot,
            None => {
                let record = ProviderRecord {
                    id,
                    profile: None,
                    ratings: None,
                    signature: None,
                    slots: 0,
                    copies: Vec::new(),
                    connected: false,
                    last_contact_ms: 0,
                    cache: Vec::new(),
                    eligible: false,
                    effective_speed: 0.0,
                    effective_bandwidth: 0.0,
                    pi_simplified: 0.0,
                    index_at: None,
                    busy_bucket: 0,
                    plan_used: 0,
                };
                let slot = match self.free_records.pop() {
                    Some(slot) => {
                        self.providers[slot as usize] = Some(record);
                        slot
                    }
                    None => {
                        self.providers.push(Some(record));
                        (self.providers.len() - 1) as u32
                    }
                };
                self.provider_slots.insert(id, slot);
                slot
            }
        };
        let record = self.record_mut(slot);
        record.profile = Some(update.profile);
        if update.ratings.is_some() {
            record.ratings = update.ratings;
        }
        record.slots = update.slots;
        self.rederive(slot);
        Ok(())
    }

    /// New availability ratings (after `AvailabilityHistory::record`).
    pub fn update_ratings(&mut self, id: ProviderId, ratings: AvailabilityRatings) -> Result<(), SchedulerError> {
        ratings.validate()?;
        let slot = self.slot_of(id)?;
        self.record_mut(slot).ratings = Some(ratings);
        self.rederive(slot);
        Ok(())
    }

    /// New weekly signature (full version).
    pub fn update_signature(&mut self, id: ProviderId, signature: &WeeklySignature) -> Result<(), SchedulerError> {
        let slot = self.slot_of(id)?;
        let record = self.record_mut(slot);
        match &mut record.signature {
            Some(existing) => (**existing).clone_from(signature),
            None => record.signature = Some(Box::new(signature.clone())),
        }
        Ok(())
    }

    /// The provider is in contact (a message, an open long poll).
    pub fn provider_connected(&mut self, id: ProviderId, now_ms: u64) -> Result<(), SchedulerError> {
        let slot = self.slot_of(id)?;
        let record = self.record(slot);
        if !record.connected && !record.copies.is_empty() {
            self.silent_watch.remove(&(record.last_contact_ms, slot));
        }
        let record = self.record_mut(slot);
        record.connected = true;
        record.last_contact_ms = record.last_contact_ms.max(now_ms);
        self.refresh_index(slot);
        Ok(())
    }

    /// The provider is out of contact since `last_contact_ms`: no new work, and its nodes fail
    /// once it has been silent for `silence_ms_max`.
    pub fn provider_disconnected(&mut self, id: ProviderId, last_contact_ms: u64) -> Result<(), SchedulerError> {
        let slot = self.slot_of(id)?;
        let record = self.record(slot);
        if !record.connected {
            return Ok(());
        }
        let record = self.record_mut(slot);
        record.connected = false;
        record.last_contact_ms = last_contact_ms;
        if !record.copies.is_empty() {
            self.silent_watch.insert((last_contact_ms, slot));
        }
        self.refresh_index(slot);
        Ok(())
    }

    /// What the engine's cache holds (`CacheContents`), replacing what it held.
    pub fn set_cache_contents(&mut self, id: ProviderId, elements: &[ElementKey]) -> Result<(), SchedulerError> {
        let slot = self.slot_of(id)?;
        let mut wanted: Vec<ElementKey> = elements.to_vec();
        wanted.sort_unstable();
        wanted.dedup();
        wanted.truncate(self.config.cache_elements_max);
        let old = std::mem::take(&mut self.record_mut(slot).cache);
        for key in &old {
            if wanted.binary_search(key).is_err() {
                self.holders_remove(*key, slot);
            }
        }
        for key in &wanted {
            if old.binary_search(key).is_err() {
                let holders =
                    self.holders.entry(*key).or_insert_with(|| Holders { list: Vec::new(), position: HashMap::new() });
                holders.position.insert(slot, holders.list.len() as u32);
                holders.list.push(slot);
            }
        }
        self.record_mut(slot).cache = wanted;
        Ok(())
    }

    pub(super) fn holders_remove(&mut self, key: ElementKey, slot: u32) {
        let Some(holders) = self.holders.get_mut(&key) else { return };
        if let Some(position) = holders.position.remove(&slot) {
            holders.list.swap_remove(position as usize);
            if let Some(moved) = holders.list.get(position as usize) {
                holders.position.insert(*moved, position);
            }
        }
        if holders.list.is_empty() {
            self.holders.remove(&key);
        }
    }

    /// Forget a provider. Returns the tasks that lost a copy; those that lost their last copy
    /// wait again.
    pub fn remove_provider(&mut self, id: ProviderId) -> Result<Vec<TaskKey>, SchedulerError> {
        let slot = self.slot_of(id)?;
        let copies = self.record(slot).copies.clone();
        for task in &copies {
            self.remove_copy(*task, slot);
        }
        self.set_cache_contents(id, &[])?;
        if let Some(at) = self.record(slot).index_at {
            self.index_remove(slot, at);
        }
        self.provider_slots.remove(&id);
        self.provider_terms.remove(&id);
        self.providers[slot as usize] = None;
        self.free_records.push(slot);
        Ok(copies)
    }

    /// The provider's tasks now.
    pub fn provider_copies(&self, id: ProviderId) -> Result<&[TaskKey], SchedulerError> {
        Ok(&self.record(self.slot_of(id)?).copies)
    }

    /// Recompute derived values after a profile or ratings change, and re-index.
    pub(super) fn rederive(&mut self, slot: u32) {
        let window_min = self.config.rating_window_minutes_min;
        let mean = self.config.mean_task;
        let record = self.record_mut(slot);
        let (eligible, speed, bandwidth, pi) = match (&record.profile, &record.ratings) {
            (Some(profile), Some(ratings)) => {
                let speed = profile.cpu_gflops * ratings.cpu;
                let bandwidth = profile.bandwidth_mb_per_s * ratings.bandwidth;
                let pi = weighted_availability(
                    ratings.cpu,
                    ratings.bandwidth,
                    profile.cpu_gflops,
                    profile.bandwidth_mb_per_s,
                    &mean,
                );
                (ratings.window_minutes >= window_min && speed > 0.0 && speed.is_finite(), speed, bandwidth, pi)
            }
            _ => (false, 0.0, 0.0, 0.0),
        };
        record.eligible = eligible;
        record.effective_speed = speed;
        record.effective_bandwidth = bandwidth;
        record.pi_simplified = pi;
        let bucket = speed_bucket(speed);
        if bucket != record.busy_bucket {
            let old = record.busy_bucket;
            record.busy_bucket = bucket;
            let copies = record.copies.clone();
            for task in copies {
                if let Some(node) = self.tasks.get(&task).and_then(|t| t.node.as_ref()) {
                    self.busy.remove(&(node.class, node.priority, old, slot, task));
                    self.busy.insert((node.class, node.priority, bucket, slot, task));
                }
            }
        }
        self.refresh_index(slot);
    }

    pub(super) fn wants_index(record: &ProviderRecord) -> bool {
        record.eligible && record.connected && record.free_slots() > record.plan_used
    }

    pub(super) fn refresh_index(&mut self, slot: u32) {
        let record = self.record(slot);
        let want = Self::wants_index(record);
        let bucket = speed_bucket(record.effective_speed);
        match (record.index_at, want) {
            (Some(at), true) if at.bucket == bucket => {}
            (Some(at), _) => {
                self.index_remove(slot, at);
                if want {
                    let at = self.index.insert(bucket, slot);
                    self.record_mut(slot).index_at = Some(at);
                }
            }
            (None, true) => {
                let at = self.index.insert(bucket, slot);
                self.record_mut(slot).index_at = Some(at);
            }
            (None, false) => {}
        }
    }

    pub(super) fn index_remove(&mut self, slot: u32, at: IndexPosition) {
        if let Some(moved) = self.index.remove(at) {
            self.record_mut(moved.slot).index_at = Some(moved.to);
        }
        self.record_mut(slot).index_at = None;
    }

    // ---- jobs and tasks --------------------------------------------------------------------
}
