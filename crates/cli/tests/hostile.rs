//! Hostile tasks through the whole system (issue 7, P3.6): a real server and a real engine
//! process run a job that mixes hostile task modules with normal tasks. Each hostile task
//! fails (or is contained) with its reason reported to the client, every normal task succeeds
//! with the right result, and the engine process stays up, within a memory bound, and runs the
//! next job.
//!
//! The sandbox tests (`crates/sandbox/tests/hostile.rs`) check each module in isolation; this
//! checks that the engine turns each outcome into the right report and survives them all.

mod common;

use std::collections::BTreeMap;

use common::*;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_testkit::hostile::{self, wasm};
use idlegrid_types::{ElementHash, ElementKind, FailureKind, JobProperties, TaskLimitsSpec, TaskState};

fn spec(index: u64, executable: ElementHash, params: &str) -> TaskSpec {
    TaskSpec { index, executable, data: BTreeMap::new(), params: params.as_bytes().to_vec(), priority: None }
}

/// Peak and current resident memory of a process, from /proc.
fn memory_of(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("no {name}"));
        line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// What the client must see for a hostile task.
enum Expect {
    Fails(FailureKind, &'static str),
    /// Contained: succeeds, and its result passes this check.
    Contained(fn(&[u8]) -> Result<(), String>),
}

const TASK_MEMORY_CAP: u64 = 128 << 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_tasks_fail_with_reasons_while_normal_tasks_succeed_and_the_engine_stays_up() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    // The engine process long-polls for 25 s at a time: it must not be taken for silent
    // while it waits (the in-process default of these tests is 3 s).
    config.coordinator.provider_silence_ms_max = 120_000;
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let url = server.url();
    let mut engine = spawn_engine(&url, &dir.path().join("engine"), 2);
    let client = connect(&url).await;

    let noop = upload_task(&client, "noop").await;
    let misbehave = upload_task(&client, "misbehave").await;
    let hostile_tasks: Vec<(&str, Vec<u8>, &str, Expect)> = vec![
        ("memory bomb", wasm(hostile::MEMORY_BOMB), "", Expect::Fails(FailureKind::OutOfMemory, "134217728 bytes")),
        (
            "start loop",
            wasm(hostile::START_LOOP),
            "",
            Expect::Fails(FailureKind::CpuTimeExceeded, "CPU-time limit of 1000 ms"),
        ),
        ("recursion", wasm(hostile::DEEP_RECURSION), "", Expect::Fails(FailureKind::Trap, "call stack exhausted")),
        (
            "recursion through host calls",
            wasm(hostile::DEEP_RECURSION_WITH_HOST_CALLS),
            "",
            Expect::Fails(FailureKind::Trap, "call stack exhausted"),
        ),
        (
            "socket import",
            wasm(&hostile::socket_import("sock_accept")),
            "",
            Expect::Fails(FailureKind::InvalidModule, "'wasi_snapshot_preview1::sock_accept'"),
        ),
        (
            "foreign import",
            wasm(
                r#"(module (import "env" "connect" (func (param i32) (result i32))) (memory (export "memory") 1) (func (export "_start")))"#,
            ),
            "",
            Expect::Fails(FailureKind::InvalidModule, "'env::connect'"),
        ),
        (
            "huge payloads",
            wasm(hostile::HUGE_PAYLOADS),
            "",
            Expect::Fails(
                FailureKind::Reported,
                "the result of 83886080 bytes exceeds the job's limit of 16777216 bytes",
            ),
        ),
        (
            "output flood",
            wasm(hostile::OUTPUT_FLOOD),
            "",
            Expect::Fails(FailureKind::CpuTimeExceeded, "CPU-time limit"),
        ),
        ("table bomb", wasm(hostile::TABLE_BOMB), "", Expect::Fails(FailureKind::Trap, "unreachable")),
        ("file descriptor scan", wasm(hostile::FD_SCAN), "", Expect::Contained(hostile::fd_scan_is_contained)),
        (
            "wild pointers",
            wasm(hostile::WILD_POINTERS),
            "",
            Expect::Contained(|r| {
                if r == hostile::wild_pointers_expected() { Ok(()) } else { Err(format!("answers {r:?}")) }
            }),
        ),
        (
            "sleep without end",
            wasm(hostile::SLEEP_FOREVER),
            "",
            Expect::Contained(|r| if r == [0, 0, 0, 0, 3, 0, 0, 0] { Ok(()) } else { Err(format!("answers {r:?}")) }),
        ),
        (
            "result over the job's limit (Rust)",
            Vec::new(),
            "mode=big-result bytes=20000000",
            Expect::Fails(FailureKind::Reported, "exceeds the job's limit"),
        ),
    ];

    // Hostile tasks at odd indices, normal ones around them.
    let mut tasks = Vec::new();
    let mut expected = BTreeMap::new();
    let mut index = 0u64;
    for (name, module, params, expect) in hostile_tasks {
        tasks.push(spec(index, noop.hash, &format!("normal {index}")));
        index += 1;
        let executable = if module.is_empty() {
            misbehave.hash
        } else {
            client.upload(module, ElementKind::Executable, &format!("{name}.wasm")).await.unwrap().hash
        };
        tasks.push(spec(index, executable, params));
        expected.insert(index, (name, expect));
        index += 1;
    }
    tasks.push(spec(index, noop.hash, &format!("normal {index}")));
    let total = index + 1;

    let limits = TaskLimitsSpec { memory_bytes_max: TASK_MEMORY_CAP, cpu_seconds_max: 1, ..TaskLimitsSpec::default() };
    let job = client.create_job(JobProperties { task_limits: limits, ..JobProperties::default() }).await.unwrap().job;
    client.add_tasks(job, tasks).await.unwrap();
    client.launch(job).await.unwrap();
    let (finals, info) = run_to_completion(&client, job, Replay::Undelivered).await;

    let by_task: BTreeMap<u64, _> = finals.iter().map(|r| (r.task, r)).collect();
    assert_eq!(by_task.len() as u64, total, "every task has a final status");
    for task in 0..total {
        let report = by_task[&task];
        match expected.get(&task) {
            None => {
                assert_eq!(report.state, TaskState::Succeeded, "normal task {task}: {report:?}");
                let result = client.fetch(report.result.as_ref().unwrap()).await.unwrap();
                assert_eq!(result, format!("normal {task}").into_bytes(), "normal task {task} got the wrong result");
            }
            Some((name, Expect::Fails(kind, reason))) => {
                let failure = report.failure.as_ref().unwrap_or_else(|| panic!("{name} did not fail: {report:?}"));
                assert_eq!(report.state, TaskState::Failed, "{name}");
                assert_eq!(failure.kind, *kind, "{name}: {}", failure.message);
                assert!(failure.message.contains(reason), "{name}: the reason '{}' lacks '{reason}'", failure.message);
                assert_eq!(report.attempts, 1, "{name} failed for good at its first placement");
            }
            Some((name, Expect::Contained(check))) => {
                assert_eq!(report.state, TaskState::Succeeded, "{name}: {report:?}");
                let result = client.fetch(report.result.as_ref().unwrap()).await.unwrap();
                if let Err(found) = check(&result) {
                    panic!("{name} was not contained: {found}");
                }
            }
        }
    }
    let failing = expected.values().filter(|(_, e)| matches!(e, Expect::Fails(..))).count() as u64;
    assert_eq!((info.counts.failed, info.counts.succeeded), (failing, total - failing));

    // The engine is still up, and within its memory: two slots of at most 128 MiB of task
    // memory each, on top of the engine itself. A memory bomb without the cap would take
    // 4 GiB on its own.
    let pid = engine.0.id();
    assert!(engine.0.try_wait().unwrap().is_none(), "the engine process died");
    let (peak, now) = memory_of(pid);
    assert!(peak < 2 * TASK_MEMORY_CAP + (512 << 20), "engine peak RSS {peak} bytes (now {now})");

    // And it runs the next job.
    let next = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(next, (0..10).map(|i| spec(i, noop.hash, &format!("after {i}")))).await.unwrap();
    client.launch(next).await.unwrap();
    let (after, info) = run_to_completion(&client, next, Replay::Undelivered).await;
    assert_eq!(info.counts.succeeded, 10);
    for report in after {
        let result = client.fetch(report.result.as_ref().unwrap()).await.unwrap();
        assert_eq!(result, format!("after {}", report.task).into_bytes());
    }
    assert!(engine.0.try_wait().unwrap().is_none(), "the engine process died");
}
