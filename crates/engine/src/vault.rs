//! Encryption at rest (P3.7): what the engine writes about tasks (elements, checkpoints,
//! assignments, results) is sealed with XChaCha20-Poly1305 under a key only the engine holds,
//! so that it is private on a shared disk and any tampering is detected before use.
//!
//! Small blobs are sealed whole. Elements, which tasks read at random offsets and may exceed
//! memory, are sealed in 64 KiB chunks: each chunk has its own tag, and the associated data binds
//! it to the file, its position and the total length, so chunks cannot be swapped, reordered,
//! truncated or replayed from another file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};

const MAGIC: &[u8; 4] = b"IGE1";
const CHUNK: usize = 64 * 1024;
const TAG: usize = 16;
const HEADER: usize = 4 + 16 + 8;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("sealed data was altered or is corrupt ({0})")]
    Tampered(String),
    #[error("storage error: {0}")]
    Io(#[from] std::io::Error),
}

pub struct Vault {
    cipher: XChaCha20Poly1305,
}

impl Vault {
    /// Load the key from `path`, or create it (mode 0600).
    pub fn load_or_create(path: &Path) -> std::io::Result<Vault> {
        let key = match std::fs::read(path) {
            Ok(bytes) if bytes.len() == 32 => bytes,
            Ok(_) => return Err(std::io::Error::other(format!("{} is not a 32-byte key", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = vec![0u8; 32];
                rand::fill(&mut key[..]);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                let mut file = idlegrid_platform::private_file(&mut options).open(path)?;
                file.write_all(&key)?;
                file.sync_all()?;
                key
            }
            Err(e) => return Err(e),
        };
        let mut array = [0u8; 32];
        array.copy_from_slice(&key);
        Ok(Vault { cipher: XChaCha20Poly1305::new(&Key::from(array)) })
    }

    /// Seal a blob; `context` (e.g. "checkpoint/17") must be given again to open it, so a blob
    /// cannot be moved to another place.
    pub fn seal(&self, plaintext: &[u8], context: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; 24];
        rand::fill(&mut nonce[..]);
        let sealed = self
            .cipher
            .encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: context })
            .expect("encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(24 + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    pub fn open(&self, sealed: &[u8], context: &[u8]) -> Result<Vec<u8>, VaultError> {
        if sealed.len() < 24 + TAG {
            return Err(VaultError::Tampered("too short".into()));
        }
        let mut nonce = [0u8; 24];
        nonce.copy_from_slice(&sealed[..24]);
        self.cipher
            .decrypt(&XNonce::from(nonce), Payload { msg: &sealed[24..], aad: context })
            .map_err(|_| VaultError::Tampered(String::from_utf8_lossy(context).into_owned()))
    }

    fn chunk_nonce(file_id: &[u8; 16], index: u64) -> XNonce {
        let mut nonce = [0u8; 24];
        nonce[..16].copy_from_slice(file_id);
        nonce[16..].copy_from_slice(&index.to_le_bytes());
        XNonce::from(nonce)
    }

    fn chunk_aad(header: &[u8], index: u64, last: bool) -> Vec<u8> {
        let mut aad = header.to_vec();
        aad.extend_from_slice(&index.to_le_bytes());
        aad.push(last as u8);
        aad
    }

    /// Seal `plaintext` into `path` in chunks (written to a temporary file, then renamed).
    #[cfg(test)]
    pub fn write_chunked(self: &std::sync::Arc<Self>, path: &Path, plaintext: &[u8]) -> std::io::Result<()> {
        let mut writer = ChunkedWriter::create(self, path, plaintext.len() as u64)?;
        writer.write(plaintext)?;
        writer.finish()
    }

    /// Bytes a chunked file of `len` plaintext bytes takes on disk.
    pub fn sealed_size(len: u64) -> u64 {
        HEADER as u64 + len + (len as usize).div_ceil(CHUNK).max(1) as u64 * TAG as u64
    }

    /// Open a chunked file for random-access reads; its layout is checked here, its chunks
    /// when they are read.
    pub fn read_chunked(self: &std::sync::Arc<Self>, path: &Path) -> Result<ChunkedReader, VaultError> {
        let mut file = File::open(path)?;
        let mut header = [0u8; HEADER];
        file.read_exact(&mut header).map_err(|_| VaultError::Tampered(format!("{}: no header", path.display())))?;
        if &header[..4] != MAGIC {
            return Err(VaultError::Tampered(format!("{}: not a sealed element", path.display())));
        }
        let mut file_id = [0u8; 16];
        file_id.copy_from_slice(&header[4..20]);
        let len = u64::from_le_bytes(header[20..28].try_into().expect("8 bytes"));
        let chunks = (len as usize).div_ceil(CHUNK).max(1) as u64;
        let expected = HEADER as u64 + len + chunks * TAG as u64;
        if file.metadata()?.len() != expected {
            return Err(VaultError::Tampered(format!("{}: wrong length", path.display())));
        }
        Ok(ChunkedReader { vault: self.clone(), file, header, file_id, len, chunks, cached: None })
    }

    /// The whole plaintext of a chunked file (for executables, which are compiled whole).
    pub fn read_chunked_all(self: &std::sync::Arc<Self>, path: &Path) -> Result<Vec<u8>, VaultError> {
        let mut reader = self.read_chunked(path)?;
        let mut out = vec![0u8; reader.len() as usize];
        let mut filled = 0;
        while filled < out.len() {
            let n = reader.read_at(filled as u64, &mut out[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        Ok(out)
    }
}

/// Seals a stream of known length into a chunked file, a chunk at a time, so that an element
/// larger than memory can be stored.
pub struct ChunkedWriter {
    vault: std::sync::Arc<Vault>,
    out: std::io::BufWriter<File>,
    tmp: std::path::PathBuf,
    path: std::path::PathBuf,
    header: Vec<u8>,
    file_id: [u8; 16],
    len: u64,
    chunks: u64,
    written: u64,
    index: u64,
    pending: Vec<u8>,
    /// Moved into place: nothing to clean up.
    done: bool,
}

/// A writer given up on, failed, or dropped half-way (a cancelled download) leaves no partial
/// file behind.
impl Drop for ChunkedWriter {
    fn drop(&mut self) {
        if !self.done {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl ChunkedWriter {
    pub fn create(vault: &std::sync::Arc<Vault>, path: &Path, len: u64) -> std::io::Result<ChunkedWriter> {
        let mut file_id = [0u8; 16];
        rand::fill(&mut file_id[..]);
        let mut header = Vec::with_capacity(HEADER);
        header.extend_from_slice(MAGIC);
        header.extend_from_slice(&file_id);
        header.extend_from_slice(&len.to_le_bytes());
        let tmp = path.with_extension("sealing");
        let file = File::create(&tmp)?;
        let mut out = std::io::BufWriter::new(file);
        if let Err(error) = out.write_all(&header) {
            drop(out);
            let _ = std::fs::remove_file(&tmp);
            return Err(error);
        }
        Ok(ChunkedWriter {
            vault: vault.clone(),
            out,
            tmp,
            path: path.to_path_buf(),
            header,
            file_id,
            len,
            chunks: (len as usize).div_ceil(CHUNK).max(1) as u64,
            written: 0,
            index: 0,
            pending: Vec::with_capacity(CHUNK),
            done: false,
        })
    }

    fn seal_pending(&mut self) -> std::io::Result<()> {
        let last = self.index + 1 == self.chunks;
        let aad = Vault::chunk_aad(&self.header, self.index, last);
        let sealed = self
            .vault
            .cipher
            .encrypt(&Vault::chunk_nonce(&self.file_id, self.index), Payload { msg: &self.pending, aad: &aad })
            .expect("encryption of an in-memory buffer cannot fail");
        self.out.write_all(&sealed)?;
        self.pending.clear();
        self.index += 1;
        Ok(())
    }

    pub fn write(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        if self.written + bytes.len() as u64 > self.len {
            return Err(std::io::Error::other("more bytes than announced"));
        }
        self.written += bytes.len() as u64;
        while !bytes.is_empty() {
            let take = (CHUNK - self.pending.len()).min(bytes.len());
            self.pending.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.pending.len() == CHUNK && self.index + 1 < self.chunks {
                self.seal_pending()?;
            }
        }
        Ok(())
    }

    /// Seal the last chunk and move the file into place. On failure the partial file is removed.
    pub fn finish(mut self) -> std::io::Result<()> {
        if self.written != self.len {
            return Err(std::io::Error::other(format!("{} bytes announced, {} written", self.len, self.written)));
        }
        self.seal_pending()?;
        self.out.flush()?;
        std::fs::rename(&self.tmp, &self.path)?;
        self.done = true;
        Ok(())
    }

    /// Give up: remove the partial file.
    pub fn abandon(self) {}
}

pub struct ChunkedReader {
    vault: std::sync::Arc<Vault>,
    file: File,
    header: [u8; HEADER],
    file_id: [u8; 16],
    len: u64,
    chunks: u64,
    cached: Option<(u64, Vec<u8>)>,
}

#[allow(clippy::len_without_is_empty)]
impl ChunkedReader {
    pub fn len(&self) -> u64 {
        self.len
    }

    fn chunk(&mut self, index: u64) -> Result<&[u8], VaultError> {
        if self.cached.as_ref().map(|(i, _)| *i) != Some(index) {
            let plain_len = if index + 1 == self.chunks { self.len as usize - index as usize * CHUNK } else { CHUNK };
            let mut sealed = vec![0u8; plain_len + TAG];
            self.file.seek(SeekFrom::Start(HEADER as u64 + index * (CHUNK + TAG) as u64))?;
            self.file.read_exact(&mut sealed)?;
            let aad = Vault::chunk_aad(&self.header, index, index + 1 == self.chunks);
            let plain = self
                .vault
                .cipher
                .decrypt(&Vault::chunk_nonce(&self.file_id, index), Payload { msg: &sealed, aad: &aad })
                .map_err(|_| VaultError::Tampered(format!("chunk {index}")))?;
            self.cached = Some((index, plain));
        }
        Ok(&self.cached.as_ref().expect("just filled").1)
    }

    /// Read from `offset`; returns the bytes read (0 at the end).
    pub fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<usize, VaultError> {
        if offset >= self.len || buf.is_empty() {
            return Ok(0);
        }
        let index = offset / CHUNK as u64;
        let within = (offset % CHUNK as u64) as usize;
        let chunk = self.chunk(index)?;
        let n = buf.len().min(chunk.len() - within);
        buf[..n].copy_from_slice(&chunk[within..within + n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault(dir: &Path) -> std::sync::Arc<Vault> {
        std::sync::Arc::new(Vault::load_or_create(&dir.join("key")).unwrap())
    }

    #[test]
    fn blobs_round_trip_and_detect_tampering_and_moves() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        let sealed = v.seal(b"checkpoint bytes", b"checkpoint/1");
        assert!(!sealed.windows(10).any(|w| w == b"checkpoint"), "the plaintext does not show");
        assert_eq!(v.open(&sealed, b"checkpoint/1").unwrap(), b"checkpoint bytes");
        assert!(v.open(&sealed, b"checkpoint/2").is_err(), "bound to its place");
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert!(matches!(v.open(&flipped, b"checkpoint/1"), Err(VaultError::Tampered(_))));
        let other = vault(tempfile::tempdir().unwrap().path());
        assert!(other.open(&sealed, b"checkpoint/1").is_err(), "another engine's key cannot open it");
        assert_eq!(
            Vault::load_or_create(&dir.path().join("key")).unwrap().open(&sealed, b"checkpoint/1").unwrap(),
            b"checkpoint bytes"
        );
    }

    #[test]
    fn chunked_files_read_at_any_offset_and_refuse_any_change() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let path = dir.path().join("element");
        v.write_chunked(&path, &data).unwrap();
        assert_eq!(v.read_chunked_all(&path).unwrap(), data);
        let mut reader = v.read_chunked(&path).unwrap();
        let mut buf = [0u8; 100];
        assert_eq!(reader.read_at(65_500, &mut buf).unwrap(), 36, "a read stops at a chunk boundary");
        assert_eq!(&buf[..36], &data[65_500..65_536]);
        assert_eq!(reader.read_at(199_990, &mut buf).unwrap(), 10);
        assert_eq!(reader.read_at(200_000, &mut buf).unwrap(), 0);
        drop(reader);
        // Flip one byte in the middle chunk: that chunk fails, the others still read.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + (CHUNK + TAG) + 10] ^= 0x40;
        std::fs::write(&path, &bytes).unwrap();
        let mut reader = v.read_chunked(&path).unwrap();
        assert!(reader.read_at(0, &mut buf).is_ok());
        assert!(matches!(reader.read_at(CHUNK as u64 + 5, &mut buf), Err(VaultError::Tampered(_))));
        // Windows cannot replace a file that is still open.
        drop(reader);
        // Truncation and a forged length are caught when opening.
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(v.read_chunked(&path).is_err());
        v.write_chunked(&path, b"").unwrap();
        assert_eq!(v.read_chunked_all(&path).unwrap(), b"");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), Vault::sealed_size(0));
        // Written in odd pieces, read back whole; announced and actual lengths must agree.
        let mut writer = ChunkedWriter::create(&v, &path, data.len() as u64).unwrap();
        for piece in data.chunks(7_777) {
            writer.write(piece).unwrap();
        }
        writer.finish().unwrap();
        assert_eq!(v.read_chunked_all(&path).unwrap(), data);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), Vault::sealed_size(data.len() as u64));
        let mut short = ChunkedWriter::create(&v, &path, 10).unwrap();
        short.write(b"abc").unwrap();
        assert!(short.finish().is_err());
        assert!(ChunkedWriter::create(&v, &path, 2).unwrap().write(b"abc").is_err());
        assert!(!path.with_extension("sealing").exists(), "failed writers leave no partial file");
    }

    /// A download that finds the disk full (its partial file is `/dev/full`), or that is given
    /// up half-way, leaves no partial file behind.
    #[cfg(target_os = "linux")]
    #[test]
    fn partial_files_go_when_the_disk_is_full_or_the_write_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let v = vault(dir.path());
        let path = dir.path().join("element");
        let partial = path.with_extension("sealing");
        let data = vec![5u8; 3 * CHUNK];
        std::os::unix::fs::symlink("/dev/full", &partial).unwrap();
        let mut writer = ChunkedWriter::create(&v, &path, data.len() as u64).unwrap();
        let error = writer.write(&data).and_then(|()| writer.finish()).unwrap_err();
        assert!(crate::disk::is_disk_full(&error), "{error:?}");
        assert!(std::fs::symlink_metadata(&partial).is_err());
        assert!(!path.exists());
        let mut writer = ChunkedWriter::create(&v, &path, data.len() as u64).unwrap();
        writer.write(&data[..CHUNK + 10]).unwrap();
        drop(writer);
        assert!(!partial.exists(), "a writer dropped half-way (a cancelled download) cleans up");
    }
}
