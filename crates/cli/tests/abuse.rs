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
