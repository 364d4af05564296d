//! Cache-aware placement (P5.6), end to end: an engine reports what its element cache holds
//! (`CacheContents`, sent when the cache changes), the server keeps it, and a task that needs a
//! large element the engine already holds goes there rather than to an idle engine that would
//! have to download it.

mod common;

use std::collections::BTreeMap;

use common::*;
use idlegrid_client::Client;
use idlegrid_engine::{Engine, EngineHandle};
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_server::Server;
use idlegrid_types::{ElementHash, ElementKind, JobProperties};

/// 4 MiB that do not compress away.
fn large_element() -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..4 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn task(index: u64, executable: ElementHash, data: &[(&str, ElementHash)]) -> TaskSpec {
    TaskSpec {
        index,
        executable,
        data: data.iter().map(|(name, hash)| (name.to_string(), *hash)).collect::<BTreeMap<_, _>>(),
        params: vec![b'x'],
        priority: None,
    }
}

/// Run `tasks` as one job, on engines meeting `requirement`, to completion.
async fn run(client: &Client, requirement: Option<&str>, tasks: Vec<TaskSpec>) {
    let properties = JobProperties { requirement: requirement.map(str::to_string), ..JobProperties::default() };
    let job = client.create_job(properties).await.unwrap().job;
    client.add_tasks(job, tasks).await.unwrap();
    client.launch(job).await.unwrap();
    run_to_completion(client, job, Replay::Undelivered).await;
}

async fn succeeded(engine: &EngineHandle, what: &str, count: u64) {
    wait_for(what, || engine.stats().tasks_succeeded == count).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_goes_to_the_engine_that_holds_its_large_element() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(server_config(dir.path())).await.unwrap();
    let start = |name: &str| {
        let mut config = engine_config(&server.url(), dir.path(), name);
        if let Some(ca) = server.ca_pem() {
            config.server = config.server.with_trust(idlegrid_client::ServerTrust::Ca(ca.to_string()));
        }
        Engine::start(config)
    };
    let holder = start("holder").await.unwrap();
    let fresh = start("fresh").await.unwrap();
    let client = connect(&server.url()).await;
    let noop = upload_task(&client, "noop").await.hash;
    let large = client.upload(large_element(), ElementKind::Data, "large").await.unwrap().hash;

    // Both engines hold the executable; only `holder` holds the large element.
    run(&client, Some(r#"engine.name == "fresh""#), vec![task(0, noop, &[])]).await;
    succeeded(&fresh, "the fresh engine to run the warm-up task", 1).await;
    run(&client, Some(r#"engine.name == "holder""#), vec![task(0, noop, &[("large", large)])]).await;
    succeeded(&holder, "the holder to run the task that brings the element", 1).await;

    // Two tasks needing the element, free to go anywhere, with both engines equally free: a
    // pass by room alone would give each engine one; both go to the engine that holds it.
    run(&client, None, vec![task(0, noop, &[("large", large)]), task(1, noop, &[("large", large)])]).await;
    let total = || holder.stats().tasks_succeeded + fresh.stats().tasks_succeeded;
    wait_for("both tasks to be counted by the engines", || total() == 4).await;
    assert_eq!(holder.stats().tasks_succeeded, 3, "the engine that holds the element ran both");
    assert_eq!(fresh.stats().tasks_succeeded, 1, "the engine without the element got none of them");
}
