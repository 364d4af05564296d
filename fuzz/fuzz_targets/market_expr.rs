//! The market's requirement language from arbitrary bytes: parse, evaluate, explain; never a
//! panic, never an unbounded evaluation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    idlegrid_fuzz::market_checks::check_expr(data);
});
