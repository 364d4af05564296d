//! Multiplies two square matrices of `f64` (a dense linear-algebra kernel).
//! Parameters: `n` (size, at most 2048), `seed`, `repeat` (multiplications, each feeding the next
//! `B`). The matrices are filled from the seed, so every engine computes the same bits.
//! Result: `n checksum` as text, the checksum being the sum of the last product's entries.

use idlegrid_guest::TaskError;

fn number(name: &str, default: u64) -> Result<u64, TaskError> {
    match idlegrid_guest::param(name) {
        None => Ok(default),
        Some(text) => {
            text.parse().map_err(|_| TaskError::Failed(format!("parameter {name}={text} is not a whole number")))
        }
    }
}

/// Values in [-1, 1) from a 64-bit linear congruential generator (deterministic, cheap).
fn fill(values: &mut [f64], mut state: u64) {
    for value in values {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        *value = ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0;
    }
}

/// `c = a * b` for row-major `n` x `n` matrices, in i-k-j order so the inner loop walks rows of
/// `b` and `c` contiguously (what a compiler can vectorise).
fn multiply(a: &[f64], b: &[f64], c: &mut [f64], n: usize) {
    c.fill(0.0);
    for i in 0..n {
        let row = &mut c[i * n..(i + 1) * n];
        for k in 0..n {
            let scale = a[i * n + k];
            let b_row = &b[k * n..(k + 1) * n];
            for (out, value) in row.iter_mut().zip(b_row) {
                *out += scale * value;
            }
        }
    }
}

fn main() {
    idlegrid_guest::run(|| {
        let n = number("n", 256)?;
        let seed = number("seed", 1)?;
        let repeat = number("repeat", 1)?;
        if n == 0 || n > 2048 {
            return Err("n must be between 1 and 2048".into());
        }
        if repeat == 0 || repeat > 1000 {
            return Err("repeat must be between 1 and 1000".into());
        }
        let n = n as usize;
        let (mut a, mut b, mut c) = (vec![0.0; n * n], vec![0.0; n * n], vec![0.0; n * n]);
        fill(&mut a, seed);
        fill(&mut b, seed ^ 0x9E37_79B9_7F4A_7C15);
        for round in 0..repeat {
            multiply(&a, &b, &mut c, n);
            // Scale the product back into [-1, 1] so repeated rounds stay finite.
            let largest = c.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1.0);
            for (next, value) in b.iter_mut().zip(&c) {
                *next = value / largest;
            }
            idlegrid_guest::progress((round + 1) as f32 / repeat as f32);
        }
        let checksum: f64 = c.iter().sum();
        Ok(format!("{n} {checksum:.6}").into_bytes())
    });
}
