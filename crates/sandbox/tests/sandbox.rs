//! The sandbox against real task modules built from examples/tasks.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use idlegrid_sandbox::{
    NoEvents, Sandbox, SandboxConfig, TaskControl, TaskElement, TaskEvents, TaskFailure, TaskInput, TaskLimits,
    TaskOutcome, TaskRun,
};
use idlegrid_testkit::example_task_bytes;

fn sandbox() -> Sandbox {
    Sandbox::new(SandboxConfig::default()).unwrap()
}

fn run_task(sandbox: &Sandbox, task: &str, params: &str, limits: TaskLimits) -> TaskRun {
    let compiled = sandbox.compile(&example_task_bytes(task)).unwrap();
    let input = TaskInput { params: params.as_bytes().to_vec(), ..TaskInput::default() };
    sandbox.run(&compiled, input, &limits, &TaskControl::new(), Box::new(NoEvents))
}

fn failure(run: &TaskRun) -> &TaskFailure {
    match &run.outcome {
        TaskOutcome::Failed(failure) => failure,
        other => panic!("expected a failure, got {other:?}; output: {}", String::from_utf8_lossy(&run.output)),
    }
}

#[test]
fn echo_task_returns_its_parameters() {
    let sandbox = sandbox();
    let run = run_task(&sandbox, "noop", "hello 42", TaskLimits::default());
    assert_eq!(run.outcome, TaskOutcome::Succeeded(b"hello 42".to_vec()));
}

#[test]
fn pi_task_is_deterministic_and_close_to_pi() {
    let sandbox = sandbox();
    let a = run_task(&sandbox, "pi", "samples=200000 seed=7", TaskLimits::default());
    let b = run_task(&sandbox, "pi", "samples=200000 seed=7", TaskLimits::default());
    let TaskOutcome::Succeeded(bytes) = &a.outcome else { panic!("{:?}", a.outcome) };
    assert_eq!(a.outcome, b.outcome, "same seed, same answer");
    let text = String::from_utf8(bytes.clone()).unwrap();
    let (inside, total) = text.split_once(' ').unwrap();
    let estimate = 4.0 * inside.parse::<f64>().unwrap() / total.parse::<f64>().unwrap();
    assert!((estimate - std::f64::consts::PI).abs() < 0.02, "estimate {estimate}");
}

#[test]
fn wordcount_reads_a_data_element_from_memory_and_from_a_file() {
    let sandbox = sandbox();
    let compiled = sandbox.compile(&example_task_bytes("wordcount")).unwrap();
    let text = "the quick brown fox\njumps over\nthe lazy dog\n".repeat(5000);
    let mut elements = BTreeMap::new();
    elements.insert("text".to_string(), TaskElement::Memory(Arc::from(text.as_bytes())));
    let input = TaskInput { elements, ..TaskInput::default() };
    let run = sandbox.run(&compiled, input, &TaskLimits::default(), &TaskControl::new(), Box::new(NoEvents));
    let expected = format!("{} {} {}", 15000, 45000, text.len());
    assert_eq!(run.outcome, TaskOutcome::Succeeded(expected.clone().into_bytes()));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("text");
    std::fs::write(&path, &text).unwrap();
    let mut elements = BTreeMap::new();
    elements.insert("text".to_string(), TaskElement::open(&path).unwrap());
    let input = TaskInput { elements, ..TaskInput::default() };
    let run = sandbox.run(&compiled, input, &TaskLimits::default(), &TaskControl::new(), Box::new(NoEvents));
    assert_eq!(run.outcome, TaskOutcome::Succeeded(expected.into_bytes()));
}

#[test]
fn a_missing_data_element_fails_with_its_name() {
    let run = run_task(&sandbox(), "misbehave", "mode=missing-element", TaskLimits::default());
    let text = failure(&run).to_string();
    assert!(text.contains("does-not-exist") && text.contains("not found"), "{text}");
}

#[test]
fn a_trap_fails_the_task_and_keeps_the_panic_message() {
    let run = run_task(&sandbox(), "misbehave", "mode=trap", TaskLimits::default());
    assert!(matches!(failure(&run), TaskFailure::Trap(_)), "{:?}", run.outcome);
    assert!(String::from_utf8_lossy(&run.output).contains("index out of bounds"));
}

#[test]
fn memory_is_capped() {
    let limits = TaskLimits { memory_bytes_max: 64 << 20, ..TaskLimits::default() };
    let run = run_task(&sandbox(), "misbehave", "mode=oom", limits);
    assert_eq!(failure(&run), &TaskFailure::OutOfMemory { limit_bytes: 64 << 20 });
}

#[test]
fn cpu_time_is_capped() {
    let limits = TaskLimits { cpu_time_max: Duration::from_millis(300), ..TaskLimits::default() };
    let run = run_task(&sandbox(), "misbehave", "mode=loop", limits);
    assert_eq!(failure(&run), &TaskFailure::CpuTimeExceeded { limit_ms: 300 });
    assert!(run.cpu_time >= Duration::from_millis(300));
}

#[test]
fn exit_codes_and_missing_results_are_failures() {
    let sandbox = sandbox();
    assert_eq!(failure(&run_task(&sandbox, "misbehave", "mode=exit", TaskLimits::default())), &TaskFailure::Exit(3));
    assert_eq!(
        failure(&run_task(&sandbox, "misbehave", "mode=noresult", TaskLimits::default())),
        &TaskFailure::NoResult
    );
    assert_eq!(
        failure(&run_task(&sandbox, "misbehave", "mode=fail", TaskLimits::default())),
        &TaskFailure::Reported("the input is not what this task expects".into())
    );
}

#[test]
fn results_over_the_limit_fail() {
    let limits = TaskLimits { result_bytes_max: 1000, ..TaskLimits::default() };
    let run = run_task(&sandbox(), "misbehave", "mode=big-result bytes=5000", limits.clone());
    assert!(failure(&run).to_string().contains("exceeds the job's limit of 1000 bytes"), "{:?}", run.outcome);
    let run = run_task(&sandbox(), "misbehave", "mode=big-result bytes=1000", limits);
    assert_eq!(run.outcome, TaskOutcome::Succeeded(vec![7u8; 1000]));
}

#[test]
fn the_task_cannot_see_files_or_environment() {
    let run = run_task(&sandbox(), "misbehave", "mode=read-file", TaskLimits::default());
    let TaskOutcome::Succeeded(text) = &run.outcome else { panic!("{:?}", run.outcome) };
    assert!(String::from_utf8_lossy(text).starts_with("contained:"), "{}", String::from_utf8_lossy(text));
    let run = run_task(&sandbox(), "misbehave", "mode=read-env", TaskLimits::default());
    assert_eq!(run.outcome, TaskOutcome::Succeeded(b"env=0 dir_entries=0".to_vec()));
}

#[test]
fn invalid_modules_are_refused_with_a_reason() {
    let sandbox = sandbox();
    let err = sandbox.compile(b"this is not wasm").unwrap_err();
    assert!(matches!(err, TaskFailure::InvalidModule(_)), "{err:?}");
    // A valid module that imports something the sandbox does not provide.
    let wat = br#"(module (import "env" "open_socket" (func)) (func (export "_start")))"#;
    let wasm = wat_to_wasm(wat);
    assert_eq!(
        sandbox.compile(&wasm).unwrap_err(),
        TaskFailure::ForbiddenImport { module: "env".into(), name: "open_socket".into() }
    );
    let wasm = wat_to_wasm(br#"(module (func (export "main")))"#);
    assert_eq!(sandbox.compile(&wasm).unwrap_err(), TaskFailure::MissingEntryPoint);
}

fn wat_to_wasm(text: &[u8]) -> Vec<u8> {
    wat::parse_bytes(text).unwrap().into_owned()
}

/// Records checkpoints and statuses as the engine would.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<(Vec<Vec<u8>>, Vec<f32>)>>);

impl TaskEvents for Recorder {
    fn on_status(&mut self, _data: &[u8], progress: f32) {
        self.0.lock().unwrap().1.push(progress);
    }
    fn on_checkpoint(&mut self, data: &[u8]) -> Result<(), String> {
        self.0.lock().unwrap().0.push(data.to_vec());
        Ok(())
    }
}

#[test]
fn a_stop_request_suspends_with_a_checkpoint_and_the_task_resumes_from_it() {
    let sandbox = sandbox();
    let compiled = sandbox.compile(&example_task_bytes("misbehave")).unwrap();
    let control = TaskControl::new();
    let stopper = {
        let control = control.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(150));
            control.request_stop();
        })
    };
    let input = TaskInput { params: b"mode=stop-aware target=1000".to_vec(), ..TaskInput::default() };
    let recorder = Recorder::default();
    let run = sandbox.run(&compiled, input, &TaskLimits::default(), &control, Box::new(recorder.clone()));
    stopper.join().unwrap();
    assert_eq!(run.outcome, TaskOutcome::Suspended);
    let checkpoint = run.checkpoint.clone().expect("a checkpoint");
    let count = u64::from_le_bytes(checkpoint.clone().try_into().unwrap());
    assert!(count > 0 && count < 1000, "stopped part way: {count}");
    assert_eq!(recorder.0.lock().unwrap().0.last(), Some(&checkpoint));

    let input = TaskInput {
        params: b"mode=stop-aware target=1000".to_vec(),
        checkpoint: Some(checkpoint),
        ..TaskInput::default()
    };
    let run = sandbox.run(&compiled, input, &TaskLimits::default(), &TaskControl::new(), Box::new(NoEvents));
    assert_eq!(run.outcome, TaskOutcome::Succeeded(b"1000".to_vec()));
}

#[test]
fn a_task_that_ignores_stop_is_stopped_by_force_and_keeps_its_last_checkpoint() {
    let sandbox = sandbox();
    let compiled = sandbox.compile(&example_task_bytes("misbehave")).unwrap();
    let control = TaskControl::new();
    let killer = {
        let control = control.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            control.request_stop();
            std::thread::sleep(Duration::from_millis(100));
            let killed_at = Instant::now();
            control.kill();
            killed_at
        })
    };
    let input = TaskInput { params: b"mode=ignore-stop".to_vec(), ..TaskInput::default() };
    let run = sandbox.run(&compiled, input, &TaskLimits::default(), &control, Box::new(NoEvents));
    let ended = Instant::now();
    let killed_at = killer.join().unwrap();
    assert_eq!(run.outcome, TaskOutcome::Suspended);
    assert!(run.checkpoint.is_some());
    // The stop lands within a few epoch ticks; a generous bound keeps a loaded machine green.
    assert!(ended.duration_since(killed_at) < Duration::from_secs(2));
}

#[test]
fn kill_without_stop_request_reports_killed_and_the_sandbox_goes_on() {
    let sandbox = sandbox();
    let compiled = sandbox.compile(&example_task_bytes("misbehave")).unwrap();
    let control = TaskControl::new();
    let killer = {
        let control = control.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            control.kill();
        })
    };
    let input = TaskInput { params: b"mode=loop".to_vec(), ..TaskInput::default() };
    let run = sandbox.run(&compiled, input, &TaskLimits::default(), &control, Box::new(NoEvents));
    killer.join().unwrap();
    assert_eq!(run.outcome, TaskOutcome::Killed);
    let after = run_task(&sandbox, "noop", "still alive", TaskLimits::default());
    assert_eq!(after.outcome, TaskOutcome::Succeeded(b"still alive".to_vec()));
}

#[test]
fn progress_is_reported() {
    let sandbox = sandbox();
    let compiled = sandbox.compile(&example_task_bytes("pi")).unwrap();
    let recorder = Recorder::default();
    let input = TaskInput { params: b"samples=3000000 seed=1".to_vec(), ..TaskInput::default() };
    let run = sandbox.run(&compiled, input, &TaskLimits::default(), &TaskControl::new(), Box::new(recorder.clone()));
    assert!(matches!(run.outcome, TaskOutcome::Succeeded(_)));
    let (checkpoints, progress) = recorder.0.lock().unwrap().clone();
    assert_eq!(progress.len(), 3, "one per chunk of 2^20 samples");
    assert!(progress.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(progress.last(), Some(&1.0));
    assert_eq!(checkpoints.len(), 3);
}

/// Jiffies (1/100 s) of CPU one thread of this process has used.
fn thread_cpu_jiffies(tid: i64) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
    let rest = &text[text.rfind(')').unwrap() + 1..];
    let fields: Vec<u64> = rest.split_whitespace().skip(11).take(2).map(|f| f.parse().unwrap()).collect();
    fields[0] + fields[1]
}

#[test]
fn a_paused_task_uses_no_cpu_and_finishes_with_the_same_result() {
    let sandbox = sandbox();
    let compiled = sandbox.compile(&example_task_bytes("pi")).unwrap();
    let params = b"samples=60000000 seed=3".to_vec();
    let control = TaskControl::new();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let runner = {
        let (sandbox, compiled, control, params) = (sandbox.clone(), compiled.clone(), control.clone(), params.clone());
        std::thread::spawn(move || {
            tid_tx.send(unsafe { libc::gettid() } as i64).unwrap();
            let input = TaskInput { params, ..TaskInput::default() };
            sandbox.run(&compiled, input, &TaskLimits::default(), &control, Box::new(NoEvents))
        })
    };
    let tid = tid_rx.recv().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    control.pause();
    std::thread::sleep(Duration::from_millis(100)); // the pause lands within an epoch tick
    let before = thread_cpu_jiffies(tid);
    std::thread::sleep(Duration::from_millis(600));
    let during = thread_cpu_jiffies(tid) - before;
    assert!(control.is_paused());
    assert!(during <= 2, "a paused task used {during} jiffies of CPU");
    control.resume();
    let paused_run = runner.join().unwrap();
    let straight = sandbox.run(
        &compiled,
        TaskInput { params, ..TaskInput::default() },
        &TaskLimits::default(),
        &TaskControl::new(),
        Box::new(NoEvents),
    );
    assert!(matches!(straight.outcome, TaskOutcome::Succeeded(_)));
    assert_eq!(paused_run.outcome, straight.outcome);
}

#[test]
fn a_stop_request_wakes_a_paused_task_to_checkpoint() {
    let sandbox = sandbox();
    let compiled = sandbox.compile(&example_task_bytes("misbehave")).unwrap();
    let control = TaskControl::new();
    let runner = {
        let (sandbox, compiled, control) = (sandbox.clone(), compiled.clone(), control.clone());
        std::thread::spawn(move || {
            let input = TaskInput { params: b"mode=stop-aware target=100000".to_vec(), ..TaskInput::default() };
            sandbox.run(&compiled, input, &TaskLimits::default(), &control, Box::new(NoEvents))
        })
    };
    std::thread::sleep(Duration::from_millis(150));
    control.pause();
    std::thread::sleep(Duration::from_millis(100));
    control.request_stop();
    let run = runner.join().unwrap();
    assert_eq!(run.outcome, TaskOutcome::Suspended);
    assert!(run.checkpoint.is_some());
}

/// A task that divides zero by zero (read from a mutable global, so no compiler folds it) and
/// returns the NaN's eight bytes.
const ZERO_BY_ZERO: &str = r#"(module
  (import "idlegrid" "result_set" (func $result_set (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $zero (mut f64) (f64.const 0))
  (func (export "_start")
    (i64.store (i32.const 0) (i64.reinterpret_f64 (f64.div (global.get $zero) (global.get $zero))))
    (drop (call $result_set (i32.const 0) (i32.const 8)))))"#;

fn nan_bits(sandbox: &Sandbox, nans: idlegrid_sandbox::FloatNans) -> u64 {
    let compiled = sandbox.compile_for(&wat_to_wasm(ZERO_BY_ZERO.as_bytes()), nans).unwrap();
    let run =
        sandbox.run(&compiled, TaskInput::default(), &TaskLimits::default(), &TaskControl::new(), Box::new(NoEvents));
    match run.outcome {
        TaskOutcome::Succeeded(bytes) => u64::from_le_bytes(bytes.try_into().expect("eight bytes")),
        other => panic!("the task did not finish: {other:?}"),
    }
}

#[test]
fn nans_are_canonical_unless_the_job_asks_for_the_processors_own() {
    let sandbox = sandbox();
    // WebAssembly's canonical NaN: positive, quiet, empty payload; the same on every engine.
    assert_eq!(nan_bits(&sandbox, idlegrid_sandbox::FloatNans::Canonical), 0x7ff8_0000_0000_0000);
    let native = nan_bits(&sandbox, idlegrid_sandbox::FloatNans::Native);
    assert!(f64::from_bits(native).is_nan(), "{native:#x}");
    // x86's default NaN has its sign bit set: what canonicalisation exists to hide.
    #[cfg(target_arch = "x86_64")]
    assert_eq!(native, 0xfff8_0000_0000_0000);
    // Both modes are cached side by side: asking again gives the same answers.
    assert_eq!(nan_bits(&sandbox, idlegrid_sandbox::FloatNans::Canonical), 0x7ff8_0000_0000_0000);
    assert_eq!(nan_bits(&sandbox, idlegrid_sandbox::FloatNans::Native), native);
}
