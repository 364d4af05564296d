//! Elements on the engine's disk, downloaded once per content hash and verified (P3.1).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use idlegrid_client::{ClientError, Transport};
use idlegrid_types::{ElementHash, ElementRef};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;


pub struct ElementCache {
    dir: PathBuf,
    /// Elements downloaded and verified by this process: no need to look at the disk again.
    verified: Mutex<std::collections::HashSet<ElementHash>>,
    /// One download per element at a time.
    locks: Mutex<HashMap<ElementHash, Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("download of element {hash} failed: {error}")]
    Download { hash: ElementHash, error: ClientError },
    #[error("element {hash} arrived corrupted: it hashes to {actual}")]
    Corrupt { hash: ElementHash, actual: ElementHash },
    #[error("element {hash}: expected {expected} bytes, received {actual}")]
    WrongSize { hash: ElementHash, expected: u64, actual: u64 },
    #[error("cannot write element {hash} to disk: {error}")]
    Disk { hash: ElementHash, error: std::io::Error },
}

impl ElementCache {
    pub fn new(dir: PathBuf) -> Self {
        ElementCache { dir, verified: Mutex::new(Default::default()), locks: Mutex::new(HashMap::new()) }
    }

    pub fn path(&self, hash: &ElementHash) -> PathBuf {
        self.dir.join(hash.to_string())
    }

    /// Every element held, for `CacheContents`.
    pub fn contents(&self) -> Vec<ElementHash> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        entries.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect()
    }

    /// Make sure the element is on disk, downloading it with `ticket` if needed.
    pub async fn ensure(&self, transport: &Transport, element: &ElementRef, ticket: &str) -> Result<PathBuf, FetchError> {
        let path = self.path(&element.hash);
        if self.verified.lock().unwrap_or_else(|p| p.into_inner()).contains(&element.hash) {
            return Ok(path);
        }
        let lock = self.locks.lock().unwrap_or_else(|p| p.into_inner()).entry(element.hash).or_default().clone();
        let _guard = lock.lock().await;
        if tokio::fs::metadata(&path).await.map(|m| m.len() == element.size).unwrap_or(false) {
            self.verified.lock().unwrap_or_else(|p| p.into_inner()).insert(element.hash);
            return Ok(path);
        }
        let hash = element.hash;
        let mut stream = Box::pin(transport.download(&hash, Some(ticket)).await.map_err(|error| FetchError::Download { hash, error })?);
        let tmp = path.with_extension("part");
        let mut file = tokio::fs::File::create(&tmp).await.map_err(|error| FetchError::Disk { hash, error })?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| FetchError::Download { hash, error })?;
            size += chunk.len() as u64;
            if size > element.size {
                let _ = tokio::fs::remove_file(&tmp).await;
                return Err(FetchError::WrongSize { hash, expected: element.size, actual: size });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(|error| FetchError::Disk { hash, error })?;
        }
        file.flush().await.map_err(|error| FetchError::Disk { hash, error })?;
        drop(file);
        let actual = ElementHash::from_bytes(hasher.finalize().into());
        if actual != hash {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(FetchError::Corrupt { hash, actual });
        }
        if size != element.size {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(FetchError::WrongSize { hash, expected: element.size, actual: size });
        }
        tokio::fs::rename(&tmp, &path).await.map_err(|error| FetchError::Disk { hash, error })?;
        self.verified.lock().unwrap_or_else(|p| p.into_inner()).insert(hash);
        Ok(path)
    }
}
