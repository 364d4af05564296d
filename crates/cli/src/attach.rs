//! `idlegrid job attach`: follow one task of a job (or the whole job) with the client's own
//! pattern of interim statuses, printing each status as a line and writing the final result.

use std::path::PathBuf;

use anyhow::Context;
use idlegrid_client::{Client, JobEvent};
use idlegrid_protocol::messages::{InterimPattern, Replay, TaskStatusReport};
use idlegrid_types::{JobId, JobState, TaskIndex, TaskState, Untrusted};

/// Flags of `idlegrid job attach`.
#[derive(clap::Args, Debug)]
pub struct AttachArgs {
    pub job: JobId,
    /// Only this task: its interim statuses, then its result (the command ends with it).
    #[arg(long)]
    pub task: Option<TaskIndex>,
    /// Interim statuses at most once every this many seconds.
    #[arg(long)]
    pub every_secs: Option<u32>,
    /// Interim statuses only when progress moved this many percent.
    #[arg(long)]
    pub every_percent: Option<f32>,
    /// Where the task's result goes (with --task; a folder of `<task>.out` files without).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// One status as a line: `task 3: running 42%` or `task 3: succeeded`.
pub fn status_line(report: &TaskStatusReport) -> String {
    match report.state {
        TaskState::Succeeded | TaskState::Failed => {
            let failure = report.failure.as_ref().map(|f| format!(" ({:?}: {})", f.kind, Untrusted(&f.message)));
            format!("task {}: {}{}", report.task, report.state.as_str(), failure.unwrap_or_default())
        }
        state => format!("task {}: {} {:.0}%", report.task, state.as_str(), report.progress * 100.0),
    }
}

pub async fn run(client: &Client, args: AttachArgs) -> anyhow::Result<()> {
    let interim = (args.every_secs.is_some() || args.every_percent.is_some())
        .then_some(InterimPattern { every_secs: args.every_secs, every_percent: args.every_percent });
    let mut watch = match args.task {
        Some(task) => client.watch_task(args.job, task, Replay::All, interim).await?,
        None => client.watch_with(args.job, Replay::All, interim).await?,
    };
    while let Some(event) = watch.next().await {
        match event? {
            JobEvent::Task(report) => {
                println!("{}", status_line(&report));
                if report.state.is_final() {
                    write_result(client, &report, &args).await?;
                    if args.task.is_some() {
                        return if report.state == TaskState::Succeeded {
                            Ok(())
                        } else {
                            anyhow::bail!("task {} failed", report.task)
                        };
                    }
                }
            }
            JobEvent::Job(info) if info.state == JobState::Completed && args.task.is_none() => return Ok(()),
            JobEvent::Job(_) => {}
        }
    }
    anyhow::bail!("the connection to the server ended before the task was final")
}

async fn write_result(client: &Client, report: &TaskStatusReport, args: &AttachArgs) -> anyhow::Result<()> {
    let (Some(out), Some(result)) = (&args.out, &report.result) else { return Ok(()) };
    let path = if args.task.is_some() {
        out.clone()
    } else {
        std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
        out.join(format!("{}.out", report.task))
    };
    let bytes = client.fetch(result).await?;
    std::fs::write(&path, &bytes).with_context(|| format!("cannot write {}", path.display()))?;
    println!("task {}: result of {} bytes written to {}", report.task, bytes.len(), path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use idlegrid_types::JobCounts;

    #[test]
    fn statuses_read_as_lines() {
        let report = TaskStatusReport {
            job: JobId::random(),
            task: 3,
            state: TaskState::Running,
            progress: 0.424,
            status: None,
            result: None,
            failure: None,
            cpu_ms: 0,
            attempts: 1,
            counts: JobCounts::default(),
            checkpoint: None,
        };
        assert_eq!(status_line(&report), "task 3: running 42%");
        let done = TaskStatusReport { state: TaskState::Succeeded, ..report };
        assert_eq!(status_line(&done), "task 3: succeeded");
    }
}
