//! Every wire message type decoded from arbitrary bytes: never a panic, and what decodes
//! round-trips to the same value.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    idlegrid_fuzz::protocol_checks::check_decode(data);
});
