//! The local time of the week, for the owner's hours: behind a trait so tests set it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::settings::{MINUTES_PER_WEEK, WeekMinute};

pub trait LocalClock: Send + Sync {
    /// Minutes since Monday 00:00, local time.
    fn week_minute(&self) -> WeekMinute;
}

/// The computer's clock in its local time zone.
pub struct SystemLocalClock;

impl LocalClock for SystemLocalClock {
    fn week_minute(&self) -> WeekMinute {
        use chrono::{Datelike, Timelike};
        let now = chrono::Local::now();
        now.weekday().num_days_from_monday() * 1440 + now.hour() * 60 + now.minute()
    }
}

/// A clock tests move by hand.
#[derive(Clone, Default)]
pub struct ManualClock(Arc<AtomicU32>);

impl ManualClock {
    pub fn at(minute: WeekMinute) -> Self {
        ManualClock(Arc::new(AtomicU32::new(minute % MINUTES_PER_WEEK)))
    }

    pub fn set(&self, minute: WeekMinute) {
        self.0.store(minute % MINUTES_PER_WEEK, Ordering::SeqCst);
    }
}

impl LocalClock for ManualClock {
    fn week_minute(&self) -> WeekMinute {
        self.0.load(Ordering::SeqCst)
    }
}
