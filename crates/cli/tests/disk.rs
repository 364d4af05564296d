//! An engine's disk: a task that writes more than the owner's budget, or fills the disk, must
//! never disable the engine. Full disks are the engine's state (it stops taking tasks and says
//! why), not failures of tasks; nothing half-written stays behind.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::Ordering;

use common::*;
use idlegrid_engine::{DiskSpace, Engine};
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_task_abi::code;
use idlegrid_testkit::hostile::{self, checkpoint_flood_codes, wasm};
use idlegrid_types::{ElementHash, ElementKind, JobProperties};

fn spec(index: u64, executable: ElementHash, params: &str) -> TaskSpec {
    TaskSpec { index, executable, data: BTreeMap::new(), params: params.as_bytes().to_vec(), priority: None }
}

/// Files an interrupted or failed write leaves: temporary checkpoints and partial elements.
fn leftovers(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for sub in ["checkpoints", "elements"] {
        for entry in std::fs::read_dir(dir.join(sub)).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".tmp") || name.ends_with(".sealing") {
                found.push(format!("{sub}/{name}"));
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_fills_the_budget_or_the_disk_does_not_disable_the_engine() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let server = idlegrid_server::Server::start(server_config(dir.path())).await.unwrap();
    let (space, free) = DiskSpace::injected(1 << 40);
    let mut config = engine_config(&server.url(), dir.path(), "engine");
    config.owner.disk_bytes_max = 8 << 20;
    config.disk_space = space;
    let data = config.data_dir.clone();
    let engine = Engine::start(config).await.unwrap();
    let client = connect(&server.url()).await;
    let flood = client.upload(wasm(hostile::CHECKPOINT_FLOOD), ElementKind::Executable, "flood.wasm").await.unwrap();
    let noop = upload_task(&client, "noop").await;

    // The budget: a checkpoint larger than all of it is refused, one that nearly fills it is
    // kept; the other tasks all succeed on this engine.
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let mut tasks = vec![spec(0, flood.hash, "")];
    tasks.extend((1..7).map(|i| spec(i, noop.hash, &i.to_string())));
    client.add_tasks(job, tasks).await.unwrap();
    client.launch(job).await.unwrap();
    let (finals, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!((info.counts.succeeded, info.counts.failed), (7, 0), "{finals:?}");
    let flooded = finals.iter().find(|r| r.task == 0).unwrap();
    let codes = checkpoint_flood_codes(&client.fetch(flooded.result.as_ref().unwrap()).await.unwrap());
    assert_eq!(codes, vec![code::HOST_ERROR, code::OK], "over the budget refused, within it kept");
    assert!(finals.iter().all(|r| r.attempts == 1), "no task failed on this engine: {finals:?}");

    // The disk: with too little room the checkpoint is refused before anything is written, and
    // the engine stops taking tasks, says why, and fails none of them.
    free.store(idlegrid_engine::space::HEADROOM + (1 << 20), Ordering::SeqCst);
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(job, vec![spec(0, flood.hash, "")]).await.unwrap();
    client.launch(job).await.unwrap();
    let (finals, _) = run_to_completion(&client, job, Replay::Undelivered).await;
    let codes = checkpoint_flood_codes(&client.fetch(finals[0].result.as_ref().unwrap()).await.unwrap());
    assert_eq!(codes, vec![code::HOST_ERROR, code::HOST_ERROR], "nothing fits on a full disk");
    wait_for("the engine to report its full disk", || engine.status().state == "disk full").await;
    let status = engine.status();
    assert!(
        status.reason.as_deref().is_some_and(|r| r.contains("is full") && r.contains("free some space")),
        "{status:?}"
    );
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(job, (0..3).map(|i| spec(i, noop.hash, &i.to_string()))).await.unwrap();
    client.launch(job).await.unwrap();
    assert_eq!(client.job(job).await.unwrap().counts.failed, 0);

    // Room again: the engine takes tasks again, and they succeed.
    free.store(1 << 40, Ordering::SeqCst);
    let (finals, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!((info.counts.succeeded, info.counts.failed), (3, 0), "{finals:?}");
    assert_ne!(engine.status().state, "disk full");
    assert_eq!(engine.stats().tasks_failed, 0);
    assert!(leftovers(&data).is_empty(), "{:?}", leftovers(&data));
    engine.shutdown().await;

    // Leftovers of a crash in the middle of writes are removed when the engine starts.
    std::fs::write(data.join("checkpoints/77.tmp"), b"half a checkpoint").unwrap();
    std::fs::write(data.join("elements").join(format!("{}.sealing", ElementHash::of(b"x"))), b"half").unwrap();
    let engine = Engine::start(engine_config(&server.url(), dir.path(), "engine")).await.unwrap();
    assert!(leftovers(&data).is_empty(), "{:?}", leftovers(&data));
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(job, vec![spec(0, noop.hash, "after")]).await.unwrap();
    client.launch(job).await.unwrap();
    let (_, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(info.counts.succeeded, 1);
    engine.shutdown().await;
}
