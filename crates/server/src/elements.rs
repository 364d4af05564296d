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
        crate::private::create_dir(folder)?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(folder)?.with_automatic_cleanup(true);
        Ok(ElementStore { store: Arc::new(store) })
    }

    pub fn with(store: Arc<dyn ObjectStore>) -> ElementStore {
        ElementStore { store }
    }

    /// Where `--elements` says: empty for `default_folder`, `s3://bucket[/prefix]` for an
    /// S3-compatible store (endpoint, region and keys from the usual `AWS_*` variables:
    /// AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ALLOW_HTTP), or
    /// a folder.
    pub fn open(elements: &str, default_folder: &Path) -> anyhow::Result<ElementStore> {
        use anyhow::Context;
        let elements = elements.trim();
        if elements.is_empty() {
            return Self::local(default_folder);
        }
        if let Some(rest) = elements.strip_prefix("s3://") {
            idlegrid_pki::install_default_provider(); // the S3 client speaks HTTPS through rustls
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            anyhow::ensure!(!bucket.is_empty(), "--elements s3:// names no bucket; expected s3://bucket[/prefix]");
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .with_context(|| format!("cannot use the S3 bucket {bucket} (set AWS_ENDPOINT, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"))?;
            let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                Arc::new(s3)
            } else {
                Arc::new(object_store::prefix::PrefixStore::new(s3, prefix.trim_end_matches('/')))
            };
            return Ok(ElementStore { store });
        }
        anyhow::ensure!(!elements.contains("://"), "--elements {elements}: expected a folder or s3://bucket[/prefix]");
        Self::local(Path::new(elements))
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
        let mut writer = if already {
            None
        } else {
            Some(WriteMultipart::new(self.store.put_multipart(&location(expected)).await?))
        };
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

    pub async fn download(
        &self,
        hash: &ElementHash,
    ) -> Result<impl Stream<Item = Result<Bytes, object_store::Error>> + use<>, object_store::Error> {
        Ok(self.store.get(&location(hash)).await?.into_stream().map_err(|e| e))
    }

    pub async fn delete(&self, hash: &ElementHash) -> Result<(), object_store::Error> {
        match self.store.delete(&location(hash)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The behaviour every element store must have; run against a local folder in this crate's
/// tests and against an S3-compatible server in the CLI's.
pub mod conformance {
    use super::*;

    fn chunks(
        bytes: &[u8],
        size: usize,
    ) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Unpin + use<> {
        let parts: Vec<Result<Bytes, std::convert::Infallible>> =
            bytes.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        futures::stream::iter(parts)
    }

    async fn read(store: &ElementStore, hash: &ElementHash) -> Vec<u8> {
        let stream = store.download(hash).await.expect("stored");
        let parts: Vec<Bytes> = stream.try_collect().await.expect("readable");
        parts.concat()
    }

    pub async fn run_all(store: &ElementStore) {
        // Several chunks, larger than one multipart part (5 MiB) so multipart uploads happen.
        let big: Vec<u8> = (0..6_000_000u32).map(|i| (i % 251) as u8).collect();
        let hash = ElementHash::of(&big);
        assert!(!store.exists(&hash).await.unwrap());
        assert_eq!(store.upload(&hash, chunks(&big, 64 * 1024), 1 << 30).await.unwrap(), big.len() as u64);
        assert!(store.exists(&hash).await.unwrap());
        assert!(read(store, &hash).await == big, "the bytes read back are the bytes written");
        // The same bytes again: accepted, nothing changes.
        assert_eq!(store.upload(&hash, chunks(&big, 1 << 20), 1 << 30).await.unwrap(), big.len() as u64);

        // Bytes that do not hash to the name: refused and not visible.
        let claimed = ElementHash::of(b"what the uploader claimed");
        let error = store.upload(&claimed, chunks(b"something else", 4), 1 << 20).await.unwrap_err();
        assert!(matches!(error, UploadError::HashMismatch { .. }), "{error}");
        assert!(!store.exists(&claimed).await.unwrap(), "a refused upload leaves nothing");

        // Over the limit: refused and not visible.
        let small: Vec<u8> = vec![7; 10_000];
        let small_hash = ElementHash::of(&small);
        let error = store.upload(&small_hash, chunks(&small, 1000), 5_000).await.unwrap_err();
        assert!(matches!(error, UploadError::TooLarge { limit: 5_000 }), "{error}");
        assert!(!store.exists(&small_hash).await.unwrap());

        // Delete, twice (the second is a no-op); a missing element is NotFound.
        store.delete(&hash).await.unwrap();
        store.delete(&hash).await.unwrap();
        assert!(!store.exists(&hash).await.unwrap());
        assert!(matches!(store.download(&hash).await.err(), Some(object_store::Error::NotFound { .. })));
    }

    #[cfg(test)]
    mod tests {
        #[tokio::test]
        async fn a_local_folder_conforms() {
            let dir = tempfile::tempdir().unwrap();
            let store = super::ElementStore::open("", &dir.path().join("elements")).unwrap();
            super::run_all(&store).await;
        }

        #[test]
        fn unknown_element_stores_are_named_in_the_error() {
            let dir = tempfile::tempdir().unwrap();
            let error = super::ElementStore::open("gs://bucket", dir.path()).err().unwrap().to_string();
            assert!(error.contains("s3://bucket"), "{error}");
            let error = super::ElementStore::open("s3://", dir.path()).err().unwrap().to_string();
            assert!(error.contains("no bucket"), "{error}");
        }
    }
}
