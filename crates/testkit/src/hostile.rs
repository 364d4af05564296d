//! Hostile task modules, hand-written in WebAssembly text so that each does exactly one bad
//! thing, with no language runtime in between. Shared by the sandbox tests (one module at a
//! time) and the engine tests (a job mixing them with normal tasks).
//!
//! Each constant is WAT; [`wasm`] turns it into module bytes.

/// Module bytes of a WAT text (panics on a typo: these are fixed test inputs).
pub fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).unwrap_or_else(|e| panic!("hostile module does not assemble: {e}"))
}

/// Grows its memory 1 MiB at a time, writing to every page it gets (so the memory is really
/// resident), until a grow fails; then traps. Contained: fails as out of memory at the cap.
pub const MEMORY_BOMB: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (local $at i32) (local $end i32) (local $old i32)
    (loop $grow
      (local.set $old (memory.grow (i32.const 16)))
      (if (i32.eq (local.get $old) (i32.const -1)) (then unreachable))
      (local.set $at (i32.mul (local.get $old) (i32.const 65536)))
      (local.set $end (i32.add (local.get $at) (i32.const 1048576)))
      (loop $touch
        (i32.store8 (local.get $at) (i32.const 1))
        (local.set $at (i32.add (local.get $at) (i32.const 4096)))
        (br_if $touch (i32.lt_u (local.get $at) (local.get $end))))
      (br $grow)))
)
"#;

/// Asks for more memory forever and ignores every refusal: only the CPU-time limit ends it.
pub const MEMORY_BOMB_STUBBORN: &str = r#"
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $grow
      (drop (memory.grow (i32.const 1024)))
      (br $grow)))
)
"#;

/// Declares a 512 MiB initial memory: refused at instantiation by a smaller cap.
pub const HUGE_INITIAL_MEMORY: &str = r#"
(module
  (memory (export "memory") 8192)
  (func (export "_start"))
)
"#;

/// Grows a table by 100,000 entries at a time until refused, then traps.
pub const TABLE_BOMB: &str = r#"
(module
  (memory (export "memory") 1)
  (table $t 1 funcref)
  (func (export "_start")
    (loop $grow
      (if (i32.eq (table.grow $t (ref.null func) (i32.const 100000)) (i32.const -1)) (then unreachable))
      (br $grow)))
)
"#;

/// Loops forever in the module's start function, which runs while the module is instantiated,
/// before `_start` is even looked up.
pub const START_LOOP: &str = r#"
(module
  (memory (export "memory") 1)
  (func $spin (loop $forever (br $forever)))
  (start $spin)
  (func (export "_start"))
)
"#;

/// Recurses without end (not a tail call): exhausts the WebAssembly stack.
pub const DEEP_RECURSION: &str = r#"
(module
  (memory (export "memory") 1)
  (func $deep (param $n i64) (result i64)
    (i64.add (call $deep (i64.add (local.get $n) (i64.const 1))) (i64.const 1)))
  (func (export "_start") (drop (call $deep (i64.const 0))))
)
"#;

/// Recurses without end and calls into the host at every level, so the deepest host calls
/// run with the WebAssembly stack nearly full: the host's own frames must still fit.
pub const DEEP_RECURSION_WITH_HOST_CALLS: &str = r#"
(module
  (import "idlegrid" "control" (func $control (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "\40\00\00\00\01\00\00\00")
  (data (i32.const 64) ".")
  (func $deep (param $n i64) (result i64)
    (drop (call $control))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
    (i64.add (call $deep (i64.add (local.get $n) (i64.const 1))) (i64.const 1)))
  (func (export "_start") (drop (call $deep (i64.const 0))))
)
"#;

/// Asks WASI to sleep for `u64::MAX` nanoseconds, together with a read of stdin and a write to
/// fd 9, and returns the call's errno and event count as two little-endian `u32`. A sandbox
/// that slept would hold the task's thread for centuries, out of reach of the CPU-time limit
/// (it uses no CPU) and of stop and kill requests (they act when WebAssembly code runs).
pub const SLEEP_FOREVER: &str = r#"
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "idlegrid" "result_set" (func $result_set (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; subscription 0: clock, monotonic, relative, u64::MAX ns
    (i64.store (i32.const 0) (i64.const 7))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const -1))
    ;; subscription 1: fd_read of stdin; subscription 2: fd_write to fd 9
    (i32.store8 (i32.const 56) (i32.const 1))
    (i32.store (i32.const 64) (i32.const 0))
    (i32.store8 (i32.const 104) (i32.const 2))
    (i32.store (i32.const 112) (i32.const 9))
    (i32.store (i32.const 512) (call $poll (i32.const 0) (i32.const 256) (i32.const 3) (i32.const 516)))
    (drop (call $result_set (i32.const 512) (i32.const 8))))
)
"#;

/// Sleeps one second at a time, forever: with sleeps that really wait it would never use its
/// CPU time, and never end.
pub const SLEEP_LOOP: &str = r#"
(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const 1000000000))
    (loop $forever
      (drop (call $poll (i32.const 0) (i32.const 256) (i32.const 1) (i32.const 512)))
      (br $forever)))
)
"#;

/// Writes to stdout without end, 64 KiB at a time: only the CPU-time limit ends it, and the
/// engine keeps no more of the output than its cap.
pub const OUTPUT_FLOOD: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 0) "\00\00\01\00\00\00\01\00")
  (func (export "_start")
    (loop $forever
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
      (br $forever)))
)
"#;

/// Tries every file descriptor 0..1024 with `fd_write`, `fd_read`, `fd_prestat_get`,
/// `path_open` (of `etc/passwd`, `.`, `/` and `..`) and `fd_readdir`, and returns what worked
/// as six little-endian `u32`: writes, reads, preopens found, opens, directory reads, and the
/// number of bytes read. A contained task can write to stdout and stderr (fds 1 and 2), may
/// read an empty stdin, and nothing else.
pub const FD_SCAN: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir" (func $fd_readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "idlegrid" "result_set" (func $result_set (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  ;; iovec {buf = 64, len = 1}
  (data (i32.const 0) "\40\00\00\00\01\00\00\00")
  (data (i32.const 64) "x")
  (data (i32.const 128) "etc/passwd")
  (data (i32.const 144) ".")
  (data (i32.const 148) "/")
  (data (i32.const 152) "..")
  ;; counters at 600: writes, reads, preopens, opens, readdirs, bytes read
  (func $count (param $at i32) (param $errno i32)
    (if (i32.eqz (local.get $errno))
      (then (i32.store (local.get $at) (i32.add (i32.load (local.get $at)) (i32.const 1))))))
  (func $open (param $fd i32) (param $path i32) (param $len i32)
    (call $count (i32.const 612)
      (call $path_open (local.get $fd) (i32.const 1) (local.get $path) (local.get $len) (i32.const 0)
        (i64.const 0x1fffffff) (i64.const 0x1fffffff) (i32.const 0) (i32.const 48))))
  (func (export "_start")
    (local $fd i32)
    (loop $each
      (call $count (i32.const 600) (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 16)))
      (i32.store (i32.const 16) (i32.const 0))
      (call $count (i32.const 604) (call $fd_read (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 16)))
      (i32.store (i32.const 620) (i32.add (i32.load (i32.const 620)) (i32.load (i32.const 16))))
      (call $count (i32.const 608) (call $fd_prestat_get (local.get $fd) (i32.const 32)))
      (call $open (local.get $fd) (i32.const 128) (i32.const 10))
      (call $open (local.get $fd) (i32.const 144) (i32.const 1))
      (call $open (local.get $fd) (i32.const 148) (i32.const 1))
      (call $open (local.get $fd) (i32.const 152) (i32.const 2))
      (call $count (i32.const 616)
        (call $fd_readdir (local.get $fd) (i32.const 256) (i32.const 256) (i64.const 0) (i32.const 16)))
      (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
      (br_if $each (i32.lt_u (local.get $fd) (i32.const 1024))))
    (drop (call $result_set (i32.const 600) (i32.const 24))))
)
"#;

/// What [`FD_SCAN`] returns when the task is contained: writes to fds 1 and 2 only, at most
/// one (empty) read of stdin, no preopened directory, no file opened, no directory listed,
/// no byte read.
pub fn fd_scan_is_contained(result: &[u8]) -> Result<(), String> {
    let fields: Vec<u32> = result.chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap_or([0xff; 4]))).collect();
    let [writes, reads, preopens, opens, readdirs, bytes_read] = fields[..] else {
        return Err(format!("expected 24 bytes, got {}", result.len()));
    };
    let text = format!(
        "writes={writes} reads={reads} preopens={preopens} opens={opens} readdirs={readdirs} bytes_read={bytes_read}"
    );
    if writes == 2 && reads <= 1 && preopens == 0 && opens == 0 && readdirs == 0 && bytes_read == 0 {
        Ok(())
    } else {
        Err(text)
    }
}

/// Imports a WASI socket function.
pub fn socket_import(name: &str) -> String {
    let params = match name {
        "sock_accept" => "i32 i32 i32",
        "sock_recv" => "i32 i32 i32 i32 i32 i32",
        "sock_send" => "i32 i32 i32 i32 i32",
        "sock_shutdown" => "i32 i32",
        other => panic!("not a WASI preview 1 socket function: {other}"),
    };
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "{name}" (func $sock (param {params}) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")))"#
    )
}

/// Calls every runtime import with pointers and lengths outside its memory (negative, past the
/// end, overflowing) and returns each answer code as a little-endian `i32`, in this order:
/// 11 calls that must answer `BAD_ARGUMENT` (-3), then one `status_set` with a NaN progress
/// (valid: answers `OK`). A host that trusted the guest would read or write out of bounds.
pub const WILD_POINTERS: &str = r#"
(module
  (import "idlegrid" "params_read" (func $params_read (param i32 i32) (result i32)))
  (import "idlegrid" "element_len" (func $element_len (param i32 i32) (result i64)))
  (import "idlegrid" "element_read" (func $element_read (param i32 i32 i64 i32 i32) (result i32)))
  (import "idlegrid" "checkpoint_save" (func $checkpoint_save (param i32 i32) (result i32)))
  (import "idlegrid" "status_set" (func $status_set (param i32 i32 f32) (result i32)))
  (import "idlegrid" "result_set" (func $result_set (param i32 i32) (result i32)))
  (import "idlegrid" "fail" (func $fail (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (global $out (mut i32) (i32.const 1024))
  (func $keep (param $code i32)
    (i32.store (global.get $out) (local.get $code))
    (global.set $out (i32.add (global.get $out) (i32.const 4))))
  (func (export "_start")
    (call $keep (call $params_read (i32.const -1) (i32.const 16)))
    (call $keep (call $params_read (i32.const 65530) (i32.const 100)))
    (call $keep (call $params_read (i32.const 0x7fffffff) (i32.const 0x7fffffff)))
    (call $keep (i32.wrap_i64 (call $element_len (i32.const 65535) (i32.const 2))))
    (call $keep (call $element_read (i32.const 0) (i32.const 4) (i64.const 0) (i32.const -1) (i32.const 10)))
    (call $keep (call $element_read (i32.const 0) (i32.const 4) (i64.const -5) (i32.const 100) (i32.const 10)))
    (call $keep (call $checkpoint_save (i32.const 0) (i32.const -1)))
    (call $keep (call $status_set (i32.const 65535) (i32.const 2) (f32.const 0.5)))
    (call $keep (call $result_set (i32.const -1) (i32.const 1)))
    (call $keep (call $result_set (i32.const 0) (i32.const 65537)))
    (call $keep (call $fail (i32.const 65536) (i32.const 1)))
    (call $keep (call $status_set (i32.const 0) (i32.const 4) (f32.const nan)))
    (drop (call $result_set (i32.const 1024) (i32.sub (global.get $out) (i32.const 1024)))))
)
"#;

/// The answers [`WILD_POINTERS`] must get.
pub fn wild_pointers_expected() -> Vec<u8> {
    let mut codes = vec![-3i32; 11];
    codes.push(0);
    codes.iter().flat_map(|c| c.to_le_bytes()).collect()
}

/// Holds 80 MiB of memory and offers all of it as a status, a checkpoint and the result (each
/// over its default limit), then a second result. It writes each answer code to stdout as a
/// little-endian `i32`: `TOO_LARGE` three times, then `ALREADY_FINISHED`.
pub const HUGE_PAYLOADS: &str = r#"
(module
  (import "idlegrid" "status_set" (func $status_set (param i32 i32 f32) (result i32)))
  (import "idlegrid" "checkpoint_save" (func $checkpoint_save (param i32 i32) (result i32)))
  (import "idlegrid" "result_set" (func $result_set (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1280)
  (func $say (param $code i32)
    (i32.store (i32.const 64) (local.get $code))
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 4))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16))))
  (func (export "_start")
    (call $say (call $status_set (i32.const 0) (i32.const 1048576) (f32.const 0.5)))
    (call $say (call $checkpoint_save (i32.const 0) (i32.const 83886080)))
    (call $say (call $result_set (i32.const 0) (i32.const 83886080)))
    (call $say (call $result_set (i32.const 0) (i32.const 4))))
)
"#;

/// The stdout of [`HUGE_PAYLOADS`] under the default limits.
pub fn huge_payloads_expected_output() -> Vec<u8> {
    [-2i32, -2, -2, -5].iter().flat_map(|c| c.to_le_bytes()).collect()
}

/// Size of the result [`HUGE_PAYLOADS`] offers.
pub const HUGE_PAYLOAD_BYTES: u64 = 80 << 20;

/// Writes a checkpoint of 12 MiB, then one of 6 MiB, ignoring refusals (a task that would fill
/// its engine's disk), and sets as its result the two answer codes as little-endian `i32`s.
pub const CHECKPOINT_FLOOD: &str = r#"
(module
  (import "idlegrid" "checkpoint_save" (func $checkpoint_save (param i32 i32) (result i32)))
  (import "idlegrid" "result_set" (func $result_set (param i32 i32) (result i32)))
  (memory (export "memory") 200)
  (func (export "_start")
    (i32.store (i32.const 0) (call $checkpoint_save (i32.const 16) (i32.const 12582912)))
    (i32.store (i32.const 4) (call $checkpoint_save (i32.const 16) (i32.const 6291456)))
    (drop (call $result_set (i32.const 0) (i32.const 8))))
)
"#;

/// The answer codes of [`CHECKPOINT_FLOOD`] from its result.
pub fn checkpoint_flood_codes(result: &[u8]) -> Vec<i32> {
    result.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes"))).collect()
}
