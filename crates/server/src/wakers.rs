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

    /// Sessions with a waker (polls waiting or recently waited).
    pub fn len(&self) -> usize {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn forget_idle(&self, idle: Duration) {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).retain(|_, (_, used)| used.elapsed() < idle);
    }
}
