//! The fuzz check of the requirement language on the stable toolchain: the corpus kept in
//! `fuzz/corpus/market_expr` replayed through the same check as the cargo-fuzz target, plus
//! random bytes and random edits of corpus entries.

#[path = "../../../fuzz/src/market_checks.rs"]
mod checks;

use std::path::Path;
use std::sync::OnceLock;

use proptest::prelude::*;

fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(read_corpus)
}

fn read_corpus() -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/market_expr");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the kept corpus {} is missing: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files.into_iter().map(|path| std::fs::read(path).unwrap()).collect()
}

#[test]
fn the_kept_corpus_passes_the_check() {
    let files = corpus();
    assert!(files.len() >= 13, "the corpus lost its seeds: {} files", files.len());
    let parsed =
        files.iter().filter(|bytes| idlegrid_market::Expr::parse(&String::from_utf8_lossy(bytes)).is_ok()).count();
    assert!(parsed >= 9, "the seeds are mostly valid expressions, so evaluation is exercised: {parsed}");
    for bytes in files {
        checks::check_expr(bytes);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_pass_the_check(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        checks::check_expr(&data);
    }

    #[test]
    fn edited_corpus_entries_pass_the_check(
        pick in any::<proptest::sample::Index>(),
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let files = corpus();
        let mut data = pick.get(files).clone();
        for (at, byte, how) in edits {
            if data.is_empty() {
                data.push(byte);
                continue;
            }
            let at = at.index(data.len());
            match how {
                0 => data[at] = byte,
                1 => data.insert(at, byte),
                _ => { data.remove(at); }
            }
        }
        checks::check_expr(&data);
    }
}
