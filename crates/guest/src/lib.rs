//! The runtime API of an Idlegrid task, as plain Rust calls.
//!
//! A task is a WASI preview 1 program (`cargo build --target wasm32-wasip1`). Its `main` calls
//! [`run`] with a closure that computes the result:
//!
//! ```no_run
//! idlegrid_guest::run(|| {
//!     let n: u64 = idlegrid_guest::param("n").ok_or("missing parameter n")?.parse()
//!         .map_err(|e| format!("n is not a number: {e}"))?;
//!     Ok((n * n).to_string().into_bytes())
//! });
//! ```
//!
//! Long tasks call [`should_stop`] now and then; when it is true they save a [`checkpoint`] and
//! return [`TaskError::Stopped`]. When the task starts again, [`restore`] gives the checkpoint.
//!
//! Outside WebAssembly (for unit tests of task logic on the developer's machine) the same calls
//! work against an in-process environment set up with [`native::Env`]; a task binary built for
//! the host and started as a program takes its parameters from the command line and prints its
//! result (how a kernel's native twin is measured).

use idlegrid_task_abi::{code, control as ctl};

#[cfg(not(target_arch = "wasm32"))]
pub mod native;
mod sys;

/// An error from a runtime call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The named data element (or a checkpoint to restore) does not exist.
    NotFound(String),
    /// The data exceeds a size limit set by the job.
    TooLarge,
    /// An argument was invalid (for example a name that is not UTF-8).
    BadArgument,
    /// The environment failed to complete the call.
    Host,
    /// A result or failure was already sent.
    AlreadyFinished,
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::NotFound(name) => write!(f, "data element '{name}' not found"),
            Error::TooLarge => f.write_str("data exceeds the size limit set by the job"),
            Error::BadArgument => f.write_str("invalid argument to a runtime call"),
            Error::Host => f.write_str("the environment failed to complete the call"),
            Error::AlreadyFinished => f.write_str("a result or failure was already sent"),
        }
    }
}

impl std::error::Error for Error {}

fn check(rc: i64, name: &str) -> Result<i64, Error> {
    match rc {
        n if n >= 0 => Ok(n),
        n if n == code::NOT_FOUND as i64 => Err(Error::NotFound(name.to_string())),
        n if n == code::TOO_LARGE as i64 => Err(Error::TooLarge),
        n if n == code::BAD_ARGUMENT as i64 => Err(Error::BadArgument),
        n if n == code::ALREADY_FINISHED as i64 => Err(Error::AlreadyFinished),
        _ => Err(Error::Host),
    }
}

/// The task's initialization parameters, as given when the task was created.
pub fn params() -> Vec<u8> {
    let len = sys::params_len().max(0) as usize;
    let mut buf = vec![0u8; len];
    let copied = sys::params_read(&mut buf).max(0) as usize;
    buf.truncate(copied);
    buf
}

/// The parameters as text (invalid UTF-8 is replaced).
pub fn params_text() -> String {
    String::from_utf8_lossy(&params()).into_owned()
}

/// One `key=value` parameter. Parameters are separated by whitespace, `&` or `;`.
pub fn param(key: &str) -> Option<String> {
    parse_param(&params_text(), key)
}

fn parse_param(text: &str, key: &str) -> Option<String> {
    text.split(|c: char| c.is_whitespace() || c == '&' || c == ';')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v.to_string())
}

/// Size in bytes of the data element attached to this task under `name`.
pub fn element_len(name: &str) -> Result<u64, Error> {
    check(sys::element_len(name), name).map(|n| n as u64)
}

/// Read part of a data element into `buf`, starting at `offset`; returns the bytes read
/// (fewer than `buf.len()` only at the end of the element).
pub fn element_read_at(name: &str, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
    check(sys::element_read(name, offset as i64, buf) as i64, name).map(|n| n as usize)
}

/// The whole data element `name`.
pub fn element(name: &str) -> Result<Vec<u8>, Error> {
    let len = element_len(name)? as usize;
    let mut buf = vec![0u8; len];
    let mut filled = 0;
    while filled < len {
        let n = element_read_at(name, filled as u64, &mut buf[filled..])?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    buf.truncate(filled);
    Ok(buf)
}

/// The checkpoint saved by an earlier run of this task, if it was interrupted.
pub fn restore() -> Option<Vec<u8>> {
    let len = sys::checkpoint_len();
    if len < 0 {
        return None;
    }
    let mut buf = vec![0u8; len as usize];
    let copied = sys::checkpoint_read(&mut buf);
    if copied < 0 {
        return None;
    }
    buf.truncate(copied as usize);
    Some(buf)
}

/// Save a checkpoint; if the task is interrupted it restarts with [`restore`] returning `data`.
pub fn checkpoint(data: &[u8]) -> Result<(), Error> {
    check(sys::checkpoint_save(data) as i64, "checkpoint").map(|_| ())
}

/// Send an interim status (partial results, a message) with progress in `0.0..=1.0`.
pub fn set_status(data: &[u8], progress: f32) -> Result<(), Error> {
    check(sys::status_set(data, progress) as i64, "status").map(|_| ())
}

/// Report progress without status data.
pub fn progress(progress: f32) {
    let _ = set_status(&[], progress);
}

/// What the environment asks of the task right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    Continue,
    /// Save a checkpoint and return [`TaskError::Stopped`] soon.
    Stop,
    /// Save a checkpoint when convenient and keep going.
    Checkpoint,
}

pub fn control() -> Control {
    match sys::control() {
        ctl::STOP => Control::Stop,
        ctl::CHECKPOINT => Control::Checkpoint,
        _ => Control::Continue,
    }
}

/// True when the environment asks the task to stop (checkpoint, then return).
pub fn should_stop() -> bool {
    control() == Control::Stop
}

/// Send the final result. [`run`] calls this for you.
pub fn finish(result: &[u8]) -> Result<(), Error> {
    check(sys::result_set(result) as i64, "result").map(|_| ())
}

/// Report failure with a reason the client will see. [`run`] calls this for you.
pub fn fail(reason: &str) -> Result<(), Error> {
    check(sys::fail(reason.as_bytes()) as i64, "failure").map(|_| ())
}

/// Why a task's closure returned without a result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskError {
    /// The task saved a checkpoint and stops because the environment asked it to.
    Stopped,
    /// The task cannot complete; the reason reaches the client.
    Failed(String),
}

impl From<&str> for TaskError {
    fn from(reason: &str) -> Self {
        TaskError::Failed(reason.to_string())
    }
}

impl From<String> for TaskError {
    fn from(reason: String) -> Self {
        TaskError::Failed(reason)
    }
}

impl From<Error> for TaskError {
    fn from(error: Error) -> Self {
        TaskError::Failed(error.to_string())
    }
}

/// Run a task: the closure's `Ok` is sent as the final result, `Err(Failed)` as a failure,
/// `Err(Stopped)` suspends the task (its last checkpoint is kept).
pub fn run(task: impl FnOnce() -> Result<Vec<u8>, TaskError>) {
    #[cfg(not(target_arch = "wasm32"))]
    if !native::active() {
        return native::run_as_program(task);
    }
    match task() {
        Ok(result) => {
            if let Err(error) = finish(&result) {
                let _ = fail(&format!("could not send the result: {error}"));
            }
        }
        Err(TaskError::Failed(reason)) => {
            let _ = fail(&reason);
        }
        Err(TaskError::Stopped) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_parameters_in_several_separators() {
        assert_eq!(parse_param("a=1 b=2", "b").as_deref(), Some("2"));
        assert_eq!(parse_param("a=1&b=2;c=x=y", "c").as_deref(), Some("x=y"));
        assert_eq!(parse_param("a=1\nb=2", "a").as_deref(), Some("1"));
        assert_eq!(parse_param("a=1", "z"), None);
        assert_eq!(parse_param("", "a"), None);
    }

    #[test]
    fn native_environment_round_trip() {
        let env = native::Env::new(b"n=7".to_vec()).element("data", b"hello world".to_vec());
        let outcome = env.run(|| {
            assert_eq!(param("n").as_deref(), Some("7"));
            assert_eq!(element("data").unwrap(), b"hello world");
            let mut buf = [0u8; 5];
            assert_eq!(element_read_at("data", 6, &mut buf).unwrap(), 5);
            assert_eq!(&buf, b"world");
            assert_eq!(element("missing"), Err(Error::NotFound("missing".into())));
            assert!(restore().is_none());
            checkpoint(b"cp").unwrap();
            set_status(b"half", 0.5).unwrap();
            Ok(b"done".to_vec())
        });
        assert_eq!(outcome.result.as_deref(), Some(&b"done"[..]));
        assert_eq!(outcome.checkpoint.as_deref(), Some(&b"cp"[..]));
        assert_eq!(outcome.statuses, vec![(b"half".to_vec(), 0.5)]);
        assert_eq!(outcome.failure, None);
    }

    #[test]
    fn native_failure_and_stop() {
        let outcome = native::Env::new(vec![]).run(|| Err("bad input".into()));
        assert_eq!(outcome.failure.as_deref(), Some("bad input"));
        let outcome = native::Env::new(vec![]).stop_requested().run(|| {
            assert!(should_stop());
            checkpoint(b"state").unwrap();
            Err(TaskError::Stopped)
        });
        assert_eq!(outcome.result, None);
        assert_eq!(outcome.failure, None);
        assert_eq!(outcome.checkpoint.as_deref(), Some(&b"state"[..]));
    }
}
