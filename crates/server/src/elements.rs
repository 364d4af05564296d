//! Element bytes, content-addressed by SHA-256, in an `object_store` (a local folder by
//! default). Uploads are hashed while they stream and become visible only once verified.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use idlegrid_types::ElementHash;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the element is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the uploaded bytes hash to {actual}, not to {expected}")]
    HashMismatch { expected: ElementHash, actual: ElementHash },
    #[error("the upload was interrupted: {0}")]
    Body(String),
    #[error("element storage failed: {0}")]
    Storage(#[from] object_store::Error),
}

#[derive(Clone)]
pub struct ElementStore {
    store: Arc<dyn ObjectStore>,
}

fn location(hash: &ElementHash) -> ObjectPath {
    let hex = hash.to_string();
    ObjectPath::from(format!("{}/{}", &hex[..2], hex))
}

impl ElementStore {
    pub fn local(folder: &Path) -> anyhow::Result<ElementStore> {
        std::fs::create_dir_all(folder)?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(folder)?.with_automatic_cleanup(true);
        Ok(ElementStore { store: Arc::new(store) })
    }

    pub fn with(store: Arc<dyn ObjectStore>) -> ElementStore {
        ElementStore { store }
    }

    pub async fn exists(&self, hash: &ElementHash) -> Result<bool, object_store::Error> {
        match self.store.head(&location(hash)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Stream `body` in, verify that it hashes to `expected`, and store it unless the same bytes
    /// are stored already. Returns the size.
    pub async fn upload<S, E>(&self, expected: &ElementHash, body: S, limit: u64) -> Result<u64, UploadError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let already = self.exists(expected).await?;
        let mut writer = if already { None } else { Some(WriteMultipart::new(self.store.put_multipart(&location(expected)).await?)) };
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut body = body;
        let outcome: Result<(), UploadError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(|e| UploadError::Body(e.to_string()))?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(UploadError::TooLarge { limit });
                }
                hasher.update(&chunk);
                if let Some(writer) = writer.as_mut() {
                    writer.wait_for_capacity(4).await?;
                    writer.put(chunk);
                }
            }
            let actual = ElementHash::from_bytes(hasher.finalize().into());
            if actual != *expected {
                return Err(UploadError::HashMismatch { expected: *expected, actual });
            }
            Ok(())
        }
        .await;
        match (outcome, writer) {
            (Ok(()), Some(writer)) => {
                writer.finish().await?;
                Ok(size)
            }
            (Ok(()), None) => Ok(size),
            (Err(error), Some(writer)) => {
                let _ = writer.abort().await;
                Err(error)
            }
            (Err(error), None) => Err(error),
        }
    }

    pub async fn download(&self, hash: &ElementHash) -> Result<impl Stream<Item = Result<Bytes, object_store::Error>> + use<>, object_store::Error> {
        Ok(self.store.get(&location(hash)).await?.into_stream().map_err(|e| e))
    }

    pub async fn delete(&self, hash: &ElementHash) -> Result<(), object_store::Error> {
        match self.store.delete(&location(hash)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
