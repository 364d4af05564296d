//! Elements in S3-compatible object storage (issue 8): the element store suite against a real
//! S3-compatible HTTP server run locally (moto's server mode; `.ci/run` installs it with pip),
//! and a server process that keeps its elements there running a job that reads a data element.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_types::{ElementKind, JobProperties};

/// An S3-compatible server on a free port with one bucket, stopped when dropped.
struct S3 {
    _process: Process,
    endpoint: String,
}

async fn start_s3(bucket: &str) -> S3 {
    idlegrid_pki::install_default_provider();
    let port = free_port();
    let child = Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("moto_server is needed for this test: `python3 -m pip install 'moto[server]'` (or `cargo xtask prerequisites --install`)");
    // Killed on drop, also when the loop below gives up.
    let process = Process(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if http.get(&endpoint).send().await.is_ok() {
            let created = http.put(format!("{endpoint}/{bucket}")).send().await.unwrap();
            assert!(created.status().is_success(), "cannot create the bucket: {}", created.status());
            return S3 { _process: process, endpoint };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the S3-compatible server did not start");
}

fn aws_env(endpoint: &str) -> [(&'static str, String); 5] {
    [
        ("AWS_ENDPOINT", endpoint.to_string()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", "idlegrid-test".into()),
        ("AWS_SECRET_ACCESS_KEY", "idlegrid-test-secret".into()),
        ("AWS_ALLOW_HTTP", "true".into()),
    ]
}

#[test]
fn the_element_store_suite_passes_on_an_s3_compatible_server() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(start_s3("suite"));
    // This test owns its process (nextest runs each test alone), so setting the environment
    // cannot race another test.
    for (name, value) in aws_env(&s3.endpoint) {
        unsafe { std::env::set_var(name, value) };
    }
    let dir = tempfile::tempdir().unwrap();
    let store = idlegrid_server::ElementStore::open("s3://suite/elements", &dir.path().join("unused")).unwrap();
    runtime.block_on(idlegrid_server::element_conformance::run_all(&store));
    assert!(!dir.path().join("unused").exists(), "nothing went to the local folder");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_keeps_its_elements_in_s3_and_runs_a_job_from_them() {
    let s3 = start_s3("platform").await;
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let data = dir.path().join("server");
    let mut command = Command::new(binary());
    command
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(&data)
        .args(["--elements", "s3://platform/idlegrid", "--log", "warn", "--benchmark-interval-secs", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    for (name, value) in aws_env(&s3.endpoint) {
        command.env(name, value);
    }
    let _server = Process(command.spawn().unwrap());
    let url = format!("https://127.0.0.1:{port}");
    wait_healthy(&url).await;
    let mut config = engine_config(&url, dir.path(), "engine");
    config.server = endpoint(&url).await;
    let engine = idlegrid_engine::Engine::start(config).await.unwrap();
    let client = connect(&url).await;
    let wordcount = upload_task(&client, "wordcount").await;
    let text = "one two three\nfour five\n".repeat(50_000); // 1.2 MB
    let chunk = client.upload(text.into_bytes(), ElementKind::Data, "chunk.txt").await.unwrap();
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let spec = TaskSpec {
        index: 0,
        executable: wordcount.hash,
        data: BTreeMap::from([("text".to_string(), chunk.hash)]),
        params: vec![],
        priority: None,
    };
    client.add_tasks(job, vec![spec]).await.unwrap();
    client.launch(job).await.unwrap();
    let (finals, _) = run_to_completion(&client, job, Replay::Undelivered).await;
    let result = String::from_utf8(client.fetch(finals[0].result.as_ref().unwrap()).await.unwrap()).unwrap();
    assert!(result.contains("250000"), "five words on each of 50,000 lines: {result}");

    // The bytes are in the bucket, under the prefix, and not in the data folder.
    let listing = reqwest::get(format!("{}/platform?list-type=2&prefix=idlegrid/", s3.endpoint))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(listing.contains(&chunk.hash.to_string()), "{listing}");
    assert!(listing.contains(&wordcount.hash.to_string()), "{listing}");
    assert!(!data.join("elements").exists() || std::fs::read_dir(data.join("elements")).unwrap().next().is_none());
    engine.shutdown().await;
}
