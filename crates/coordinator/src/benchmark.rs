//! The CPU benchmark (P5.1): a task with a known answer that measures how fast an engine
//! computes. Pure: the module's text, the native twin that computes its answer, and the work it
//! does. The coordinator places it (`profiles`); engines run it like any other task.
//!
//! The kernel fills two n×n matrices of f64 from an integer LCG seeded by the parameters,
//! multiplies them (triple loop, i-k-j order, one f64 multiply and one add per step) and returns
//! the 8 bytes (little endian) of the f64 sum of every entry of the product. IEEE addition and
//! multiplication are deterministic and the module uses no fused multiply-add, so
//! [`expected_answer`], doing the same operations in the same order, gives the same bits.
//!
//! Parameters: 8 bytes, n then seed, each a little-endian u32 (see [`params`]). n is at most
//! [`SIZE_MAX`]; other parameters make the task fail with a reason.

use std::sync::OnceLock;

/// Largest matrix size the kernel accepts (three matrices of 2048² f64 are 96 MiB).
pub const SIZE_MAX: u32 = 2048;

/// Multiplier and increment of the LCG (Knuth's MMIX constants), shared by both twins.
const LCG_MUL: u64 = 6364136223846793005;
const LCG_ADD: u64 = 1442695040888963407;

/// The task module, in WebAssembly text. Imports only from the runtime API (`idlegrid`),
/// exports `_start` and `memory`. Between rows of the product it asks `control()` whether to
/// stop and, if so, returns without a result (the engine hands it back; it restarts from
/// scratch, as it keeps no checkpoint).
pub const WAT: &str = r#"
(module
  (import "idlegrid" "params_len" (func $params_len (result i32)))
  (import "idlegrid" "params_read" (func $params_read (param i32 i32) (result i32)))
  (import "idlegrid" "result_set" (func $result_set (param i32 i32) (result i32)))
  (import "idlegrid" "fail" (func $fail (param i32 i32) (result i32)))
  (import "idlegrid" "control" (func $control (result i32)))
  (memory (export "memory") 1)
  ;; 0..8: parameters, then the result; 16..: messages; 64..: the matrices A, B and C.
  (data (i32.const 16) "bad parameters")
  (data (i32.const 32) "out of memory")

  ;; Fill `count` f64 at `at` from the LCG state `x`; returns the state after the last one.
  (func $fill (param $at i32) (param $count i32) (param $x i64) (result i64)
    (local $end i32)
    (local.set $end (i32.add (local.get $at) (i32.shl (local.get $count) (i32.const 3))))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $at) (local.get $end)))
        (local.set $x (i64.add (i64.mul (local.get $x) (i64.const 6364136223846793005)) (i64.const 1442695040888963407)))
        (f64.store (local.get $at)
          (f64.div
            (f64.convert_i64_u (i64.and (i64.shr_u (local.get $x) (i64.const 33)) (i64.const 1023)))
            (f64.const 1024)))
        (local.set $at (i32.add (local.get $at) (i32.const 8)))
        (br $next)))
    (local.get $x))

  (func (export "_start")
    (local $n i32) (local $nn i32) (local $row i32) (local $a i32) (local $b i32) (local $c i32) (local $end i32)
    (local $pages i32) (local $i i32) (local $k i32) (local $p i32) (local $q i32) (local $row_end i32)
    (local $aik f64) (local $sum f64)
    (if (i32.ne (call $params_len) (i32.const 8))
      (then (drop (call $fail (i32.const 16) (i32.const 14))) (return)))
    (drop (call $params_read (i32.const 0) (i32.const 8)))
    (local.set $n (i32.load (i32.const 0)))
    (if (i32.or (i32.eqz (local.get $n)) (i32.gt_u (local.get $n) (i32.const 2048)))
      (then (drop (call $fail (i32.const 16) (i32.const 14))) (return)))
    (local.set $nn (i32.mul (local.get $n) (local.get $n)))
    (local.set $row (i32.shl (local.get $n) (i32.const 3)))
    (local.set $a (i32.const 64))
    (local.set $b (i32.add (local.get $a) (i32.shl (local.get $nn) (i32.const 3))))
    (local.set $c (i32.add (local.get $b) (i32.shl (local.get $nn) (i32.const 3))))
    (local.set $end (i32.add (local.get $c) (i32.shl (local.get $nn) (i32.const 3))))
    (local.set $pages (i32.sub (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16)) (memory.size)))
    (if (i32.gt_s (local.get $pages) (i32.const 0))
      (then
        (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1))
          (then (drop (call $fail (i32.const 32) (i32.const 13))) (return)))))
    ;; A, then B, from one LCG stream starting at the seed.
    (drop (call $fill (local.get $b) (local.get $nn)
      (call $fill (local.get $a) (local.get $nn) (i64.extend_i32_u (i32.load (i32.const 4))))))
    ;; C = A B, i-k-j: C[i][j] = C[i][j] + A[i][k] * B[k][j]. Fresh memory is zero.
    (local.set $i (i32.const 0))
    (block $rows_done
      (loop $rows
        (br_if $rows_done (i32.ge_u (local.get $i) (local.get $n)))
        (if (i32.eq (call $control) (i32.const 1)) (then (return)))
        (local.set $k (i32.const 0))
        (block $ks_done
          (loop $ks
            (br_if $ks_done (i32.ge_u (local.get $k) (local.get $n)))
            (local.set $aik (f64.load (i32.add (local.get $a)
              (i32.shl (i32.add (i32.mul (local.get $i) (local.get $n)) (local.get $k)) (i32.const 3)))))
            (local.set $p (i32.add (local.get $c) (i32.mul (local.get $i) (local.get $row))))
            (local.set $row_end (i32.add (local.get $p) (local.get $row)))
            (local.set $q (i32.add (local.get $b) (i32.mul (local.get $k) (local.get $row))))
            (block $js_done
              (loop $js
                (br_if $js_done (i32.ge_u (local.get $p) (local.get $row_end)))
                (f64.store (local.get $p)
                  (f64.add (f64.load (local.get $p)) (f64.mul (local.get $aik) (f64.load (local.get $q)))))
                (local.set $p (i32.add (local.get $p) (i32.const 8)))
                (local.set $q (i32.add (local.get $q) (i32.const 8)))
                (br $js)))
            (local.set $k (i32.add (local.get $k) (i32.const 1)))
            (br $ks)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $rows)))
    ;; The sum of C, in storage order.
    (local.set $sum (f64.const 0))
    (local.set $p (local.get $c))
    (block $sum_done
      (loop $sums
        (br_if $sum_done (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $sum (f64.add (local.get $sum) (f64.load (local.get $p))))
        (local.set $p (i32.add (local.get $p) (i32.const 8)))
        (br $sums)))
    (f64.store (i32.const 0) (local.get $sum))
    (drop (call $result_set (i32.const 0) (i32.const 8))))
)
"#;

/// The module's bytes, assembled once from [`WAT`].
pub fn module_bytes() -> &'static [u8] {
    static BYTES: OnceLock<Vec<u8>> = OnceLock::new();
    BYTES.get_or_init(|| wat::parse_str(WAT).expect("the benchmark module assembles"))
}

/// The parameters of one run.
pub fn params(n: u32, seed: u32) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(8);
    bytes.extend_from_slice(&n.to_le_bytes());
    bytes.extend_from_slice(&seed.to_le_bytes());
    bytes
}

/// The (n, seed) of parameters made by [`params`].
pub fn parse_params(bytes: &[u8]) -> Option<(u32, u32)> {
    let bytes: &[u8; 8] = bytes.try_into().ok()?;
    let n = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let seed = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    (1..=SIZE_MAX).contains(&n).then_some((n, seed))
}

/// Floating-point operations of one run: a multiply and an add per step of the n³ loop (the
/// filling and the final sum, O(n²), are not counted).
pub fn flops(n: u32) -> f64 {
    2.0 * (n as f64).powi(3)
}

fn fill(values: &mut [f64], mut x: u64) -> u64 {
    for value in values {
        x = x.wrapping_mul(LCG_MUL).wrapping_add(LCG_ADD);
        *value = ((x >> 33) & 1023) as f64 / 1024.0;
    }
    x
}

/// The answer the module gives for (n, seed), computed natively with the same operations in
/// the same order (Rust never fuses a multiply and an add on its own).
pub fn expected_answer(n: u32, seed: u32) -> [u8; 8] {
    let n = n as usize;
    let mut a = vec![0.0f64; n * n];
    let mut b = vec![0.0f64; n * n];
    let x = fill(&mut a, seed as u64);
    fill(&mut b, x);
    let mut c = vec![0.0f64; n * n];
    for i in 0..n {
        let row = &mut c[i * n..(i + 1) * n];
        for k in 0..n {
            let aik = a[i * n + k];
            let b_row = &b[k * n..(k + 1) * n];
            for (cij, bkj) in row.iter_mut().zip(b_row) {
                *cij += aik * *bkj;
            }
        }
    }
    let mut sum = 0.0f64;
    for value in &c {
        sum += *value;
    }
    sum.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use idlegrid_sandbox::{NoEvents, Sandbox, SandboxConfig, TaskControl, TaskInput, TaskLimits, TaskOutcome};

    fn run(sandbox: &Sandbox, params: Vec<u8>) -> (TaskOutcome, std::time::Duration) {
        let task = sandbox.compile(module_bytes()).expect("the sandbox accepts the benchmark");
        let run = sandbox.run(
            &task,
            TaskInput { params, ..TaskInput::default() },
            &TaskLimits::default(),
            &TaskControl::new(),
            Box::new(NoEvents),
        );
        (run.outcome, run.cpu_time)
    }

    #[test]
    fn the_sandbox_gives_the_native_answer_bit_for_bit() {
        let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
        for (n, seed) in [(1, 0), (2, 7), (17, 12345), (64, u32::MAX), (100, 42)] {
            let (outcome, _) = run(&sandbox, params(n, seed));
            let expected = expected_answer(n, seed);
            assert_eq!(outcome, TaskOutcome::Succeeded(expected.to_vec()), "n={n} seed={seed}");
            let sum = f64::from_le_bytes(expected);
            assert!(sum > 0.0 && sum < (n as f64).powi(3), "a plausible sum for n={n}: {sum}");
        }
        // Another size or seed gives another answer: an engine cannot answer without the work.
        let (outcome, _) = run(&sandbox, params(64, 1));
        assert_ne!(outcome, TaskOutcome::Succeeded(expected_answer(63, 1).to_vec()));
        assert_ne!(outcome, TaskOutcome::Succeeded(expected_answer(64, 2).to_vec()));
        assert_ne!(expected_answer(64, 1), expected_answer(64, 2));
    }

    #[test]
    fn bad_parameters_fail_with_a_reason() {
        let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
        for bad in [Vec::new(), vec![1, 2, 3], params(0, 1), params(SIZE_MAX + 1, 1), b"n=300 seed=1".to_vec()] {
            let (outcome, _) = run(&sandbox, bad.clone());
            assert!(
                matches!(outcome, TaskOutcome::Failed(idlegrid_sandbox::TaskFailure::Reported(ref why)) if why == "bad parameters"),
                "{bad:?}: {outcome:?}"
            );
        }
        assert_eq!(parse_params(&params(300, 9)), Some((300, 9)));
        assert_eq!(parse_params(&params(0, 9)), None);
        assert_eq!(parse_params(b"short"), None);
        assert_eq!(flops(300), 54_000_000.0);
    }
}
