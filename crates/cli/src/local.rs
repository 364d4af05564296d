//! Run local (P1.7): a job's tasks on this machine, through the same runtime API and sandbox
//! the engines use, to debug tasks before distributing them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use idlegrid_sandbox::{
    CompiledTask, FloatNans, NoEvents, Sandbox, SandboxConfig, TaskControl, TaskElement, TaskInput, TaskLimits,
    TaskOutcome,
};
use idlegrid_types::Untrusted;
use tokio::sync::Semaphore;

use crate::jobfile::{Job, LocalTask};
use crate::jobs::bar;

/// Whether task `index` belongs to an even `percent` sample (which always starts with task 0).
pub fn in_sample(index: u64, percent: f64) -> bool {
    let fraction = (percent / 100.0).clamp(0.0, 1.0);
    (index as f64 * fraction).ceil() < ((index + 1) as f64 * fraction).ceil()
}

pub async fn run_local(
    job_path: &Path,
    first: Option<u64>,
    percent: Option<f64>,
    out: Option<&Path>,
    parallel: Option<usize>,
) -> anyhow::Result<()> {
    let job = Job::load(job_path)?;
    if let Some(p) = percent {
        anyhow::ensure!(p > 0.0 && p <= 100.0, "--percent must be in (0, 100], not {p}");
    }
    if let Some(out) = out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    }
    let wasm =
        std::fs::read(job.executable()).with_context(|| format!("cannot read {}", job.executable().display()))?;
    let sandbox = Sandbox::new(SandboxConfig::default()).map_err(|e| anyhow::anyhow!("{e}"))?;
    let spec = job.properties().task_limits;
    let nans = if spec.native_nans { FloatNans::Native } else { FloatNans::Canonical };
    let compiled =
        sandbox.compile_for(&wasm, nans).map_err(|e| anyhow::anyhow!("{}: {e}", job.executable().display()))?;
    let limits = TaskLimits {
        memory_bytes_max: spec.memory_bytes_max,
        cpu_time_max: Duration::from_secs(spec.cpu_seconds_max),
        result_bytes_max: spec.result_bytes_max as usize,
        checkpoint_bytes_max: spec.checkpoint_bytes_max as usize,
        ..TaskLimits::default()
    };
    let selected: Box<dyn Iterator<Item = anyhow::Result<LocalTask>>> = {
        let tasks = job.tasks()?;
        match (first, percent) {
            (Some(n), _) => Box::new(tasks.take(n as usize)),
            (None, Some(p)) => {
                Box::new(tasks.filter(move |t| t.as_ref().map(|t| in_sample(t.index, p)).unwrap_or(true)))
            }
            (None, None) => tasks,
        }
    };
    let total = match (first, percent, job.count_hint()) {
        (Some(n), _, Some(count)) => Some(n.min(count)),
        (None, Some(p), Some(count)) => Some((0..count).filter(|i| in_sample(*i, p)).count() as u64),
        (None, None, count) => count,
        _ => None,
    };
    let progress = bar(total, "running");
    let parallel =
        parallel.unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)).max(1);
    let permits = Arc::new(Semaphore::new(parallel));
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<(u64, TaskOutcome, Vec<u8>)>();
    let out_dir = out.map(Path::to_path_buf);
    let writer = tokio::spawn(collect_outcomes(rx, out_dir));
    let mut running = Vec::new();
    for task in selected {
        let task = task?;
        let permit = permits.clone().acquire_owned().await?;
        let (sandbox, compiled, limits, tx, progress) =
            (sandbox.clone(), compiled.clone(), limits.clone(), tx.clone(), progress.clone());
        running.push(tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let (outcome, output) = run_task(&sandbox, &compiled, &limits, &task);
            let _ = tx.send((task.index, outcome, output));
            progress.inc(1);
        }));
        running.retain(|h: &tokio::task::JoinHandle<()>| !h.is_finished());
    }
    drop(tx);
    for handle in running {
        handle.await?;
    }
    progress.finish_and_clear();
    let (ok, failed) = writer.await??;
    println!("{ok} tasks succeeded, {} failed (run locally)", failed.len());
    // Reasons and output are the task's own text: shown with control characters escaped.
    for (index, reason, output) in failed.iter().take(5) {
        println!("  task {index}: {}", Untrusted(reason.lines().next().unwrap_or("")));
        for line in reason.lines().skip(1).chain(output.lines()).take(5) {
            println!("    | {}", Untrusted(line));
        }
    }
    if let Some(out) = out {
        println!("results are in {}", out.display());
    }
    if !failed.is_empty() {
        anyhow::bail!("{} of {} tasks failed", failed.len(), ok + failed.len() as u64);
    }
    Ok(())
}

/// Run one task in the sandbox, its data elements opened from their files.
fn run_task(
    sandbox: &Sandbox,
    compiled: &CompiledTask,
    limits: &TaskLimits,
    task: &LocalTask,
) -> (TaskOutcome, Vec<u8>) {
    let mut elements = std::collections::BTreeMap::new();
    for (name, path) in &task.data {
        match TaskElement::open(path) {
            Ok(element) => {
                elements.insert(name.clone(), element);
            }
            Err(e) => {
                let failure = idlegrid_sandbox::TaskFailure::Internal(format!(
                    "cannot open data element '{name}' ({}): {e}",
                    path.display()
                ));
                return (TaskOutcome::Failed(failure), Vec::new());
            }
        }
    }
    let input = TaskInput { params: task.params.clone(), elements, checkpoint: None };
    let run = sandbox.run(compiled, input, limits, &TaskControl::new(), Box::new(NoEvents));
    (run.outcome, run.output)
}

/// Count the outcomes as they come, writing results (`<index>.out`) and failures
/// (`<index>.err`) into `out_dir` if given; the failures are kept to be shown.
async fn collect_outcomes(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<(u64, TaskOutcome, Vec<u8>)>,
    out_dir: Option<std::path::PathBuf>,
) -> anyhow::Result<(u64, Vec<(u64, String, String)>)> {
    let (mut ok, mut failed) = (0u64, Vec::new());
    while let Some((index, outcome, output)) = rx.recv().await {
        match outcome {
            TaskOutcome::Succeeded(bytes) => {
                ok += 1;
                if let Some(out) = &out_dir {
                    std::fs::write(out.join(format!("{index}.out")), &bytes)?;
                }
            }
            other => {
                let reason = match other {
                    TaskOutcome::Failed(failure) => failure.to_string(),
                    other => format!("{other:?}"),
                };
                let output = String::from_utf8_lossy(&output).into_owned();
                if let Some(out) = &out_dir {
                    std::fs::write(out.join(format!("{index}.err")), format!("{reason}\n{output}"))?;
                }
                failed.push((index, reason, output));
            }
        }
    }
    anyhow::Ok((ok, failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_spread_and_sized() {
        let picked: Vec<u64> = (0..100).filter(|i| in_sample(*i, 10.0)).collect();
        assert_eq!(picked.len(), 10);
        assert!(picked.windows(2).all(|w| w[1] - w[0] == 10));
        assert_eq!(picked[0], 0, "the first task is always in the sample");
        assert_eq!((0..7).filter(|i| in_sample(*i, 100.0)).count(), 7);
        assert_eq!((0..1000).filter(|i| in_sample(*i, 33.3)).count(), 333);
    }
}
