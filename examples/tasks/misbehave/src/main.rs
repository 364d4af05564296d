//! A task that misbehaves on purpose, to test that the sandbox contains it.
//! Parameter `mode`: trap, oom, loop, exit, noresult, fail, fail-hostile, read-file, read-env, missing-element,
//! big-result, stop-aware (loops until asked to stop, checkpointing), sleep (busy for `ms`).

use std::time::{Duration, Instant};

fn main() {
    let mode = idlegrid_guest::param("mode").unwrap_or_default();
    match mode.as_str() {
        "trap" => {
            let v: Vec<u32> = Vec::new();
            let i = idlegrid_guest::params().len() + 10;
            // Out-of-bounds index: a Rust panic, which aborts (an unreachable trap) in wasm.
            std::hint::black_box(v[i]);
        }
        "oom" => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                let mut block = vec![0u8; 16 << 20];
                block[0] = 1;
                hoard.push(std::hint::black_box(block));
            }
        }
        "loop" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
        "exit" => std::process::exit(3),
        "noresult" => {}
        "fail" => {
            let _ = idlegrid_guest::fail("the input is not what this task expects");
        }
        "fail-hostile" => {
            // Terminal escapes (retitle, clear screen, colour), a carriage return and a newline
            // that would forge a line: whoever shows this must escape it.
            let _ = idlegrid_guest::fail("\x1b]0;owned\x07\x1b[2J\x1b[31mred\rFORGED\nINFO all tasks succeeded");
        }
        "read-file" => idlegrid_guest::run(|| match std::fs::read("/etc/passwd") {
            Ok(bytes) => Ok(format!("ESCAPED: read {} bytes", bytes.len()).into_bytes()),
            Err(error) => Ok(format!("contained: {error}").into_bytes()),
        }),
        "read-env" => idlegrid_guest::run(|| {
            let vars: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
            let dir = std::fs::read_dir(".").map(|d| d.count()).unwrap_or(0);
            Ok(format!("env={} dir_entries={}", vars.len(), dir).into_bytes())
        }),
        "missing-element" => idlegrid_guest::run(|| {
            let data = idlegrid_guest::element("does-not-exist")?;
            Ok(data)
        }),
        "big-result" => idlegrid_guest::run(|| {
            let n: usize = idlegrid_guest::param("bytes").and_then(|b| b.parse().ok()).unwrap_or(1 << 20);
            Ok(vec![7u8; n])
        }),
        "stop-aware" => idlegrid_guest::run(|| {
            // Counts steps of 1 ms of busy work, checkpointing every `every` steps; the result
            // says how far it got and from which step it last restarted.
            let restored: u64 =
                idlegrid_guest::restore().map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).unwrap_or(0);
            let mut count = restored;
            let target: u64 = idlegrid_guest::param("target").and_then(|t| t.parse().ok()).unwrap_or(u64::MAX);
            let every: u64 = idlegrid_guest::param("every").and_then(|t| t.parse().ok()).unwrap_or(50).max(1);
            while count < target {
                count += 1;
                let spin = Instant::now();
                while spin.elapsed() < Duration::from_millis(1) {}
                if idlegrid_guest::should_stop() {
                    idlegrid_guest::checkpoint(&count.to_le_bytes())?;
                    return Err(idlegrid_guest::TaskError::Stopped);
                }
                if count % every == 0 {
                    idlegrid_guest::checkpoint(&count.to_le_bytes())?;
                    idlegrid_guest::progress(count as f32 / target.max(1) as f32);
                }
            }
            let result = if idlegrid_guest::param("report").is_some() {
                format!("{count} restored_from={restored}")
            } else {
                count.to_string()
            };
            Ok(result.into_bytes())
        }),
        "ignore-stop" => {
            let mut x: u64 = 0;
            loop {
                x = std::hint::black_box(x.wrapping_add(1));
                if x % 1_000_000 == 0 {
                    let _ = idlegrid_guest::checkpoint(&x.to_le_bytes());
                }
            }
        }
        "sleep" => idlegrid_guest::run(|| {
            let ms: u64 = idlegrid_guest::param("ms").and_then(|m| m.parse().ok()).unwrap_or(100);
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(ms) {
                std::hint::black_box(start.elapsed());
            }
            Ok(format!("slept {ms}").into_bytes())
        }),
        other => {
            let _ = idlegrid_guest::fail(&format!("unknown mode '{other}'"));
        }
    }
}
