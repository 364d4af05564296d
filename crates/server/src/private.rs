//! Files that only the server's own user may read: the database (it holds the task-signing
//! key and the ticket secret) and the CA key. They are created owner-only, and the server
//! refuses to start on one that other local users can read.

use std::path::Path;

use anyhow::Context;

/// Whether a Unix mode lets the group or other users at the file.
pub fn exposed(mode: u32) -> bool {
    mode & 0o077 != 0
}

/// Create `path` and its missing parents, owner-only (0700). A folder that exists is left as
/// it is: the files that matter in it are checked one by one.
pub fn create_dir(path: &Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path).with_context(|| format!("cannot create the folder {}", path.display()))
}

/// Refuse a secret file that other users can read; a file that does not exist yet is fine
/// (it will be created owner-only).
pub fn check_file(path: &Path, what: &str) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let metadata = match std::fs::metadata(path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error).with_context(|| format!("cannot read {}", path.display())),
        };
        let mode = metadata.permissions().mode();
        if exposed(mode) {
            anyhow::bail!(
                "{what} {path} can be read by other users of this machine (mode {mode:o}); \
                 make it private with `chmod 600 {path}` and start again",
                path = path.display(),
                mode = mode & 0o777,
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (path, what);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_owner_only_modes_are_private() {
        assert!(!exposed(0o600));
        assert!(!exposed(0o400));
        assert!(!exposed(0o700));
        assert!(exposed(0o644));
        assert!(exposed(0o640));
        assert!(exposed(0o604));
        assert!(exposed(0o620));
    }

    #[cfg(unix)]
    #[test]
    fn a_readable_secret_is_refused_with_the_command_that_fixes_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.key");
        check_file(&path, "the CA key").expect("a missing file is fine");
        std::fs::write(&path, "secret").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = check_file(&path, "the CA key").unwrap_err().to_string();
        assert!(error.contains(&format!("chmod 600 {}", path.display())), "{error}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        check_file(&path, "the CA key").unwrap();
    }
}
