//! The market's data contracts from the client's side: storage (the blob is encrypted here,
//! handed over, and fetched back), files (the seller attaches, the buyer downloads once paid
//! and confirms), and internet access (elements fetched through the seller's relay, the bytes
//! received reported).
//!
//! **The storage blob's encryption.** The seller's engine keeps only ciphertext. The key is
//! derived from the party's own Ed25519 key, so nothing else needs keeping: SHA-256 of a fixed
//! label and the party's (deterministic) signature of that label. The blob is
//! `IGS1 || nonce (24 bytes) || XChaCha20-Poly1305(plaintext)`, with the contract's number as
//! associated data, so a blob cannot be passed off as another contract's.

use std::path::Path;

use bytes::Bytes;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::market::ContractInfo;
use idlegrid_protocol::market_data::{BytesBody, ElementBody, RELAY_TICKET_HEADER, RelayInfo};
use idlegrid_types::{ElementHash, ElementKind, ElementRef};
use reqwest::Method;
use sha2::{Digest, Sha256};

use super::{Market, TIMEOUT};
use crate::ClientError;

const MAGIC: &[u8; 4] = b"IGS1";
const NONCE: usize = 24;
const LABEL: &[u8] = b"idlegrid market storage key v1";
/// Largest file handled in memory here (storage blobs, files bought).
const BYTES_MAX: u64 = 1 << 30;

fn cipher(identity: &Identity) -> XChaCha20Poly1305 {
    let signature = identity.sign_bytes(LABEL);
    let mut hasher = Sha256::new();
    hasher.update(LABEL);
    hasher.update(signature.as_bytes());
    let key: [u8; 32] = hasher.finalize().into();
    XChaCha20Poly1305::new(&Key::from(key))
}

fn aad(contract: u64) -> Vec<u8> {
    format!("idlegrid market storage contract {contract}").into_bytes()
}

/// Encrypt `plain` for storage under contract `contract`.
pub fn seal_blob(identity: &Identity, contract: u64, plain: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE];
    rand::fill(&mut nonce[..]);
    let sealed = cipher(identity)
        .encrypt(&XNonce::from(nonce), Payload { msg: plain, aad: &aad(contract) })
        .expect("XChaCha20-Poly1305 encrypts any length that fits in memory");
    let mut blob = Vec::with_capacity(MAGIC.len() + NONCE + sealed.len());
    blob.extend_from_slice(MAGIC);
    blob.extend_from_slice(&nonce);
    blob.extend_from_slice(&sealed);
    blob
}

/// Decrypt a blob sealed by [`seal_blob`] for contract `contract`.
pub fn open_blob(identity: &Identity, contract: u64, blob: &[u8]) -> Result<Vec<u8>, ClientError> {
    let altered = || ClientError::Protocol(format!("the blob of contract {contract} is not the one this party stored"));
    if blob.len() < MAGIC.len() + NONCE || &blob[..MAGIC.len()] != MAGIC {
        return Err(altered());
    }
    let nonce: [u8; NONCE] = blob[MAGIC.len()..MAGIC.len() + NONCE].try_into().map_err(|_| altered())?;
    cipher(identity)
        .decrypt(&XNonce::from(nonce), Payload { msg: &blob[MAGIC.len() + NONCE..], aad: &aad(contract) })
        .map_err(|_| altered())
}

async fn read(file: &Path) -> Result<Vec<u8>, ClientError> {
    let size = tokio::fs::metadata(file).await.map_err(|e| ClientError::Io(format!("{}: {e}", file.display())))?.len();
    if size > BYTES_MAX {
        return Err(ClientError::Io(format!("{} is {size} bytes: at most {BYTES_MAX} are handled", file.display())));
    }
    tokio::fs::read(file).await.map_err(|e| ClientError::Io(format!("{}: {e}", file.display())))
}

async fn write(file: &Path, bytes: &[u8]) -> Result<(), ClientError> {
    tokio::fs::write(file, bytes).await.map_err(|e| ClientError::Io(format!("{}: {e}", file.display())))
}

impl Market<'_> {
    /// Storage bought: encrypt `file`, upload it and hand it over to the seller's engine.
    pub async fn storage_put(&self, id: u64, file: &Path) -> Result<ContractInfo, ClientError> {
        let plain = read(file).await?;
        let blob = seal_blob(self.transport.identity(), id, &plain);
        let element =
            self.transport.upload(Bytes::from(blob), ElementKind::Data, &format!("market-storage-{id}")).await?;
        let path = format!("/v1/market/contracts/{id}/storage");
        self.transport.call(Method::POST, &path, Some(&ElementBody { element }), TIMEOUT).await
    }

    /// Storage bought: fetch the blob back while the contract is active, decrypt it and write
    /// it to `out`; its size.
    pub async fn storage_get(&self, id: u64, out: &Path) -> Result<u64, ClientError> {
        let path = format!("/v1/market/contracts/{id}/storage");
        let element: ElementRef = self.transport.call::<(), _>(Method::GET, &path, None, TIMEOUT).await?;
        let blob = self.transport.download_bytes(&element, None, BYTES_MAX).await?;
        let plain = open_blob(self.transport.identity(), id, &blob)?;
        write(out, &plain).await?;
        Ok(plain.len() as u64)
    }

    /// A file sold: upload `file` and attach it to contract `id` (it must be the file the
    /// contract names).
    pub async fn file_attach(&self, id: u64, file: &Path) -> Result<ContractInfo, ClientError> {
        let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let element = self.transport.upload_file(file, ElementKind::Data, &name).await?;
        let path = format!("/v1/market/contracts/{id}/file");
        self.transport.call(Method::POST, &path, Some(&ElementBody { element }), TIMEOUT).await
    }

    /// A file bought: download it once the contract is paid, check it is the one the contract
    /// names, write it to `out` and confirm delivery.
    pub async fn file_get(&self, id: u64, out: &Path) -> Result<ContractInfo, ClientError> {
        let path = format!("/v1/market/contracts/{id}/file");
        let element: ElementRef = self.transport.call::<(), _>(Method::GET, &path, None, TIMEOUT).await?;
        let bytes = self.transport.download_bytes(&element, None, BYTES_MAX).await?;
        write(out, &bytes).await?;
        self.confirm(id).await
    }
}

impl Market<'_> {
    /// Internet access bought: fetch element `hash` through the seller's relay, check it, write
    /// it to `out`, and report the bytes received; the bytes.
    pub async fn relay_get(&self, id: u64, hash: &ElementHash, out: &Path) -> Result<u64, ClientError> {
        let path = format!("/v1/market/contracts/{id}/relay");
        let relay: RelayInfo = self.transport.call::<(), _>(Method::GET, &path, None, TIMEOUT).await?;
        let url = format!("http://{}/relay/{id}/{hash}", relay.address);
        let relay_error = |e: reqwest::Error| ClientError::Io(format!("the seller's relay at {}: {e}", relay.address));
        let response = reqwest::Client::new()
            .get(&url)
            .header(RELAY_TICKET_HEADER, &relay.ticket)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(relay_error)?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(ClientError::Io(format!("the seller's relay refused ({status}): {}", text.trim())));
        }
        let bytes = response.bytes().await.map_err(relay_error)?;
        if ElementHash::of(&bytes) != *hash {
            return Err(ClientError::Protocol(format!("element {hash} arrived through the relay corrupted")));
        }
        write(out, &bytes).await?;
        let received = bytes.len() as u64;
        let seq =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_micros() as u64);
        let report = BytesBody { seq, bytes: received };
        let path = format!("/v1/market/contracts/{id}/bytes");
        let _: ContractInfo = self.transport.call(Method::POST, &path, Some(&report), TIMEOUT).await?;
        Ok(received)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blob_opens_only_for_its_party_and_contract() {
        let (alice, bob) = (Identity::from_seed([1; 32]), Identity::from_seed([2; 32]));
        let blob = seal_blob(&alice, 7, b"private bytes");
        assert!(!blob.windows(7).any(|w| w == b"private"), "ciphertext only");
        assert_eq!(open_blob(&alice, 7, &blob).unwrap(), b"private bytes");
        assert!(open_blob(&bob, 7, &blob).is_err(), "another party's key");
        assert!(open_blob(&alice, 8, &blob).is_err(), "another contract");
        let mut altered = blob.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(open_blob(&alice, 7, &altered).is_err(), "altered");
        assert!(open_blob(&alice, 7, b"IGS1").is_err(), "truncated");
        assert_ne!(seal_blob(&alice, 7, b"x"), seal_blob(&alice, 7, b"x"), "a fresh nonce each time");
    }
}
