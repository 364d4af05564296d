//! An in-process runtime for unit tests of task logic outside WebAssembly.
//!
//! ```
//! let outcome = idlegrid_guest::native::Env::new(b"n=3".to_vec())
//!     .run(|| Ok(idlegrid_guest::param("n").unwrap().into_bytes()));
//! assert_eq!(outcome.result.as_deref(), Some(&b"3"[..]));
//! ```

use std::cell::RefCell;
use std::collections::BTreeMap;

/// The environment a task sees: parameters, elements, a checkpoint to restore, control state.
#[derive(Debug, Default, Clone)]
pub struct Env {
    params: Vec<u8>,
    elements: BTreeMap<String, Vec<u8>>,
    checkpoint: Option<Vec<u8>>,
    control: i32,
}

/// What a task did while it ran under [`Env::run`].
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Outcome {
    pub result: Option<Vec<u8>>,
    pub failure: Option<String>,
    pub checkpoint: Option<Vec<u8>>,
    pub statuses: Vec<(Vec<u8>, f32)>,
}

#[derive(Default)]
struct State {
    env: Env,
    outcome: Outcome,
    finished: bool,
}

thread_local! {
    static STATE: RefCell<Option<State>> = const { RefCell::new(None) };
}

impl Env {
    pub fn new(params: Vec<u8>) -> Self {
        Env { params, ..Env::default() }
    }

    pub fn element(mut self, name: &str, data: Vec<u8>) -> Self {
        self.elements.insert(name.to_string(), data);
        self
    }

    pub fn checkpoint(mut self, data: Vec<u8>) -> Self {
        self.checkpoint = Some(data);
        self
    }

    pub fn stop_requested(mut self) -> Self {
        self.control = idlegrid_task_abi::control::STOP;
        self
    }

    /// Run `task` as [`crate::run`] would inside the engine, and report what it did.
    pub fn run(self, task: impl FnOnce() -> Result<Vec<u8>, crate::TaskError>) -> Outcome {
        let checkpoint = self.checkpoint.clone();
        STATE.with(|s| {
            *s.borrow_mut() =
                Some(State { env: self, outcome: Outcome { checkpoint, ..Outcome::default() }, finished: false })
        });
        crate::run(task);
        STATE.with(|s| s.borrow_mut().take().map(|state| state.outcome).unwrap_or_default())
    }
}

/// Whether an [`Env::run`] is in progress on this thread.
pub(crate) fn active() -> bool {
    STATE.with(|s| s.borrow().is_some())
}

/// A task binary built for the host and started as a program (to compare a kernel's native
/// speed with its WebAssembly twin): its parameters are the command-line arguments joined by
/// spaces, its result goes to standard output, and a failure to standard error with exit
/// status 1. Elements and checkpoints are not available this way.
pub(crate) fn run_as_program(task: impl FnOnce() -> Result<Vec<u8>, crate::TaskError>) {
    use std::io::Write;
    let params = std::env::args().skip(1).collect::<Vec<_>>().join(" ");
    let outcome = Env::new(params.into_bytes()).run(task);
    if let Some(result) = outcome.result {
        let mut stdout = std::io::stdout();
        let _ = stdout.write_all(&result).and_then(|()| stdout.write_all(b"\n"));
    } else {
        eprintln!("task failed: {}", outcome.failure.as_deref().unwrap_or("stopped without a result"));
        std::process::exit(1);
    }
}

pub(crate) mod sys {
    use super::STATE;
    use idlegrid_task_abi::code;

    fn with<R>(f: impl FnOnce(&mut super::State) -> R) -> R {
        STATE.with(|s| {
            let mut guard = s.borrow_mut();
            let state =
                guard.as_mut().expect("idlegrid_guest calls outside WebAssembly need idlegrid_guest::native::Env::run");
            f(state)
        })
    }

    fn copy(src: &[u8], dst: &mut [u8]) -> i32 {
        let n = src.len().min(dst.len());
        dst[..n].copy_from_slice(&src[..n]);
        n as i32
    }

    pub fn params_len() -> i32 {
        with(|s| s.env.params.len() as i32)
    }
    pub fn params_read(buf: &mut [u8]) -> i32 {
        with(|s| copy(&s.env.params, buf))
    }
    pub fn element_len(name: &str) -> i64 {
        with(|s| s.env.elements.get(name).map_or(code::NOT_FOUND as i64, |e| e.len() as i64))
    }
    pub fn element_read(name: &str, offset: i64, buf: &mut [u8]) -> i32 {
        with(|s| match s.env.elements.get(name) {
            None => code::NOT_FOUND,
            Some(_) if offset < 0 => code::BAD_ARGUMENT,
            Some(data) => copy(data.get(offset as usize..).unwrap_or(&[]), buf),
        })
    }
    pub fn checkpoint_len() -> i64 {
        with(|s| s.outcome.checkpoint.as_ref().map_or(code::NOT_FOUND as i64, |c| c.len() as i64))
    }
    pub fn checkpoint_read(buf: &mut [u8]) -> i32 {
        with(|s| s.outcome.checkpoint.as_ref().map_or(code::NOT_FOUND, |c| copy(c, buf)))
    }
    pub fn checkpoint_save(data: &[u8]) -> i32 {
        with(|s| {
            s.outcome.checkpoint = Some(data.to_vec());
            code::OK
        })
    }
    pub fn status_set(data: &[u8], progress: f32) -> i32 {
        with(|s| {
            s.outcome.statuses.push((data.to_vec(), progress));
            code::OK
        })
    }
    pub fn result_set(data: &[u8]) -> i32 {
        with(|s| {
            if s.finished {
                return code::ALREADY_FINISHED;
            }
            s.finished = true;
            s.outcome.result = Some(data.to_vec());
            code::OK
        })
    }
    pub fn fail(data: &[u8]) -> i32 {
        with(|s| {
            if s.finished {
                return code::ALREADY_FINISHED;
            }
            s.finished = true;
            s.outcome.failure = Some(String::from_utf8_lossy(data).into_owned());
            code::OK
        })
    }
    pub fn control() -> i32 {
        with(|s| s.env.control)
    }
}
