//! Compression towards the server: results and checkpoints from engines and uploads from
//! clients travel gzipped, and the server refuses a body that would expand past its limits.

mod common;

use std::collections::BTreeMap;
use std::io::Write;

use common::*;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_testkit::chaos::ChaosProxy;
use idlegrid_types::{ElementHash, ElementKind, JobProperties};

const RESULT_BYTES: usize = 3 << 20;

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn header<'a>(headers: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_larger_than_the_inline_limit_travels_compressed_from_the_engine() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.tls = None;
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let upstream: std::net::SocketAddr = server.url().trim_start_matches("http://").parse().unwrap();
    // The engine talks to the server through a proxy that records what went over the wire.
    let proxy = ChaosProxy::recorder(upstream).await.unwrap();
    let engine = idlegrid_engine::Engine::start(engine_config(&proxy.url(), dir.path(), "engine")).await.unwrap();
    let client = connect(&server.url()).await;
    let misbehave = upload_task(&client, "misbehave").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let task = TaskSpec {
        index: 0,
        executable: misbehave.hash,
        data: BTreeMap::new(),
        params: format!("mode=big-result bytes={RESULT_BYTES}").into_bytes(),
        priority: None,
    };
    client.add_tasks(job, vec![task]).await.unwrap();
    client.launch(job).await.unwrap();
    let (finals, _) = run_to_completion(&client, job, Replay::Undelivered).await;
    let result = client.fetch(finals[0].result.as_ref().unwrap()).await.unwrap();
    assert_eq!(result, vec![7u8; RESULT_BYTES], "the client gets the result as the task made it");

    let hash = ElementHash::of(&result);
    let upload = proxy
        .recorded()
        .into_iter()
        .find(|e| e.method == "PUT" && e.path_and_query.contains(&hash.to_string()))
        .expect("the engine uploaded the result through the proxy");
    assert_eq!(upload.status, 201, "the server took the compressed upload");
    assert_eq!(header(&upload.request_headers, "content-encoding"), Some(&b"gzip"[..]));
    assert!(
        upload.request_body.len() < RESULT_BYTES / 50,
        "{} bytes went over the wire for a result of {RESULT_BYTES}",
        upload.request_body.len()
    );
    engine.shutdown().await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_compression_bomb_is_refused_with_a_clear_error() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.coordinator.element_bytes_max = 4 << 20;
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let client = connect(&server.url()).await;

    // 256 MiB of zeros in a quarter of a megabyte: well past the 4 MiB limit once expanded.
    let expanded = vec![0u8; 256 << 20];
    let hash = ElementHash::of(&expanded);
    let bomb = gzip(&expanded);
    drop(expanded);
    assert!(bomb.len() < 1 << 20);
    let error = client
        .transport()
        .upload_gzipped_verbatim(&hash, ElementKind::Data, bomb.into())
        .await
        .expect_err("a body expanding past the limit is refused");
    let text = error.to_string();
    assert!(text.contains("exceeds the limit of 4194304 bytes"), "{text}");

    // Bytes that claim to be gzip but are not: a clear refusal too, and the server lives on.
    let small = b"not compressed at all".repeat(100);
    let error = client
        .transport()
        .upload_gzipped_verbatim(&ElementHash::of(&small), ElementKind::Data, small.into())
        .await
        .expect_err("a body that does not decompress is refused");
    assert!(!error.to_string().is_empty());

    // A compressed upload within the limit is taken, and reads back as it was.
    let fine = b"a line of data that repeats\n".repeat(20_000);
    let element = client.upload(fine.clone(), ElementKind::Data, "fine").await.unwrap();
    assert_eq!(element.size, fine.len() as u64);
    assert_eq!(client.fetch(&idlegrid_protocol::Payload::Element(element)).await.unwrap(), fine);
    server.shutdown().await;
}
