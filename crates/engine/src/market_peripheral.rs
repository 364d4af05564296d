//! Peripherals the owner sells on the market, served by the engine: for each kind it offers
//! (`[peripherals.printer]` in the settings file) the owner names a handler program. When a
//! buyer uses the peripheral, the engine writes the input to a file, runs the handler with the
//! input's path and an output path as its two arguments (directly, no shell), waits at most the
//! handler's timeout (then kills it) and returns the output, refused over the size limit.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Kinds of peripherals an owner may name at most.
pub const KINDS_MAX: usize = 64;

/// The handler of one kind of peripheral.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeripheralHandler {
    /// The program run for each use: `command INPUT OUTPUT`.
    pub command: PathBuf,
    /// Longest time one use may take.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Largest output returned (never more than the market carries).
    #[serde(default = "default_output_bytes_max")]
    pub output_bytes_max: u64,
}

fn default_timeout_secs() -> u64 {
    60
}

fn default_output_bytes_max() -> u64 {
    idlegrid_protocol::market::PERIPHERAL_BYTES_MAX as u64
}

/// Why the settings of peripherals are refused, if they are.
pub fn check(peripherals: &BTreeMap<String, PeripheralHandler>) -> Result<(), String> {
    if peripherals.len() > KINDS_MAX {
        return Err(format!("peripherals: at most {KINDS_MAX} kinds"));
    }
    for (kind, handler) in peripherals {
        let what = format!("peripherals.{kind}");
        if kind.is_empty()
            || kind.len() > 64
            || !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(format!("{what}: a kind is 1 to 64 letters, digits, '-' or '_'"));
        }
        if !handler.command.is_absolute() {
            return Err(format!("{what}.command must be an absolute path, not {}", handler.command.display()));
        }
        if handler.timeout_secs == 0 || handler.timeout_secs > 24 * 3600 {
            return Err(format!("{what}.timeout_secs must be from 1 to 86400"));
        }
        if handler.output_bytes_max == 0 {
            return Err(format!("{what}.output_bytes_max must be at least 1"));
        }
    }
    Ok(())
}

/// Run `handler` on `input` in the folder `work` (created, and removed afterwards): the output,
/// or why there is none (said to the buyer).
pub async fn serve(handler: &PeripheralHandler, work: &Path, input: &[u8]) -> Result<Vec<u8>, String> {
    std::fs::create_dir_all(work).map_err(|e| format!("the engine cannot prepare the use: {e}"))?;
    let outcome = run(handler, work, input).await;
    let _ = std::fs::remove_dir_all(work);
    outcome
}

async fn run(handler: &PeripheralHandler, work: &Path, input: &[u8]) -> Result<Vec<u8>, String> {
    let (input_path, output_path) = (work.join("input"), work.join("output"));
    std::fs::write(&input_path, input).map_err(|e| format!("the engine cannot write the input: {e}"))?;
    let mut child = tokio::process::Command::new(&handler.command)
        .arg(&input_path)
        .arg(&output_path)
        .current_dir(work)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("the peripheral's handler did not start: {e}"))?;
    let timeout = Duration::from_secs(handler.timeout_secs);
    let status = match tokio::time::timeout(timeout, child.wait()).await {
        Ok(status) => status.map_err(|e| format!("the peripheral's handler was lost: {e}"))?,
        Err(_) => {
            let _ = child.kill().await;
            return Err(format!("the peripheral's handler took more than {} s", handler.timeout_secs));
        }
    };
    if !status.success() {
        return Err(format!("the peripheral's handler failed ({status})"));
    }
    let limit = handler.output_bytes_max.min(default_output_bytes_max());
    let size =
        std::fs::metadata(&output_path).map_err(|_| "the peripheral's handler wrote no output".to_string())?.len();
    if size > limit {
        return Err(format!("the peripheral's output is {size} bytes, over the limit of {limit}"));
    }
    std::fs::read(&output_path).map_err(|e| format!("the engine cannot read the output: {e}"))
}

// The handlers of these tests are shell scripts.
#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn handler(script: &str, dir: &Path, timeout_secs: u64) -> PeripheralHandler {
        use std::os::unix::fs::PermissionsExt;
        let command = dir.join("handler.sh");
        std::fs::write(&command, format!("#!/bin/sh\n{script}\n")).unwrap();
        std::fs::set_permissions(&command, std::fs::Permissions::from_mode(0o755)).unwrap();
        PeripheralHandler { command, timeout_secs, output_bytes_max: 16 }
    }

    #[tokio::test]
    async fn a_handler_turns_the_input_into_the_output_within_its_limits() {
        let dir = tempfile::tempdir().unwrap();
        let upper = handler("tr a-z A-Z < \"$1\" > \"$2\"", dir.path(), 10);
        let work = dir.path().join("use-1");
        assert_eq!(serve(&upper, &work, b"hello").await.unwrap(), b"HELLO");
        assert!(!work.exists(), "the use's folder is removed");
        let long = serve(&upper, &work, &[b'a'; 17]).await.unwrap_err();
        assert!(long.contains("over the limit of 16"), "{long}");
        let failing = handler("exit 3", dir.path(), 10);
        assert!(serve(&failing, &work, b"x").await.unwrap_err().contains("failed"));
        let silent = handler("exit 0", dir.path(), 10);
        assert!(serve(&silent, &work, b"x").await.unwrap_err().contains("no output"));
        let slow = handler("sleep 30", dir.path(), 1);
        assert!(serve(&slow, &work, b"x").await.unwrap_err().contains("more than 1 s"));
        let missing = PeripheralHandler { command: dir.path().join("nothing"), ..upper };
        assert!(serve(&missing, &work, b"x").await.unwrap_err().contains("did not start"));
    }

    #[test]
    fn settings_name_absolute_commands_and_sane_limits() {
        let ok = PeripheralHandler { command: "/bin/true".into(), timeout_secs: 5, output_bytes_max: 10 };
        let mut set = BTreeMap::from([("printer".to_string(), ok.clone())]);
        assert_eq!(check(&set), Ok(()));
        set.insert("scanner".into(), PeripheralHandler { command: "true".into(), ..ok.clone() });
        assert!(check(&set).unwrap_err().contains("absolute"));
        let set = BTreeMap::from([("bad kind".to_string(), ok.clone())]);
        assert!(check(&set).unwrap_err().contains("a kind is"));
        let set = BTreeMap::from([("printer".to_string(), PeripheralHandler { timeout_secs: 0, ..ok })]);
        assert!(check(&set).unwrap_err().contains("timeout_secs"));
    }
}
