//! The host side of the runtime API: the store's data and the `idlegrid` imports.

use std::io::{Read, Seek, SeekFrom};

use idlegrid_task_abi::{MODULE, code, func};
use wasmtime::{Caller, Linker, ResourceLimiter};
use wasmtime_wasi::p1::WasiP1Ctx;

use crate::run::{TaskElement, TaskEvents, TaskInput};
use crate::{TaskControl, TaskLimits};

/// What a task has finished with, at most once.
#[derive(Debug, Clone, PartialEq)]
pub enum Finish {
    Result(Vec<u8>),
    Failure(String),
}

pub struct TaskCtx {
    pub wasi: WasiP1Ctx,
    pub input: TaskInput,
    pub limits: TaskLimits,
    pub control: TaskControl,
    pub events: Box<dyn TaskEvents>,
    pub limiter: MemoryLimiter,
    pub checkpoint: Option<Vec<u8>>,
    pub finish: Option<Finish>,
}

/// Caps linear memory per task and remembers when the cap was hit, so that an allocation
/// failure is reported as "out of memory" rather than as whatever trap follows it.
pub struct MemoryLimiter {
    pub memory_bytes_max: usize,
    pub exceeded: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes_max {
            self.exceeded = true;
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }

    fn memories(&self) -> usize {
        1
    }
}

type Ctx<'a> = Caller<'a, TaskCtx>;

/// Guest memory and the store data, borrowed together.
fn split<'a>(caller: &'a mut Ctx<'_>) -> Option<(&'a mut [u8], &'a mut TaskCtx)> {
    let memory = caller.get_export("memory")?.into_memory()?;
    Some(memory.data_and_store_mut(caller))
}

fn range(memory: &[u8], ptr: i32, len: i32) -> Option<std::ops::Range<usize>> {
    let (ptr, len) = (u32::try_from(ptr).ok()? as usize, u32::try_from(len).ok()? as usize);
    let end = ptr.checked_add(len)?;
    (end <= memory.len()).then_some(ptr..end)
}

fn copy_out(memory: &mut [u8], dst: i32, len: i32, src: &[u8]) -> i32 {
    match range(memory, dst, len) {
        None => code::BAD_ARGUMENT,
        Some(r) => {
            let n = r.len().min(src.len());
            memory[r.start..r.start + n].copy_from_slice(&src[..n]);
            n as i32
        }
    }
}

fn name_at(memory: &[u8], ptr: i32, len: i32) -> Option<String> {
    let r = range(memory, ptr, len)?;
    std::str::from_utf8(&memory[r]).ok().map(str::to_string)
}

pub fn add_runtime_api(linker: &mut Linker<TaskCtx>) -> wasmtime::Result<()> {
    linker.func_wrap(MODULE, func::PARAMS_LEN, |caller: Ctx<'_>| -> i32 {
        caller.data().input.params.len().min(i32::MAX as usize) as i32
    })?;
    linker.func_wrap(MODULE, func::PARAMS_READ, |mut caller: Ctx<'_>, dst: i32, len: i32| -> i32 {
        let Some((memory, ctx)) = split(&mut caller) else { return code::BAD_ARGUMENT };
        copy_out(memory, dst, len, &ctx.input.params)
    })?;
    linker.func_wrap(MODULE, func::ELEMENT_LEN, |mut caller: Ctx<'_>, name: i32, name_len: i32| -> i64 {
        let Some((memory, ctx)) = split(&mut caller) else { return code::BAD_ARGUMENT as i64 };
        let Some(name) = name_at(memory, name, name_len) else { return code::BAD_ARGUMENT as i64 };
        match ctx.input.elements.get(&name) {
            None => code::NOT_FOUND as i64,
            Some(element) => element.len() as i64,
        }
    })?;
    linker.func_wrap(
        MODULE,
        func::ELEMENT_READ,
        |mut caller: Ctx<'_>, name: i32, name_len: i32, offset: i64, dst: i32, len: i32| -> i32 {
            let Some((memory, ctx)) = split(&mut caller) else { return code::BAD_ARGUMENT };
            let Some(name) = name_at(memory, name, name_len) else { return code::BAD_ARGUMENT };
            let Some(target) = range(memory, dst, len) else { return code::BAD_ARGUMENT };
            let Ok(offset) = u64::try_from(offset) else { return code::BAD_ARGUMENT };
            match ctx.input.elements.get_mut(&name) {
                None => code::NOT_FOUND,
                Some(element) => match read_element(element, offset, &mut memory[target]) {
                    Ok(n) => n as i32,
                    Err(_) => code::HOST_ERROR,
                },
            }
        },
    )?;
    linker.func_wrap(MODULE, func::CHECKPOINT_LEN, |caller: Ctx<'_>| -> i64 {
        caller.data().checkpoint.as_ref().map_or(code::NOT_FOUND as i64, |c| c.len() as i64)
    })?;
    linker.func_wrap(MODULE, func::CHECKPOINT_READ, |mut caller: Ctx<'_>, dst: i32, len: i32| -> i32 {
        let Some((memory, ctx)) = split(&mut caller) else { return code::BAD_ARGUMENT };
        match &ctx.checkpoint {
            None => code::NOT_FOUND,
            Some(checkpoint) => copy_out(memory, dst, len, checkpoint),
        }
    })?;
    linker.func_wrap(MODULE, func::CHECKPOINT_SAVE, |mut caller: Ctx<'_>, src: i32, len: i32| -> i32 {
        let Some((memory, ctx)) = split(&mut caller) else { return code::BAD_ARGUMENT };
        let Some(r) = range(memory, src, len) else { return code::BAD_ARGUMENT };
        if r.len() > ctx.limits.checkpoint_bytes_max {
            return code::TOO_LARGE;
        }
        let data = memory[r].to_vec();
        match ctx.events.on_checkpoint(&data) {
            Ok(()) => {
                ctx.checkpoint = Some(data);
                code::OK
            }
            Err(_) => code::HOST_ERROR,
        }
    })?;
    linker.func_wrap(MODULE, func::STATUS_SET, |mut caller: Ctx<'_>, src: i32, len: i32, progress: f32| -> i32 {
        let Some((memory, ctx)) = split(&mut caller) else { return code::BAD_ARGUMENT };
        let Some(r) = range(memory, src, len) else { return code::BAD_ARGUMENT };
        if r.len() > ctx.limits.status_bytes_max {
            return code::TOO_LARGE;
        }
        let progress = if progress.is_finite() { progress.clamp(0.0, 1.0) } else { 0.0 };
        ctx.events.on_status(&memory[r], progress);
        code::OK
    })?;
    linker.func_wrap(MODULE, func::RESULT_SET, |mut caller: Ctx<'_>, src: i32, len: i32| -> i32 {
        let Some((memory, ctx)) = split(&mut caller) else { return code::BAD_ARGUMENT };
        let Some(r) = range(memory, src, len) else { return code::BAD_ARGUMENT };
        if ctx.finish.is_some() {
            return code::ALREADY_FINISHED;
        }
        if r.len() > ctx.limits.result_bytes_max {
            // The task is over: a result it cannot deliver is a failure with this reason.
            ctx.finish = Some(Finish::Failure(format!(
                "the result of {} bytes exceeds the job's limit of {} bytes",
                r.len(),
                ctx.limits.result_bytes_max
            )));
            return code::TOO_LARGE;
        }
        ctx.finish = Some(Finish::Result(memory[r].to_vec()));
        code::OK
    })?;
    linker.func_wrap(MODULE, func::FAIL, |mut caller: Ctx<'_>, src: i32, len: i32| -> i32 {
        let Some((memory, ctx)) = split(&mut caller) else { return code::BAD_ARGUMENT };
        let Some(r) = range(memory, src, len) else { return code::BAD_ARGUMENT };
        if ctx.finish.is_some() {
            return code::ALREADY_FINISHED;
        }
        // A reason is for humans: keep it short.
        let text = &memory[r.start..r.start + r.len().min(4096)];
        ctx.finish = Some(Finish::Failure(String::from_utf8_lossy(text).into_owned()));
        code::OK
    })?;
    linker.func_wrap(MODULE, func::CONTROL, |caller: Ctx<'_>| -> i32 { caller.data().control.take_request() })?;
    Ok(())
}

/// WASI's `poll_oneoff`, which never blocks.
///
/// Wasmtime's own sleeps on the task's thread until the subscribed time passes: a task asking
/// to sleep for an hour (or for `u64::MAX` nanoseconds) would hold its slot that long, using no
/// CPU, so the CPU-time limit would never end it, and neither a stop request nor a kill would
/// reach it, since both act only when WebAssembly code runs. A task has nothing to wait for
/// (no sockets, no files, no other task), so every subscription is reported ready at once:
/// clocks have expired, stdin is at its end, stdout and stderr take writes, any other
/// descriptor is invalid. A task that polls in a loop spins, and its CPU-time limit ends it.
pub fn add_nonblocking_poll(linker: &mut Linker<TaskCtx>) -> wasmtime::Result<()> {
    const SUBSCRIPTION_BYTES: usize = 48;
    const EVENT_BYTES: usize = 32;
    const ERRNO_BADF: u16 = 8;
    const ERRNO_FAULT: i32 = 21;
    const ERRNO_INVAL: i32 = 28;
    const EVENTRWFLAGS_HANGUP: u16 = 1;
    linker.allow_shadowing(true);
    linker.func_wrap(
        idlegrid_task_abi::WASI_MODULE,
        "poll_oneoff",
        |mut caller: Ctx<'_>, subscriptions: i32, events: i32, count: i32, written: i32| -> i32 {
            let Some(memory) = caller.get_export("memory").and_then(|e| e.into_memory()) else { return ERRNO_FAULT };
            let memory = memory.data_mut(&mut caller);
            let Ok(n) = u32::try_from(count) else { return ERRNO_INVAL };
            if n == 0 {
                return ERRNO_INVAL;
            }
            let n = n as usize;
            let (Some(subs), Some(outs), Some(out_count)) = (
                n.checked_mul(SUBSCRIPTION_BYTES)
                    .and_then(|len| range(memory, subscriptions, i32::try_from(len).ok()?)),
                n.checked_mul(EVENT_BYTES).and_then(|len| range(memory, events, i32::try_from(len).ok()?)),
                range(memory, written, 4),
            ) else {
                return ERRNO_FAULT;
            };
            for i in 0..n {
                let sub = subs.start + i * SUBSCRIPTION_BYTES;
                let userdata: [u8; 8] = memory[sub..sub + 8].try_into().expect("8 bytes");
                let tag = memory[sub + 8];
                let fd = u32::from_le_bytes(memory[sub + 16..sub + 20].try_into().expect("4 bytes"));
                let (error, flags) = match (tag, fd) {
                    (0, _) => (0, 0),
                    (1, 0) => (0, EVENTRWFLAGS_HANGUP),
                    (2, 1 | 2) => (0, 0),
                    _ => (ERRNO_BADF, 0),
                };
                let mut event = [0u8; EVENT_BYTES];
                event[..8].copy_from_slice(&userdata);
                event[8..10].copy_from_slice(&error.to_le_bytes());
                event[10] = tag.min(2);
                event[24..26].copy_from_slice(&flags.to_le_bytes());
                let out = outs.start + i * EVENT_BYTES;
                memory[out..out + EVENT_BYTES].copy_from_slice(&event);
            }
            memory[out_count].copy_from_slice(&(n as u32).to_le_bytes());
            0
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

fn read_element(element: &mut TaskElement, offset: u64, target: &mut [u8]) -> std::io::Result<usize> {
    match element {
        TaskElement::Memory(data) => {
            let start = (offset as usize).min(data.len());
            let n = target.len().min(data.len() - start);
            target[..n].copy_from_slice(&data[start..start + n]);
            Ok(n)
        }
        TaskElement::Reader(reader) => {
            let mut filled = 0;
            while filled < target.len() {
                let n = reader.read_at(offset + filled as u64, &mut target[filled..])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            Ok(filled)
        }
        TaskElement::File { file, len, .. } => {
            if offset >= *len {
                return Ok(0);
            }
            let want = target.len().min((*len - offset) as usize);
            file.seek(SeekFrom::Start(offset))?;
            let mut filled = 0;
            while filled < want {
                let n = file.read(&mut target[filled..want])?;
                if n == 0 {
                    break;
                }
                filled += n;
            }
            Ok(filled)
        }
    }
}
