//! One task run: a fresh store, instantiation, `_start`, and the classification of its end.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::{Engine, Store, UpdateDeadline};
use wasmtime_wasi::{I32Exit, WasiCtxBuilder};

use crate::host::{Finish, MemoryLimiter, TaskCtx};
use crate::output::BoundedOutput;
use crate::{CompiledTask, TaskControl, TaskFailure, TaskLimits, TaskOutcome, TaskRun};

/// Random-access reads of an element the host keeps in its own format (for example
/// encrypted at rest).
pub trait ElementRead: Send {
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Read from `offset` into `buf`; fewer bytes only at the end.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize>;
}

/// A data element as the task sees it: in memory, an open file read on demand, or a reader.
pub enum TaskElement {
    Memory(Arc<[u8]>),
    File { file: std::fs::File, len: u64 },
    Reader(Box<dyn ElementRead>),
}

impl TaskElement {
    pub fn open(path: &Path) -> std::io::Result<TaskElement> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(TaskElement::File { file, len })
    }

    pub fn len(&self) -> u64 {
        match self {
            TaskElement::Memory(data) => data.len() as u64,
            TaskElement::File { len, .. } => *len,
            TaskElement::Reader(reader) => reader.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a task starts with.
#[derive(Default)]
pub struct TaskInput {
    pub params: Vec<u8>,
    pub elements: BTreeMap<String, TaskElement>,
    /// The checkpoint to restart from (a restart is a start).
    pub checkpoint: Option<Vec<u8>>,
}

/// Callbacks from a running task to its engine, on the task's thread.
pub trait TaskEvents: Send {
    /// An interim status; `progress` is in `0.0..=1.0`.
    fn on_status(&mut self, data: &[u8], progress: f32);
    /// A checkpoint to persist before the call returns; an error is reported to the task.
    fn on_checkpoint(&mut self, data: &[u8]) -> Result<(), String>;
}

/// Ignores statuses and keeps checkpoints only in the returned [`TaskRun`].
pub struct NoEvents;

impl TaskEvents for NoEvents {
    fn on_status(&mut self, _data: &[u8], _progress: f32) {}
    fn on_checkpoint(&mut self, _data: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

#[derive(Debug)]
enum Interrupt {
    Killed,
    CpuTime,
}

impl std::fmt::Display for Interrupt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Interrupt::Killed => f.write_str("stopped by the engine"),
            Interrupt::CpuTime => f.write_str("CPU-time limit reached"),
        }
    }
}

impl std::error::Error for Interrupt {}

/// CPU time of the calling thread.
fn thread_cpu_time() -> Duration {
    if let Some(used) = idlegrid_platform::thread_cpu_time() {
        return used;
    }
    thread_local!(static START: Instant = Instant::now());
    START.with(|start| start.elapsed())
}

pub fn run(
    engine: &Engine,
    task: &CompiledTask,
    input: TaskInput,
    limits: &TaskLimits,
    control: &TaskControl,
    events: Box<dyn TaskEvents>,
) -> TaskRun {
    let output = BoundedOutput::new(limits.output_bytes_max);
    let wasi = WasiCtxBuilder::new().stdout(output.clone()).stderr(output.clone()).arg("task").build_p1();
    let checkpoint = input.checkpoint.clone();
    let ctx = TaskCtx {
        wasi,
        input,
        limits: limits.clone(),
        control: control.clone(),
        events,
        limiter: MemoryLimiter {
            memory_bytes_max: limits.memory_bytes_max.min(usize::MAX as u64) as usize,
            exceeded: false,
        },
        checkpoint,
        finish: None,
    };
    let mut store = Store::new(engine, ctx);
    store.limiter(|ctx| &mut ctx.limiter);

    let cpu_start = thread_cpu_time();
    let cpu_limit = limits.cpu_time_max;
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |ctx| {
        if ctx.data().control.is_paused() {
            ctx.data().control.wait_while_paused();
        }
        if ctx.data().control.killed() {
            return Err(wasmtime::Error::new(Interrupt::Killed));
        }
        if thread_cpu_time().saturating_sub(cpu_start) > cpu_limit {
            return Err(wasmtime::Error::new(Interrupt::CpuTime));
        }
        Ok(UpdateDeadline::Continue(1))
    });

    let result = task
        .pre
        .instantiate(&mut store)
        .and_then(|instance| instance.get_typed_func::<(), ()>(&mut store, "_start"))
        .and_then(|start| start.call(&mut store, ()));
    let cpu_time = thread_cpu_time().saturating_sub(cpu_start);
    let ctx = store.into_data();
    let outcome = classify(result, &ctx, limits, control);
    TaskRun { outcome, checkpoint: ctx.checkpoint, cpu_time, output: output.contents() }
}

fn classify(result: wasmtime::Result<()>, ctx: &TaskCtx, limits: &TaskLimits, control: &TaskControl) -> TaskOutcome {
    let finished = || match &ctx.finish {
        Some(Finish::Result(bytes)) => TaskOutcome::Succeeded(bytes.clone()),
        Some(Finish::Failure(reason)) => TaskOutcome::Failed(TaskFailure::Reported(reason.clone())),
        None if control.stop_requested() => TaskOutcome::Suspended,
        None => TaskOutcome::Failed(TaskFailure::NoResult),
    };
    let error = match result {
        Ok(()) => return finished(),
        Err(error) => error,
    };
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return match (exit.0, &ctx.finish) {
            (0, _) | (_, Some(_)) => finished(),
            (code, None) if control.stop_requested() => {
                let _ = code;
                TaskOutcome::Suspended
            }
            (code, None) => TaskOutcome::Failed(TaskFailure::Exit(code)),
        };
    }
    if let Some(interrupt) = error.downcast_ref::<Interrupt>() {
        return match interrupt {
            Interrupt::Killed if control.stop_requested() => TaskOutcome::Suspended,
            Interrupt::Killed => TaskOutcome::Killed,
            Interrupt::CpuTime => {
                TaskOutcome::Failed(TaskFailure::CpuTimeExceeded { limit_ms: limits.cpu_time_max.as_millis() as u64 })
            }
        };
    }
    if ctx.limiter.exceeded {
        return TaskOutcome::Failed(TaskFailure::OutOfMemory { limit_bytes: limits.memory_bytes_max });
    }
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(trap) => TaskOutcome::Failed(TaskFailure::Trap(trap.to_string())),
        None => TaskOutcome::Failed(TaskFailure::Trap(format!("{error:#}"))),
    }
}
