//! Runs one task, a WASI preview 1 module, inside wasmtime under memory, CPU-time and output
//! limits, and reports what happened.
//!
//! The sandbox gives a task nothing but its own inputs: no preopened directories, no environment
//! variables, no sockets, only the imports of WASI preview 1 and of the runtime API
//! ([`idlegrid_task_abi`]); a module importing WASI's socket functions is refused before it runs.
//! No host call blocks: WASI's `poll_oneoff` answers at once instead of sleeping, so a task
//! cannot hold its thread out of reach of its CPU-time limit and of stop requests. A task that
//! traps, exhausts its memory, passes its CPU-time limit or ignores a stop request fails (or is
//! suspended) with a clear reason; the caller keeps running.
//!
//! Stopping works at any instruction: an engine-wide ticker advances wasmtime's epoch every
//! `epoch_tick`, and each store checks its [`TaskControl`] and CPU clock on every tick.
//! [`Sandbox::run`] is synchronous and CPU-bound: call it from a blocking thread.

mod host;
mod output;
mod run;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::{Engine, InstancePre, Linker, Module};

pub use run::{ElementRead, NoEvents, TaskElement, TaskEvents, TaskInput};

/// Settings of the sandbox shared by all tasks of one engine.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// How often running tasks check for stop requests and CPU time; the worst-case delay of a
    /// forced stop.
    pub epoch_tick: Duration,
    /// Compiled modules kept in memory, keyed by the SHA-256 of their bytes.
    pub module_cache_entries: usize,
    /// Maximum WebAssembly stack per task.
    pub wasm_stack_bytes_max: usize,
    /// Instances kept in a pool of pre-mapped memory (0: map memory for every instance). A pool
    /// saves the mapping and unmapping (and the TLB shootdowns) of every short task; it must
    /// hold at least as many instances as run at once.
    pub pooled_instances: u32,
    /// With a pool: the largest linear memory a task may grow to.
    pub pooled_memory_bytes_max: u64,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        SandboxConfig {
            epoch_tick: Duration::from_millis(10),
            module_cache_entries: 64,
            wasm_stack_bytes_max: 1 << 20,
            pooled_instances: 0,
            pooled_memory_bytes_max: 4 << 30,
        }
    }
}

/// Limits of one task run, set by the job and capped by the engine owner.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskLimits {
    pub memory_bytes_max: u64,
    pub cpu_time_max: Duration,
    pub result_bytes_max: usize,
    pub status_bytes_max: usize,
    pub checkpoint_bytes_max: usize,
    /// Bytes of stdout and stderr kept (the rest is dropped, never an error for the task).
    pub output_bytes_max: usize,
}

impl Default for TaskLimits {
    fn default() -> Self {
        TaskLimits {
            memory_bytes_max: 256 << 20,
            cpu_time_max: Duration::from_secs(3600),
            result_bytes_max: 64 << 20,
            status_bytes_max: 64 << 10,
            checkpoint_bytes_max: 64 << 20,
            output_bytes_max: 64 << 10,
        }
    }
}

/// How a task run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskOutcome {
    Succeeded(Vec<u8>),
    Failed(TaskFailure),
    /// Stopped on request (by the task itself in time, or by force after the grace period); the
    /// last checkpoint, if any, is in [`TaskRun::checkpoint`].
    Suspended,
    /// Killed without a stop request (the task was removed).
    Killed,
}

/// Why a task failed. The text of each reason reaches the client.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TaskFailure {
    #[error("the executable element is not a valid WebAssembly module: {0}")]
    InvalidModule(String),
    #[error(
        "the module imports '{module}::{name}', which the sandbox does not provide (only WASI preview 1, without its sockets, and the idlegrid runtime API are allowed)"
    )]
    ForbiddenImport { module: String, name: String },
    #[error("the module has no '_start' function (build it as a WASI command, e.g. a Rust binary for wasm32-wasip1)")]
    MissingEntryPoint,
    #[error("the task trapped: {0}")]
    Trap(String),
    #[error("the task exceeded its memory limit of {limit_bytes} bytes")]
    OutOfMemory { limit_bytes: u64 },
    #[error("the task exceeded its CPU-time limit of {limit_ms} ms")]
    CpuTimeExceeded { limit_ms: u64 },
    #[error("the task exited with code {0} without sending a result")]
    Exit(i32),
    #[error("the task returned without sending a result")]
    NoResult,
    #[error("the task reported failure: {0}")]
    Reported(String),
    #[error("the sandbox failed: {0}")]
    Internal(String),
}

/// Everything a run produced.
#[derive(Debug, Clone)]
pub struct TaskRun {
    pub outcome: TaskOutcome,
    /// The last checkpoint saved in this run, or the one it was restored from.
    pub checkpoint: Option<Vec<u8>>,
    /// CPU time the task used on its thread (wall time where the platform has no thread clock).
    pub cpu_time: Duration,
    /// The first bytes the task wrote to stdout and stderr.
    pub output: Vec<u8>,
}

/// A shared handle through which the engine asks a running task to stop, checkpoint, or die.
#[derive(Debug, Clone, Default)]
pub struct TaskControl(Arc<ControlState>);

#[derive(Debug, Default)]
struct ControlState {
    request: AtomicI32,
    kill: AtomicBool,
    /// Fast check for the epoch callback; the mutex and condvar are for waiting.
    paused: AtomicBool,
    pause_lock: Mutex<()>,
    unpaused: std::sync::Condvar,
    /// When the task's thread last parked (stopped using the CPU) for a pause.
    parked_at: Mutex<Option<std::time::Instant>>,
}

impl TaskControl {
    pub fn new() -> Self {
        Self::default()
    }
    /// Ask the task to checkpoint and return; see the grace period in the engine. A paused task
    /// wakes up to do so.
    pub fn request_stop(&self) {
        self.0.request.store(idlegrid_task_abi::control::STOP, Ordering::SeqCst);
        self.wake();
    }
    /// Ask the task to save a checkpoint and go on (ignored if a stop is pending).
    pub fn request_checkpoint(&self) {
        let _ = self.0.request.compare_exchange(
            idlegrid_task_abi::control::CONTINUE,
            idlegrid_task_abi::control::CHECKPOINT,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }
    /// Stop the task at its next instruction boundary (within one epoch tick).
    pub fn kill(&self) {
        self.0.kill.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// Freeze the task where it is, within one epoch tick: it stays in memory and uses no CPU
    /// until [`resume`](Self::resume). A stop request or a kill ends the pause.
    pub fn pause(&self) {
        self.0.paused.store(true, Ordering::SeqCst);
    }

    pub fn resume(&self) {
        self.0.paused.store(false, Ordering::SeqCst);
        self.wake();
    }

    pub fn is_paused(&self) -> bool {
        self.0.paused.load(Ordering::SeqCst)
    }

    fn wake(&self) {
        let _guard = self.0.pause_lock.lock().unwrap_or_else(|p| p.into_inner());
        self.0.unpaused.notify_all();
    }

    /// When the task last stopped using the CPU for a pause (for measuring pause latency).
    pub fn parked_at(&self) -> Option<std::time::Instant> {
        *self.0.parked_at.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// On the task's thread: block while paused (no CPU used).
    fn wait_while_paused(&self) {
        *self.0.parked_at.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
        let mut guard = self.0.pause_lock.lock().unwrap_or_else(|p| p.into_inner());
        while self.is_paused() && !self.killed() && !self.stop_requested() {
            guard =
                self.0.unpaused.wait_timeout(guard, Duration::from_millis(100)).unwrap_or_else(|p| p.into_inner()).0;
        }
    }
    pub fn stop_requested(&self) -> bool {
        self.0.request.load(Ordering::SeqCst) == idlegrid_task_abi::control::STOP
    }
    pub fn killed(&self) -> bool {
        self.0.kill.load(Ordering::SeqCst)
    }
    fn take_request(&self) -> i32 {
        // A checkpoint request is answered once; a stop request stays until the task ends.
        let value = self.0.request.load(Ordering::SeqCst);
        if value == idlegrid_task_abi::control::CHECKPOINT {
            let _ = self.0.request.compare_exchange(
                value,
                idlegrid_task_abi::control::CONTINUE,
                Ordering::SeqCst,
                Ordering::SeqCst,
            );
        }
        value
    }
}

/// A module compiled and linked, ready to instantiate many times.
pub struct CompiledTask {
    pub sha256: [u8; 32],
    pre: InstancePre<host::TaskCtx>,
}

impl std::fmt::Debug for CompiledTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompiledTask").field("sha256", &hex_short(&self.sha256)).finish()
    }
}

fn hex_short(bytes: &[u8]) -> String {
    bytes.iter().take(6).map(|b| format!("{b:02x}")).collect()
}

/// How a task's floating-point NaNs come out.
///
/// WebAssembly arithmetic is deterministic except for the bits of a NaN, which differ between
/// processors. `Canonical` (the default) rewrites every NaN an instruction produces into one
/// pattern, so replicas of a task on different machines compute the same bytes and results can
/// be compared; it costs a compare and a select after every float instruction (measured with
/// `idlegrid bench-kernels`: 1.6x on the pi kernel, 1.9x on Mandelbrot). `Native` leaves NaNs as
/// the processor makes them, for jobs that never compare results across engines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum FloatNans {
    #[default]
    Canonical,
    Native,
}

/// The wasmtime engine, linker, module cache and epoch ticker of one compute engine.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

/// A wasmtime engine and its linker: one per [`FloatNans`] mode, since the mode is an engine
/// setting that compiled code depends on.
struct Runtime {
    engine: Engine,
    linker: Linker<host::TaskCtx>,
}

impl Runtime {
    fn new(config: &SandboxConfig, nans: FloatNans) -> Result<Runtime, TaskFailure> {
        let mut wasm = wasmtime::Config::new();
        wasm.epoch_interruption(true)
            .max_wasm_stack(config.wasm_stack_bytes_max)
            .cranelift_nan_canonicalization(nans == FloatNans::Canonical)
            .relaxed_simd_deterministic(true)
            // Features a task has no use for are off: less attack surface. (Threads, GC and
            // the component model are not even compiled into this build of wasmtime.)
            .wasm_memory64(false)
            .wasm_multi_memory(false);
        if config.pooled_instances > 0 {
            let mut pool = wasmtime::PoolingAllocationConfig::default();
            pool.total_core_instances(config.pooled_instances)
                .total_memories(config.pooled_instances)
                .total_tables(config.pooled_instances * 4)
                .max_memories_per_module(1)
                .max_memory_size(config.pooled_memory_bytes_max.min(4 << 30) as usize);
            wasm.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
            // Copy data segments into memory at instantiation rather than mapping them
            // copy-on-write: a short task would otherwise take a write fault, and a TLB
            // shootdown across cores, for each page it touches. (Measured with `idlegrid bench`:
            // 7.1k trivial tasks/s against 5.7k with copy-on-write; keeping pages resident
            // between tasks made no difference beyond noise.)
            wasm.memory_init_cow(false);
        }
        let engine = Engine::new(&wasm).map_err(|e| TaskFailure::Internal(e.to_string()))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |ctx: &mut host::TaskCtx| &mut ctx.wasi)
            .map_err(|e| TaskFailure::Internal(e.to_string()))?;
        host::add_nonblocking_poll(&mut linker).map_err(|e| TaskFailure::Internal(e.to_string()))?;
        host::add_runtime_api(&mut linker).map_err(|e| TaskFailure::Internal(e.to_string()))?;
        Ok(Runtime { engine, linker })
    }
}

struct Inner {
    canonical: Runtime,
    /// Made on the first task that asks for native NaNs (most engines never need it, and each
    /// runtime reserves its own pool of instance memory).
    native: OnceLock<Runtime>,
    modules: Mutex<ModuleCache>,
    ticker_stop: Arc<AtomicBool>,
    config: SandboxConfig,
}

impl Inner {
    fn runtime(&self, nans: FloatNans) -> Result<&Runtime, TaskFailure> {
        match nans {
            FloatNans::Canonical => Ok(&self.canonical),
            FloatNans::Native => {
                if let Some(runtime) = self.native.get() {
                    return Ok(runtime);
                }
                let runtime = Runtime::new(&self.config, FloatNans::Native)?;
                Ok(self.native.get_or_init(|| runtime))
            }
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::SeqCst);
    }
}

#[derive(Default)]
struct ModuleCache {
    entries: HashMap<([u8; 32], FloatNans), (u64, Arc<CompiledTask>)>,
    clock: u64,
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Result<Sandbox, TaskFailure> {
        let canonical = Runtime::new(&config, FloatNans::Canonical)?;
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let inner = Arc::new(Inner {
            canonical,
            native: OnceLock::new(),
            modules: Mutex::new(ModuleCache::default()),
            ticker_stop: ticker_stop.clone(),
            config,
        });
        {
            // The ticker holds the sandbox weakly, so dropping the last `Sandbox` stops it.
            let inner = Arc::downgrade(&inner);
            let tick = inner.upgrade().map(|i| i.config.epoch_tick).unwrap_or(Duration::from_millis(10));
            std::thread::Builder::new()
                .name("idlegrid-epoch".into())
                .spawn(move || {
                    while !ticker_stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        let Some(inner) = inner.upgrade() else { break };
                        inner.canonical.engine.increment_epoch();
                        if let Some(native) = inner.native.get() {
                            native.engine.increment_epoch();
                        }
                    }
                })
                .map_err(|e| TaskFailure::Internal(format!("cannot start the epoch ticker: {e}")))?;
        }
        Ok(Sandbox { inner })
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// Compile (or find in the cache) a task module, checking that it imports only what the
    /// runtime provides and has a `_start` entry point.
    pub fn compile(&self, wasm: &[u8]) -> Result<Arc<CompiledTask>, TaskFailure> {
        self.compile_for(wasm, FloatNans::Canonical)
    }

    /// [`Sandbox::compile`] for a task that runs with NaNs as `nans` says.
    pub fn compile_for(&self, wasm: &[u8], nans: FloatNans) -> Result<Arc<CompiledTask>, TaskFailure> {
        let sha256: [u8; 32] = Sha256::digest(wasm).into();
        {
            let mut cache = self.inner.modules.lock().unwrap_or_else(|p| p.into_inner());
            cache.clock += 1;
            let clock = cache.clock;
            if let Some(entry) = cache.entries.get_mut(&(sha256, nans)) {
                entry.0 = clock;
                return Ok(entry.1.clone());
            }
        }
        let runtime = self.inner.runtime(nans)?;
        let module = Module::new(&runtime.engine, wasm).map_err(|e| TaskFailure::InvalidModule(format!("{e:#}")))?;
        check_imports(&module)?;
        if !module.exports().any(|e| e.name() == "_start" && e.ty().func().is_some()) {
            return Err(TaskFailure::MissingEntryPoint);
        }
        let pre = runtime
            .linker
            .instantiate_pre(&module)
            .map_err(|e| TaskFailure::InvalidModule(format!("cannot link the module: {e:#}")))?;
        let compiled = Arc::new(CompiledTask { sha256, pre });
        let mut cache = self.inner.modules.lock().unwrap_or_else(|p| p.into_inner());
        if cache.entries.len() >= self.inner.config.module_cache_entries.max(1)
            && let Some(oldest) = cache.entries.iter().min_by_key(|(_, (used, _))| *used).map(|(k, _)| *k)
        {
            cache.entries.remove(&oldest);
        }
        let clock = cache.clock;
        cache.entries.insert((sha256, nans), (clock, compiled.clone()));
        Ok(compiled)
    }

    /// Run a task to its end (result, failure, suspension or kill). Blocks the calling thread.
    pub fn run(
        &self,
        task: &CompiledTask,
        input: TaskInput,
        limits: &TaskLimits,
        control: &TaskControl,
        events: Box<dyn TaskEvents>,
    ) -> TaskRun {
        run::run(task.pre.module().engine(), task, input, limits, control, events)
    }
}

fn check_imports(module: &Module) -> Result<(), TaskFailure> {
    use idlegrid_task_abi::{MODULE, WASI_MODULE, func};
    for import in module.imports() {
        let allowed = match import.module() {
            // WASI preview 1 functions, except its sockets: a task has no network (P3.6), so a
            // module that asks for one is refused up front with the name of what it asked for,
            // rather than failing somewhere in the middle of its run.
            WASI_MODULE => import.ty().func().is_some() && !import.name().starts_with("sock_"),
            MODULE => func::ALL.contains(&import.name()),
            _ => false,
        };
        if !allowed {
            return Err(TaskFailure::ForbiddenImport {
                module: import.module().to_string(),
                name: import.name().to_string(),
            });
        }
    }
    Ok(())
}
