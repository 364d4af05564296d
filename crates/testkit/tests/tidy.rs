//! House rules checked on every test run: the tree is rustfmt-clean, every Rust file says what
//! it is for in a module comment, product text never cites the tracker's issue numbers,
//! ARCHITECTURE.md lists exactly the workspace's crates, and no product file or function is
//! longer than the limits below (with the few exceptions named there, each kept for a reason).

use std::path::{Path, PathBuf};
use std::process::Command;

use idlegrid_testkit::workspace_root;

/// Every `.rs` file under `dir`, skipping build output.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if name != "target" && name != "corpus" && name != "artifacts" {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The workspace's own Rust sources (the crates, xtask, the fuzz targets, the example tasks).
fn workspace_sources() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = Vec::new();
    for dir in ["crates", "xtask", "fuzz", "examples"] {
        rust_files(&root.join(dir), &mut files);
    }
    files.sort();
    assert!(files.len() > 100, "found only {} Rust files under {}", files.len(), root.display());
    files
}

/// Test code may cite anything; product code may not.
fn is_test_source(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name == "tests.rs"
        || name.ends_with("_tests.rs")
        || path.components().any(|c| matches!(c.as_os_str().to_str(), Some("tests" | "benches" | "fuzz")))
}

/// Where `text` cites an issue by number ("issue 4", "Issue #12", "issues 3 and 5").
fn cites_issue_number(text: &str) -> bool {
    let lower = text.to_ascii_lowercase();
    lower.match_indices("issue").any(|(at, _)| {
        let before_is_word = lower[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let rest = lower[at + "issue".len()..].trim_start_matches('s');
        let rest = rest.trim_start_matches([' ', '#']);
        !before_is_word && rest.starts_with(|c: char| c.is_ascii_digit())
    })
}

#[test]
fn the_tree_is_rustfmt_clean() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["fmt", "--all", "--", "--check"])
        .current_dir(workspace_root())
        .output()
        .expect("cannot run cargo fmt (install it with `rustup component add rustfmt`)");
    assert!(
        output.status.success(),
        "the tree is not rustfmt-clean; run `cargo fmt --all`:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn every_rust_file_opens_with_a_module_comment() {
    let missing: Vec<String> = workspace_sources()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            let first = text.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or_default();
            !first.starts_with("//!")
        })
        .map(|path| path.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` comment saying what they are for:\n{}",
        missing.join("\n")
    );
}

#[test]
fn product_text_never_cites_issue_numbers() {
    let root = workspace_root();
    let mut files: Vec<PathBuf> = workspace_sources().into_iter().filter(|path| !is_test_source(path)).collect();
    files.extend(["README.md", "ARCHITECTURE.md", "clients/python/README.md"].map(|name| root.join(name)));
    let mut offenders = Vec::new();
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        for (number, line) in text.lines().enumerate() {
            if cites_issue_number(line) {
                offenders.push(format!("{}:{}: {}", path.display(), number + 1, line.trim()));
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "product text speaks to users, who never see the tracker; say what the feature is instead:\n{}",
        offenders.join("\n")
    );
}

#[test]
fn the_issue_citation_check_finds_what_it_should() {
    for cited in ["see issue 4", "Issue #12 says", "issues 3 and 5", "(issue 7)"] {
        assert!(cites_issue_number(cited), "{cited}");
    }
    for fine in ["an issue with the disk", "issued 3 certificates", "tissue 4", "issuer 2"] {
        assert!(!cites_issue_number(fine), "{fine}");
    }
}

#[test]
fn architecture_lists_exactly_the_workspace_crates() {
    let root = workspace_root();
    let mut crates: Vec<String> = std::fs::read_dir(root.join("crates"))
        .expect("crates/ is readable")
        .flatten()
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .map(|entry| format!("crates/{}", entry.file_name().to_string_lossy()))
        .collect();
    crates.sort();
    let architecture = std::fs::read_to_string(root.join("ARCHITECTURE.md")).expect("ARCHITECTURE.md is readable");
    // Entries of the crate list read: - **`idlegrid-x`** (`crates/x`): what it owns.
    let mut listed: Vec<String> = architecture
        .lines()
        .filter(|line| line.starts_with("- **`"))
        .filter_map(|line| line.split("(`").nth(1)?.split('`').next().map(str::to_string))
        .filter(|path| path.starts_with("crates/"))
        .collect();
    listed.sort();
    listed.dedup();
    assert_eq!(listed, crates, "ARCHITECTURE.md's crate list (left) and the workspace's crates (right) differ");
}

/// The longest product file, in lines (test files and test modules of their own are free).
const FILE_LINES_MAX: usize = 1_000;
/// The longest product function, in lines.
const FUNCTION_LINES_MAX: usize = 120;
/// Functions kept whole on purpose: `describe` is the table of the API's operations, one entry
/// per route, clearer in one place than cut in arbitrary parts.
const LONG_FUNCTIONS_KEPT: &[&str] = &["crates/server/src/openapi.rs: describe"];

/// The functions of a rustfmt-formatted file longer than `max` lines, before any
/// `#[cfg(test)]` module: `name (lines)`. A function ends at the first closing brace at its own
/// indentation, which rustfmt guarantees.
fn long_functions(text: &str, max: usize) -> Vec<(String, usize)> {
    let lines: Vec<&str> = text.lines().take_while(|line| !line.starts_with("#[cfg(test)]")).collect();
    let mut long = Vec::new();
    for (at, line) in lines.iter().enumerate() {
        let code = line.trim_start();
        let indent = &line[..line.len() - code.len()];
        let mut rest = code;
        for qualifier in ["pub(crate) ", "pub(super) ", "pub ", "const ", "async ", "unsafe "] {
            rest = rest.strip_prefix(qualifier).unwrap_or(rest);
        }
        let Some(rest) = rest.strip_prefix("fn ") else { continue };
        if code.ends_with(';') || code.ends_with('}') {
            continue;
        }
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        let end = format!("{indent}}}");
        let length = lines[at..].iter().position(|l| *l == end).map_or(lines.len() - at, |n| n + 1);
        if length > max {
            long.push((name, length));
        }
    }
    long
}

#[test]
fn no_product_file_or_function_is_too_long() {
    let root = workspace_root();
    let mut offenders = Vec::new();
    for path in workspace_sources().into_iter().filter(|path| !is_test_source(path)) {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let relative = path.strip_prefix(&root).unwrap_or(&path).display().to_string();
        let lines = text.lines().count();
        if lines > FILE_LINES_MAX {
            offenders.push(format!("{relative}: {lines} lines (at most {FILE_LINES_MAX}; split it by what it does)"));
        }
        for (name, length) in long_functions(&text, FUNCTION_LINES_MAX) {
            if !LONG_FUNCTIONS_KEPT.contains(&format!("{relative}: {name}").as_str()) {
                offenders.push(format!("{relative}: fn {name} has {length} lines (at most {FUNCTION_LINES_MAX})"));
            }
        }
    }
    assert!(offenders.is_empty(), "too long:\n{}", offenders.join("\n"));
}

#[test]
fn the_length_check_measures_functions_to_their_closing_brace() {
    let text = "fn short() {\n    a();\n}\n\npub fn long() {\n    b();\n    c();\n    d();\n}\nfn one() {}\n";
    assert_eq!(long_functions(text, 3), vec![("long".to_string(), 5)]);
    let tested = "fn fine() {\n}\n#[cfg(test)]\nmod tests {\n    fn long() {\n        a();\n        b();\n    }\n}\n";
    assert!(long_functions(tested, 2).is_empty());
}
