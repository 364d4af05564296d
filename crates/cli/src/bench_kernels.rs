//! `idlegrid bench-kernels`: the example kernels in the engine's sandbox against the same source
//! built for this machine, run one after the other, and a table of the time ratios.
//!
//! Both sides run the same Rust source: the WebAssembly module in the sandbox as an engine runs
//! it (compiled once, instantiated from the engine's instance pool, epoch interruption and NaN
//! canonicalisation on, and again with the processor's own NaNs as a job may ask), the native twin as a program (`idlegrid_guest` takes its parameters
//! from the command line there). Runs alternate between the two sides so that whatever else
//! the machine does weighs on both alike; each figure is a median.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use idlegrid_sandbox::{FloatNans, NoEvents, Sandbox, SandboxConfig, TaskControl, TaskInput, TaskLimits, TaskOutcome};

use crate::cluster::{read_task, tasks_dir};

/// How big the workloads are: `full` takes about a second per kernel natively on a laptop core;
/// `tiny` only checks that both sides agree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scale {
    Full,
    Tiny,
}

/// A kernel and its parameters at each scale.
struct Kernel {
    name: &'static str,
    what: &'static str,
    full: &'static str,
    tiny: &'static str,
}

const KERNELS: &[Kernel] = &[
    Kernel { name: "pi", what: "Monte Carlo, f64", full: "samples=100000000 seed=3", tiny: "samples=10000 seed=3" },
    Kernel {
        name: "mandelbrot",
        what: "escape-time, f64",
        full: "x=0 y=0 w=800 h=600 width=800 height=600 iter=1500",
        tiny: "x=0 y=0 w=40 h=30 width=40 height=30 iter=100",
    },
    Kernel { name: "matmul", what: "dense f64 multiply", full: "n=512 repeat=8 seed=5", tiny: "n=24 repeat=2 seed=5" },
    Kernel {
        name: "hash",
        what: "SHA-256, integer",
        full: "bytes=16777216 rounds=4 seed=9",
        tiny: "bytes=100000 rounds=2 seed=9",
    },
];

/// One kernel's figures.
pub struct KernelFigures {
    pub name: &'static str,
    pub what: &'static str,
    pub native: Duration,
    /// In the sandbox with canonical NaNs (every job's default).
    pub wasm: Duration,
    /// In the sandbox with the processor's NaNs (a job's `native_nans`).
    pub wasm_native_nans: Duration,
    /// Both sides returned the same bytes.
    pub agree: bool,
}

impl KernelFigures {
    pub fn ratio(&self) -> f64 {
        self.wasm.as_secs_f64() / self.native.as_secs_f64().max(1e-9)
    }

    pub fn ratio_native_nans(&self) -> f64 {
        self.wasm_native_nans.as_secs_f64() / self.native.as_secs_f64().max(1e-9)
    }
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// The geometric mean of some ratios.
pub fn geometric_mean(ratios: &[f64]) -> f64 {
    if ratios.is_empty() {
        return 0.0;
    }
    (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp()
}

/// Where `cargo xtask bench-kernels` puts the native twins (the examples' own host build).
fn native_dir(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    let relative = Path::new("examples/tasks/target/release");
    let mut candidates: Vec<PathBuf> = given.into_iter().collect();
    candidates.push(relative.to_path_buf());
    for dir in &candidates {
        if KERNELS.iter().all(|k| dir.join(k.name).is_file()) {
            return Ok(dir.clone());
        }
    }
    anyhow::bail!(
        "the native builds of the kernels were not found in {}: build them with \
         `cargo build --release --manifest-path examples/tasks/Cargo.toml` (or run `cargo xtask bench-kernels`), \
         or pass --native-dir",
        candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(" or ")
    )
}

fn run_native(program: &Path, params: &str) -> anyhow::Result<(Duration, Vec<u8>)> {
    let started = Instant::now();
    let output = std::process::Command::new(program).args(params.split(' ')).output()?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        output.status.success(),
        "{} {params} failed: {}",
        program.display(),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    let mut result = output.stdout;
    if result.last() == Some(&b'\n') {
        result.pop();
    }
    Ok((elapsed, result))
}

/// The engine's sandbox settings: a pool of instances, as `idlegrid engine` starts it.
fn engine_sandbox() -> anyhow::Result<Sandbox> {
    let config = SandboxConfig { pooled_instances: 4, pooled_memory_bytes_max: 1 << 30, ..SandboxConfig::default() };
    Sandbox::new(config).map_err(|e| anyhow::anyhow!("cannot start the sandbox: {e}"))
}

/// Measure every kernel `runs` times on each side.
pub fn measure(
    tasks_dir_arg: Option<PathBuf>,
    native_dir_arg: Option<PathBuf>,
    scale: Scale,
    runs: u32,
) -> anyhow::Result<Vec<KernelFigures>> {
    let names: Vec<&str> = KERNELS.iter().map(|k| k.name).collect();
    let wasm_dir = tasks_dir(tasks_dir_arg, &names)?;
    let native_dir = native_dir(native_dir_arg)?;
    let sandbox = engine_sandbox()?;
    let limits = TaskLimits { memory_bytes_max: 1 << 30, ..TaskLimits::default() };
    let mut figures = Vec::new();
    for kernel in KERNELS {
        let params = if scale == Scale::Full { kernel.full } else { kernel.tiny };
        let wasm = read_task(&wasm_dir, kernel.name)?;
        let canonical = sandbox.compile(&wasm).map_err(|e| anyhow::anyhow!("{e}"))?;
        let native_nans = sandbox.compile_for(&wasm, FloatNans::Native).map_err(|e| anyhow::anyhow!("{e}"))?;
        let (mut native_times, mut wasm_times, mut native_nans_times) = (Vec::new(), Vec::new(), Vec::new());
        let mut agree = true;
        for _ in 0..runs.max(1) {
            let (native_time, native_result) = run_native(&native_dir.join(kernel.name), params)?;
            native_times.push(native_time);
            for (module, times) in [(&canonical, &mut wasm_times), (&native_nans, &mut native_nans_times)] {
                let started = Instant::now();
                let run = sandbox.run(
                    module,
                    TaskInput { params: params.as_bytes().to_vec(), ..TaskInput::default() },
                    &limits,
                    &TaskControl::new(),
                    Box::new(NoEvents),
                );
                times.push(started.elapsed());
                match run.outcome {
                    TaskOutcome::Succeeded(result) => agree &= result == native_result,
                    other => anyhow::bail!("{} did not finish in the sandbox: {other:?}", kernel.name),
                }
            }
        }
        figures.push(KernelFigures {
            name: kernel.name,
            what: kernel.what,
            native: median(native_times),
            wasm: median(wasm_times),
            wasm_native_nans: median(native_nans_times),
            agree,
        });
    }
    Ok(figures)
}

pub fn run(
    tasks_dir_arg: Option<PathBuf>,
    native_dir_arg: Option<PathBuf>,
    scale: Scale,
    runs: u32,
) -> anyhow::Result<()> {
    eprintln!("running {} kernels {runs} times on each side ...", KERNELS.len());
    let figures = measure(tasks_dir_arg, native_dir_arg, scale, runs)?;
    println!("| kernel | what | native s | wasm s | wasm / native | wasm, native NaNs s | ratio | same result |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
    for f in &figures {
        println!(
            "| {} | {} | {:.3} | {:.3} | {:.2}x | {:.3} | {:.2}x | {} |",
            f.name,
            f.what,
            f.native.as_secs_f64(),
            f.wasm.as_secs_f64(),
            f.ratio(),
            f.wasm_native_nans.as_secs_f64(),
            f.ratio_native_nans(),
            if f.agree { "yes" } else { "NO" }
        );
    }
    let canonical: Vec<f64> = figures.iter().map(KernelFigures::ratio).collect();
    let native_nans: Vec<f64> = figures.iter().map(KernelFigures::ratio_native_nans).collect();
    println!(
        "| geometric mean | | | | {:.2}x | | {:.2}x | |",
        geometric_mean(&canonical),
        geometric_mean(&native_nans)
    );
    anyhow::ensure!(figures.iter().all(|f| f.agree), "a kernel returned different bytes in the sandbox and natively");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_geometric_mean_of_ratios_is_the_nth_root_of_their_product() {
        let mean = geometric_mean(&[2.0, 8.0]);
        assert!((mean - 4.0).abs() < 1e-9, "{mean}");
        assert_eq!(geometric_mean(&[]), 0.0);
    }

    #[test]
    fn the_median_is_the_middle_run() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![ms(9), ms(1), ms(5)]), ms(5));
    }
}
