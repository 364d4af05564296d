//! Fuzz targets of Idlegrid (issue 7): message decoding, element tickets and identifiers, the
//! sandbox's module loader, and the market's requirement language.
//!
//! ```sh
//! cargo +nightly fuzz run decode_messages   # from this folder; corpus in corpus/<target>/
//! cargo +nightly fuzz run tickets
//! cargo +nightly fuzz run wasm_module -- -timeout=10
//! cargo +nightly fuzz run market_expr
//! ```
//!
//! The checks live in `src/` so that stable tests of the main workspace replay the kept corpus
//! through them without nightly: `crates/protocol/tests/decode_corpus.rs` (decoding, tickets),
//! `crates/sandbox/tests/wasm_corpus.rs` (modules) and `crates/market/tests/expr_corpus.rs`
//! (requirement expressions).

pub mod market_checks;
pub mod protocol_checks;
pub mod wasm_checks;
