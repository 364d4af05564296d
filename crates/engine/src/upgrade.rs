//! Engine upgrades (P3.11): the server offers a new build, signed with the key the engine
//! trusts; the engine downloads it, checks the signature and the hash, stages it, and switches
//! to it at its next start. Nothing unverified is ever run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use idlegrid_client::Transport;
use idlegrid_protocol::auth::verify_bytes;
use idlegrid_protocol::messages::upgrade_signed_bytes;
use idlegrid_types::{ElementHash, ElementRef};
use serde::{Deserialize, Serialize};

use crate::disk::Disk;
use crate::vault::Vault;

/// An upgrade downloaded and verified, waiting for the next start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagedUpgrade {
    pub version: String,
    pub element: ElementRef,
    pub signature: String,
    pub path: PathBuf,
}

/// Set in the environment of a staged build we switched to, so that it never switches again.
pub const SWITCHED_ENV: &str = "IDLEGRID_UPGRADED_FROM";

fn staged_file(data_dir: &Path) -> PathBuf {
    data_dir.join("upgrade").join("staged.json")
}

/// Check the offer's signature, download the build, check its hash, and stage it.
pub async fn stage(
    data_dir: &Path,
    transport: &Transport,
    server_key: &str,
    version: &str,
    element: &ElementRef,
    signature: &str,
) -> Result<StagedUpgrade, String> {
    verify_bytes(server_key, &upgrade_signed_bytes(version, element), signature)
        .map_err(|_| format!("the offered upgrade {version} is not signed by this engine's server: ignored"))?;
    if version.is_empty() || !version.chars().all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c)) {
        return Err(format!("the upgrade version {version:?} is not a plain version string"));
    }
    let bytes = transport
        .download_bytes(element, None, 1 << 30)
        .await
        .map_err(|e| format!("cannot download upgrade {version}: {e}"))?;
    let folder = data_dir.join("upgrade");
    std::fs::create_dir_all(&folder).map_err(|e| e.to_string())?;
    let path = folder.join(format!("idlegrid-{version}"));
    crate::disk::write_atomic(&path, &bytes, true).map_err(|e| e.to_string())?;
    idlegrid_platform::make_executable(&path).map_err(|e| e.to_string())?;
    let staged =
        StagedUpgrade { version: version.to_string(), element: *element, signature: signature.to_string(), path };
    crate::disk::write_atomic(&staged_file(data_dir), &serde_json::to_vec(&staged).expect("serializes"), true)
        .map_err(|e| e.to_string())?;
    Ok(staged)
}

/// The staged upgrade of the engine in `data_dir`, verified again now (signature by the
/// trusted server key, and the file's hash): a staged file altered since is removed.
pub fn staged_upgrade(data_dir: &Path) -> Option<StagedUpgrade> {
    let staged: StagedUpgrade = serde_json::from_slice(&std::fs::read(staged_file(data_dir)).ok()?).ok()?;
    let vault = Arc::new(Vault::load_or_create(&data_dir.join("storage.key")).ok()?);
    let server_key = Disk::open(data_dir, vault).ok()?.meta("server_key")?;
    let signed =
        verify_bytes(&server_key, &upgrade_signed_bytes(&staged.version, &staged.element), &staged.signature).is_ok();
    let intact = std::fs::read(&staged.path).map(|b| ElementHash::of(&b) == staged.element.hash).unwrap_or(false);
    if signed && intact {
        Some(staged)
    } else {
        tracing::warn!(version = %staged.version, "a staged upgrade failed its check and was removed");
        let _ = std::fs::remove_file(&staged.path);
        let _ = std::fs::remove_file(staged_file(data_dir));
        None
    }
}
