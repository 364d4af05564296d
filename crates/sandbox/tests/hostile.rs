//! Hostile task modules (issue 7, P3.6): each does one bad thing on purpose. Every one must be
//! contained, end with a clear reason, and leave the sandbox running the next normal task
//! correctly; repeating the memory bomb must not grow the process.
//!
//! The modules are hand-written WebAssembly text (`idlegrid_testkit::hostile`), so that each
//! does exactly what it says with no language runtime in between. The tests of
//! `tests/sandbox.rs` cover the Rust-built misbehaving task; these extend them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use idlegrid_sandbox::{
    NoEvents, Sandbox, SandboxConfig, TaskControl, TaskEvents, TaskFailure, TaskInput, TaskLimits, TaskOutcome, TaskRun,
};
use idlegrid_testkit::example_task_bytes;
use idlegrid_testkit::hostile::{self, wasm};

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig::default()).unwrap()
}

fn run_module(sandbox: &Sandbox, module: &[u8], limits: &TaskLimits) -> TaskRun {
    run_with(sandbox, module, limits, &TaskControl::new(), Box::new(NoEvents))
}

fn run_with(
    sandbox: &Sandbox,
    module: &[u8],
    limits: &TaskLimits,
    control: &TaskControl,
    events: Box<dyn TaskEvents>,
) -> TaskRun {
    let compiled = sandbox.compile(module).unwrap_or_else(|e| panic!("the module should compile: {e}"));
    sandbox.run(&compiled, TaskInput::default(), limits, control, events)
}

fn failure(run: &TaskRun) -> &TaskFailure {
    match &run.outcome {
        TaskOutcome::Failed(failure) => failure,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// The sandbox still runs a normal task, and gets its result right.
fn assert_still_healthy(sandbox: &Sandbox, after: &str) {
    let compiled = sandbox.compile(&example_task_bytes("noop")).unwrap();
    let params = format!("still alive after {after}");
    let input = TaskInput { params: params.clone().into_bytes(), ..TaskInput::default() };
    let run = sandbox.run(&compiled, input, &TaskLimits::default(), &TaskControl::new(), Box::new(NoEvents));
    assert_eq!(run.outcome, TaskOutcome::Succeeded(params.into_bytes()), "the sandbox is broken after {after}");
}

fn limits_quick() -> TaskLimits {
    TaskLimits { memory_bytes_max: 64 << 20, cpu_time_max: Duration::from_millis(500), ..TaskLimits::default() }
}

/// Resident memory of this process (nextest runs each test in its own process).
fn rss_bytes() -> u64 {
    status_field("VmRSS:")
}

fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name} in /proc/self/status"));
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn a_memory_bomb_is_stopped_at_the_cap_and_repeating_it_does_not_grow_the_process() {
    let sandbox = sandbox();
    let bomb = wasm(hostile::MEMORY_BOMB);
    let cap: u64 = 128 << 20;
    let limits = TaskLimits { memory_bytes_max: cap, cpu_time_max: Duration::from_secs(60), ..TaskLimits::default() };
    let before = rss_bytes();
    let mut after_second = 0;
    for round in 1..=20 {
        let run = run_module(&sandbox, &bomb, &limits);
        assert_eq!(failure(&run), &TaskFailure::OutOfMemory { limit_bytes: cap }, "round {round}");
        if round == 2 {
            after_second = rss_bytes();
        }
    }
    let after_last = rss_bytes();
    let peak = status_field("VmHWM:");
    // The bomb wrote to every page it got: without the cap it would reach 4 GiB.
    assert!(peak < before + cap + (256 << 20), "peak RSS {peak} with a cap of {cap} (RSS before: {before})");
    // Each run's memory goes back when it ends: 18 more bombs leave the process as it was.
    let growth = after_last.saturating_sub(after_second);
    assert!(growth < 64 << 20, "RSS grew by {growth} bytes over 18 memory bombs ({after_second} -> {after_last})");
    assert_still_healthy(&sandbox, "20 memory bombs");
}

#[test]
fn a_module_that_ignores_refused_growth_is_ended_by_its_cpu_limit() {
    let sandbox = sandbox();
    let run = run_module(&sandbox, &wasm(hostile::MEMORY_BOMB_STUBBORN), &limits_quick());
    assert_eq!(failure(&run), &TaskFailure::CpuTimeExceeded { limit_ms: 500 });
    assert_still_healthy(&sandbox, "a stubborn memory bomb");
}

#[test]
fn an_initial_memory_over_the_cap_is_refused_at_instantiation() {
    let sandbox = sandbox();
    let run = run_module(&sandbox, &wasm(hostile::HUGE_INITIAL_MEMORY), &limits_quick());
    assert_eq!(failure(&run), &TaskFailure::OutOfMemory { limit_bytes: 64 << 20 });
    assert_still_healthy(&sandbox, "a 512 MiB initial memory");
}

#[test]
fn a_table_bomb_is_refused_more_entries() {
    let sandbox = sandbox();
    let run = run_module(&sandbox, &wasm(hostile::TABLE_BOMB), &limits_quick());
    // Growth is refused past a million entries; the module then traps on purpose.
    let TaskFailure::Trap(reason) = failure(&run) else { panic!("{:?}", run.outcome) };
    assert!(reason.contains("unreachable"), "{reason}");
    assert_still_healthy(&sandbox, "a table bomb");
}

#[test]
fn a_loop_in_the_start_function_is_ended_by_the_cpu_limit_and_can_be_killed() {
    let sandbox = sandbox();
    let module = wasm(hostile::START_LOOP);
    let run = run_module(&sandbox, &module, &limits_quick());
    assert_eq!(failure(&run), &TaskFailure::CpuTimeExceeded { limit_ms: 500 });
    assert!(run.cpu_time >= Duration::from_millis(500), "{:?}", run.cpu_time);

    // The engine can also end it at will while it is still being instantiated.
    let control = TaskControl::new();
    let killer = {
        let control = control.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            control.kill();
        })
    };
    let limits = TaskLimits { cpu_time_max: Duration::from_secs(600), ..limits_quick() };
    let run = run_with(&sandbox, &module, &limits, &control, Box::new(NoEvents));
    killer.join().unwrap();
    assert_eq!(run.outcome, TaskOutcome::Killed);
    assert_still_healthy(&sandbox, "a start function that never returns");
}

/// Runs on another thread; `None` if the run did not end within `deadline` (a hang).
fn run_in_time(
    sandbox: &Sandbox,
    module: Vec<u8>,
    limits: TaskLimits,
    control: TaskControl,
    deadline: Duration,
) -> Option<TaskRun> {
    let (tx, rx) = std::sync::mpsc::channel();
    let sandbox = sandbox.clone();
    std::thread::spawn(move || {
        let _ = tx.send(run_with(&sandbox, &module, &limits, &control, Box::new(NoEvents)));
    });
    rx.recv_timeout(deadline).ok()
}

#[test]
fn a_sleep_without_end_does_not_hold_the_thread() {
    let sandbox = sandbox();
    let run = run_in_time(
        &sandbox,
        wasm(hostile::SLEEP_FOREVER),
        limits_quick(),
        TaskControl::new(),
        Duration::from_secs(60),
    )
    .expect("a task asking to sleep for centuries must not hold its thread");
    // Every subscription is answered at once: errno 0, three events.
    assert_eq!(run.outcome, TaskOutcome::Succeeded([0u32.to_le_bytes(), 3u32.to_le_bytes()].concat()));
    assert_still_healthy(&sandbox, "a sleep without end");
}

#[test]
fn sleeping_in_a_loop_is_ended_by_the_cpu_limit_and_can_be_killed() {
    let sandbox = sandbox();
    let run =
        run_in_time(&sandbox, wasm(hostile::SLEEP_LOOP), limits_quick(), TaskControl::new(), Duration::from_secs(60))
            .expect("a task that sleeps in a loop ends");
    assert_eq!(failure(&run), &TaskFailure::CpuTimeExceeded { limit_ms: 500 });

    let control = TaskControl::new();
    let limits = TaskLimits { cpu_time_max: Duration::from_secs(600), ..limits_quick() };
    let (tx, rx) = std::sync::mpsc::channel();
    {
        let (sandbox, control) = (sandbox.clone(), control.clone());
        std::thread::spawn(move || {
            let _ = tx.send(run_with(&sandbox, &wasm(hostile::SLEEP_LOOP), &limits, &control, Box::new(NoEvents)));
        });
    }
    std::thread::sleep(Duration::from_millis(200));
    control.kill();
    let run = rx.recv_timeout(Duration::from_secs(60)).expect("a kill reaches a sleeping task");
    assert_eq!(run.outcome, TaskOutcome::Killed);
    assert_still_healthy(&sandbox, "sleeping in a loop");
}

#[test]
fn endless_recursion_traps_on_the_stack_limit() {
    let sandbox = sandbox();
    let run = run_module(&sandbox, &wasm(hostile::DEEP_RECURSION), &limits_quick());
    let TaskFailure::Trap(reason) = failure(&run) else { panic!("{:?}", run.outcome) };
    assert!(reason.contains("call stack exhausted"), "{reason}");
    assert_still_healthy(&sandbox, "a stack overflow");
}

#[test]
fn endless_recursion_through_host_calls_traps_without_overflowing_the_host_stack() {
    // The deepest host calls run with the WebAssembly stack nearly full; on a worker thread
    // with a default (2 MiB) stack, as the engine's are, the host's frames must still fit.
    let sandbox = sandbox();
    let module = wasm(hostile::DEEP_RECURSION_WITH_HOST_CALLS);
    let limits = limits_quick();
    let on_worker = sandbox.clone();
    let run = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || run_module(&on_worker, &module, &limits))
        .unwrap()
        .join()
        .expect("the task's thread survived");
    let TaskFailure::Trap(reason) = failure(&run) else { panic!("{:?}", run.outcome) };
    assert!(reason.contains("call stack exhausted"), "{reason}");
    assert!(!run.output.is_empty() && run.output.iter().all(|b| *b == b'.'), "it wrote at every level");
    assert_still_healthy(&sandbox, "a stack overflow through host calls");
}

#[test]
fn socket_imports_are_refused_before_the_module_runs_and_name_the_import() {
    let sandbox = sandbox();
    for name in ["sock_accept", "sock_recv", "sock_send", "sock_shutdown"] {
        let error = sandbox.compile(&wasm(&hostile::socket_import(name))).unwrap_err();
        assert_eq!(
            error,
            TaskFailure::ForbiddenImport { module: "wasi_snapshot_preview1".into(), name: name.into() },
            "{name}"
        );
        assert!(error.to_string().contains(&format!("'wasi_snapshot_preview1::{name}'")), "{error}");
    }
    assert_still_healthy(&sandbox, "refusing socket imports");
}

#[test]
fn imports_the_runtime_does_not_provide_are_refused_before_the_module_runs() {
    let sandbox = sandbox();
    let refused = |wat: &str| sandbox.compile(&wasm(wat)).unwrap_err();
    // Not functions: memory, globals and tables from the host are never given.
    assert_eq!(
        refused(r#"(module (import "wasi_snapshot_preview1" "memory" (memory 1)) (func (export "_start")))"#),
        TaskFailure::ForbiddenImport { module: "wasi_snapshot_preview1".into(), name: "memory".into() }
    );
    assert_eq!(
        refused(r#"(module (import "idlegrid" "key" (global i32)) (func (export "_start")))"#),
        TaskFailure::ForbiddenImport { module: "idlegrid".into(), name: "key".into() }
    );
    // A runtime function that does not exist.
    assert_eq!(
        refused(
            r#"(module (import "idlegrid" "open_file" (func (param i32 i32) (result i32))) (func (export "_start")))"#
        ),
        TaskFailure::ForbiddenImport { module: "idlegrid".into(), name: "open_file".into() }
    );
    // Host functions of other runtimes.
    assert_eq!(
        refused(r#"(module (import "wasi:sockets/tcp" "connect" (func)) (func (export "_start")))"#),
        TaskFailure::ForbiddenImport { module: "wasi:sockets/tcp".into(), name: "connect".into() }
    );
    // Names WASI preview 1 does not have, and real ones with the wrong signature, cannot be
    // linked: refused, naming the import.
    for (wat, name) in [
        (
            r#"(module (import "wasi_snapshot_preview1" "fd_open" (func (param i32) (result i32))) (func (export "_start")))"#,
            "fd_open",
        ),
        (
            r#"(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32))) (func (export "_start")))"#,
            "fd_write",
        ),
        (r#"(module (import "idlegrid" "result_set" (func (param i64))) (func (export "_start")))"#, "result_set"),
    ] {
        let error = refused(wat);
        assert!(matches!(error, TaskFailure::InvalidModule(_)), "{name}: {error:?}");
        assert!(error.to_string().contains(name), "{name}: {error}");
    }
    assert_still_healthy(&sandbox, "refusing imports");
}

#[test]
fn trying_every_file_descriptor_finds_only_stdout_and_stderr() {
    let sandbox = sandbox();
    let run = run_module(&sandbox, &wasm(hostile::FD_SCAN), &limits_quick());
    let TaskOutcome::Succeeded(result) = &run.outcome else { panic!("{:?}", run.outcome) };
    if let Err(found) = hostile::fd_scan_is_contained(result) {
        panic!("the task reached something beyond its own output: {found}");
    }
    assert_eq!(run.output, b"xx", "one byte each to stdout and stderr, nowhere else");
    assert_still_healthy(&sandbox, "a file descriptor scan");
}

#[test]
fn wild_pointers_to_the_runtime_are_refused_without_touching_host_memory() {
    let sandbox = sandbox();
    let compiled = sandbox.compile(&wasm(hostile::WILD_POINTERS)).unwrap();
    let recorder = Recorder::default();
    let run =
        sandbox.run(&compiled, TaskInput::default(), &limits_quick(), &TaskControl::new(), Box::new(recorder.clone()));
    assert_eq!(run.outcome, TaskOutcome::Succeeded(hostile::wild_pointers_expected()));
    let (statuses, checkpoints) = recorder.0.lock().unwrap().clone();
    assert_eq!(statuses, vec![(4, 0.0)], "only the valid status arrived, its NaN progress made 0");
    assert!(checkpoints.is_empty());
    assert_still_healthy(&sandbox, "wild pointers");
}

#[test]
fn huge_statuses_checkpoints_and_results_are_refused_with_a_reason() {
    let sandbox = sandbox();
    let compiled = sandbox.compile(&wasm(hostile::HUGE_PAYLOADS)).unwrap();
    let recorder = Recorder::default();
    let limits = TaskLimits::default();
    let run = sandbox.run(&compiled, TaskInput::default(), &limits, &TaskControl::new(), Box::new(recorder.clone()));
    let expected = format!(
        "the result of {} bytes exceeds the job's limit of {} bytes",
        hostile::HUGE_PAYLOAD_BYTES,
        limits.result_bytes_max
    );
    assert_eq!(failure(&run), &TaskFailure::Reported(expected));
    assert_eq!(run.output, hostile::huge_payloads_expected_output(), "TOO_LARGE three times, then ALREADY_FINISHED");
    let (statuses, checkpoints) = recorder.0.lock().unwrap().clone();
    assert!(statuses.is_empty() && checkpoints.is_empty(), "nothing over its limit reached the engine");
    assert!(run.checkpoint.is_none());
    assert_still_healthy(&sandbox, "huge payloads");
}

#[test]
fn a_flood_of_output_is_capped_and_ended_by_the_cpu_limit() {
    let sandbox = sandbox();
    let limits = TaskLimits { output_bytes_max: 10_000, ..limits_quick() };
    let started = Instant::now();
    let run = run_module(&sandbox, &wasm(hostile::OUTPUT_FLOOD), &limits);
    assert_eq!(failure(&run), &TaskFailure::CpuTimeExceeded { limit_ms: 500 });
    assert_eq!(run.output.len(), 10_000, "only the first bytes are kept");
    assert!(started.elapsed() < Duration::from_secs(120), "it ended at all");
    assert_still_healthy(&sandbox, "an output flood");
}

#[test]
fn one_sandbox_survives_every_hostile_module_in_turn() {
    let sandbox = sandbox();
    let limits = limits_quick();
    let modules = [
        ("memory bomb", hostile::MEMORY_BOMB),
        ("start loop", hostile::START_LOOP),
        ("recursion", hostile::DEEP_RECURSION),
        ("fd scan", hostile::FD_SCAN),
        ("wild pointers", hostile::WILD_POINTERS),
        ("table bomb", hostile::TABLE_BOMB),
        ("sleep", hostile::SLEEP_FOREVER),
    ];
    for round in 0..2 {
        for (name, wat) in modules {
            let run = run_module(&sandbox, &wasm(wat), &limits);
            assert!(
                !matches!(
                    run.outcome,
                    TaskOutcome::Failed(TaskFailure::Internal(_)) | TaskOutcome::Killed | TaskOutcome::Suspended
                ),
                "{name} (round {round}): {:?}",
                run.outcome
            );
            assert_still_healthy(&sandbox, name);
        }
    }
}

/// Statuses (size, progress) and checkpoints, in the order received.
type Recorded = (Vec<(usize, f32)>, Vec<Vec<u8>>);

/// Records statuses and checkpoints as the engine would receive them.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Recorded>>);

impl TaskEvents for Recorder {
    fn on_status(&mut self, data: &[u8], progress: f32) {
        self.0.lock().unwrap().0.push((data.len(), progress));
    }
    fn on_checkpoint(&mut self, data: &[u8]) -> Result<(), String> {
        self.0.lock().unwrap().1.push(data.to_vec());
        Ok(())
    }
}
