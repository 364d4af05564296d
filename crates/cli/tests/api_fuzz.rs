//! The HTTP API against a property-based fuzzer (issue 7): schemathesis reads the server's own
//! OpenAPI description and sends it thousands of generated requests (examples, boundary values,
//! random fuzzing, stateful sequences). No answer may be a 5xx, and the server must still be
//! healthy afterwards. Plain HTTP so that the fuzzer reaches the handlers; `.ci/run` installs
//! schemathesis with pip.

mod common;

use common::*;

fn schemathesis() -> &'static str {
    for candidate in ["st", "schemathesis"] {
        if std::process::Command::new(candidate).arg("--version").output().is_ok_and(|o| o.status.success()) {
            return candidate;
        }
    }
    panic!(
        "schemathesis is needed for this test: `python3 -m pip install schemathesis` (or `cargo xtask prerequisites --install`)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_fuzzer_finds_no_server_error() {
    let fuzzer = schemathesis();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.tls = None;
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let url = server.url();
    let schema = format!("{url}/v1/openapi.json");
    let output = tokio::process::Command::new(fuzzer)
        .args([
            "run",
            &schema,
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "40",
            "--request-timeout",
            "20",
            "--seed",
            "7",
        ])
        .current_dir(dir.path())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "schemathesis found problems:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("passed"), "{stdout}");
    assert!(!stdout.contains("Tested: 0"), "the fuzzer tested no operation:\n{stdout}");
    let health = reqwest::get(format!("{url}/v1/health")).await.unwrap();
    assert_eq!(health.status(), 200, "the server is still healthy");
    server.shutdown().await;
}
