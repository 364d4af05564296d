//! Element tickets, identifiers (element hashes, party, job and session ids) and signature
//! headers from arbitrary bytes: never a panic, never a forged grant.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    idlegrid_fuzz::protocol_checks::check_tickets(data);
});
