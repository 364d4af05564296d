//! The example kernels compute the same bytes in the engine's sandbox as their native twins,
//! through `idlegrid bench-kernels` (its timing figures are not checked: they belong to benchmarks).

use std::process::Command;

#[test]
fn every_kernel_agrees_between_the_sandbox_and_its_native_twin() {
    let wasm_dir = idlegrid_testkit::build_example_tasks().expect("the example tasks build");
    let native_dir = idlegrid_testkit::build_native_kernels().expect("the native kernels build");
    let output = Command::new(env!("CARGO_BIN_EXE_idlegrid"))
        .args(["bench-kernels", "--scale", "tiny", "--runs", "1", "--tasks-dir"])
        .arg(&wasm_dir)
        .arg("--native-dir")
        .arg(&native_dir)
        .output()
        .expect("idlegrid runs");
    let table = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "bench-kernels failed: {}\n{table}", String::from_utf8_lossy(&output.stderr));
    for kernel in idlegrid_testkit::NATIVE_KERNELS {
        let row = table.lines().find(|line| line.starts_with(&format!("| {kernel} |"))).unwrap_or_else(|| {
            panic!("no row for {kernel} in:\n{table}");
        });
        assert!(row.trim_end().ends_with("| yes |"), "{kernel} differs: {row}");
    }
    assert!(table.contains("| geometric mean |"), "{table}");
}

#[test]
fn the_hash_kernel_is_sha256() {
    // With no data and one round the kernel hashes the 32 zero bytes of its initial digest.
    let native_dir = idlegrid_testkit::build_native_kernels().expect("the native kernels build");
    let output = Command::new(native_dir.join("hash")).args(["bytes=0", "rounds=1"]).output().expect("hash runs");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "66687aadf862bd776c8fc18b8e9f8e20089714856ee233b3902a591d0d5f2925"
    );
    let refused = Command::new(native_dir.join("matmul")).arg("n=0").output().expect("matmul runs");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("n must be between 1 and 2048"));
}
