//! `cargo xtask <command>`: what a fresh machine with only the Rust toolchain needs.
//!
//! - `build-tasks`: add the wasm32-wasip1 target if missing, build the example tasks (and the
//!   C ones when clang for WebAssembly is installed).
//! - `demo [ARGS]`: build-tasks, then build and run `idlegrid demo` (release build).
//! - `test [--install] [ARGS]`: check that this machine has what the tests need (the list is
//!   `prerequisites::PREREQUISITES`), stop with what is missing and the commands that install
//!   it, or with `--install` run them; then build-tasks, build the engine for Windows, run
//!   the platform and engine unit tests under Wine, type-check the platform crate for macOS
//!   (see `platforms`), and run every test of the workspace with cargo-nextest (ARGS go to
//!   it; `--no-run` builds only and needs only nextest and the cross-building tools).
//! - `prerequisites [--install]`: only the check (and installation) of what the tests need.
//! - `bench [ARGS]`: build-tasks, then run `idlegrid bench` (release build).
//! - `bench-engine [ARGS]`: the same for `idlegrid bench-engine`.
//! - `bench-kernels [ARGS]`: the same for `idlegrid bench-kernels`, after building the kernels'
//!   native twins.
//! - `memory [N]`: a job of N trivial tasks (default 1,000,000) submitted and watched by the
//!   `idlegrid` CLI against a server and two engines, each its own process; prints the peak
//!   memory of each. The client's must not grow with N.

mod env;
mod platforms;
mod prerequisites;

use std::process::Command;

use anyhow::{Context, bail};
use idlegrid_testkit::{WASM_TARGET, build_example_tasks_showing_progress, workspace_root};
use prerequisites::{Install, PREREQUISITES, Prerequisite};

/// The commands this program knows.
const COMMANDS: &[&str] =
    &["build-tasks", "demo", "test", "prerequisites", "bench", "bench-engine", "bench-kernels", "memory"];

/// The flag of `test` that installs what is missing.
const INSTALL_FLAG: &str = "--install";

/// Cargo for the inner builds, in the environment that `cargo` typed in a terminal has (see
/// `env`), so that they and the user's own builds reuse each other's artifacts.
fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    env::restore_terminal_environment(&mut command);
    command
}

/// Where cargo builds (CARGO_TARGET_DIR, or `target` in the workspace).
fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

fn run(mut command: Command) -> anyhow::Result<()> {
    let status = command.status().with_context(|| format!("cannot run {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed ({status})");
    }
    Ok(())
}

fn ensure_wasm_target() -> anyhow::Result<()> {
    let installed = Command::new("rustup").args(["target", "list", "--installed"]).output();
    match installed {
        Ok(output) if String::from_utf8_lossy(&output.stdout).lines().any(|l| l.trim() == WASM_TARGET) => Ok(()),
        Ok(_) => {
            eprintln!("xtask: adding the {WASM_TARGET} target (once)");
            let mut add = Command::new("rustup");
            add.args(["target", "add", WASM_TARGET]);
            run(add)
        }
        Err(_) => {
            eprintln!("xtask: rustup not found; assuming the {WASM_TARGET} target is installed");
            Ok(())
        }
    }
}

fn build_tasks() -> anyhow::Result<std::path::PathBuf> {
    ensure_wasm_target()?;
    eprintln!("xtask: building the example tasks for {WASM_TARGET} (a first build takes a few minutes)");
    let dir = build_example_tasks_showing_progress()?;
    // The C examples need clang for WebAssembly; without it only their own tests fail.
    match idlegrid_testkit::build_c_tasks() {
        Ok(c_dir) => eprintln!("xtask: built the C example tasks in {}", c_dir.display()),
        Err(error) => eprintln!("xtask: the C example tasks were not built: {error:#}"),
    }
    Ok(dir)
}

/// Check `needed`; install what is missing when asked, else stop with the list and the
/// commands that install it.
fn ensure_prerequisites(needed: &[Prerequisite], install: bool) -> anyhow::Result<()> {
    let missing = |list: &[Prerequisite]| -> Vec<Prerequisite> {
        list.iter().filter(|p| !prerequisites::present(p, &cargo)).copied().collect()
    };
    let lacking = missing(needed);
    if lacking.is_empty() {
        return Ok(());
    }
    let host = prerequisites::this_host();
    let lacking_refs: Vec<&Prerequisite> = lacking.iter().collect();
    if !install {
        bail!("{}", prerequisites::missing_report(&lacking_refs, host, INSTALL_FLAG));
    }
    // System packages first: pip's options depend on the Python they install.
    let (system, user): (Vec<&Prerequisite>, Vec<&Prerequisite>) =
        lacking_refs.iter().partition(|p| matches!(p.install, Install::Apt(_) | Install::AptThen(..)));
    for phase in [system, user] {
        for command in prerequisites::install_commands(&phase, prerequisites::this_host()) {
            eprintln!("xtask: installing: {command}");
            let mut shell = Command::new("sh");
            shell.args(["-c", &command]);
            env::restore_terminal_environment(&mut shell);
            run(shell).context("installing what the tests need failed")?;
        }
    }
    let still = missing(&lacking);
    if !still.is_empty() {
        let refs: Vec<&Prerequisite> = still.iter().collect();
        bail!(
            "installed, but still missing (is it on the PATH?):\n{}",
            prerequisites::missing_report(&refs, host, INSTALL_FLAG)
        );
    }
    Ok(())
}

/// The nextest command line of `cargo xtask test ARGS`: ARGS after the workspace, and
/// `--no-fail-fast` only when the tests run (nextest refuses it with `--no-run`).
fn nextest_args(rest: &[String]) -> Vec<String> {
    let mut args: Vec<String> = ["nextest", "run", "--workspace"].map(String::from).to_vec();
    if !rest.iter().any(|a| a == "--no-run") {
        args.push("--no-fail-fast".into());
    }
    args.extend(rest.iter().cloned());
    args
}

fn main() -> std::process::ExitCode {
    match run_command() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // A message for the user, not a backtrace.
            eprintln!("xtask: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run_command() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    let rest: Vec<String> = args.collect();
    std::env::set_current_dir(workspace_root())?;
    match command.as_str() {
        "build-tasks" => {
            let dir = build_tasks()?;
            println!("{}", dir.display());
            Ok(())
        }
        "demo" | "bench" | "bench-engine" | "bench-kernels" => {
            let dir = build_tasks()?;
            let mut rest = rest;
            if command == "bench-kernels" {
                eprintln!("xtask: building the kernels for this machine too");
                let native = idlegrid_testkit::build_native_kernels()?;
                rest.splice(0..0, ["--native-dir".to_string(), native.display().to_string()]);
            }
            eprintln!(
                "xtask: building idlegrid (release; the first build compiles a few hundred crates and takes \
                 minutes, over ten on two cores)"
            );
            let mut build = cargo();
            build.args(["build", "--release", "-p", "idlegrid-cli"]);
            run(build)?;
            let mut run_it = cargo();
            run_it
                .args(["run", "--release", "--quiet", "-p", "idlegrid-cli", "--", &command, "--tasks-dir"])
                .arg(&dir)
                .args(&rest);
            run(run_it)
        }
        "test" => {
            let install = rest.iter().any(|a| a == INSTALL_FLAG);
            let rest: Vec<String> = rest.into_iter().filter(|a| a != INSTALL_FLAG).collect();
            // Building needs only the runner and the cross-building tools; running needs everything.
            let no_run = rest.iter().any(|a| a == "--no-run");
            let cross: Vec<Prerequisite> = PREREQUISITES
                .iter()
                .filter(|p| p.name == "cargo-nextest" || p.needed_by.contains("Windows"))
                .copied()
                .collect();
            let needed = if no_run { &cross[..] } else { PREREQUISITES };
            ensure_prerequisites(needed, install)?;
            build_tasks()?;
            let target_dir = target_dir();
            platforms::run(&cargo, &target_dir, no_run)?;
            let mut test = cargo();
            test.args(nextest_args(&rest)).env(platforms::WINDOWS_EXE_ENV, platforms::windows_exe(&target_dir));
            run(test)
        }
        "prerequisites" => {
            ensure_prerequisites(PREREQUISITES, rest.iter().any(|a| a == INSTALL_FLAG))?;
            eprintln!("xtask: this machine has everything the tests need");
            Ok(())
        }
        "memory" => {
            let dir = build_tasks()?;
            let tasks: u64 =
                rest.first().map(|n| n.parse()).transpose().context("N must be a whole number")?.unwrap_or(1_000_000);
            memory(&dir, tasks)
        }
        other => {
            bail!("unknown xtask '{other}': use one of {}", COMMANDS.join(", "))
        }
    }
}

/// Peak resident memory of a running process, from /proc (kB).
fn peak_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()
}

fn memory(tasks_dir: &std::path::Path, tasks: u64) -> anyhow::Result<()> {
    let mut build = cargo();
    build.args(["build", "--release", "--quiet", "-p", "idlegrid-cli"]);
    run(build)?;
    let binary = workspace_root().join("target/release/idlegrid");
    let work = std::env::temp_dir().join(format!("idlegrid-memory-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let url = format!("https://127.0.0.1:{port}");
    let spawn = |args: &[&str]| -> anyhow::Result<std::process::Child> {
        Ok(Command::new(&binary).args(args).stdout(std::process::Stdio::null()).spawn()?)
    };
    let data = |name: &str| work.join(name).to_string_lossy().into_owned();
    let server =
        spawn(&["server", "--listen", &format!("127.0.0.1:{port}"), "--data", &data("server"), "--log", "warn"])?;
    std::thread::sleep(std::time::Duration::from_secs(1));
    let mut engines = Vec::new();
    for name in ["engine-1", "engine-2"] {
        engines.push(spawn(&[
            "--server",
            &url,
            "engine",
            "--data",
            &data(name),
            "--cores",
            "1",
            "--prefetch",
            "128",
            "--status-listen",
            "off",
            "--log",
            "warn",
        ])?);
    }
    let job = work.join("job.toml");
    std::fs::write(
        &job,
        format!(
            "name = \"memory\"\nexecutable = \"{}\"\n[tasks]\ncount = {tasks}\nparams = \"{{index}}\"\n",
            tasks_dir.join("noop.wasm").display()
        ),
    )?;
    let started = std::time::Instant::now();
    let client = Command::new(&binary)
        .args(["--server", &url, "--home", &data("home"), "job", "submit"])
        .arg(&job)
        .arg("--watch")
        .spawn()?;
    // wait4 reports the peak memory of this one child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut status = 0;
    // SAFETY: wait4 writes into the integers and struct we own; the pid is our child's.
    let waited = unsafe { libc::wait4(client.id() as libc::pid_t, &mut status, 0, &mut usage) };
    let elapsed = started.elapsed();
    anyhow::ensure!(waited > 0, "cannot wait for the client");
    let server_kb = peak_kb(server.id());
    let engine_kb: Vec<Option<u64>> = engines.iter().map(|e| peak_kb(e.id())).collect();
    for mut child in engines.into_iter().chain(std::iter::once(server)) {
        let _ = child.kill();
        let _ = child.wait();
    }
    let _ = std::fs::remove_dir_all(&work);
    anyhow::ensure!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "the client failed");
    let show = |kb: Option<u64>| kb.map(|k| format!("{:.1} MB", k as f64 / 1024.0)).unwrap_or_else(|| "?".into());
    println!("| measure | value |");
    println!("| --- | --- |");
    println!(
        "| trivial tasks, submitted and watched by the CLI | {tasks} in {:.1} s ({:.0} tasks/s) |",
        elapsed.as_secs_f64(),
        tasks as f64 / elapsed.as_secs_f64()
    );
    println!("| client peak memory | {:.1} MB |", usage.ru_maxrss as f64 / 1024.0);
    println!("| server peak memory | {} |", show(server_kb));
    println!("| engine peak memory | {} |", engine_kb.into_iter().map(show).collect::<Vec<_>>().join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_fail_fast_only_when_the_tests_run() {
        assert_eq!(nextest_args(&[]), args(&["nextest", "run", "--workspace", "--no-fail-fast"]));
        assert_eq!(nextest_args(&args(&["--no-run"])), args(&["nextest", "run", "--workspace", "--no-run"]));
        assert_eq!(
            nextest_args(&args(&["-p", "idlegrid-types"])),
            args(&["nextest", "run", "--workspace", "--no-fail-fast", "-p", "idlegrid-types"])
        );
    }

    /// Every `cargo xtask X` the documentation shows is a command of this program.
    #[test]
    fn the_documented_commands_exist() {
        let root = workspace_root();
        let mut seen = 0;
        for doc in ["README.md", "ARCHITECTURE.md"] {
            let text = std::fs::read_to_string(root.join(doc)).unwrap();
            for (at, _) in text.match_indices("cargo xtask ") {
                let name: String = text[at + "cargo xtask ".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                    .collect();
                assert!(COMMANDS.contains(&name.as_str()), "{doc} shows `cargo xtask {name}`");
                seen += 1;
            }
        }
        assert!(seen >= 7, "the documented commands were found");
    }

    /// README's test command is the one CI runs, and it names a real flag of this program.
    #[test]
    fn ci_runs_the_readme_test_command() {
        let root = workspace_root();
        let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
        let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
        let command = format!("cargo xtask test {INSTALL_FLAG}");
        assert!(readme.lines().any(|l| l.starts_with(&format!("{command} "))), "README shows `{command}`");
        let last = ci.lines().rev().find(|l| !l.trim().is_empty() && !l.starts_with('#')).unwrap();
        assert_eq!(last.trim(), command, ".ci/run ends with README's test command");
    }
}
