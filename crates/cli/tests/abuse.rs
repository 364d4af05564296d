//! Abuse of the server (issue 7): a thousand long polls waiting at once, one party trying to
//! hold more than its share, connections that trickle their headers, oversized headers. Well-
//! behaved callers are served all along and a job runs to completion in the middle of it.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use idlegrid_client::{ClientError, Transport};
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_protocol::wire::SessionInfo;
use idlegrid_types::{JobProperties, Role};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const POLL_WAIT_MS: u64 = 8_000;

async fn party_with_session(url: &str) -> (Transport, SessionInfo) {
    let transport = Transport::new(url, Identity::generate()).unwrap();
    transport.register(Role::Client, "poller").await.unwrap();
    let session: SessionInfo =
        transport.call::<(), _>(Method::POST, "/v1/sessions", None, Duration::from_secs(30)).await.unwrap();
    (transport, session)
}

fn poll_path(session: &SessionInfo) -> String {
    format!("/v1/sessions/{}/messages?after=0&wait_ms={POLL_WAIT_MS}", session.session)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_stays_responsive_under_long_polls_trickled_and_oversized_headers() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    // Plain HTTP: a thousand TLS clients would measure handshakes, not the server's bounds.
    config.tls = None;
    // Above the clients' pool idle time (5 s), as the default (10 s) is.
    config.connection_limits.header_read_timeout = Duration::from_secs(6);
    config.connection_limits.long_polls_per_party_max = 4;
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let url = server.url();
    let addr = server.addr;
    let engine = idlegrid_engine::Engine::start(engine_config(&url, dir.path(), "engine")).await.unwrap();

    // 250 parties x 4 polls = 1000 long polls waiting at once.
    let mut parties = Vec::new();
    for _ in 0..250 {
        parties.push(party_with_session(&url).await);
    }
    let mut polls = tokio::task::JoinSet::new();
    for (transport, session) in &parties {
        for _ in 0..4 {
            let (transport, path) = (transport.clone(), poll_path(session));
            polls.spawn(async move { transport.call_text(Method::GET, &path, Duration::from_secs(60)).await });
        }
    }
    // One party asks for more than its share: the extra polls are refused at once.
    let (greedy, greedy_session) = party_with_session(&url).await;
    let mut greedy_polls = tokio::task::JoinSet::new();
    for _ in 0..12 {
        let (transport, path) = (greedy.clone(), poll_path(&greedy_session));
        greedy_polls.spawn(async move { transport.call_text(Method::GET, &path, Duration::from_secs(60)).await });
    }
    let mut refused = 0;
    for _ in 0..8 {
        match greedy_polls.join_next().await.unwrap().unwrap() {
            Err(ClientError::Api { status: 429, report }) => {
                assert!(report.message.contains("too many long polls"), "{}", report.message);
                refused += 1;
            }
            other => panic!("expected a refusal while four polls wait, got {other:?}"),
        }
    }
    assert_eq!(refused, 8);

    // 300 connections that trickle a header a byte at a time, and one with a 100 KB header.
    let mut tricklers = Vec::new();
    for _ in 0..300 {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream.write_all(b"GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        tricklers.push(stream);
    }
    let mut oversized = tokio::net::TcpStream::connect(addr).await.unwrap();
    let header = format!("GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Huge: {}\r\n\r\n", "a".repeat(100 * 1024));
    let _ = oversized.write_all(header.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, oversized.read_to_end(&mut answer))
        .await
        .expect("the oversized request is answered or cut");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 431"), "{answer}");

    // Meanwhile a well-behaved client runs a job to completion.
    let client = connect(&url).await;
    let noop = upload_task(&client, "noop").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let specs = (0..50).map(|i| TaskSpec {
        index: i,
        executable: noop.hash,
        data: BTreeMap::new(),
        params: vec![b'x'],
        priority: None,
    });
    client.add_tasks(job, specs).await.unwrap();
    client.launch(job).await.unwrap();
    let (finals, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!((finals.len(), info.counts.succeeded), (50, 50));

    // The tricklers are cut off by the header timeout; each byte they send after that fails.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let mut closed = 0;
    for mut stream in tricklers {
        let mut buffer = [0u8; 256];
        let _ = stream.write_all(b"z").await;
        match tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed += 1,
            Ok(Ok(n)) if String::from_utf8_lossy(&buffer[..n]).starts_with("HTTP/1.1 408") => closed += 1,
            _ => {}
        }
    }
    assert_eq!(closed, 300, "every trickling connection was closed by the header timeout");

    // Every one of the thousand polls ended normally at its deadline (nothing for them).
    let mut ended = 0;
    while let Some(result) = polls.join_next().await {
        result.unwrap().expect("a long poll of a well-behaved party ends normally");
        ended += 1;
    }
    assert_eq!(ended, 1000);
    while let Some(result) = greedy_polls.join_next().await {
        result.unwrap().expect("the greedy party's four admitted polls end normally");
    }
    engine.shutdown().await;
    server.shutdown().await;
}

/// A connection from `source` (any 127.x address reaches the loopback listener).
async fn connect_from(source: &str, addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(std::net::SocketAddr::new(source.parse().unwrap(), 0)).unwrap();
    socket.connect(addr).await.unwrap()
}

/// What the server did to a connection: closed it without a word, or answered (the start).
#[derive(Debug)]
enum End {
    Closed,
    Answered(String),
}

async fn read_end(stream: &mut tokio::net::TcpStream) -> End {
    let mut buffer = [0u8; 512];
    match stream.read(&mut buffer).await {
        Ok(0) | Err(_) => End::Closed,
        Ok(n) => End::Answered(String::from_utf8_lossy(&buffer[..n]).to_string()),
    }
}

/// Slow-loris, both kinds: one source opening connections without end, and bodies sent a
/// byte at a time. The source gets its share of connections and no more, bodies that fall
/// behind the minimum pace are answered 408 and closed, and others are served all along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_connections_are_bounded_per_source_and_slow_bodies_are_cut() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.tls = None;
    config.connection_limits.connections_per_source_max = 20;
    config.connection_limits.header_read_timeout = Duration::from_secs(5);
    config.connection_limits.body_pace =
        idlegrid_server::Pace { grace: Duration::from_secs(1), bytes_per_second_min: 100 };
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let (addr, url) = (server.addr, server.url());

    // 60 idle connections from one source: the 40 past its share are closed at once.
    let mut idle = tokio::task::JoinSet::new();
    for _ in 0..60 {
        let mut stream = connect_from("127.0.0.2", addr).await;
        idle.spawn(async move { read_end(&mut stream).await });
    }
    for _ in 0..40 {
        let end = tokio::time::timeout(PATIENCE, idle.join_next()).await.expect("connections past the share end");
        assert!(matches!(end.unwrap().unwrap(), End::Closed));
    }
    // Meanwhile another address is served.
    let health = reqwest::get(format!("{url}/v1/health")).await.unwrap();
    assert_eq!(health.status(), 200);

    // Bodies trickled a byte at a time, from a third address.
    let mut trickled = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let mut stream = connect_from("127.0.0.3", addr).await;
        trickled.spawn(async move {
            let head = "POST /v1/register HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
                        Content-Length: 10000\r\n\r\n{";
            if stream.write_all(head.as_bytes()).await.is_err() {
                return End::Closed;
            }
            loop {
                // The pacing of the attack itself, not a wait for the server.
                tokio::select! {
                    end = read_end(&mut stream) => return end,
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {
                        if stream.write_all(b" ").await.is_err() {
                            return read_end(&mut stream).await;
                        }
                    }
                }
            }
        });
    }
    let mut cut = 0;
    while let Some(end) = tokio::time::timeout(PATIENCE, trickled.join_next()).await.expect("slow bodies are cut") {
        match end.unwrap() {
            End::Answered(text) => {
                assert!(text.starts_with("HTTP/1.1 408"), "{text}");
                assert!(text.contains("too slowly"), "{text}");
                cut += 1;
            }
            End::Closed => cut += 1,
        }
    }
    assert_eq!(cut, 10);
    let health = reqwest::get(format!("{url}/v1/health")).await.unwrap();
    assert_eq!(health.status(), 200, "still serving");

    // The idle connections that got in are closed too, by the header timeout.
    while let Some(end) = tokio::time::timeout(PATIENCE, idle.join_next()).await.expect("idle connections are cut") {
        match end.unwrap() {
            End::Closed => {}
            End::Answered(text) => assert!(text.starts_with("HTTP/1.1 408"), "{text}"),
        }
    }
    server.shutdown().await;
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

/// PUT an element, signed by `identity`, gzip-compressed on the wire if `gzip`.
async fn put_element(url: &str, identity: &Identity, bytes: &[u8], gzip: bool) -> (u16, String) {
    use std::io::Write;
    let hash = idlegrid_types::ElementHash::of(bytes);
    let path = format!("/v1/elements/{hash}");
    let headers = identity.sign("PUT", &path, now_ms(), &hash.to_string());
    let mut request = reqwest::Client::new()
        .put(format!("{url}{path}"))
        .header(idlegrid_protocol::wire::HEADER_ID, headers.id)
        .header(idlegrid_protocol::wire::HEADER_TIME, headers.time_ms)
        .header(idlegrid_protocol::wire::HEADER_SIGNATURE, headers.signature);
    let body = if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).unwrap();
        request = request.header("content-encoding", "gzip");
        encoder.finish().unwrap()
    } else {
        bytes.to_vec()
    };
    let response = request.body(body).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

fn files_under(folder: &std::path::Path) -> usize {
    let Ok(entries) = std::fs::read_dir(folder) else { return 0 };
    entries.flatten().map(|e| if e.path().is_dir() { files_under(&e.path()) } else { 1 }).sum()
}

/// A client's stored bytes and elements are bounded, counted after decompression: a gzip
/// bomb (64 MiB of zeros in a small body) is refused without being stored, and a client at
/// its quota is told which quota and how much it uses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_held_to_per_client_quotas_counted_after_decompression() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.tls = None;
    config.coordinator.client_storage_bytes_max = 1 << 20;
    config.coordinator.client_elements_max = 3;
    let elements = config.data_dir.join("elements");
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let url = server.url();
    let identity = Identity::generate();
    let transport = Transport::new(&url, identity.clone()).unwrap();
    transport.register(Role::Client, "uploader").await.unwrap();

    let bomb = vec![0u8; 64 << 20];
    let (status, text) = put_element(&url, &identity, &bomb, true).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("storage quota exceeded") && text.contains("1048576 bytes"), "{text}");
    assert_eq!(files_under(&elements), 0, "nothing of the bomb is stored");

    // Three elements fit; the same one again costs nothing; a fourth is refused, by name.
    for i in 0..3u8 {
        let (status, text) = put_element(&url, &identity, &[i; 1000], i == 0).await;
        assert_eq!(status, 201, "{text}");
    }
    assert_eq!(put_element(&url, &identity, &[0; 1000], false).await.0, 201);
    let (status, text) = put_element(&url, &identity, &[9; 1000], false).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains("stores 3000 bytes in 3 elements") && text.contains("3 elements"), "{text}");
    // Another client has its own quota.
    let other = Identity::generate();
    Transport::new(&url, other.clone()).unwrap().register(Role::Client, "other").await.unwrap();
    assert_eq!(put_element(&url, &other, &[9; 1000], false).await.0, 201);
    server.shutdown().await;
}

fn metric(text: &str, name: &str) -> f64 {
    let line = text
        .lines()
        .find(|line| line.starts_with(&format!("idlegrid_{name}{{")))
        .unwrap_or_else(|| panic!("no {name} in {text}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

/// `long_polls_waiting` is the polls held open now, not the sessions that ever polled, and
/// `long_polls_held_total` counts polls that waited, not requests.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_long_poll_metrics_count_held_polls_not_requests() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.tls = None;
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let url = server.url();
    let metrics = || async { reqwest::get(format!("{url}/metrics")).await.unwrap().text().await.unwrap() };

    // Three polls answered at once: requests, not held polls.
    let mut parties = Vec::new();
    for _ in 0..3 {
        let (transport, session) = party_with_session(&url).await;
        let path = format!("/v1/sessions/{}/messages?after=0&wait_ms=0", session.session);
        transport.call_text(Method::GET, &path, Duration::from_secs(30)).await.unwrap();
        parties.push((transport, session));
    }
    let text = metrics().await;
    assert_eq!(metric(&text, "long_polls_waiting"), 0.0, "{text}");
    assert_eq!(metric(&text, "long_polls_held_total"), 0.0, "{text}");

    // One poll held open: counted while it waits.
    let (transport, session) = parties[0].clone();
    let path = format!("/v1/sessions/{}/messages?after=0&wait_ms=60000", session.session);
    let held = tokio::spawn(async move { transport.call_text(Method::GET, &path, Duration::from_secs(90)).await });
    let started = std::time::Instant::now();
    loop {
        let text = metrics().await;
        if metric(&text, "long_polls_waiting") == 1.0 {
            assert_eq!(metric(&text, "long_polls_held_total"), 1.0, "{text}");
            break;
        }
        assert!(started.elapsed() < PATIENCE, "the held poll never showed: {text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await;
    let _ = held.await;
}
