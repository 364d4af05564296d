//! Engines' settings pushed by the server (P8.6 `Config`/`GetConfig`), end to end: the operator
//! changes a setting with `idlegrid ops engine-config`, a connected engine gets `Config` at
//! once and applies it, an engine that connects later asks (`GetConfig`) and gets it too, and
//! settings engines do not have are refused by name.

mod common;

use common::*;
use idlegrid_engine::Engine;

fn idlegrid(home: &std::path::Path, server: &str, ca: &std::path::Path, args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new(binary())
        .arg("--home")
        .arg(home)
        .args(["--server", server, "--server-ca"])
        .arg(ca)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    (output.status.success(), format!("{stdout}{}", String::from_utf8_lossy(&output.stderr)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_changes_engines_settings_and_every_engine_gets_them() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let (ok, id) = idlegrid(&home, "https://127.0.0.1:1", &dir.path().join("none.pem"), &["ops", "id"]);
    assert!(ok, "{id}");
    let mut config = server_config(dir.path());
    config.coordinator.operators = vec![id.trim().parse().unwrap()];
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let url = server.url();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, server.ca_pem().unwrap()).unwrap();
    let start = |name: &str| {
        let mut config = engine_config(&url, dir.path(), name);
        config.server = config.server.with_trust(idlegrid_client::ServerTrust::Ca(server.ca_pem().unwrap().into()));
        Engine::start(config)
    };
    let first = start("first").await.unwrap();
    assert_eq!(first.status().prefetch, 4, "the engine's own setting");
    // Connected (the server heard from it) before the change, so it is told at once.
    wait_for("the engine to be connected", || first.status().connected).await;

    let (ok, out) = idlegrid(&home, &url, &ca, &["ops", "engine-config", "--set", "color=red"]);
    assert!(!ok && out.contains("'color' is not a setting of engines"), "{out}");
    let (ok, out) = idlegrid(&home, &url, &ca, &["ops", "engine-config", "--set", "prefetch=lots"]);
    assert!(!ok && out.contains("prefetch"), "{out}");
    let (ok, out) = idlegrid(&home, &url, &ca, &["ops", "engine-config", "--set", "prefetch=1"]);
    assert!(ok && out.contains("prefetch=1"), "{out}");
    wait_for("the connected engine to apply the pushed setting", || first.status().prefetch == 1).await;

    // An engine that connects afterwards asks for the settings and gets the same.
    let second = start("second").await.unwrap();
    wait_for("the new engine to apply the setting it asked for", || second.status().prefetch == 1).await;

    // An empty value gives each engine back its own setting.
    let (ok, out) = idlegrid(&home, &url, &ca, &["ops", "engine-config", "--set", "prefetch="]);
    assert!(ok && out.contains("each engine's own"), "{out}");
    wait_for("the engines to take their own setting again", || {
        first.status().prefetch == 4 && second.status().prefetch == 4
    })
    .await;
}
