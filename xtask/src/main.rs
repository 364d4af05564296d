//! `cargo xtask <command>`: what a fresh machine with only the Rust toolchain needs.
//!
//! - `build-tasks`: add the wasm32-wasip1 target if missing, build the example tasks (and the
//!   C ones when clang for WebAssembly is installed).
//! - `demo [ARGS]`: build-tasks, then run `idlegrid demo` (release build).
//! - `test [ARGS]`: build-tasks, then run every test of the workspace (cargo-nextest if
//!   installed, cargo test otherwise).
//! - `bench [ARGS]`: build-tasks, then run `idlegrid bench` (release build).
//! - `bench-engine [ARGS]`: the same for `idlegrid bench-engine`.
//! - `memory [N]`: a job of N trivial tasks (default 1,000,000) submitted and watched by the
//!   `idlegrid` CLI against a server and two engines, each its own process; prints the peak
//!   memory of each. The client's must not grow with N.

use std::process::Command;

use anyhow::{Context, bail};
use idlegrid_testkit::{WASM_TARGET, build_example_tasks, workspace_root};

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
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
    eprintln!("xtask: building the example tasks for {WASM_TARGET}");
    let dir = build_example_tasks()?;
    // The C examples need clang for WebAssembly; without it only their own tests fail.
    match idlegrid_testkit::build_c_tasks() {
        Ok(c_dir) => eprintln!("xtask: built the C example tasks in {}", c_dir.display()),
        Err(error) => eprintln!("xtask: the C example tasks were not built: {error:#}"),
    }
    Ok(dir)
}

fn has_nextest() -> bool {
    cargo().args(["nextest", "--version"]).output().map(|o| o.status.success()).unwrap_or(false)
}

fn main() -> anyhow::Result<()> {
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
        "demo" | "bench" | "bench-engine" => {
            let dir = build_tasks()?;
            let mut run_it = cargo();
            run_it
                .args(["run", "--release", "--quiet", "-p", "idlegrid-cli", "--", &command, "--tasks-dir"])
                .arg(&dir)
                .args(&rest);
            run(run_it)
        }
        "test" => {
            build_tasks()?;
            let mut test = cargo();
            if has_nextest() {
                test.args(["nextest", "run", "--workspace", "--no-fail-fast"]);
            } else {
                eprintln!("xtask: cargo-nextest not found; using cargo test");
                test.args(["test", "--workspace", "--no-fail-fast"]);
            }
            test.args(&rest);
            run(test)
        }
        "memory" => {
            let dir = build_tasks()?;
            let tasks: u64 =
                rest.first().map(|n| n.parse()).transpose().context("N must be a whole number")?.unwrap_or(1_000_000);
            memory(&dir, tasks)
        }
        other => bail!("unknown xtask '{other}': use build-tasks, demo, test, bench or memory"),
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
