//! Checks of the sandbox's module loader against arbitrary bytes.
//!
//! Shared by the fuzz target (`cargo +nightly fuzz run wasm_module`) and the stable replay test
//! `crates/sandbox/tests/wasm_corpus.rs`, which includes this file; it uses only
//! `idlegrid_sandbox`. A check panics when it finds a bug; a hang is caught by libFuzzer's
//! `-timeout` (and by the test runner's timeout on stable).

use idlegrid_sandbox::{
    NoEvents, Sandbox, SandboxConfig, TaskControl, TaskFailure, TaskInput, TaskLimits, TaskOutcome,
};

/// A sandbox for checking many modules in one process.
pub fn checking_sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig { module_cache_entries: 8, ..SandboxConfig::default() }).expect("the sandbox starts")
}

/// Tight limits, so that a module that happens to be valid runs briefly.
pub fn checking_limits() -> TaskLimits {
    TaskLimits {
        memory_bytes_max: 32 << 20,
        cpu_time_max: std::time::Duration::from_millis(50),
        result_bytes_max: 1 << 20,
        status_bytes_max: 64 << 10,
        checkpoint_bytes_max: 1 << 20,
        output_bytes_max: 4 << 10,
    }
}

/// What became of some bytes given to the loader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Refused before running, with a reason about the module.
    Refused,
    /// Accepted and run to an end within the limits.
    Ran,
}

/// Give `data` to the loader as a task's executable: it is refused with a reason about the
/// module, or, if it is a valid task module, it runs under tight limits to an outcome that
/// respects them. Never a panic, never an internal error of the sandbox.
pub fn check_module(sandbox: &Sandbox, data: &[u8]) -> Verdict {
    let compiled = match sandbox.compile(data) {
        Ok(compiled) => compiled,
        Err(TaskFailure::InvalidModule(reason)) => {
            assert!(!reason.is_empty(), "a refusal without a reason");
            return Verdict::Refused;
        }
        Err(TaskFailure::ForbiddenImport { module, name }) => {
            assert!(
                module != "idlegrid" || !idlegrid_sandbox_allowed(&name),
                "the runtime's own import {module}::{name} was refused"
            );
            return Verdict::Refused;
        }
        Err(TaskFailure::MissingEntryPoint) => return Verdict::Refused,
        Err(other) => panic!("the loader failed for a reason that is not about the module: {other:?}"),
    };
    // Compiling the same bytes again finds the cached module.
    let again = sandbox.compile(data).expect("a module that compiled once compiles again");
    assert_eq!(again.sha256, compiled.sha256);
    let limits = checking_limits();
    let input = TaskInput { params: b"fuzz".to_vec(), ..TaskInput::default() };
    let run = sandbox.run(&compiled, input, &limits, &TaskControl::new(), Box::new(NoEvents));
    match &run.outcome {
        TaskOutcome::Failed(TaskFailure::Internal(reason)) => panic!("the sandbox failed on a valid module: {reason}"),
        TaskOutcome::Killed | TaskOutcome::Suspended => panic!("nobody stopped the task, yet: {:?}", run.outcome),
        TaskOutcome::Succeeded(result) => assert!(result.len() <= limits.result_bytes_max, "a result over its limit"),
        TaskOutcome::Failed(_) => {}
    }
    assert!(run.output.len() <= limits.output_bytes_max, "output kept past its cap");
    if let Some(checkpoint) = &run.checkpoint {
        assert!(checkpoint.len() <= limits.checkpoint_bytes_max, "a checkpoint over its limit");
    }
    Verdict::Ran
}

fn idlegrid_sandbox_allowed(name: &str) -> bool {
    [
        "params_len",
        "params_read",
        "element_len",
        "element_read",
        "checkpoint_len",
        "checkpoint_read",
        "checkpoint_save",
        "status_set",
        "result_set",
        "fail",
        "control",
    ]
    .contains(&name)
}
