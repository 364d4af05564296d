//! The fuzz checks of the module loader on the stable toolchain: the corpus kept in
//! `fuzz/corpus/wasm_module/` replayed through the same check as the cargo-fuzz target, plus
//! proptest-generated inputs: random bytes, and real task modules with random edits (flipped,
//! inserted and removed bytes, truncation), so that CI exercises it without nightly.

#[path = "../../../fuzz/src/wasm_checks.rs"]
mod checks;

use std::path::Path;
use std::sync::OnceLock;

use checks::Verdict;
use idlegrid_sandbox::Sandbox;
use proptest::prelude::*;

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(checks::checking_sandbox)
}

fn corpus() -> &'static [(String, Vec<u8>)] {
    static CORPUS: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/wasm_module");
        let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("the kept corpus {} is missing: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.is_file())
            .map(|path| (path.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&path).unwrap()))
            .collect();
        files.sort();
        files
    })
}

/// Real modules to mutate: the corpus and a task built from Rust.
fn originals() -> &'static [Vec<u8>] {
    static ORIGINALS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    ORIGINALS.get_or_init(|| {
        let mut modules: Vec<Vec<u8>> = corpus().iter().map(|(_, bytes)| bytes.clone()).collect();
        modules.push(idlegrid_testkit::example_task_bytes("noop"));
        modules
    })
}

#[test]
fn the_kept_wasm_corpus_passes_the_checks() {
    let files = corpus();
    assert!(files.len() >= 15, "the corpus lost its seeds: {} files", files.len());
    let mut ran = 0;
    for (name, bytes) in files {
        let verdict = std::panic::catch_unwind(|| checks::check_module(sandbox(), bytes))
            .unwrap_or_else(|_| panic!("corpus entry {name} fails the checks"));
        ran += (verdict == Verdict::Ran) as usize;
    }
    // Valid modules are in the corpus, so running them is exercised too.
    assert!(ran >= 5, "only {ran} corpus entries ran");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_are_refused(mut data in proptest::collection::vec(any::<u8>(), 0..512), header in any::<bool>()) {
        if header {
            // Past the magic number and version, so that the parser goes further.
            data.splice(0..0, *b"\0asm\x01\0\0\0");
        }
        checks::check_module(sandbox(), &data);
    }

    #[test]
    fn edited_modules_are_refused_or_run_within_limits(
        pick in any::<proptest::sample::Index>(),
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>(), 0u8..4), 1..4),
    ) {
        let mut data = pick.get(originals()).clone();
        for (at, byte, how) in edits {
            if data.is_empty() {
                break;
            }
            let at = at.index(data.len());
            match how {
                0 => data[at] = byte,
                1 => data[at] ^= 1 << (byte % 8),
                2 => data.insert(at, byte),
                _ => data.truncate(at),
            }
        }
        checks::check_module(sandbox(), &data);
    }
}
