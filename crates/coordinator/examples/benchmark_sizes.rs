//! How long the benchmark kernel (P5.1) takes in the sandbox at several sizes on this machine,
//! and the GFLOPS it measures: `cargo run --release -p idlegrid-coordinator --example benchmark_sizes`.

use idlegrid_coordinator::benchmark::{expected_answer, flops, module_bytes, params};
use idlegrid_sandbox::{NoEvents, Sandbox, SandboxConfig, TaskControl, TaskInput, TaskLimits, TaskOutcome};

fn main() {
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("the sandbox starts");
    let task = sandbox.compile(module_bytes()).expect("the sandbox accepts the benchmark");
    println!("| n | CPU time in the sandbox | GFLOPS | native twin |");
    println!("|---|---|---|---|");
    for n in [256, 384, 512, 640, 768] {
        let run = sandbox.run(
            &task,
            TaskInput { params: params(n, 3), ..TaskInput::default() },
            &TaskLimits::default(),
            &TaskControl::new(),
            Box::new(NoEvents),
        );
        let started = std::time::Instant::now();
        let expected = expected_answer(n, 3);
        let native = started.elapsed();
        assert_eq!(run.outcome, TaskOutcome::Succeeded(expected.to_vec()), "the sandbox's answer for n = {n}");
        let cpu = run.cpu_time.as_secs_f64();
        println!("| {n} | {cpu:.3} s | {:.2} | {:.3} s |", flops(n) / cpu / 1e9, native.as_secs_f64());
    }
}
