//! `idlegrid bench-engine`: how well the engine stays out of its owner's way, measured here.
//! - the time from an owner-activity signal to the running task's CPU going quiet;
//! - the share of the CPU a continuous-mode engine leaves to a normal-priority program;
//! - the work lost per interruption when a task is stopped and restarted from checkpoints
//!   taken every N ms (a pause in memory loses nothing).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use idlegrid_engine::activity::InjectedActivity;
use idlegrid_engine::{Activity, Engine, EngineConfig, RunMode};
use idlegrid_protocol::messages::TaskSpec;
use idlegrid_sandbox::{NoEvents, Sandbox, SandboxConfig, TaskControl, TaskInput, TaskLimits};
use idlegrid_server::{Server, ServerConfig, ServerHandle};
use idlegrid_types::{ElementKind, ElementRef, JobProperties};

use crate::cluster::{read_task, tasks_dir};

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted.get(((p / 100.0) * (sorted.len().saturating_sub(1)) as f64).round() as usize).copied().unwrap_or_default()
}

/// Iterations of a busy loop per second on `threads` threads of a child process, for `seconds`.
fn competitor_rate(threads: u32, seconds: f64) -> anyhow::Result<f64> {
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["spin", "--threads", &threads.to_string(), "--seconds", &seconds.to_string()])
        .output()?;
    anyhow::ensure!(output.status.success(), "the competitor failed: {}", String::from_utf8_lossy(&output.stderr));
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse::<f64>()? / seconds)
}

/// Busy work for the competitor: count loop iterations on `threads` threads.
pub fn spin(threads: u32, seconds: f64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let handles: Vec<_> = (0..threads.max(1))
        .map(|_| {
            std::thread::spawn(move || {
                let mut count = 0u64;
                while Instant::now() < deadline {
                    for _ in 0..1000 {
                        count = std::hint::black_box(count + 1);
                    }
                }
                count
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
}

pub async fn run(trials: u32, tasks_dir_arg: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = tasks_dir(tasks_dir_arg, &["misbehave", "pi"])?;
    let cores = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let work = tempfile::tempdir()?;
    let server = Server::start(ServerConfig::new("127.0.0.1:0".parse()?, work.path().join("server"))).await?;
    let client = idlegrid_client::Client::connect(
        crate::cluster::endpoint_of(&server),
        idlegrid_protocol::auth::Identity::generate(),
        "bench",
    )
    .await?;
    let misbehave = client.upload(read_task(&dir, "misbehave")?, ElementKind::Executable, "misbehave.wasm").await?;
    let pi = client.upload(read_task(&dir, "pi")?, ElementKind::Executable, "pi.wasm").await?;

    let latencies = suspend_latency(&server, &client, work.path(), &misbehave, trials).await?;
    let (alone, beside) = cpu_share(&server, &client, work.path(), &pi, cores).await?;
    let losses = work_lost(&dir, trials)?;

    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| machine | {cores} cores |");
    println!(
        "| owner activity to task CPU quiet, p50 ({trials} trials) | {:.1} ms |",
        percentile(&latencies, 50.0).as_secs_f64() * 1e3
    );
    println!("| owner activity to task CPU quiet, p99 | {:.1} ms |", percentile(&latencies, 99.0).as_secs_f64() * 1e3);
    println!(
        "| competitor's speed beside a continuous engine using every core, vs alone | {:.1}% |",
        100.0 * beside / alone
    );
    for (every_ms, lost) in &losses {
        println!("| work lost per forced stop, checkpoint every {every_ms} ms | {lost:.0} ms (a pause in memory: 0) |");
    }
    let _ = Arc::new(());
    server.shutdown().await;
    Ok(())
}

/// Owner activity to quiet CPU: how long a running task takes to park once the owner is back.
async fn suspend_latency(
    server: &ServerHandle,
    client: &idlegrid_client::Client,
    work: &Path,
    misbehave: &ElementRef,
    trials: u32,
) -> anyhow::Result<Vec<Duration>> {
    eprintln!("suspend latency: {trials} trials ...");
    let activity = InjectedActivity::new();
    let mut config = EngineConfig::new(crate::cluster::endpoint_of(server), work.join("idle-engine"));
    config.owner.mode = RunMode::IdleOnly;
    config.owner.cores = 1;
    config.owner.resume_after_secs = 0;
    config.owner.status_listen = None;
    config.activity = Activity::Injected(activity.clone());
    let engine = Engine::start(config).await?;
    let job = client.create_job(JobProperties::default()).await?.job;
    let long = TaskSpec {
        index: 0,
        executable: misbehave.hash,
        data: Default::default(),
        params: b"mode=stop-aware target=100000000".to_vec(),
        priority: None,
    };
    client.add_tasks(job, [long]).await?;
    client.launch(job).await?;
    while engine.status().state != "computing" || engine.status().tasks.iter().all(|t| t.state != "running") {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut latencies = Vec::new();
    for _ in 0..trials {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let signal = Instant::now();
        activity.input();
        let parked = loop {
            if let Some(parked) = engine.last_parked().filter(|p| *p > signal) {
                break parked;
            }
            anyhow::ensure!(signal.elapsed() < Duration::from_secs(10), "the task did not pause");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        latencies.push(parked - signal);
        activity.away();
        while engine.status().tasks.iter().any(|t| t.state == "paused") {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    latencies.sort();
    client.remove_job(job).await?;
    engine.shutdown().await;

    Ok(latencies)
}

/// CPU left to a competing program by a continuous-mode engine with every core busy: the
/// competitor's rate alone, then beside the engine.
async fn cpu_share(
    server: &ServerHandle,
    client: &idlegrid_client::Client,
    work: &Path,
    pi: &ElementRef,
    cores: u32,
) -> anyhow::Result<(f64, f64)> {
    eprintln!("CPU share: a competitor alone, then beside a busy engine ...");
    let seconds = 3.0;
    let alone = competitor_rate(cores, seconds)?;
    let mut config = EngineConfig::new(crate::cluster::endpoint_of(server), work.join("busy-engine"));
    config.owner.mode = RunMode::Continuous;
    config.owner.cores = cores;
    config.owner.status_listen = None;
    let busy = Engine::start(config).await?;
    let job = client.create_job(JobProperties::default()).await?.job;
    let hogs = (0..cores as u64 * 2).map(|i| TaskSpec {
        index: i,
        executable: pi.hash,
        data: Default::default(),
        params: format!("samples=4000000000 seed={i}").into_bytes(),
        priority: None,
    });
    client.add_tasks(job, hogs).await?;
    client.launch(job).await?;
    while busy.status().tasks.iter().filter(|t| t.state == "running").count() < cores as usize {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let beside = competitor_rate(cores, seconds)?;
    let engine_cpu_before = busy.stats().cpu_ms;
    client.remove_job(job).await?;
    busy.shutdown().await;
    let _ = engine_cpu_before;

    Ok((alone, beside))
}

/// Work lost per interruption, stopping by force at random moments (as a crash or an owner
/// who pulls the plug would) and restarting from the last checkpoint: per checkpoint interval.
fn work_lost(dir: &Path, trials: u32) -> anyhow::Result<Vec<(u64, f64)>> {
    eprintln!("work lost per interruption ...");
    let sandbox = Sandbox::new(SandboxConfig::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let module = sandbox.compile(&read_task(dir, "misbehave")?).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut losses = Vec::new();
    for every_ms in [10u64, 100, 1000] {
        let mut lost_total = 0.0;
        let runs = trials.clamp(3, 20);
        for i in 0..runs {
            let control = TaskControl::new();
            let kill_after = Duration::from_millis(300 + (i as u64 * 7919) % (2 * every_ms + 200));
            let killer = {
                let control = control.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(kill_after);
                    control.kill();
                })
            };
            let started = Instant::now();
            let params = format!("mode=stop-aware target=100000000 every={every_ms}").into_bytes();
            let run = sandbox.run(
                &module,
                TaskInput { params, ..TaskInput::default() },
                &TaskLimits::default(),
                &control,
                Box::new(NoEvents),
            );
            let ran_ms = started.elapsed().as_millis() as f64;
            killer.join().ok();
            let saved = run.checkpoint.map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).unwrap_or(0) as f64;
            lost_total += (ran_ms - saved).max(0.0);
        }
        losses.push((every_ms, lost_total / runs as f64));
    }

    Ok(losses)
}
