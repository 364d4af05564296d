//! A server set up again with a new data folder (so a new certificate authority) refuses the
//! clients that pinned the old one, and tells them where the pin is and how to trust the new
//! server; once they follow the advice they work again.

mod common;

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pinned_the_old_server_is_told_where_the_pin_is_and_how_to_renew_it() {
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

    first.kill9();
    let _second = spawn_server(port, &dir.path().join("server-2"), 30);
    wait_healthy(&url).await;
    let (done, out, err) = cli(&home, &url, &["job", "list"]);
    assert!(!done, "a server with another CA is refused: {out}");
    assert!(err.contains("pinned") && err.contains(&format!("in {}", pin.display())), "where the pin is: {err}");
    assert!(err.contains(&format!("`rm {}`", pin.display())), "how to re-pin: {err}");
    assert!(err.contains("--server-ca"), "or how to give the new CA: {err}");

    std::fs::remove_file(&pin).unwrap();
    let (done, out, err) = cli(&home, &url, &["job", "list"]);
    assert!(done, "trusted again once the pin is gone: {out}{err}");
    assert!(pin.is_file(), "the new CA is pinned");
}
