//! Arbitrary bytes given to the sandbox's module loader: refused with a reason, or (when they
//! happen to be a valid task module) run within tight limits. Never a panic or a hang.
#![no_main]

use std::sync::OnceLock;

use idlegrid_sandbox::Sandbox;

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(idlegrid_fuzz::wasm_checks::checking_sandbox)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    idlegrid_fuzz::wasm_checks::check_module(sandbox(), data);
});
