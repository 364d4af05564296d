//! `idlegrid bench`: end-to-end throughput of many trivial tasks and the round-trip latency of
//! one, on this machine, printed as a table. Nothing is asserted: machines are noisy.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use idlegrid_client::{Client, JobEvent};
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_types::{ElementHash, ElementKind, JobProperties, JobState};

use crate::cluster::{ClusterOptions, LocalCluster, read_task, tasks_dir};

async fn run_job(client: &Client, executable: ElementHash, tasks: u64) -> anyhow::Result<(Duration, Duration, u64)> {
    let started = Instant::now();
    let job = client.create_job(JobProperties { name: "bench".into(), ..JobProperties::default() }).await?;
    let mut watch = client.watch(job.job, Replay::None).await?;
    let specs = (0..tasks).map(|i| TaskSpec {
        index: i,
        executable,
        data: Default::default(),
        params: i.to_string().into_bytes(),
        priority: None,
    });
    client.add_tasks(job.job, specs).await?;
    client.launch(job.job).await?;
    let submitted = started.elapsed();
    let mut results = 0u64;
    while let Some(event) = watch.next().await {
        match event? {
            JobEvent::Task(report) if report.state.is_final() => results += 1,
            JobEvent::Job(info) if info.state == JobState::Completed => break,
            _ => {}
        }
    }
    let elapsed = started.elapsed();
    drop(watch);
    client.remove_job(job.job).await?;
    Ok((submitted, elapsed, results))
}

/// Time from adding one task to a running job to receiving its result, `samples` times. The
/// job is launched with a first task (a job without tasks cannot be launched), not counted.
async fn round_trips(client: &Client, executable: ElementHash, samples: u32) -> anyhow::Result<Vec<Duration>> {
    let job = client.create_job(JobProperties { name: "latency".into(), ..JobProperties::default() }).await?;
    let mut watch = client.watch(job.job, Replay::None).await?;
    let mut latencies = Vec::with_capacity(samples as usize);
    for i in 0..=samples as u64 {
        let started = Instant::now();
        client
            .add_tasks(
                job.job,
                [TaskSpec { index: i, executable, data: Default::default(), params: Vec::new(), priority: None }],
            )
            .await?;
        if i == 0 {
            client.launch(job.job).await?;
        }
        loop {
            match watch.next().await {
                Some(Ok(JobEvent::Task(report))) if report.task == i && report.state.is_final() => break,
                Some(Ok(_)) => {}
                Some(Err(error)) => return Err(error.into()),
                None => anyhow::bail!("the watch ended"),
            }
        }
        if i > 0 {
            latencies.push(started.elapsed());
        }
    }
    drop(watch);
    client.remove_job(job.job).await?;
    latencies.sort();
    Ok(latencies)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

pub async fn run(
    tasks: u64,
    engines: u32,
    latency_samples: u32,
    tasks_dir_arg: Option<PathBuf>,
    plain_http: bool,
    instances: u32,
    database: String,
) -> anyhow::Result<()> {
    anyhow::ensure!(engines >= 1 && tasks >= 1, "--engines and --tasks must be at least 1");
    let dir = tasks_dir(tasks_dir_arg, &["noop"])?;
    let cores = std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1);
    let options = ClusterOptions {
        plain_http,
        instances,
        database: database.clone(),
        ..ClusterOptions::new(engines, (cores / engines).max(1), 256)
    };
    let cluster = LocalCluster::start(&options).await?;
    let client = cluster.client().await?;
    let noop = client.upload(read_task(&dir, "noop")?, ElementKind::Executable, "noop.wasm").await?;

    // Warm up: compile the module on every engine and fill connection pools.
    run_job(&client, noop.hash, 50 * engines as u64).await?;

    eprintln!("throughput: {tasks} tasks on {engines} engines ...");
    let (submitted, elapsed, results) = run_job(&client, noop.hash, tasks).await?;
    anyhow::ensure!(results == tasks, "received {results} results for {tasks} tasks");

    eprintln!("latency: {latency_samples} single tasks, one at a time, added to a running job ...");
    let latencies = round_trips(&client, noop.hash, latency_samples).await?;
    eprintln!("latency: {latency_samples} single-task jobs (create, add, launch, result) ...");
    let job_latencies = {
        let mut all = Vec::with_capacity(latency_samples as usize);
        for _ in 0..latency_samples {
            all.push(run_job(&client, noop.hash, 1).await?.1);
        }
        all.sort();
        all
    };

    let per_second = tasks as f64 / elapsed.as_secs_f64();
    println!("| measure | value |");
    println!("| --- | --- |");
    println!("| machine | {cores} cores, {engines} engines x {} slots |", options.slots_per_engine);
    println!("| transport | {} |", if plain_http { "plain HTTP (development)" } else { "HTTPS, mutual TLS" });
    let store = if database.starts_with("postgres") { "PostgreSQL" } else { "SQLite" };
    println!("| servers | {instances} instance(s) on {store} |");
    println!("| trivial tasks, submit to last result | {tasks} in {:.2} s |", elapsed.as_secs_f64());
    println!("| of which submitting (create, add, launch) | {:.2} s |", submitted.as_secs_f64());
    println!("| throughput | {per_second:.0} tasks/s |");
    println!(
        "| single-task round trip p50 (add to result) | {:.1} ms |",
        percentile(&latencies, 50.0).as_secs_f64() * 1000.0
    );
    println!(
        "| single-task round trip p99 (add to result) | {:.1} ms |",
        percentile(&latencies, 99.0).as_secs_f64() * 1000.0
    );
    println!(
        "| one-task job p50 (create, add, launch, result) | {:.1} ms |",
        percentile(&job_latencies, 50.0).as_secs_f64() * 1000.0
    );
    println!("| one-task job p99 | {:.1} ms |", percentile(&job_latencies, 99.0).as_secs_f64() * 1000.0);
    let _ = client.close().await;
    cluster.stop().await;
    Ok(())
}
