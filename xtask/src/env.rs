//! The environment of the inner cargo commands. `cargo xtask` runs this program through
//! `cargo run`, which adds variables about the xtask package and library paths for its
//! binary; an inner build that inherits them sees another environment than a `cargo` typed in
//! the terminal, and build scripts that watch the environment (ring's, through cc) run again,
//! rebuilding what depends on them each time the two alternate.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

/// Whether `cargo run` sets this variable for the program it runs (cargo's documented list
/// for crates and `cargo run`, besides the library path, handled apart).
pub fn set_by_cargo_run(name: &str) -> bool {
    matches!(
        name,
        "CARGO_MANIFEST_DIR"
            | "CARGO_MANIFEST_PATH"
            | "CARGO_CRATE_NAME"
            | "CARGO_BIN_NAME"
            | "CARGO_PRIMARY_PACKAGE"
            | "CARGO_TARGET_TMPDIR"
            | "CARGO_RUSTC_CURRENT_DIR"
            | "OUT_DIR"
    ) || name.starts_with("CARGO_PKG_")
}

/// `value` of the library path without the folders `cargo run` put in front of the user's:
/// those inside the target folder or the Rust toolchain. Pure.
pub fn user_library_path(value: &OsStr, target_dir: &Path, toolchain_dirs: &[&Path]) -> Option<std::ffi::OsString> {
    let kept: Vec<_> = std::env::split_paths(value)
        .filter(|dir| !dir.starts_with(target_dir) && !toolchain_dirs.iter().any(|t| dir.starts_with(t)))
        .collect();
    if kept.is_empty() { None } else { std::env::join_paths(kept).ok() }
}

/// Make `command` run in the environment of the terminal `cargo xtask` was typed in.
pub fn restore_terminal_environment(command: &mut Command) {
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_run) {
            command.env_remove(&name);
        }
    }
    const LIBRARY_PATH: &str = "LD_LIBRARY_PATH";
    if let Some(value) = std::env::var_os(LIBRARY_PATH) {
        let root = idlegrid_testkit::workspace_root();
        let target = std::env::var_os("CARGO_TARGET_DIR").map(|t| root.join(t)).unwrap_or_else(|| root.join("target"));
        let rustup_home = std::env::var_os("RUSTUP_HOME").map(std::path::PathBuf::from);
        let cargo_home = std::env::var_os("CARGO_HOME").map(std::path::PathBuf::from);
        let toolchains: Vec<&Path> = rustup_home.iter().chain(cargo_home.iter()).map(|p| p.as_path()).collect();
        match user_library_path(&value, &target, &toolchains) {
            Some(kept) => command.env(LIBRARY_PATH, kept),
            None => command.env_remove(LIBRARY_PATH),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_variables_go_and_the_users_stay() {
        for name in ["CARGO_PKG_NAME", "CARGO_PKG_VERSION_MAJOR", "CARGO_MANIFEST_DIR", "CARGO_BIN_NAME", "OUT_DIR"] {
            assert!(set_by_cargo_run(name), "{name}");
        }
        for name in ["CARGO_HOME", "CARGO_TARGET_DIR", "CARGO_BUILD_JOBS", "CARGO_INCREMENTAL", "RUSTFLAGS", "PATH"] {
            assert!(!set_by_cargo_run(name), "{name}");
        }
    }

    /// The test runner sets the package variables for this process, as `cargo run` does for
    /// xtask: the inner command must not see them (ring's build script watches them).
    #[test]
    fn the_inner_command_does_not_inherit_the_package_variables() {
        assert!(std::env::var_os("CARGO_PKG_NAME").is_some() && std::env::var_os("CARGO_MANIFEST_DIR").is_some());
        let mut command = Command::new("env");
        restore_terminal_environment(&mut command);
        let output = command.output().expect("env runs");
        let seen = String::from_utf8_lossy(&output.stdout);
        for line in seen.lines() {
            let name = line.split('=').next().unwrap_or_default();
            assert!(!set_by_cargo_run(name), "{name} reached the inner command");
        }
        assert!(seen.lines().any(|l| l.starts_with("PATH=")), "the rest is inherited");
    }

    #[test]
    fn the_library_path_keeps_only_the_users_folders() {
        let value = std::env::join_paths([
            "/work/target/debug/deps",
            "/work/target/debug",
            "/root/.rustup/toolchains/stable/lib",
            "/opt/mine/lib",
        ])
        .unwrap();
        let kept = user_library_path(&value, Path::new("/work/target"), &[Path::new("/root/.rustup")]);
        assert_eq!(kept.as_deref(), Some(OsStr::new("/opt/mine/lib")));
        let only_cargo = std::env::join_paths(["/work/target/debug"]).unwrap();
        assert_eq!(user_library_path(&only_cargo, Path::new("/work/target"), &[]), None);
    }
}
