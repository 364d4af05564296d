//! A newcomer's first hour: a normal start logs nothing alarming, and a server set up again
//! with a new data folder (so a new certificate authority) refuses the clients that pinned the
//! old one, telling them where the pin is and how to trust the new server.

mod common;

use std::io::BufRead;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;

/// A child's lines on one stream, collected as they come.
fn collect_lines(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

fn has(lines: &Arc<Mutex<Vec<String>>>, text: &str) -> bool {
    lines.lock().unwrap().iter().any(|l| l.contains(text))
}

/// Lines that look like a problem: warnings and errors.
fn alarming(lines: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
    lines.lock().unwrap().iter().filter(|l| l.contains("WARN") || l.contains("ERROR")).cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_start_at_the_default_log_level_shows_nothing_alarming() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let data = dir.path().join("server");
    // Default logging: no --log.
    let mut server = Command::new(binary())
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let server_log = collect_lines(server.stderr.take().unwrap());
    let _server = Process(server);
    wait_healthy(&url).await;
    let ca = data.join("tls/ca.pem");
    let mut engine = Command::new(binary())
        .args(["--server", &url, "--server-ca", ca.to_str().unwrap(), "engine", "--data"])
        .arg(dir.path().join("engine"))
        .args(["--status-listen", "off"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let engine_out = collect_lines(engine.stdout.take().unwrap());
    let engine_log = collect_lines(engine.stderr.take().unwrap());
    let _engine = Process(engine);
    wait_for("the engine to work for the server", || has(&engine_out, "working for")).await;
    let (done, out, err) = cli(&dir.path().join("home"), &url, &["--server-ca", ca.to_str().unwrap(), "job", "list"]);
    assert!(done && err.is_empty(), "a client command with the CA given logs nothing: {out}{err}");

    assert!(has(&server_log, "server listening"), "the server's own messages show: {:?}", server_log.lock().unwrap());
    assert!(!has(&server_log, "benchmark tasks"), "{:?}", server_log.lock().unwrap());
    assert_eq!(alarming(&server_log), Vec::<String>::new(), "the server's start");
    assert_eq!(alarming(&engine_log), Vec::<String>::new(), "the engine's start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_and_engines_that_pinned_the_old_server_are_told_where_the_pin_is_and_how_to_renew_it() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let home = dir.path().join("home");
    let mut first = spawn_server(port, &dir.path().join("server-1"), 30);
    wait_healthy(&url).await;
    let (done, out, err) = cli(&home, &url, &["job", "list"]);
    assert!(done, "{out}{err}");
    let pin = home.join("servers").join(format!("127.0.0.1_{port}.ca.pem"));
    assert!(pin.is_file(), "the CA was pinned on first use in {}", pin.display());
    // An engine pins it too, in its data folder.
    let engine_data = dir.path().join("engine");
    let engine_pin = engine_data.join("server-ca.pem");
    let mut engine = spawn_engine(&url, &engine_data, 1);
    wait_for("the engine to pin the CA", || engine_pin.is_file()).await;
    engine.kill9();

    first.kill9();
    let _second = spawn_server(port, &dir.path().join("server-2"), 30);
    wait_healthy(&url).await;
    let (done, out, err) = cli(&home, &url, &["job", "list"]);
    assert!(!done, "a server with another CA is refused: {out}");
    assert!(err.contains("refusing the server") && !err.contains("start one"), "not told to start a server: {err}");
    assert!(err.contains("pinned") && err.contains(&format!("in {}", pin.display())), "where the pin is: {err}");
    assert!(err.contains(&format!("`rm {}`", pin.display())), "how to re-pin: {err}");
    assert!(err.contains("--server-ca"), "or how to give the new CA: {err}");

    // The engine keeps trying (its owner may fix the pin while it runs) and says once why it
    // refuses the server, where its pin is and how to renew it.
    let mut refusing = Command::new(binary())
        .args(["--server", &url, "engine", "--data"])
        .arg(&engine_data)
        .args(["--status-listen", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let advice = format!("`rm {}`", engine_pin.display());
    let (lines, received) = std::sync::mpsc::channel();
    let stderr = refusing.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let advised = loop {
        match received.recv_timeout(Duration::from_secs(120)) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(&advice) {
                    break true;
                }
            }
            Err(_) => break false,
        }
    };
    let _ = refusing.kill();
    let _ = refusing.wait();
    assert!(advised, "the engine's pin and how to renew it: {seen}");
    assert!(seen.contains("not from the certificate authority this party trusts"), "says why: {seen}");

    std::fs::remove_file(&pin).unwrap();
    let (done, out, err) = cli(&home, &url, &["job", "list"]);
    assert!(done, "trusted again once the pin is gone: {out}{err}");
    assert!(pin.is_file(), "the new CA is pinned");
}
