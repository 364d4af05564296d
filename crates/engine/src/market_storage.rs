//! Storage this engine sold on the market: the buyers' blobs, kept in the data folder under
//! `market/storage/` (apart from the element cache, so they are never evicted), and the
//! answers to the server's proof-of-storage challenges.
//!
//! Each contract's blob is `contract-<id>.blob` beside `contract-<id>.json` (its element and
//! when the contract ends). A blob is dropped when the server says so, or a day after its
//! contract's end. Blobs are kept as the buyer sent them: they are encrypted on the buyer's
//! side, and a challenge hashes their exact bytes.

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use idlegrid_market::settlement::{Challenge, answer_challenge};
use serde::{Deserialize, Serialize};

/// How long after a contract's end its blob is kept (the server may still settle it).
pub const KEPT_AFTER_END_MS: u64 = 24 * 3600 * 1000;

/// What the engine knows of a blob it keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kept {
    pub contract: u64,
    pub element: String,
    pub size: u64,
    pub until_ms: u64,
}

/// The folder of kept blobs.
pub struct Shelf {
    folder: PathBuf,
}

impl Shelf {
    pub fn new(data_dir: &Path) -> Shelf {
        Shelf { folder: data_dir.join("market").join("storage") }
    }

    /// The file holding contract `contract`'s blob.
    pub fn blob_path(&self, contract: u64) -> PathBuf {
        self.folder.join(format!("contract-{contract}.blob"))
    }

    fn meta_path(&self, contract: u64) -> PathBuf {
        self.folder.join(format!("contract-{contract}.json"))
    }

    /// Keep `bytes` (already checked against their hash) for `kept`; written then renamed.
    pub fn keep(&self, kept: &Kept, bytes: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.folder)?;
        let partial = self.folder.join(format!("contract-{}.partial", kept.contract));
        std::fs::write(&partial, bytes)?;
        // Flushing needs write access on Windows; a read-only handle is refused there.
        std::fs::OpenOptions::new().write(true).open(&partial)?.sync_all()?;
        std::fs::rename(&partial, self.blob_path(kept.contract))?;
        let meta = serde_json::to_vec(kept).map_err(std::io::Error::other)?;
        std::fs::write(self.meta_path(kept.contract), meta)
    }

    /// Whether contract `contract`'s blob is kept (its record says so).
    pub fn kept(&self, contract: u64) -> Option<Kept> {
        let bytes = std::fs::read(self.meta_path(contract)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// The answer to `challenge` over the blob as it is on disk now.
    pub fn answer(&self, contract: u64, challenge: &Challenge) -> Result<String, String> {
        let mut file = std::fs::File::open(self.blob_path(contract))
            .map_err(|e| format!("the blob of contract {contract} cannot be read: {e}"))?;
        let length = usize::try_from(challenge.length).map_err(|_| "the challenged range is too long".to_string())?;
        if length > 64 << 20 {
            return Err(format!("the challenged range ({length} bytes) is too long"));
        }
        let mut range = vec![0u8; length];
        file.seek(SeekFrom::Start(challenge.offset))
            .and_then(|_| file.read_exact(&mut range))
            .map_err(|e| format!("the blob of contract {contract} is shorter than the challenge: {e}"))?;
        let within = Challenge { offset: 0, length: challenge.length, nonce: challenge.nonce.clone() };
        answer_challenge(&within, &range).map_err(|e| e.to_string())
    }

    /// Drop contract `contract`'s blob.
    pub fn release(&self, contract: u64) {
        let _ = std::fs::remove_file(self.blob_path(contract));
        let _ = std::fs::remove_file(self.meta_path(contract));
    }

    /// Drop blobs whose contract ended over [`KEPT_AFTER_END_MS`] ago; returns how many.
    pub fn sweep(&self, now_ms: u64) -> usize {
        let Ok(entries) = std::fs::read_dir(&self.folder) else { return 0 };
        let mut dropped = 0;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(contract) = name.strip_prefix("contract-").and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            let Ok(contract) = contract.parse::<u64>() else { continue };
            if self.kept(contract).is_some_and(|kept| kept.until_ms.saturating_add(KEPT_AFTER_END_MS) < now_ms) {
                self.release(contract);
                dropped += 1;
            }
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_blob_answers_its_challenges_and_an_altered_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let shelf = Shelf::new(dir.path());
        let blob: Vec<u8> = (0..10_000u32).map(|n| (n * 7 % 251) as u8).collect();
        let kept = Kept { contract: 4, element: "e".into(), size: blob.len() as u64, until_ms: 1_000 };
        shelf.keep(&kept, &blob).unwrap();
        assert_eq!(shelf.kept(4), Some(kept));
        let challenges: Vec<(Challenge, String)> = [(0, 1), (17, 500), (9_000, 1_000), (9_999, 1)]
            .into_iter()
            .map(|(offset, length)| {
                let challenge = Challenge { offset, length, nonce: format!("{offset:032x}") };
                let expected = answer_challenge(&challenge, &blob).unwrap();
                (challenge, expected)
            })
            .collect();
        for (challenge, expected) in &challenges {
            assert_eq!(&shelf.answer(4, challenge).unwrap(), expected);
        }
        let altered: Vec<u8> = blob.iter().map(|b| b ^ 1).collect();
        std::fs::write(shelf.blob_path(4), &altered).unwrap();
        assert!(challenges.iter().all(|(challenge, expected)| &shelf.answer(4, challenge).unwrap() != expected));
        std::fs::write(shelf.blob_path(4), &blob[..10]).unwrap();
        assert!(shelf.answer(4, &challenges[1].0).unwrap_err().contains("shorter"));
        assert_eq!(shelf.sweep(1_000 + KEPT_AFTER_END_MS), 0, "not yet");
        assert_eq!(shelf.sweep(1_001 + KEPT_AFTER_END_MS), 1);
        assert!(shelf.kept(4).is_none() && shelf.answer(4, &challenges[0].0).is_err());
    }
}
