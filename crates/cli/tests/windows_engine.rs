//! The engine built for Windows (`x86_64-pc-windows-gnu`) works under Wine for a Linux server
//! started here: it registers, downloads a real task, runs it in its wasmtime sandbox, and the
//! results reach the client. `cargo xtask test` builds the .exe first; without it this test
//! fails and says how to build it.

mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_server::Server;
use idlegrid_types::{JobProperties, TaskState};

/// The first start of Wine creates its prefix (a Windows folder tree and registry), which takes
/// a minute or more on a busy machine: a bound on a hang, not on speed.
const WINE_PATIENCE: Duration = Duration::from_secs(600);

/// Where `cargo xtask test` puts the engine for Windows (it sets the variable), or where
/// `cargo build --target x86_64-pc-windows-gnu` does.
fn windows_exe() -> PathBuf {
    let path = std::env::var_os("IDLEGRID_WINDOWS_EXE").map(PathBuf::from).unwrap_or_else(|| {
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
        target.join("x86_64-pc-windows-gnu/debug/idlegrid.exe")
    });
    assert!(
        path.is_file(),
        "{} is missing. Build the engine for Windows first: `cargo xtask test` does, or \
         `cargo build --target x86_64-pc-windows-gnu --package idlegrid-cli --bin idlegrid` (needs \
         `apt-get install mingw-w64 wine` and `rustup target add x86_64-pc-windows-gnu`)",
        path.display()
    );
    path
}

/// A Unix path as Wine's programs see it (drive Z: is the Unix root).
fn windows_path(path: &Path) -> String {
    format!("Z:{}", path.display()).replace('/', "\\")
}

/// The Wine engine process, with its Wine server stopped at the end.
struct WineEngine {
    child: std::process::Child,
    prefix: PathBuf,
}

impl Drop for WineEngine {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("wineserver").arg("-k").env("WINEPREFIX", &self.prefix).status();
    }
}

fn wine_command(prefix: &Path) -> Command {
    let mut command = Command::new("wine");
    command
        .env("WINEPREFIX", prefix)
        .env("WINEDEBUG", "-all")
        // No Mono or Gecko installers when the prefix is made, and no window.
        .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY");
    command
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_windows_engine_under_wine_runs_a_real_task_for_a_linux_server() {
    let exe = windows_exe();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(server_config(dir.path())).await.unwrap();
    let url = server.url();
    let prefix = dir.path().join("wine");
    std::fs::create_dir_all(&prefix).unwrap();

    let mut child = wine_command(&prefix)
        .arg(&exe)
        .args(["--server", &url, "engine", "--data", &windows_path(&dir.path().join("engine"))])
        .args(["--name", "wine-engine", "--cores", "1", "--prefetch", "1", "--status-listen", "off"])
        .args(["--task-priority", "normal", "--mode", "continuous", "--log", "warn"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("wine runs (apt-get install wine)");
    let stdout = child.stdout.take().unwrap();
    let engine = WineEngine { child, prefix };

    // The engine says it works once it has registered with the server and opened its session.
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut started_tx = Some(started_tx);
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("working for")
                && let Some(tx) = started_tx.take()
            {
                let _ = tx.send(line);
            }
        }
    });
    let line = tokio::time::timeout(WINE_PATIENCE, started_rx)
        .await
        .expect("the Windows engine did not start under Wine in time")
        .expect(
            "the Windows engine ended before it started working (see its messages above; if Wine \
             could not load bcryptprimitives.dll, `cargo xtask test` puts a stand-in beside the .exe)",
        );
    assert!(line.starts_with("idlegrid engine "), "{line}");

    let client = connect(&url).await;
    let pi = upload_task(&client, "pi").await.hash;
    let job = client.create_job(JobProperties { name: "wine".into(), ..JobProperties::default() }).await.unwrap().job;
    let tasks: Vec<TaskSpec> = (0..3u64)
        .map(|seed| TaskSpec {
            index: seed,
            executable: pi,
            data: BTreeMap::new(),
            params: format!("samples={} seed={seed}", 200_000 + seed).into_bytes(),
            priority: None,
        })
        .collect();
    client.add_tasks(job, tasks).await.unwrap();
    client.launch(job).await.unwrap();

    let (finals, info) = tokio::time::timeout(WINE_PATIENCE, run_to_completion(&client, job, Replay::Undelivered))
        .await
        .expect("the job did not complete on the Windows engine in time");
    assert_eq!(info.counts.succeeded, 3, "{finals:#?}");
    for report in &finals {
        assert_eq!(report.state, TaskState::Succeeded, "{report:?}");
        let text = String::from_utf8(client.fetch(report.result.as_ref().unwrap()).await.unwrap()).unwrap();
        let (inside, total) = text.split_once(' ').unwrap_or_else(|| panic!("pi's result {text:?}"));
        assert_eq!(total.parse::<u64>().unwrap(), 200_000 + report.task, "{text}");
        let estimate = 4.0 * inside.parse::<f64>().unwrap() / total.parse::<f64>().unwrap();
        assert!((estimate - std::f64::consts::PI).abs() < 0.05, "{estimate}");
    }
    drop(engine);
}
