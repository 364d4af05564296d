//! Elements on the engine's disk (P3.1, P3.4): downloaded once per content hash, verified,
//! sealed at rest, and kept within the owner's disk budget. Before anything is written the
//! budget is checked; elements no held task needs are evicted, least recently used first.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use idlegrid_client::{ClientError, Transport};
use idlegrid_types::{ElementHash, ElementRef};
use sha2::{Digest, Sha256};

use crate::space::SpaceCheck;
use crate::vault::{ChunkedReader, ChunkedWriter, Vault, VaultError};

/// Bytes the engine may use on disk for elements and checkpoints, and what it uses.
pub struct DiskBudget {
    max: AtomicU64,
    used: AtomicU64,
    /// Wakes work waiting for room whenever bytes are released.
    freed: tokio::sync::Notify,
}

impl DiskBudget {
    pub fn new(max: u64) -> Self {
        DiskBudget { max: AtomicU64::new(max), used: AtomicU64::new(0), freed: tokio::sync::Notify::new() }
    }

    pub fn max(&self) -> u64 {
        self.max.load(Ordering::SeqCst)
    }

    /// Lower (or raise) the budget, e.g. to what the disk can actually hold.
    pub fn set_max(&self, max: u64) {
        self.max.store(max, Ordering::SeqCst);
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::SeqCst)
    }

    /// Take `bytes` if they fit.
    pub fn try_reserve(&self, bytes: u64) -> bool {
        let max = self.max();
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes).filter(|total| *total <= max)
            })
            .is_ok()
    }

    /// Give back `bytes`. Also called (with 0) when a task is forgotten: what it needed may now
    /// be evicted, so work waiting for room looks again.
    pub fn release(&self, bytes: u64) {
        let _ = self.used.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| Some(used.saturating_sub(bytes)));
        self.freed.notify_waiters();
    }

    /// Resolves at the next release of bytes (create it before checking for room, so that a
    /// release in between is not missed).
    pub fn freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.freed.notified()
    }

    /// Count bytes already on disk at start-up.
    pub fn add_existing(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::SeqCst);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("download of element {hash} failed: {error}")]
    Download { hash: ElementHash, error: ClientError },
    #[error("element {hash} arrived corrupted: it hashes to {actual}")]
    Corrupt { hash: ElementHash, actual: ElementHash },
    #[error("element {hash}: expected {expected} bytes, received {actual}")]
    WrongSize { hash: ElementHash, expected: u64, actual: u64 },
    #[error(
        "the owner's disk budget of {max} bytes cannot hold element {hash} of {needed} bytes ({used} bytes in use by what held tasks need)"
    )]
    DiskBudget { hash: ElementHash, needed: u64, max: u64, used: u64 },
    #[error("cannot write element {hash} to disk: {error}")]
    Disk { hash: ElementHash, error: std::io::Error },
    #[error("cannot stage element {hash}: {full}")]
    DiskFull { hash: ElementHash, full: crate::space::DiskFull },
}

impl FetchError {
    /// The engine's disk is full (not the task's fault, nor the owner's budget).
    pub fn disk_full(&self) -> Option<String> {
        match self {
            FetchError::DiskFull { full, .. } => Some(full.to_string()),
            FetchError::Disk { error, .. } if crate::disk::is_disk_full(error) => Some(self.to_string()),
            _ => None,
        }
    }
}

struct Entry {
    bytes: u64,
    last_used: u64,
}

#[derive(Default)]
struct Index {
    entries: HashMap<ElementHash, Entry>,
    clock: u64,
    /// What the server was last told the cache holds (`CacheContents`), sorted.
    reported: Option<Vec<ElementHash>>,
}

pub struct ElementCache {
    dir: PathBuf,
    space: SpaceCheck,
    vault: Arc<Vault>,
    budget: Arc<DiskBudget>,
    index: Mutex<Index>,
    /// One download per element at a time.
    locks: Mutex<HashMap<ElementHash, Arc<tokio::sync::Mutex<()>>>>,
}

/// A task's view of a sealed element; remembers whether any chunk failed its seal.
pub struct SealedElement {
    reader: ChunkedReader,
    tampered: Arc<std::sync::atomic::AtomicBool>,
}

impl SealedElement {
    pub fn tampered_flag(&self) -> Arc<std::sync::atomic::AtomicBool> {
        self.tampered.clone()
    }
}

impl idlegrid_sandbox::ElementRead for SealedElement {
    fn len(&self) -> u64 {
        self.reader.len()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader.read_at(offset, buf).map_err(|e| {
            self.tampered.store(true, Ordering::SeqCst);
            std::io::Error::other(e.to_string())
        })
    }
}

impl ElementCache {
    /// Index what is on disk (partial downloads are removed) and count it against the budget.
    pub fn open(
        dir: PathBuf,
        vault: Arc<Vault>,
        budget: Arc<DiskBudget>,
        space: SpaceCheck,
    ) -> std::io::Result<ElementCache> {
        std::fs::create_dir_all(&dir)?;
        let mut found: Vec<(std::time::SystemTime, ElementHash, u64)> = Vec::new();
        for entry in std::fs::read_dir(&dir)?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            match name.parse::<ElementHash>() {
                Ok(hash) => {
                    let meta = entry.metadata()?;
                    found.push((meta.modified().unwrap_or(std::time::UNIX_EPOCH), hash, meta.len()));
                }
                Err(_) => {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        found.sort();
        let mut index = Index::default();
        for (_, hash, bytes) in found {
            index.clock += 1;
            budget.add_existing(bytes);
            index.entries.insert(hash, Entry { bytes, last_used: index.clock });
        }
        Ok(ElementCache { dir, space, vault, budget, index: Mutex::new(index), locks: Mutex::new(HashMap::new()) })
    }

    fn path(&self, hash: &ElementHash) -> PathBuf {
        self.dir.join(hash.to_string())
    }

    /// Every element held, for `CacheContents` (sorted); remembered as reported.
    pub fn contents(&self) -> Vec<ElementHash> {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let mut held: Vec<ElementHash> = index.entries.keys().copied().collect();
        held.sort_unstable();
        index.reported = Some(held.clone());
        held
    }

    /// Every element held, when that differs from what was last reported (the server keeps
    /// each engine's cache contents for placement, so a change is worth telling it).
    pub fn contents_if_changed(&self) -> Option<Vec<ElementHash>> {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let mut held: Vec<ElementHash> = index.entries.keys().copied().collect();
        held.sort_unstable();
        if index.reported.as_ref() == Some(&held) {
            return None;
        }
        index.reported = Some(held.clone());
        Some(held)
    }

    fn touch(&self, hash: &ElementHash) -> bool {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index.clock += 1;
        let clock = index.clock;
        match index.entries.get_mut(hash) {
            Some(entry) => {
                entry.last_used = clock;
                true
            }
            None => false,
        }
    }

    /// Free at least `bytes` by evicting elements not in `keep`, least recently used first.
    /// Returns whether `bytes` could be reserved.
    pub fn reserve(&self, bytes: u64, keep: &HashSet<ElementHash>) -> bool {
        loop {
            if self.budget.try_reserve(bytes) {
                return true;
            }
            let victim = {
                let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
                index
                    .entries
                    .iter()
                    .filter(|(h, _)| !keep.contains(h))
                    .min_by_key(|(_, e)| e.last_used)
                    .map(|(h, _)| *h)
            };
            match victim {
                Some(hash) => self.forget(&hash),
                None => return false,
            }
        }
    }

    /// Remove an element from disk (evicted, or found tampered).
    pub fn forget(&self, hash: &ElementHash) {
        let removed = self.index.lock().unwrap_or_else(|p| p.into_inner()).entries.remove(hash);
        if let Some(entry) = removed {
            let _ = std::fs::remove_file(self.path(hash));
            self.budget.release(entry.bytes);
            tracing::debug!(%hash, bytes = entry.bytes, "element evicted");
        }
    }

    /// Make sure the element is on disk, downloading it with `ticket` if needed. `keep` lists the
    /// elements held tasks need, which eviction spares.
    pub async fn ensure(
        &self,
        transport: &Transport,
        element: &ElementRef,
        ticket: &str,
        keep: &HashSet<ElementHash>,
    ) -> Result<(), FetchError> {
        let hash = element.hash;
        if self.touch(&hash) {
            return Ok(());
        }
        let lock = self.locks.lock().unwrap_or_else(|p| p.into_inner()).entry(hash).or_default().clone();
        let _guard = lock.lock().await;
        if self.touch(&hash) {
            return Ok(());
        }
        let sealed = Vault::sealed_size(element.size);
        if !self.reserve(sealed, keep) {
            return Err(FetchError::DiskBudget {
                hash,
                needed: sealed,
                max: self.budget.max(),
                used: self.budget.used(),
            });
        }
        if let Err(full) = self.space.room_for(sealed) {
            self.budget.release(sealed);
            return Err(FetchError::DiskFull { hash, full });
        }
        let result = self.download(transport, element, ticket).await;
        match result {
            Ok(()) => {
                let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
                index.clock += 1;
                let clock = index.clock;
                index.entries.insert(hash, Entry { bytes: sealed, last_used: clock });
                Ok(())
            }
            Err(error) => {
                self.budget.release(sealed);
                Err(error)
            }
        }
    }

    async fn download(&self, transport: &Transport, element: &ElementRef, ticket: &str) -> Result<(), FetchError> {
        let hash = element.hash;
        let mut stream = Box::pin(
            transport.download(&hash, Some(ticket)).await.map_err(|error| FetchError::Download { hash, error })?,
        );
        let mut writer = ChunkedWriter::create(&self.vault, &self.path(&hash), element.size)
            .map_err(|error| FetchError::Disk { hash, error })?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    writer.abandon();
                    return Err(FetchError::Download { hash, error });
                }
            };
            size += chunk.len() as u64;
            if size > element.size {
                writer.abandon();
                return Err(FetchError::WrongSize { hash, expected: element.size, actual: size });
            }
            hasher.update(&chunk);
            if let Err(error) = writer.write(&chunk) {
                writer.abandon();
                return Err(FetchError::Disk { hash, error });
            }
        }
        let actual = ElementHash::from_bytes(hasher.finalize().into());
        if actual != hash {
            writer.abandon();
            return Err(FetchError::Corrupt { hash, actual });
        }
        if size != element.size {
            writer.abandon();
            return Err(FetchError::WrongSize { hash, expected: element.size, actual: size });
        }
        writer.finish().map_err(|error| FetchError::Disk { hash, error })
    }

    /// The whole element (executables). A tampered file is removed, so that staging fetches it
    /// again, and never returned.
    pub fn read_all(&self, hash: &ElementHash) -> Result<Vec<u8>, VaultError> {
        self.touch(hash);
        self.vault.read_chunked_all(&self.path(hash)).inspect_err(|_| self.forget(hash))
    }

    /// A reader for a task (data elements), checked chunk by chunk as the task reads.
    pub fn reader(&self, hash: &ElementHash) -> Result<SealedElement, VaultError> {
        self.touch(hash);
        self.vault
            .read_chunked(&self.path(hash))
            .map(|reader| SealedElement { reader, tampered: Default::default() })
            .inspect_err(|_| self.forget(hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waiting_for_room_wakes_when_bytes_or_tasks_go() {
        let budget = DiskBudget::new(100);
        assert!(budget.try_reserve(80));
        let freed = budget.freed();
        assert!(!budget.try_reserve(30), "no room yet");
        budget.release(10);
        freed.await;
        assert!(budget.try_reserve(30));
        let forgotten = budget.freed();
        budget.release(0); // a task forgotten: what it needed may be evicted now
        forgotten.await;
        budget.set_max(50);
        assert!(!budget.try_reserve(1), "a lowered budget holds");
    }

    #[test]
    fn the_budget_holds_and_eviction_spares_what_is_needed() {
        let dir = tempfile::tempdir().unwrap();
        let vault = Arc::new(Vault::load_or_create(&dir.path().join("key")).unwrap());
        let budget = Arc::new(DiskBudget::new(Vault::sealed_size(1000) * 2));
        let space = SpaceCheck::new(dir.path().into(), crate::space::DiskSpace::System);
        let cache =
            ElementCache::open(dir.path().join("elements"), vault.clone(), budget.clone(), space.clone()).unwrap();
        let (a, b, c) = (ElementHash::of(b"a"), ElementHash::of(b"b"), ElementHash::of(b"c"));
        for hash in [a, b] {
            assert!(cache.reserve(Vault::sealed_size(1000), &HashSet::new()));
            vault.write_chunked(&cache.path(&hash), &[1u8; 1000]).unwrap();
            let mut index = cache.index.lock().unwrap();
            index.clock += 1;
            let clock = index.clock;
            index.entries.insert(hash, Entry { bytes: Vault::sealed_size(1000), last_used: clock });
        }
        cache.touch(&a); // b is now the least recently used
        let keep: HashSet<ElementHash> = [a].into();
        assert!(cache.reserve(Vault::sealed_size(1000), &keep));
        assert_eq!(cache.contents(), vec![a], "b was evicted, a kept");
        assert!(!cache.path(&b).exists());
        let both: HashSet<ElementHash> = [a, c].into();
        assert!(!cache.reserve(Vault::sealed_size(1000), &both), "nothing left to evict");
        assert!(budget.used() <= budget.max());
        // A tampered element is found out and dropped, never returned.
        let mut bytes = std::fs::read(cache.path(&a)).unwrap();
        let last = bytes.len() - 5;
        bytes[last] ^= 1;
        std::fs::write(cache.path(&a), bytes).unwrap();
        assert!(cache.read_all(&a).is_err());
        assert!(cache.contents().is_empty());
        // Reopening counts what is on disk.
        let reopened =
            ElementCache::open(dir.path().join("elements"), vault, Arc::new(DiskBudget::new(1 << 20)), space).unwrap();
        assert_eq!(reopened.contents().len(), 0);
    }
}
