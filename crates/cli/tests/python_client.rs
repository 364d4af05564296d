//! The Python client package (`clients/python`) passes its pytest suite against this build's
//! `idlegrid` binary: a real server and engine as processes, the client over mutual TLS.

use std::process::Command;

const INSTALL: &str = "python3 -m pip install './clients/python[test]'";

#[test]
fn the_python_client_passes_its_test_suite() {
    let root = idlegrid_testkit::workspace_root();
    let tasks = idlegrid_testkit::build_example_tasks().unwrap_or_else(|e| panic!("{e:#}"));
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_string());
    let check = Command::new(&python)
        .args(["-c", "import sys; assert sys.version_info >= (3, 10), sys.version; import cryptography, httpx, pytest"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e}): install Python 3.10 or later, then `{INSTALL}`"));
    assert!(
        check.status.success(),
        "the Python client's test suite needs Python 3.10+ with its dependencies and pytest: run `{INSTALL}` \
         from the repository\n{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let output = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "clients/python/tests"])
        .current_dir(&root)
        // The package as it is in this tree, whatever version pip installed.
        .env("PYTHONPATH", root.join("clients/python/src"))
        .env("IDLEGRID_BIN", env!("CARGO_BIN_EXE_idlegrid"))
        .env("IDLEGRID_TASKS_DIR", tasks)
        .output()
        .unwrap();
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the Python client's tests failed:\n{report}");
    assert!(report.contains(" passed"), "pytest ran no test:\n{report}");
}
