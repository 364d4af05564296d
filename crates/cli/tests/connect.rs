//! A wrong server address, against real sockets: each kind of failure is named with what to do;
//! a client stops at once on what a retry cannot fix; an engine keeps backing off and says each
//! problem once, when it starts or changes.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use idlegrid_client::{ClientError, Endpoint, ServerTrust, Transport, Unreachable};
use idlegrid_protocol::auth::Identity;
use idlegrid_types::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A plain HTTP server that is not Idlegrid: it answers every request with 404 (or, while
/// `hang_up` is set, closes the connection at once), and counts the connections it accepted.
struct Stranger {
    port: u16,
    connections: Arc<AtomicUsize>,
    hang_up: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Stranger {
    async fn start() -> Stranger {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let connections = Arc::new(AtomicUsize::new(0));
        let hang_up = Arc::new(AtomicBool::new(false));
        let (count, hang) = (connections.clone(), hang_up.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else { return };
                count.fetch_add(1, Ordering::SeqCst);
                if hang.load(Ordering::SeqCst) {
                    continue; // dropped: closed before any answer
                }
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                        // A TLS hello is no HTTP request: refused as web servers do.
                        if request.first() == Some(&0x16) {
                            let _ = socket.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n").await;
                            return;
                        }
                    }
                    let body = "<html><body>Not Found</body></html>";
                    let answer = format!(
                        "HTTP/1.1 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Stranger { port, connections, hang_up, task }
    }
}

impl Drop for Stranger {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn register(url: &str) -> ClientError {
    let transport = Transport::new(url, Identity::generate()).unwrap();
    transport.register(Role::Client, "probe").await.expect_err("no Idlegrid server there")
}

#[tokio::test]
async fn each_kind_of_wrong_address_is_named_with_what_to_do() {
    // Nothing listens on the port.
    let error = register(&format!("http://127.0.0.1:{}", free_port())).await;
    assert!(matches!(error, ClientError::Network { cause: Unreachable::Refused, .. }), "{error:?}");
    assert!(error.is_transient(), "a server may start there");
    assert!(error.to_string().contains("nothing accepts connections") && error.to_string().contains("idlegrid server"));
    // The name does not resolve.
    let error = register("http://no-such-host.invalid:7700").await;
    assert!(matches!(error, ClientError::Network { cause: Unreachable::Dns, .. }), "{error:?}");
    assert!(error.to_string().contains("does not resolve"), "{error}");
    // Another web server answers 404: not an Idlegrid server, and a retry cannot change that.
    let stranger = Stranger::start().await;
    let error = register(&format!("http://127.0.0.1:{}", stranger.port)).await;
    assert!(matches!(error, ClientError::NotAServer { .. }), "{error:?}");
    assert!(!error.is_transient());
    let text = error.to_string();
    assert!(
        text.contains("is not an Idlegrid server") && text.contains("404") && text.contains("check the server address"),
        "{text}"
    );
    // https:// to a server that speaks plain HTTP: the secure connection fails, and says so,
    // whether the CA is to be taken on first use or was given.
    let pins = tempfile::tempdir().unwrap();
    let url = format!("https://127.0.0.1:{}", stranger.port);
    let ca = idlegrid_pki::Authority::generate("some CA").unwrap().cert_pem().to_string();
    for trust in [ServerTrust::FirstUse { pin: pins.path().join("ca.pem") }, ServerTrust::Ca(ca)] {
        let transport = Transport::new(Endpoint::new(&url).with_trust(trust), Identity::generate()).unwrap();
        let error = transport.register(Role::Client, "probe").await.unwrap_err();
        assert!(matches!(error, ClientError::Network { cause: Unreachable::Tls, .. }), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("secure connection failed") && text.contains("http://"), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idlegrid_server_at_the_wrong_path_is_not_taken_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.tls = None;
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let error = register(&format!("{}/api", server.url())).await;
    assert!(matches!(error, ClientError::NotAServer { .. }), "{error:?}");
    assert!(error.to_string().contains("/api/v1/register"), "{error}");
}

#[test]
fn the_cli_stops_at_once_on_what_a_retry_cannot_fix_and_names_the_rest() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stranger = rt.block_on(Stranger::start());
    let home = tempfile::tempdir().unwrap();
    // Not an Idlegrid server: an error at once, even with all the time in the world to retry.
    let url = format!("http://127.0.0.1:{}", stranger.port);
    let (ok, _, err) = cli(home.path(), &url, &["--connect-timeout-secs", "100000", "job", "list"]);
    assert!(!ok);
    assert!(err.contains("is not an Idlegrid server") && err.contains("check the server address"), "{err}");
    assert_eq!(stranger.connections.load(Ordering::SeqCst), 1, "asked once, not retried");
    // A name that does not resolve: retried for the time given, then named.
    let (ok, _, err) =
        cli(home.path(), "http://no-such-host.invalid:7700", &["--connect-timeout-secs", "1", "job", "list"]);
    assert!(!ok);
    assert!(err.contains("does not resolve") && err.contains("check the host name"), "{err}");
    drop(stranger);
}

/// Log lines written while a test runs (this test's thread only).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;

    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn lines_with(&self, needle: &str) -> Vec<String> {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned();
        text.lines().filter(|l| l.contains(needle)).map(str::to_string).collect()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn an_engine_at_a_wrong_address_backs_off_and_says_each_problem_once() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .finish();
    // The engine's tasks run on this thread (current-thread runtime), so they log here.
    let _logging = tracing::subscriber::set_default(subscriber);
    let stranger = Stranger::start().await;
    stranger.hang_up.store(true, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let mut config = engine_config(&format!("http://127.0.0.1:{}", stranger.port), dir.path(), "engine");
    config.channel.backoff_initial = std::time::Duration::from_millis(5);
    config.channel.backoff_max = std::time::Duration::from_millis(40);
    let engine = tokio::spawn(idlegrid_engine::Engine::start(config));
    let tries = stranger.connections.clone();
    wait_for("several tries", || tries.load(Ordering::SeqCst) >= 6).await;
    let said = captured.lines_with("cannot register with the server");
    assert_eq!(said.len(), 1, "said once, not at every try: {said:#?}");
    assert!(said[0].contains("connection failed") && said[0].contains("keeps trying"), "{}", said[0]);
    // Another problem is news: said once too.
    stranger.hang_up.store(false, Ordering::SeqCst);
    let seen = tries.load(Ordering::SeqCst);
    wait_for("more tries", || tries.load(Ordering::SeqCst) >= seen + 6).await;
    let said = captured.lines_with("cannot register with the server");
    assert_eq!(said.len(), 2, "{said:#?}");
    assert!(said[1].contains("is not an Idlegrid server"), "{}", said[1]);
    assert!(!engine.is_finished(), "the engine keeps trying");
    engine.abort();
}
