//! `cargo xtask <command>`: what a fresh machine with only the Rust toolchain needs.
//!
//! - `build-tasks`: add the wasm32-wasip1 target if missing, build the example tasks.
//! - `demo [ARGS]`: build-tasks, then run `idlegrid demo` (release build).
//! - `test [ARGS]`: build-tasks, then run every test of the workspace (cargo-nextest if
//!   installed, cargo test otherwise).
//! - `bench [ARGS]`: build-tasks, then run `idlegrid bench` (release build).

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
    build_example_tasks()
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
        "demo" | "bench" => {
            let dir = build_tasks()?;
            let mut run_it = cargo();
            run_it.args(["run", "--release", "--quiet", "-p", "idlegrid-cli", "--", &command, "--tasks-dir"]).arg(&dir).args(&rest);
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
        other => bail!("unknown xtask '{other}': use build-tasks, demo, test or bench"),
    }
}
