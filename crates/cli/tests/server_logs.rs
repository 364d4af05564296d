//! The server's own warnings and errors are filed in its log server (P4.9) beside those of
//! clients and engines, and the operator reads them with the CLI.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use idlegrid_protocol::messages::{ClientToServer, ErrorCode, ErrorReport};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_files_its_own_warnings_for_the_operator() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let id = Command::new(binary()).arg("--home").arg(&home).args(["ops", "id"]).output().unwrap();
    let operator = String::from_utf8(id.stdout).unwrap().trim().to_string();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let _server = Process(
        Command::new(binary())
            .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data"])
            .arg(dir.path().join("server"))
            .args(["--maintenance-secs", "0.2", "--log", "error", "--benchmark-interval-secs", "0"])
            .args(["--operator", &operator])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_healthy(&url).await;
    // A client reports a problem: the server logs a warning of its own about it.
    let client = connect(&url).await;
    let report = ErrorReport::new(ErrorCode::Internal, "the client's disk is full");
    client.request(vec![ClientToServer::Error(report)]).await.unwrap();

    let started = std::time::Instant::now();
    let stdout = loop {
        let (ok, stdout, stderr) = cli(&home, &url, &["ops", "logs", "--level", "warn"]);
        assert!(ok, "{stdout}\n{stderr}");
        if stdout.contains("client reported an error") {
            break stdout;
        }
        assert!(started.elapsed() < PATIENCE, "the server's warning never reached its log server:\n{stdout}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let line = stdout.lines().find(|l| l.contains("client reported an error")).unwrap();
    assert!(line.contains("(operator)"), "filed as the server's own: {line}");
    assert!(line.contains("the client's disk is full"), "{line}");
}
