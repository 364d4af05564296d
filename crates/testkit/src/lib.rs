//! Helpers shared by the tests, benchmarks and `xtask`: building the example tasks to
//! WebAssembly (the Rust ones with cargo, the C ones with clang: `c_tasks`), and locating them;
//! with features, hand-written hostile modules (`hostile`) and a fault-injecting HTTP proxy
//! (`chaos`).

mod c_tasks;

#[cfg(feature = "chaos")]
pub mod chaos;
#[cfg(feature = "hostile")]
pub mod hostile;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub use c_tasks::{C_INSTALL_HINT, build_c_tasks, c_task, c_task_bytes, c_tasks_dir};

/// The wasm target tasks are built for.
pub const WASM_TARGET: &str = "wasm32-wasip1";

/// The repository's root folder.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the workspace root exists")
}

/// Folder where `build_example_tasks` puts the `.wasm` files.
pub fn example_tasks_dir() -> PathBuf {
    workspace_root().join("examples/tasks/target").join(WASM_TARGET).join("release")
}

/// The cargo command that builds every example task (release, wasm32-wasip1), in the
/// examples' own workspace and target folder, whatever the caller's target and flags.
fn example_tasks_build() -> Command {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(cargo);
    command
        .current_dir(root.join("examples/tasks"))
        .args(["build", "--release", "--target", WASM_TARGET, "--target-dir"])
        .arg(root.join("examples/tasks/target"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    command
}

fn missing_target_hint(stderr: &str) -> String {
    if stderr.contains(WASM_TARGET) {
        format!("\nhint: install the target with `rustup target add {WASM_TARGET}` (or run `cargo xtask build-tasks`)")
    } else {
        String::new()
    }
}

/// Build every example task (release, wasm32-wasip1). Cargo's own lock makes concurrent calls
/// from parallel test processes safe; within a process the build runs once.
pub fn build_example_tasks() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let output = example_tasks_build()
                .arg("--quiet")
                .output()
                .map_err(|e| format!("cannot run cargo to build the example tasks: {e}"))?;
            if !output.status.success() {
                let stderr = String::from_utf8_lossy(&output.stderr);
                return Err(format!("building the example tasks failed:\n{stderr}{}", missing_target_hint(&stderr)));
            }
            Ok(example_tasks_dir())
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

/// The same build with cargo's progress on the terminal (a cold build takes minutes), for
/// `xtask`.
pub fn build_example_tasks_showing_progress() -> anyhow::Result<PathBuf> {
    let status = example_tasks_build()
        .status()
        .map_err(|e| anyhow::anyhow!("cannot run cargo to build the example tasks: {e}"))?;
    if !status.success() {
        anyhow::bail!("building the example tasks failed ({status}): cargo's messages above say why");
    }
    Ok(example_tasks_dir())
}

/// The example kernels that also build as programs for this machine (their native twins).
pub const NATIVE_KERNELS: &[&str] = &["pi", "mandelbrot", "matmul", "hash"];

/// Build the native twins of [`NATIVE_KERNELS`] (release, for this machine) in the examples'
/// own target folder and return the folder with the programs.
pub fn build_native_kernels() -> anyhow::Result<PathBuf> {
    let root = workspace_root();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut command = Command::new(cargo);
    command
        .current_dir(root.join("examples/tasks"))
        .args(["build", "--release", "--quiet", "--target-dir"])
        .arg(root.join("examples/tasks/target"))
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    for kernel in NATIVE_KERNELS {
        command.args(["-p", kernel]);
    }
    let output = command.output().map_err(|e| anyhow::anyhow!("cannot run cargo to build the native kernels: {e}"))?;
    if !output.status.success() {
        anyhow::bail!("building the native kernels failed:\n{}", String::from_utf8_lossy(&output.stderr));
    }
    Ok(root.join("examples/tasks/target/release"))
}

/// Path of one example task's module, building the examples first if needed.
pub fn example_task(name: &str) -> PathBuf {
    match build_example_tasks() {
        Ok(dir) => dir.join(format!("{name}.wasm")),
        Err(error) => panic!("{error:#}"),
    }
}

/// Bytes of one example task's module.
pub fn example_task_bytes(name: &str) -> Vec<u8> {
    let path = example_task(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
