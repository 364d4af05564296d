//! The contract between a task (guest WebAssembly) and the environment that runs it (host).
//!
//! Both sides depend on this crate so that names and codes cannot drift apart. The guest imports
//! every function below from the module [`MODULE`]; pointers and lengths are in guest linear
//! memory. Functions that return `i32`/`i64` use negative values for the errors in [`code`].
//!
//! | import | signature | meaning |
//! | --- | --- | --- |
//! | `params_len` | `() -> i32` | length of the task's initialization parameters |
//! | `params_read` | `(dst, len) -> i32` | copy the parameters; returns bytes copied |
//! | `element_len` | `(name, name_len) -> i64` | size of a data element, or `NOT_FOUND` |
//! | `element_read` | `(name, name_len, offset: i64, dst, len) -> i32` | copy part of an element |
//! | `checkpoint_len` | `() -> i64` | size of the checkpoint to restore from, or `NOT_FOUND` |
//! | `checkpoint_read` | `(dst, len) -> i32` | copy the checkpoint to restore from |
//! | `checkpoint_save` | `(src, len) -> i32` | store a checkpoint (replaces the previous one) |
//! | `status_set` | `(src, len, progress: f32) -> i32` | send an interim status, progress in 0..=1 |
//! | `result_set` | `(src, len) -> i32` | send the final result; the task should then return |
//! | `fail` | `(src, len) -> i32` | report that the task failed, with a UTF-8 reason |
//! | `control` | `() -> i32` | what the environment asks of the task, one of [`control`] |
//!
//! Entry point: the WASI `_start` export. A restart is a start: a task that finds a checkpoint
//! (`checkpoint_len() >= 0`) resumes from it.
#![no_std]

/// Import module name of every runtime function.
pub const MODULE: &str = "idlegrid";

/// Import module of WASI preview 1, the only other module a task may import from.
pub const WASI_MODULE: &str = "wasi_snapshot_preview1";

/// Names of the imported functions.
pub mod func {
    pub const PARAMS_LEN: &str = "params_len";
    pub const PARAMS_READ: &str = "params_read";
    pub const ELEMENT_LEN: &str = "element_len";
    pub const ELEMENT_READ: &str = "element_read";
    pub const CHECKPOINT_LEN: &str = "checkpoint_len";
    pub const CHECKPOINT_READ: &str = "checkpoint_read";
    pub const CHECKPOINT_SAVE: &str = "checkpoint_save";
    pub const STATUS_SET: &str = "status_set";
    pub const RESULT_SET: &str = "result_set";
    pub const FAIL: &str = "fail";
    pub const CONTROL: &str = "control";

    /// Every function the runtime provides; a module may import nothing else from [`super::MODULE`].
    pub const ALL: [&str; 11] = [
        PARAMS_LEN,
        PARAMS_READ,
        ELEMENT_LEN,
        ELEMENT_READ,
        CHECKPOINT_LEN,
        CHECKPOINT_READ,
        CHECKPOINT_SAVE,
        STATUS_SET,
        RESULT_SET,
        FAIL,
        CONTROL,
    ];
}

/// Return codes (negative) shared by all functions.
pub mod code {
    /// Success for functions that return no length.
    pub const OK: i32 = 0;
    /// The named element, or a checkpoint to restore from, does not exist.
    pub const NOT_FOUND: i32 = -1;
    /// The data is larger than the limit the job set (result, status or checkpoint size).
    pub const TOO_LARGE: i32 = -2;
    /// A pointer or length lies outside guest memory, or a name is not UTF-8.
    pub const BAD_ARGUMENT: i32 = -3;
    /// The environment could not complete the call (for example a disk error on the host).
    pub const HOST_ERROR: i32 = -4;
    /// `result_set` or `fail` was already called.
    pub const ALREADY_FINISHED: i32 = -5;
}

/// Values returned by `control()`.
pub mod control {
    /// Keep computing.
    pub const CONTINUE: i32 = 0;
    /// Stop (suspend): save a checkpoint and return from `_start` soon; the task restarts later
    /// from that checkpoint. Past the grace period the task is stopped by force.
    pub const STOP: i32 = 1;
    /// Save a checkpoint when convenient, then keep computing.
    pub const CHECKPOINT: i32 = 2;
}
