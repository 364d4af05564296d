//! Where the engine keeps its data by default on each system, and folders and files that only
//! the owner may read: mode 0700 / 0600 on Unix; on Windows the per-user application data
//! folder is private to its user already (its access list inherits to what is made in it).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The systems the engine knows how to live on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    Linux,
    Windows,
    MacOs,
    /// Another Unix: treated like Linux where it matters (XDG folders).
    Other,
}

/// The engine's default data folder on `os`, from the environment `env` gives:
/// `$XDG_DATA_HOME/idlegrid/engine` (or `~/.local/share/idlegrid/engine`) on Linux,
/// `%LOCALAPPDATA%\Idlegrid\engine` on Windows, `~/Library/Application Support/Idlegrid/engine`
/// on macOS. `None` when the variables it needs are missing or relative.
pub fn data_dir_for(os: Os, env: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let absolute = |name: &str| env(name).filter(|value| unix_absolute(value)).map(PathBuf::from);
    match os {
        Os::Windows => {
            let base = env("LOCALAPPDATA").map(PathBuf::from).filter(|p| !p.as_os_str().is_empty())?;
            Some(base.join("Idlegrid").join("engine"))
        }
        Os::MacOs => {
            Some(absolute("HOME")?.join("Library").join("Application Support").join("Idlegrid").join("engine"))
        }
        Os::Linux | Os::Other => {
            let base = absolute("XDG_DATA_HOME").or_else(|| Some(absolute("HOME")?.join(".local").join("share")))?;
            Some(base.join("idlegrid").join("engine"))
        }
    }
}

/// Whether a Unix path is absolute, whatever system this code runs on (plans for Linux and
/// macOS are made, and tested, on Windows too).
pub(crate) fn unix_absolute(path: &std::ffi::OsStr) -> bool {
    path.to_string_lossy().starts_with('/')
}

/// The engine's default data folder on this computer (see [`data_dir_for`]).
pub fn default_data_dir() -> Option<PathBuf> {
    data_dir_for(crate::THIS_OS, &|name| std::env::var_os(name))
}

/// Create `path` (and its parents) and make it readable by its owner only.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Make `options` create files only their owner may read and write.
pub fn private_file(options: &mut std::fs::OpenOptions) -> &mut std::fs::OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

/// Let `path` be run as a program (mode 0755 on Unix; on Windows every file may be).
pub fn make_executable(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    }
    #[cfg(not(unix))]
    std::fs::metadata(path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<OsString> {
        move |name| pairs.iter().find(|(k, _)| *k == name).map(|(_, v)| OsString::from(v))
    }

    #[test]
    fn each_system_has_its_usual_place() {
        let home = env(&[("HOME", "/home/ann")]);
        assert_eq!(data_dir_for(Os::Linux, &home), Some(PathBuf::from("/home/ann/.local/share/idlegrid/engine")));
        let xdg = env(&[("HOME", "/home/ann"), ("XDG_DATA_HOME", "/data/ann")]);
        assert_eq!(data_dir_for(Os::Linux, &xdg), Some(PathBuf::from("/data/ann/idlegrid/engine")));
        let relative = env(&[("HOME", "/home/ann"), ("XDG_DATA_HOME", "data")]);
        assert_eq!(
            data_dir_for(Os::Linux, &relative),
            Some(PathBuf::from("/home/ann/.local/share/idlegrid/engine")),
            "a relative XDG_DATA_HOME is ignored, as the specification says"
        );
        let mac = env(&[("HOME", "/Users/ann")]);
        assert_eq!(
            data_dir_for(Os::MacOs, &mac),
            Some(PathBuf::from("/Users/ann/Library/Application Support/Idlegrid/engine"))
        );
        let windows = env(&[("LOCALAPPDATA", r"C:\Users\ann\AppData\Local")]);
        let expected = PathBuf::from(r"C:\Users\ann\AppData\Local").join("Idlegrid").join("engine");
        assert_eq!(data_dir_for(Os::Windows, &windows), Some(expected));
        assert_eq!(data_dir_for(Os::Windows, &home), None, "no LOCALAPPDATA");
        assert_eq!(data_dir_for(Os::Linux, &env(&[])), None, "no HOME");
    }

    #[test]
    fn private_folders_and_files_are_the_owners() {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("a").join("engine");
        create_private_dir(&folder).unwrap();
        create_private_dir(&folder).unwrap();
        let key = folder.join("key");
        private_file(std::fs::OpenOptions::new().write(true).create_new(true)).open(&key).unwrap();
        make_executable(&key).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&folder).unwrap().permissions().mode() & 0o777, 0o700);
            assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o755);
        }
        assert!(make_executable(&folder.join("absent")).is_err());
    }
}
