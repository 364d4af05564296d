//! Elements in S3-compatible object storage: the element store suite against S3-compatible HTTP
//! servers run locally, and a server process that keeps its elements there running a job that
//! reads a data element. Each runs against two servers written independently of each other and
//! of the `object_store` client: moto's server mode (Python; `pip install 'moto[server]'`) and
//! s3rver (Node.js, keeping objects in a folder; `npm install -g s3rver`). `cargo xtask test
//! --install` installs both.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_types::{ElementKind, JobProperties};

/// Which S3-compatible server a test runs against.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Moto,
    S3rver,
}

/// An S3-compatible server on a free port with one bucket, stopped when dropped.
struct S3 {
    _process: Process,
    _folder: tempfile::TempDir,
    endpoint: String,
    kind: Kind,
}

impl Kind {
    fn spawn(self, port: u16, folder: &std::path::Path) -> std::process::Child {
        let mut command = match self {
            Kind::Moto => {
                let mut command = Command::new("moto_server");
                command.args(["-H", "127.0.0.1", "-p", &port.to_string()]);
                command
            }
            Kind::S3rver => {
                let mut command = Command::new("s3rver");
                command.arg("-d").arg(folder).args(["-a", "127.0.0.1", "-p", &port.to_string(), "--silent"]);
                command
            }
        };
        let install = match self {
            Kind::Moto => "`python3 -m pip install 'moto[server]'`",
            Kind::S3rver => "`npm install -g s3rver@3.7.1`",
        };
        command.stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap_or_else(|e| {
            panic!("{self:?} is needed for this test ({e}): {install} (or `cargo xtask test --install`)")
        })
    }

    /// The keys the server accepts (s3rver checks signatures against its one built-in pair).
    fn keys(self) -> (&'static str, &'static str) {
        match self {
            Kind::Moto => ("idlegrid-test", "idlegrid-test-secret"),
            Kind::S3rver => ("S3RVER", "S3RVER"),
        }
    }
}

async fn start_s3(kind: Kind, bucket: &str) -> S3 {
    idlegrid_pki::install_default_provider();
    let port = free_port();
    let folder = tempfile::tempdir().unwrap();
    // Killed on drop, also when the loop below gives up.
    let process = Process(kind.spawn(port, folder.path()));
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if http.get(&endpoint).send().await.is_ok() {
            let created = http.put(format!("{endpoint}/{bucket}")).send().await.unwrap();
            assert!(created.status().is_success(), "cannot create the bucket: {}", created.status());
            return S3 { _process: process, _folder: folder, endpoint, kind };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the S3-compatible server did not start");
}

fn aws_env(s3: &S3) -> [(&'static str, String); 5] {
    let (key, secret) = s3.kind.keys();
    [
        ("AWS_ENDPOINT", s3.endpoint.clone()),
        ("AWS_REGION", "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID", key.into()),
        ("AWS_SECRET_ACCESS_KEY", secret.into()),
        ("AWS_ALLOW_HTTP", "true".into()),
    ]
}

#[test]
fn the_element_store_suite_passes_on_moto() {
    element_store_suite(Kind::Moto);
}

#[test]
fn the_element_store_suite_passes_on_s3rver() {
    element_store_suite(Kind::S3rver);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_keeps_its_elements_in_moto_and_runs_a_job_from_them() {
    job_from_s3(Kind::Moto).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_keeps_its_elements_in_s3rver_and_runs_a_job_from_them() {
    job_from_s3(Kind::S3rver).await;
}

fn element_store_suite(kind: Kind) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let s3 = runtime.block_on(start_s3(kind, "suite"));
    // This test owns its process (nextest runs each test alone), so setting the environment
    // cannot race another test.
    for (name, value) in aws_env(&s3) {
        unsafe { std::env::set_var(name, value) };
    }
    let dir = tempfile::tempdir().unwrap();
    let store = idlegrid_server::ElementStore::open("s3://suite/elements", &dir.path().join("unused")).unwrap();
    runtime.block_on(idlegrid_server::element_conformance::run_all(&store));
    assert!(!dir.path().join("unused").exists(), "nothing went to the local folder");
}

async fn job_from_s3(kind: Kind) {
    let s3 = start_s3(kind, "platform").await;
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
    for (name, value) in aws_env(&s3) {
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
