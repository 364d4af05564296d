//! The example tasks written in C (`examples/c`, over the header `sdk/c/idlegrid.h`), built to
//! WebAssembly with clang's `wasm32-wasi` target and WASI libc. The compiler is `clang` unless
//! `WASI_CC` names another; `WASI_SYSROOT` points it at a WASI sysroot (wasi-sdk) where the
//! system's clang does not know one.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::workspace_root;

/// How to get a C compiler for WASI on Debian, for error messages.
pub const C_INSTALL_HINT: &str = "install clang for WebAssembly with `apt-get install clang lld wasi-libc libclang-rt-dev-wasm32` \
     (Debian), or point WASI_CC at wasi-sdk's clang and WASI_SYSROOT at its sysroot";

/// The example C tasks, by file stem.
const C_TASKS: [&str; 2] = ["pi", "wordcount"];

/// Folder where [`build_c_tasks`] puts the `.wasm` files.
pub fn c_tasks_dir() -> PathBuf {
    workspace_root().join("examples/c/target")
}

fn compiler() -> String {
    std::env::var("WASI_CC").unwrap_or_else(|_| "clang".to_string())
}

/// Compile one C file to `output`, through a temporary file renamed into place, so that test
/// processes building at the same time never read a half-written module.
fn compile(source: &Path, output: &Path) -> Result<(), String> {
    let root = workspace_root();
    let partial = output.with_extension(format!("wasm.{}.partial", std::process::id()));
    let mut command = Command::new(compiler());
    command
        .args(["--target=wasm32-wasi", "-O2", "-std=c11", "-Wall", "-Wextra", "-Werror", "-I"])
        .arg(root.join("sdk/c"))
        .arg("-o")
        .arg(&partial)
        .arg(source);
    if let Ok(sysroot) = std::env::var("WASI_SYSROOT") {
        command.arg(format!("--sysroot={sysroot}"));
    }
    let result = command
        .output()
        .map_err(|e| format!("cannot run {} to build the C tasks: {e}\n{C_INSTALL_HINT}", compiler()))?;
    if !result.status.success() {
        let _ = std::fs::remove_file(&partial);
        let stderr = String::from_utf8_lossy(&result.stderr);
        // A compiler without the target, the WASI headers or the runtime library says so here.
        let toolchain = [
            "file not found",
            "unable to create target",
            "unknown target",
            "wasm-ld",
            "libclang_rt",
            "cannot open",
            "unable to find library",
        ]
        .iter()
        .any(|needle| stderr.contains(needle));
        let hint = if toolchain { format!("\n{C_INSTALL_HINT}") } else { String::new() };
        return Err(format!("building {} failed:\n{stderr}{hint}", source.display()));
    }
    std::fs::rename(&partial, output).map_err(|e| format!("cannot move {} into place: {e}", output.display()))
}

/// Build every example C task (once per process). Fails with the install command when no
/// clang that targets WASI is found.
pub fn build_c_tasks() -> anyhow::Result<PathBuf> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let dir = c_tasks_dir();
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            for name in C_TASKS {
                let source = workspace_root().join("examples/c").join(format!("{name}.c"));
                compile(&source, &dir.join(format!("{name}.wasm")))?;
            }
            Ok(dir)
        })
        .clone()
        .map_err(|e| anyhow::anyhow!(e))
}

/// Path of one example C task's module, building the C examples first.
pub fn c_task(name: &str) -> PathBuf {
    match build_c_tasks() {
        Ok(dir) => dir.join(format!("{name}.wasm")),
        Err(error) => panic!("{error:#}"),
    }
}

/// Bytes of one example C task's module.
pub fn c_task_bytes(name: &str) -> Vec<u8> {
    let path = c_task(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}
