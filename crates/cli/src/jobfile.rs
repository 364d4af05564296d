//! The job description file (TOML) that `idlegrid job submit` and `idlegrid run-local` read.
//!
//! ```toml
//! name = "pi"
//! executable = "pi.wasm"          # relative to this file
//! priority = 0
//! [data]                           # elements every task gets, by name
//! text = "book.txt"
//! [tasks]
//! count = 1000
//! params = "samples=1000000 seed={index}"
//! # or: file = "tasks.jsonl", one {"params": "...", "data": {"name": "path"}, "priority": 1} per line
//! [limits]                         # optional, see TaskLimitsSpec
//! cpu_seconds_max = 600
//! # native_nans = true             # faster floating point; replicas may disagree in NaN bits
//! [validation]                     # optional: replicas must agree (P6.1), see ValidationPolicy
//! kind = "quorum"                  # or "adaptive", "credibility"; default "none"
//! min_agreeing = 2
//! target_replicas = 2
//! replicas_max = 6
//! # validator = "close-enough.wasm"  (top level) compares results that may differ slightly
//! [cluster]                        # optional: a virtual cluster (P1.2), see VirtualClusterRequest
//! node_cpu_gflops = 1.0            # each virtual node's speed
//! reliability = 0.99               # chance that each node delivers in time
//! work_per_task_gflop_hours = 0.5
//! node_count = 20                  # or power_requested_gflops (top level)
//! [hints]                          # optional scheduling hints
//! reliability_model = "full"       # completion probability from weekly signatures (P5.4)
//! # requirement = 'engine.memory_mb >= 1024 and engine.os == "linux"'  (top level) engines allowed
//! # rank = "engine.gflops"         (top level) engines preferred, highest first
//! # checkpoint_upload_secs = 60    (top level) running tasks' checkpoints go to the server this often
//! # deadline_unix_ms = 1767225600000 (top level) earliest deadline first; with
//! #   hints.work_per_task_gflop_hours, tasks at risk get an extra replica and a late job a notice
//! ```

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use idlegrid_types::{JobProperties, TaskLimitsSpec, ValidationPolicy};
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    #[serde(default)]
    pub name: String,
    pub executable: PathBuf,
    #[serde(default)]
    pub priority: i32,
    #[serde(default)]
    pub attempts_max: Option<u32>,
    /// The most the job may cost, in currency units (the job stops when it is reached).
    #[serde(default)]
    pub cost_max: Option<f64>,
    #[serde(default)]
    pub data: BTreeMap<String, PathBuf>,
    pub tasks: TasksSection,
    #[serde(default)]
    pub limits: Option<TaskLimitsSpec>,
    #[serde(default)]
    pub validation: Option<ValidationPolicy>,
    /// A wasm element that tells whether two results agree (reads elements `first` and
    /// `second`, returns `equivalent` or `different`).
    #[serde(default)]
    pub validator: Option<PathBuf>,
    /// The virtual cluster the job asks for: node speed, memory, reliability, work per task.
    #[serde(default)]
    pub cluster: Option<idlegrid_types::VirtualClusterRequest>,
    #[serde(default)]
    pub power_requested_gflops: Option<f64>,
    #[serde(default)]
    pub power_max_gflops: Option<f64>,
    /// When the job's results are due, milliseconds since 1970.
    #[serde(default)]
    pub deadline_unix_ms: Option<u64>,
    #[serde(default)]
    pub hints: BTreeMap<String, String>,
    /// What an engine must be to run the job's tasks (`engine.NAME`, `job.NAME`), in the
    /// market's expression language.
    #[serde(default)]
    pub requirement: Option<String>,
    /// Which engines the job prefers: a number from the engine's attributes, highest first.
    #[serde(default)]
    pub rank: Option<String>,
    /// How often engines upload a running task's checkpoint to the server, in seconds.
    #[serde(default)]
    pub checkpoint_upload_secs: Option<u64>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TasksSection {
    #[serde(default)]
    pub count: Option<u64>,
    #[serde(default)]
    pub params: Option<String>,
    #[serde(default)]
    pub file: Option<PathBuf>,
}

/// One task line of a tasks file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskLine {
    #[serde(default)]
    pub params: String,
    #[serde(default)]
    pub data: BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub priority: Option<i32>,
}

/// A task as read from the file, before its elements are uploaded.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalTask {
    pub index: u64,
    pub params: Vec<u8>,
    pub data: BTreeMap<String, PathBuf>,
    pub priority: Option<i32>,
}

/// A job file with its paths made absolute.
#[derive(Debug, Clone)]
pub struct Job {
    pub file: JobFile,
    pub base: PathBuf,
}

impl Job {
    pub fn load(path: &Path) -> anyhow::Result<Job> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read the job file {}", path.display()))?;
        let file: JobFile = toml::from_str(&text).with_context(|| format!("invalid job file {}", path.display()))?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let job = Job { file, base };
        match (&job.file.tasks.count, &job.file.tasks.file) {
            (Some(_), Some(_)) => {
                bail!("{}: [tasks] takes either count (with params) or file, not both", path.display())
            }
            (None, None) => {
                bail!("{}: [tasks] needs count = N (with params) or file = \"tasks.jsonl\"", path.display())
            }
            _ => {}
        }
        if !job.executable().exists() {
            bail!("{}: executable {} does not exist", path.display(), job.executable().display());
        }
        if let Some(validator) = &job.file.validator {
            if !job.resolve(validator).exists() {
                bail!("{}: validator {} does not exist", path.display(), job.resolve(validator).display());
            }
            if job.file.validation.is_none() {
                bail!(
                    "{}: a validator compares replicas; add a [validation] section (kind = \"quorum\", ...)",
                    path.display()
                );
            }
        }
        for (name, data) in &job.file.data {
            if !job.resolve(data).exists() {
                bail!("{}: data element '{name}' ({}) does not exist", path.display(), job.resolve(data).display());
            }
        }
        if let Some(cost) = job.file.cost_max {
            let most = idlegrid_types::limits::AMOUNT_MICROS_MAX as f64 / 1e6;
            if !(cost.is_finite() && cost > 0.0 && cost <= most) {
                bail!(
                    "{}: cost_max = {cost} must be a positive number of currency units, at most {most}",
                    path.display()
                );
            }
        }
        for (field, source) in [("requirement", &job.file.requirement), ("rank", &job.file.rank)] {
            if let Some(source) = source {
                idlegrid_scheduler::terms::parse_job_expression(source)
                    .map_err(|e| anyhow::anyhow!("{}: {field}: {e}", path.display()))?;
            }
        }
        job.properties().validate().map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        Ok(job)
    }

    pub fn resolve(&self, path: &Path) -> PathBuf {
        if path.is_absolute() { path.to_path_buf() } else { self.base.join(path) }
    }

    pub fn executable(&self) -> PathBuf {
        self.resolve(&self.file.executable)
    }

    pub fn properties(&self) -> JobProperties {
        let mut properties =
            JobProperties { name: self.file.name.clone(), priority: self.file.priority, ..JobProperties::default() };
        if let Some(limits) = &self.file.limits {
            properties.task_limits = limits.clone();
        }
        if let Some(attempts) = self.file.attempts_max {
            properties.attempts_max = attempts;
        }
        if let Some(cost) = self.file.cost_max {
            // Checked at load: finite, positive and bounded, so the conversion is exact enough.
            properties.cost_max_micros = Some((cost * 1e6).round() as u64);
        }
        if let Some(validation) = self.file.validation {
            properties.validation = validation;
        }
        properties.cluster = self.file.cluster.clone();
        properties.power_requested_gflops = self.file.power_requested_gflops;
        properties.power_max_gflops = self.file.power_max_gflops;
        properties.deadline_unix_ms = self.file.deadline_unix_ms;
        properties.scheduling_hints = self.file.hints.clone();
        properties.requirement = self.file.requirement.clone();
        properties.rank = self.file.rank.clone();
        properties.checkpoint_upload_secs = self.file.checkpoint_upload_secs;
        properties
    }

    /// How many tasks the file defines, if known without reading a tasks file.
    pub fn count_hint(&self) -> Option<u64> {
        self.file.tasks.count
    }

    /// The tasks, read lazily: a tasks file of millions of lines is never held in memory.
    pub fn tasks(&self) -> anyhow::Result<Box<dyn Iterator<Item = anyhow::Result<LocalTask>>>> {
        let shared = self.file.data.iter().map(|(k, v)| (k.clone(), self.resolve(v))).collect::<BTreeMap<_, _>>();
        if let Some(count) = self.file.tasks.count {
            let template = self.file.tasks.params.clone().unwrap_or_default();
            return Ok(Box::new((0..count).map(move |index| {
                Ok(LocalTask {
                    index,
                    params: template.replace("{index}", &index.to_string()).into_bytes(),
                    data: shared.clone(),
                    priority: None,
                })
            })));
        }
        let path = self.resolve(self.file.tasks.file.as_ref().expect("checked at load"));
        let reader = std::io::BufReader::new(
            std::fs::File::open(&path).with_context(|| format!("cannot open the tasks file {}", path.display()))?,
        );
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        let mut index = 0u64;
        Ok(Box::new(reader.lines().enumerate().filter_map(move |(line_no, line)| {
            let line = match line {
                Ok(line) => line,
                Err(e) => return Some(Err(anyhow::anyhow!("{}:{}: {e}", path.display(), line_no + 1))),
            };
            if line.trim().is_empty() {
                return None;
            }
            let parsed: TaskLine = match serde_json::from_str(&line) {
                Ok(parsed) => parsed,
                Err(e) => {
                    return Some(Err(anyhow::anyhow!("{}:{}: invalid task line: {e}", path.display(), line_no + 1)));
                }
            };
            let mut data = shared.clone();
            for (name, p) in parsed.data {
                data.insert(name, if p.is_absolute() { p } else { base.join(p) });
            }
            let task = LocalTask { index, params: parsed.params.into_bytes(), data, priority: parsed.priority };
            index += 1;
            Some(Ok(task))
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_and_template() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.wasm"), b"x").unwrap();
        std::fs::write(
            dir.path().join("job.toml"),
            "executable = \"t.wasm\"\n[tasks]\ncount = 3\nparams = \"seed={index}\"\n",
        )
        .unwrap();
        let job = Job::load(&dir.path().join("job.toml")).unwrap();
        let tasks: Vec<LocalTask> = job.tasks().unwrap().map(Result::unwrap).collect();
        assert_eq!(tasks.len(), 3);
        assert_eq!(tasks[2].params, b"seed=2");
    }

    #[test]
    fn tasks_file_lines_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.wasm"), b"x").unwrap();
        std::fs::write(dir.path().join("job.toml"), "executable = \"t.wasm\"\n[tasks]\nfile = \"tasks.jsonl\"\n")
            .unwrap();
        std::fs::write(
            dir.path().join("tasks.jsonl"),
            "{\"params\":\"a\",\"data\":{\"in\":\"x.txt\"}}\n\n{\"params\":\"b\",\"priority\":4}\n{bad\n",
        )
        .unwrap();
        let job = Job::load(&dir.path().join("job.toml")).unwrap();
        let tasks: Vec<anyhow::Result<LocalTask>> = job.tasks().unwrap().collect();
        assert_eq!(tasks.len(), 3);
        let first = tasks[0].as_ref().unwrap();
        assert_eq!((first.index, first.data["in"].clone()), (0, dir.path().join("x.txt")));
        assert_eq!(tasks[1].as_ref().unwrap().priority, Some(4));
        assert!(tasks[2].as_ref().unwrap_err().to_string().contains("tasks.jsonl:4"));
    }

    #[test]
    fn mistakes_are_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("job.toml"), "executable = \"missing.wasm\"\n[tasks]\ncount = 1\n").unwrap();
        let err = Job::load(&dir.path().join("job.toml")).unwrap_err().to_string();
        assert!(err.contains("missing.wasm") && err.contains("does not exist"), "{err}");
        std::fs::write(dir.path().join("job.toml"), "executable = \"x\"\nexecutabel = 1\n[tasks]\ncount = 1\n")
            .unwrap();
        let err = format!("{:#}", Job::load(&dir.path().join("job.toml")).unwrap_err());
        assert!(err.contains("executabel"), "{err}");
    }
}
