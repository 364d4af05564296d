//! Client commands: submit a job file, collect results with a progress bar.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::Context;
use idlegrid_client::{Client, JobEvent};
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::{JobInfo, Replay, TaskSpec, TaskStatusReport};
use idlegrid_types::{ElementKind, ElementRef, JobId, JobState, TaskState, Untrusted};
use indicatif::{ProgressBar, ProgressStyle};

use crate::jobfile::Job;

pub async fn connect(
    server: idlegrid_client::Endpoint,
    home: &Path,
    give_up_after: std::time::Duration,
) -> anyhow::Result<Client> {
    let identity = Identity::load_or_create(&home.join("client.key"))?;
    let name = std::env::var("USER").unwrap_or_else(|_| "client".into());
    let config = idlegrid_client::ChannelConfig { connect_give_up_after: Some(give_up_after), ..Default::default() };
    // Each error says what failed and what to do; errors a retry cannot fix (not an Idlegrid
    // server, not the server this client trusts) come at once, the others after the time given.
    match Client::connect_with(&server, identity, &name, config).await {
        Ok(client) => Ok(client),
        // The server answered but is not trusted: the error says why and what to do.
        Err(error @ idlegrid_client::ClientError::Untrusted(_)) => {
            Err(anyhow::Error::new(error).context(format!("refusing the server at {server}")))
        }
        Err(error) => Err(anyhow::Error::new(error).context(format!(
            "cannot connect to the server at {server} (another server: --server or IDLEGRID_SERVER)"
        ))),
    }
}

pub fn print_job(info: &JobInfo) {
    let c = &info.counts;
    println!(
        "job {}  {:<10} {:>8} tasks: {} queued, {} running, {} stopped, {} succeeded, {} failed{}",
        info.job,
        info.state.as_str(),
        c.total(),
        c.queued + c.created,
        c.running,
        c.stopped,
        c.succeeded,
        c.failed,
        if info.properties.name.is_empty() {
            String::new()
        } else {
            format!("  ({})", Untrusted(&info.properties.name))
        }
    );
}

/// Tasks per request while submitting: one request of the client library's largest size.
const SUBMIT_BATCH: usize = 4000;

/// Where a job's results are delivered and how far it got: a summary line, then a line per
/// result not delivered yet (with the receiver's last answer).
pub fn print_delivery(report: &idlegrid_protocol::messages::DeliveryReport) {
    let Some(url) = &report.url else {
        println!("job {}: no delivery asked", report.job);
        return;
    };
    let scope = report.task.map(|t| format!("task {t} of ")).unwrap_or_default();
    println!(
        "{scope}job {} to {}: {} delivered, {} pending, {} failed",
        report.job,
        Untrusted(url),
        report.delivered,
        report.pending,
        report.failed
    );
    for delivery in report.deliveries.iter().filter(|d| d.state != "delivered") {
        let error = delivery.last_error.as_deref().map(|e| format!(": {}", Untrusted(e))).unwrap_or_default();
        println!("  task {} {} after {} attempts{error}", delivery.task, delivery.state, delivery.attempts);
    }
}

/// Upload the job's elements, stream its tasks, launch it.
pub async fn submit(client: &Client, job: &Job) -> anyhow::Result<JobInfo> {
    let executable =
        client.upload_file(&job.executable(), ElementKind::Executable).await.context("uploading the executable")?;
    let mut properties = job.properties();
    if let Some(validator) = &job.file.validator {
        let element = client
            .upload_file(&job.resolve(validator), ElementKind::Executable)
            .await
            .context("uploading the validator")?;
        properties.validator = Some(element.hash);
    }
    let info = client.create_job(properties).await?;
    let mut uploaded: HashMap<PathBuf, ElementRef> = HashMap::new();
    let progress = bar(job.count_hint(), "submitting");
    let mut batch = Vec::with_capacity(SUBMIT_BATCH);
    let mut in_flight: Option<tokio::task::JoinHandle<Result<u64, idlegrid_client::ClientError>>> = None;
    let mut total = 0u64;
    for task in job.tasks()? {
        let task = task?;
        let mut data = std::collections::BTreeMap::new();
        for (name, path) in &task.data {
            let element = match uploaded.get(path) {
                Some(element) => *element,
                None => {
                    let element = client
                        .upload_file(path, ElementKind::Data)
                        .await
                        .with_context(|| format!("uploading {}", path.display()))?;
                    // Remember shared elements; a tasks file with a file per task stays bounded.
                    if uploaded.len() < 10_000 {
                        uploaded.insert(path.clone(), element);
                    }
                    element
                }
            };
            data.insert(name.clone(), element.hash);
        }
        batch.push(TaskSpec {
            index: task.index,
            executable: executable.hash,
            data,
            params: task.params,
            priority: task.priority,
        });
        if batch.len() == batch.capacity() {
            // One batch travels while the next is built: the server's work overlaps the client's.
            let sending = std::mem::replace(&mut batch, Vec::with_capacity(SUBMIT_BATCH));
            let (client, job) = (client.clone(), info.job);
            let send = tokio::spawn(async move { client.add_tasks(job, sending).await });
            if let Some(previous) = in_flight.replace(send) {
                total += previous.await.context("submitting tasks")??;
                progress.set_position(total);
            }
        }
    }
    if let Some(previous) = in_flight {
        total += previous.await.context("submitting tasks")??;
    }
    total += client.add_tasks(info.job, batch).await?;
    progress.finish_and_clear();
    if total == 0 {
        // Nothing to run: leave nothing behind on the server.
        let _ = client.remove_job(info.job).await;
        anyhow::bail!("the job file defines no tasks: nothing was submitted");
    }
    client.launch(info.job).await.map_err(Into::into)
}

pub fn bar(total: Option<u64>, label: &str) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total),
        None => ProgressBar::no_length(),
    };
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta}) {msg}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// A job's counts in one line of text, as `job watch` shows them beside its bar.
pub fn counts_line(counts: &idlegrid_types::JobCounts) -> String {
    let mut parts = vec![
        format!("{} queued", counts.queued),
        format!("{} running", counts.running),
        format!("{} succeeded", counts.succeeded),
        format!("{} failed", counts.failed),
    ];
    if counts.stopped > 0 {
        parts.push(format!("{} stopped", counts.stopped));
    }
    if counts.created > 0 {
        parts.push(format!("{} not launched", counts.created));
    }
    parts.join(", ")
}

/// How a followed job ended: its counts as the server knows them (they hold whatever this
/// process received: results may have been collected before), and the failures received here,
/// grouped by reason.
#[derive(Debug, Default)]
pub struct Summary {
    pub job: Option<JobId>,
    pub succeeded: u64,
    pub failed: u64,
    /// Failures received by this process, by reason (kind and first line), with how many
    /// tasks failed so and the first of them.
    pub reasons: BTreeMap<String, (u64, u64)>,
    pub failures_received: u64,
}

/// Reasons shown; the rest are counted.
const REASONS_SHOWN: usize = 5;

impl Summary {
    /// `reason` as the task wrote it: grouped by its first line, escaped when printed.
    fn record_failure(&mut self, task: u64, reason: &str) {
        self.failures_received += 1;
        let first_line = reason.lines().next().unwrap_or("").chars().take(200).collect::<String>();
        let entry = self.reasons.entry(first_line).or_insert((0, task));
        entry.0 += 1;
    }

    /// Whether every task succeeded.
    pub fn succeeded(&self) -> bool {
        self.failed == 0
    }

    pub fn print(&self, out: Option<&Path>) {
        println!("{} tasks succeeded, {} failed", self.succeeded, self.failed);
        let mut reasons: Vec<(&String, &(u64, u64))> = self.reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.0.cmp(b.0)));
        for (reason, (count, first)) in reasons.iter().take(REASONS_SHOWN) {
            let tasks =
                if *count == 1 { format!("task {first}") } else { format!("{count} tasks (task {first}, ...)") };
            println!("  {tasks} failed: {}", Untrusted(reason));
        }
        if reasons.len() > REASONS_SHOWN {
            let rest: u64 = reasons.iter().skip(REASONS_SHOWN).map(|(_, (n, _))| n).sum();
            println!("  ... and {rest} more failures with {} other reasons", reasons.len() - REASONS_SHOWN);
        }
        if self.failed > self.failures_received {
            let job = self.job.map(|j| j.to_string()).unwrap_or_else(|| "JOB".into());
            println!(
                "  {} failures were collected before; `idlegrid job results {job} --out DIR` writes every reason",
                self.failed - self.failures_received
            );
        }
        if let Some(out) = out {
            println!("results are in {}", out.display());
        }
    }

    /// `Err` when the job did not succeed, saying how many tasks failed (after `print`).
    pub fn outcome(&self) -> anyhow::Result<()> {
        if self.succeeded() {
            return Ok(());
        }
        let job = self.job.map(|j| format!("job {j}")).unwrap_or_else(|| "the job".into());
        anyhow::bail!("{job} did not succeed: {} of {} tasks failed", self.failed, self.failed + self.succeeded)
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Watch a job until it completes, showing progress; write results to `out` if given
/// (`<task>.out` for results, `<task>.err` for failures).
pub async fn collect(client: &Client, job: JobId, replay: Replay, out: Option<&Path>) -> anyhow::Result<Summary> {
    if let Some(out) = out {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    }
    let mut summary = Summary { job: Some(job), ..Summary::default() };
    let finished = follow(client, job, replay, &bar(None, "running"), |report, bytes| {
        match report.state {
            TaskState::Succeeded => {
                if let (Some(out), Some(bytes)) = (out, bytes) {
                    write_atomic(&out.join(format!("{}.out", report.task)), bytes)?;
                }
            }
            _ => {
                let reason = report
                    .failure
                    .as_ref()
                    .map(|f| format!("{:?}: {}", f.kind, f.message))
                    .unwrap_or_else(|| format!("{:?}", report.state));
                if let Some(out) = out {
                    // Written by task code: escaped in the file as on the terminal, line by line.
                    let lines: Vec<String> = reason.lines().map(|line| Untrusted(line).to_string()).collect();
                    write_atomic(&out.join(format!("{}.err", report.task)), lines.join("\n").as_bytes())?;
                }
                summary.record_failure(report.task, &reason);
            }
        }
        Ok(())
    })
    .await?;
    // The server's counts: results collected by an earlier watch count too.
    summary.succeeded = finished.counts.succeeded;
    summary.failed = finished.counts.failed;
    Ok(summary)
}

/// Follow a job to its completion, calling `on_final` for each final status (with the
/// result's bytes for a succeeded task) while a progress bar tracks the job's counts.
pub async fn follow(
    client: &Client,
    job: JobId,
    replay: Replay,
    progress: &ProgressBar,
    mut on_final: impl FnMut(&TaskStatusReport, Option<&[u8]>) -> anyhow::Result<()>,
) -> anyhow::Result<JobInfo> {
    let start = client.job(job).await?;
    progress.set_length(start.counts.total());
    progress.set_position(start.counts.concluded());
    progress.set_message(counts_line(&start.counts));
    let mut watch = client.watch(job, replay).await?;
    let mut received = 0u64;
    if replay == Replay::All {
        progress.set_position(0);
    }
    while let Some(event) = watch.next().await {
        match event? {
            JobEvent::Task(report) if report.state.is_final() => {
                // The client's part of the task's trace: receiving and keeping its result.
                let span = tracing::info_span!(
                    target: idlegrid_telemetry::TARGET,
                    "client.result",
                    task = report.task,
                    state = report.state.as_str(),
                );
                let bytes = match (&report.result, report.state) {
                    (Some(payload), TaskState::Succeeded) => {
                        Some(tracing::Instrument::instrument(client.fetch(payload), span.clone()).await?)
                    }
                    _ => None,
                };
                span.in_scope(|| on_final(&report, bytes.as_deref()))?;
                received += 1;
                progress.set_length(report.counts.total());
                progress.set_message(counts_line(&report.counts));
                // A replay of all results counts what arrived; otherwise the job's own count.
                progress.set_position(if replay == Replay::All { received } else { report.counts.concluded() });
            }
            JobEvent::Task(report) => progress.set_message(counts_line(&report.counts)),
            JobEvent::Job(info) if info.state == JobState::Completed => {
                progress.set_position(info.counts.concluded());
                progress.finish_and_clear();
                return Ok(info);
            }
            JobEvent::Job(info) => progress.set_message(counts_line(&info.counts)),
        }
    }
    anyhow::bail!("the connection to the server ended before the job completed")
}

#[cfg(test)]
mod tests {
    use super::counts_line;
    use idlegrid_types::JobCounts;

    #[test]
    fn the_counts_line_names_every_state_that_holds_tasks() {
        let counts = JobCounts { created: 0, queued: 3, running: 2, stopped: 0, succeeded: 10, failed: 1 };
        assert_eq!(counts_line(&counts), "3 queued, 2 running, 10 succeeded, 1 failed");
        let counts = JobCounts { created: 4, stopped: 5, ..counts };
        assert_eq!(counts_line(&counts), "3 queued, 2 running, 10 succeeded, 1 failed, 5 stopped, 4 not launched");
    }
}
