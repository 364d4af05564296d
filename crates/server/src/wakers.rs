//! Long polls wait here until their session has a new message.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use idlegrid_types::SessionId;
use tokio::sync::Notify;

#[derive(Default)]
pub struct Wakers {
    sessions: Mutex<HashMap<SessionId, (Arc<Notify>, Instant)>>,
}

impl Wakers {
    pub fn get(&self, session: SessionId) -> Arc<Notify> {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let entry = sessions.entry(session).or_insert_with(|| (Arc::new(Notify::new()), Instant::now()));
        entry.1 = Instant::now();
        entry.0.clone()
    }

    /// Wake the session's poll; if none waits, the next one returns at once (a stored permit).
    pub fn wake(&self, session: SessionId) {
        if let Some((notify, _)) = self.sessions.lock().unwrap_or_else(|p| p.into_inner()).get(&session) {
            notify.notify_one();
        }
    }

    pub fn forget_idle(&self, idle: Duration) {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, (_, used)| used.elapsed() < idle);
    }
}

/// Long polls waiting per party, bounded (no identity can pin the server's memory
/// with waiting requests).
pub struct PollSlots {
    max: usize,
    waiting: Arc<Mutex<HashMap<idlegrid_types::PartyId, usize>>>,
    /// Polls that have waited since the server started (not requests: a poll answered at
    /// once never takes a slot).
    held_total: std::sync::atomic::AtomicU64,
}

/// A waiting poll's slot, given back when the poll ends (or its connection is dropped).
pub struct PollSlot {
    party: idlegrid_types::PartyId,
    waiting: Arc<Mutex<HashMap<idlegrid_types::PartyId, usize>>>,
}

impl PollSlots {
    pub fn new(max: usize) -> PollSlots {
        PollSlots { max, waiting: Arc::default(), held_total: Default::default() }
    }

    /// Polls waiting now, over every party.
    pub fn waiting(&self) -> usize {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner()).values().sum()
    }

    /// Polls that have waited since start.
    pub fn held_total(&self) -> u64 {
        self.held_total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A slot for `party`, or `None` if it has `max` polls waiting already.
    pub fn take(&self, party: &idlegrid_types::PartyId) -> Option<PollSlot> {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        let count = waiting.entry(party.clone()).or_default();
        if *count >= self.max {
            return None;
        }
        *count += 1;
        self.held_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Some(PollSlot { party: party.clone(), waiting: self.waiting.clone() })
    }
}

impl Drop for PollSlot {
    fn drop(&mut self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(count) = waiting.get_mut(&self.party) {
            *count -= 1;
            if *count == 0 {
                waiting.remove(&self.party);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_bounded_per_party_and_given_back_on_drop() {
        let slots = PollSlots::new(2);
        let (a, b) =
            (idlegrid_types::PartyId::from_public_key(&[1; 32]), idlegrid_types::PartyId::from_public_key(&[2; 32]));
        let first = slots.take(&a).unwrap();
        let _second = slots.take(&a).unwrap();
        assert!(slots.take(&a).is_none(), "a third poll of the same party is refused");
        assert!(slots.take(&b).is_some(), "another party is not affected");
        drop(first);
        assert_eq!(slots.waiting(), 1, "one poll of `a` holds its slot; the others ended");
        assert!(slots.take(&a).is_some(), "a finished poll gives its slot back");
        assert_eq!(slots.held_total(), 4, "every slot taken counts once, a refusal not at all");
    }
}
