//! The engine on other systems, from this Linux machine: the `idlegrid` executable for Windows
//! (cross-built with mingw-w64; the end-to-end test runs it under Wine), the unit tests of the
//! platform and engine crates under Wine, and a type-check of the platform crate for both
//! macOS targets (no Apple SDK needed: the crate has no build script that wants one).

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

/// The Windows target (Debian's mingw-w64 links it; Wine runs it).
pub const WINDOWS_TARGET: &str = "x86_64-pc-windows-gnu";
/// The macOS targets the platform crate is checked for.
pub const APPLE_TARGETS: &[&str] = &["x86_64-apple-darwin", "aarch64-apple-darwin"];
/// Every target this needs installed (`rustup target add`).
pub const TARGETS: &[&str] = &[WINDOWS_TARGET, "x86_64-apple-darwin", "aarch64-apple-darwin"];
/// The variable through which the end-to-end test finds the Windows executable.
pub const WINDOWS_EXE_ENV: &str = "IDLEGRID_WINDOWS_EXE";

/// The crates whose unit tests run under Wine: the platform layer and the engine. Few, since a
/// cross build of wasmtime costs minutes of every core.
const WINE_TESTED: &[&str] = &["idlegrid-platform", "idlegrid-engine"];

/// Where the Windows executable is built, under `target_dir`.
pub fn windows_exe(target_dir: &std::path::Path) -> PathBuf {
    target_dir.join(WINDOWS_TARGET).join("debug").join("idlegrid.exe")
}

/// Wine quiet, in a prefix of its own under the target folder (made at its first start), with
/// no Mono or Gecko installers and no window.
pub fn wine_environment(command: &mut Command, target_dir: &std::path::Path) {
    command
        .env("WINEDEBUG", "-all")
        .env("WINEPREFIX", target_dir.join("wine-prefix"))
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY");
}

/// The cargo command lines, in order: build the Windows executable, run (or with `no_run`
/// only build) the Wine-tested crates' unit tests, check the platform crate for macOS. Pure.
pub fn cargo_steps(no_run: bool) -> Vec<Vec<String>> {
    let words = |list: &[&str]| list.iter().map(|w| w.to_string()).collect::<Vec<String>>();
    let mut steps =
        vec![words(&["build", "--target", WINDOWS_TARGET, "--package", "idlegrid-cli", "--bin", "idlegrid"])];
    let mut tests = words(&["test", "--target", WINDOWS_TARGET, "--lib"]);
    for krate in WINE_TESTED {
        tests.extend(words(&["--package", krate]));
    }
    if no_run {
        tests.push("--no-run".into());
    }
    steps.push(tests);
    for target in APPLE_TARGETS {
        steps.push(words(&["check", "--target", target, "--package", "idlegrid-platform"]));
    }
    steps
}

/// The stand-in for bcryptprimitives.dll that Wine 8 lacks (see `xtask/wine`), built with
/// mingw-w64 into the folders of the Windows executables and test programs, where Windows
/// looks for a program's libraries first.
pub fn build_wine_stand_in(target_dir: &std::path::Path) -> anyhow::Result<()> {
    let source = idlegrid_testkit::workspace_root().join("xtask/wine/bcryptprimitives.c");
    let debug = target_dir.join(WINDOWS_TARGET).join("debug");
    let deps = debug.join("deps");
    std::fs::create_dir_all(&deps)?;
    let built = deps.join("bcryptprimitives.dll");
    let mut gcc = Command::new("x86_64-w64-mingw32-gcc");
    gcc.args(["-shared", "-O2", "-o"]).arg(&built).arg(&source).args(["-ladvapi32", "-Wl,--kill-at"]);
    crate::run(gcc)?;
    std::fs::copy(&built, debug.join("bcryptprimitives.dll"))?;
    Ok(())
}

/// Run the steps with `cargo`, timing each (the report says how long the other systems cost).
pub fn run(cargo: &dyn Fn() -> Command, target_dir: &std::path::Path, no_run: bool) -> anyhow::Result<()> {
    build_wine_stand_in(target_dir)?;
    for step in cargo_steps(no_run) {
        let started = Instant::now();
        eprintln!("xtask: cargo {}", step.join(" "));
        let attempt = || {
            let mut command = cargo();
            command.args(&step);
            wine_environment(&mut command, target_dir);
            crate::run(command)
        };
        if let Err(error) = attempt() {
            if step[0] != "test" {
                return Err(error);
            }
            // A test program run by Wine in a prefix it has just made can end early without a
            // word (seen once in a fresh clone, never again in that prefix): run them once more,
            // so that only a failure that repeats fails the run.
            eprintln!("xtask: the tests under Wine failed ({error}); running them once more");
            attempt()?;
        }
        eprintln!("xtask: took {:.0} s", started.elapsed().as_secs_f64());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_windows_build_comes_first_then_wine_tests_then_macos_checks() {
        let steps = cargo_steps(false);
        assert_eq!(steps[0].join(" "), "build --target x86_64-pc-windows-gnu --package idlegrid-cli --bin idlegrid");
        assert_eq!(
            steps[1].join(" "),
            "test --target x86_64-pc-windows-gnu --lib --package idlegrid-platform --package idlegrid-engine"
        );
        assert_eq!(steps[2].join(" "), "check --target x86_64-apple-darwin --package idlegrid-platform");
        assert_eq!(steps[3].join(" "), "check --target aarch64-apple-darwin --package idlegrid-platform");
        assert!(cargo_steps(true)[1].ends_with(&["--no-run".to_string()]));
        assert!(windows_exe(std::path::Path::new("/t")).ends_with("x86_64-pc-windows-gnu/debug/idlegrid.exe"));
    }
}
