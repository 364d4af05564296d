//! Room left on the disk that holds the engine's data folder. The owner's budget says how much
//! the engine may use; this says how much it can: before anything large is written the engine
//! checks that it leaves [`HEADROOM`] free, so that a full disk is found before a write fails
//! half-way, and the engine's own records (held tasks, outcomes) always have room.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Bytes the engine leaves free on its disk for its own records and for the computer's owner.
pub const HEADROOM: u64 = 64 << 20;

/// Where the free space is read from.
#[derive(Clone, Debug, Default)]
pub enum DiskSpace {
    /// The file system (`statvfs`).
    #[default]
    System,
    /// Set by hand (tests): bytes free.
    Injected(Arc<AtomicU64>),
}

impl DiskSpace {
    /// Injected free space, starting at `bytes`; change it with the returned handle.
    pub fn injected(bytes: u64) -> (DiskSpace, Arc<AtomicU64>) {
        let handle = Arc::new(AtomicU64::new(bytes));
        (DiskSpace::Injected(handle.clone()), handle)
    }
}

/// Not enough room on the disk for a write.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the disk holding {dir} is full: {available} bytes free, {needed} needed plus {HEADROOM} kept free; \
     free some space there (or lower disk_bytes_max)"
)]
pub struct DiskFull {
    pub dir: String,
    pub available: u64,
    pub needed: u64,
}

/// Checks free space on the disk of one folder.
#[derive(Debug, Clone)]
pub struct SpaceCheck {
    dir: PathBuf,
    source: DiskSpace,
}

impl SpaceCheck {
    pub fn new(dir: PathBuf, source: DiskSpace) -> Self {
        SpaceCheck { dir, source }
    }

    /// Bytes free now; `None` when the system cannot tell (then writes decide).
    pub fn available(&self) -> Option<u64> {
        match &self.source {
            DiskSpace::System => crate::disk::available_bytes(&self.dir).ok(),
            DiskSpace::Injected(bytes) => Some(bytes.load(Ordering::SeqCst)),
        }
    }

    /// Whether `bytes` can be written and still leave the headroom free.
    pub fn room_for(&self, bytes: u64) -> Result<(), DiskFull> {
        match self.available() {
            Some(available) if available < bytes.saturating_add(HEADROOM) => {
                Err(DiskFull { dir: self.dir.display().to_string(), available, needed: bytes })
            }
            _ => Ok(()),
        }
    }

    /// The largest budget this disk can honour for an engine that already uses `used` bytes.
    pub fn budget_that_fits(&self, used: u64) -> Option<u64> {
        self.available().map(|available| used.saturating_add(available.saturating_sub(HEADROOM)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_keeps_the_headroom_and_budgets_fit_what_is_free() {
        let (source, free) = DiskSpace::injected(HEADROOM + 1000);
        let check = SpaceCheck::new("/data".into(), source);
        assert!(check.room_for(1000).is_ok());
        let full = check.room_for(1001).unwrap_err();
        assert_eq!((full.available, full.needed), (HEADROOM + 1000, 1001));
        assert!(full.to_string().contains("/data is full"), "{full}");
        assert_eq!(check.budget_that_fits(500), Some(1500));
        free.store(10, Ordering::SeqCst);
        assert_eq!(check.budget_that_fits(500), Some(500), "never below what is in use");
        assert!(check.room_for(0).is_err());
        let real = SpaceCheck::new(std::env::temp_dir(), DiskSpace::System);
        assert!(real.available().is_some_and(|b| b > 0), "statvfs reads the real disk");
    }
}
