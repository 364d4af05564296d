//! A server on PostgreSQL (`--database postgres://...`, issue 8) runs a job end to end over
//! TLS, and a restarted server on the same database still knows it. Uses the machine's
//! PostgreSQL (127.0.0.1:5432, database `test`; IDLEGRID_TEST_POSTGRES overrides), each test
//! in a schema of its own.

mod common;

use std::collections::BTreeMap;

use common::*;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_store::PostgresStore;
use idlegrid_types::{JobProperties, JobState};

fn postgres_url() -> String {
    std::env::var("IDLEGRID_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

/// A fresh schema, and the URL whose connections use it.
fn fresh_schema(name: &str) -> (String, String) {
    let url = postgres_url();
    let schema = format!("{name}_{}", std::process::id());
    PostgresStore::drop_schema(&url, &schema).unwrap();
    drop(
        PostgresStore::connect_in_schema(&url, &schema)
            .expect("PostgreSQL at 127.0.0.1:5432 (database test) is needed"),
    );
    let separator = if url.contains('?') { '&' } else { '?' };
    (format!("{url}{separator}options=-csearch_path%3D{schema}"), schema)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_on_postgres_runs_a_job_and_remembers_it_after_a_restart() {
    logs();
    let (database, schema) = fresh_schema("server_e2e");
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.database = database.clone();
    let server = idlegrid_server::Server::start(config.clone()).await.unwrap();
    let url = server.url();
    let mut engines = Vec::new();
    for i in 0..2 {
        let mut engine = engine_config(&url, dir.path(), &format!("engine-{i}"));
        engine.server = endpoint(&url).await;
        engines.push(idlegrid_engine::Engine::start(engine).await.unwrap());
    }
    let client = connect(&url).await;
    let noop = upload_task(&client, "noop").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let total = 40u64;
    let specs = (0..total).map(|i| TaskSpec {
        index: i,
        executable: noop.hash,
        data: BTreeMap::new(),
        params: format!("pg {i}").into_bytes(),
        priority: None,
    });
    client.add_tasks(job, specs).await.unwrap();
    client.launch(job).await.unwrap();
    let (finals, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(info.counts.succeeded, total);
    assert_eq!(finals.len() as u64, total);
    for report in &finals {
        let bytes = client.fetch(report.result.as_ref().unwrap()).await.unwrap();
        assert_eq!(bytes, format!("pg {}", report.task).into_bytes());
    }
    for engine in engines {
        engine.shutdown().await;
    }
    server.shutdown().await;

    // The state lives in PostgreSQL, not in the process or its data folder's SQLite file.
    assert!(!dir.path().join("server").join("state.db").exists(), "no SQLite file beside a PostgreSQL server");
    let restarted = idlegrid_server::Server::start(config).await.unwrap();
    let again = connect(&restarted.url()).await;
    let error = again.job(job).await.expect_err("another client does not see the job");
    assert!(error.to_string().contains("not") || error.to_string().contains("unknown"), "{error}");
    let jobs = client_jobs_after_restart(&restarted.url(), &client).await;
    let remembered = jobs.iter().find(|j| j.job == job).expect("the job survives the restart");
    assert_eq!(remembered.state, JobState::Completed);
    assert_eq!(remembered.counts.succeeded, total);
    restarted.shutdown().await;
    PostgresStore::drop_schema(&postgres_url(), &schema).unwrap();
}

/// The first client's jobs, asked of the restarted server with the same identity.
async fn client_jobs_after_restart(
    url: &str,
    client: &idlegrid_client::Client,
) -> Vec<idlegrid_protocol::messages::JobInfo> {
    let reconnected = idlegrid_client::Client::connect_with(
        endpoint(url).await,
        client.transport().identity().clone(),
        "test",
        idlegrid_client::ChannelConfig::default(),
    )
    .await
    .unwrap();
    reconnected.jobs().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_the_server_cannot_use_is_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.database = "mysql://root@localhost/idlegrid".into();
    let error = format!("{:#}", idlegrid_server::Server::start(config.clone()).await.err().expect("refused"));
    assert!(error.contains("--database") && error.contains("postgres://"), "{error}");
    config.database = "postgres://nobody@127.0.0.1:1/none".into();
    let error = format!("{:#}", idlegrid_server::Server::start(config).await.err().expect("refused"));
    assert!(error.contains("database"), "{error}");
}
