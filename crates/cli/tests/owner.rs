//! The compute engine respects its owner: activity pauses tasks, priorities preempt, hours and
//! budgets hold, keys and seals are checked, and the status page shows what happens.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use idlegrid_engine::activity::InjectedActivity;
use idlegrid_engine::clock::ManualClock;
use idlegrid_engine::settings::WeeklySchedule;
use idlegrid_engine::{Activity, Engine, RunMode};
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_sandbox::{NoEvents, Sandbox, SandboxConfig, TaskControl, TaskInput, TaskLimits};
use idlegrid_types::{ElementKind, FailureKind, JobProperties};

fn spec(index: u64, executable: idlegrid_types::ElementHash, params: &str) -> TaskSpec {
    TaskSpec { index, executable, data: BTreeMap::new(), params: params.as_bytes().to_vec(), priority: None }
}

/// CPU jiffies used by the task threads of one engine (named after the engine) in this process.
fn task_thread_jiffies(engine_id: &str) -> u64 {
    let prefix = format!("igt-{}", &engine_id[..6]);
    let mut total = 0;
    for entry in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        if comm.starts_with(&prefix) {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            if let Some(close) = stat.rfind(')') {
                let fields: Vec<u64> =
                    stat[close + 1..].split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
                total += fields.iter().sum::<u64>();
            }
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owner_activity_pauses_a_task_which_resumes_and_computes_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let server = idlegrid_server::Server::start(server_config(dir.path())).await.unwrap();
    let activity = InjectedActivity::new();
    let mut config = engine_config(&server.url(), dir.path(), "engine");
    config.owner.mode = RunMode::IdleOnly;
    config.owner.resume_after_secs = 0;
    config.activity = Activity::Injected(activity.clone());
    config.governor_tick = Duration::from_millis(20);
    let engine = Engine::start(config).await.unwrap();
    let client = connect(&server.url()).await;
    let pi = upload_task(&client, "pi").await;
    let params = "samples=150000000 seed=11";
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(job, vec![spec(0, pi.hash, params)]).await.unwrap();
    client.launch(job).await.unwrap();
    wait_for("the task to run", || engine.status().tasks.iter().any(|t| t.state == "running")).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    activity.input();
    wait_for("the engine to notice the owner", || engine.status().state == "waiting").await;
    // The task's thread stops at its next tick; on a busy machine that tick may come late.
    wait_for("the task to park", || engine.last_parked().is_some()).await;
    let before = task_thread_jiffies(&engine.id());
    tokio::time::sleep(Duration::from_millis(800)).await;
    let during = task_thread_jiffies(&engine.id()) - before;
    assert!(during <= 2, "the paused task used {during} jiffies while the owner worked");
    let status = engine.status();
    assert!(status.reason.as_deref().unwrap_or("").contains("in use"), "{status:?}");
    assert!(status.tasks.iter().any(|t| t.state == "paused"), "{:?}", status.tasks);

    activity.away();
    let (finals, _) = run_to_completion(&client, job, Replay::Undelivered).await;
    let result = client.fetch(finals[0].result.as_ref().unwrap()).await.unwrap();
    let sandbox = Sandbox::new(SandboxConfig::default()).unwrap();
    let module = sandbox.compile(&example_task_bytes("pi")).unwrap();
    let straight = sandbox.run(
        &module,
        TaskInput { params: params.as_bytes().to_vec(), ..TaskInput::default() },
        &TaskLimits::default(),
        &TaskControl::new(),
        Box::new(NoEvents),
    );
    assert_eq!(
        straight.outcome,
        idlegrid_sandbox::TaskOutcome::Succeeded(result),
        "the interrupted run computed what an uninterrupted one does"
    );
    assert_eq!(finals[0].attempts, 1);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_of_higher_priority_preempts_a_running_one_and_both_finish() {
    let dir = tempfile::tempdir().unwrap();
    let server = idlegrid_server::Server::start(server_config(dir.path())).await.unwrap();
    let engine = Engine::start(engine_config(&server.url(), dir.path(), "engine")).await.unwrap();
    let client = connect(&server.url()).await;
    let misbehave = upload_task(&client, "misbehave").await;
    let low = client.create_job(JobProperties { priority: 0, ..JobProperties::default() }).await.unwrap().job;
    client
        .add_tasks(low, vec![spec(0, misbehave.hash, "mode=stop-aware target=8000 every=25 report=1")])
        .await
        .unwrap();
    client.launch(low).await.unwrap();
    // Long enough (8 s of steps) that the high task comes while it runs, even on a busy machine.
    wait_for("the low task to make progress", || {
        engine.status().tasks.iter().any(|t| t.state == "running" && t.progress > 0.0)
    })
    .await;
    let high = client.create_job(JobProperties { priority: 10, ..JobProperties::default() }).await.unwrap().job;
    client.add_tasks(high, vec![spec(0, misbehave.hash, "mode=stop-aware target=300 report=1")]).await.unwrap();
    client.launch(high).await.unwrap();
    let (high_finals, _) = run_to_completion(&client, high, Replay::Undelivered).await;
    assert_eq!(client.fetch(high_finals[0].result.as_ref().unwrap()).await.unwrap(), b"300 restored_from=0");
    let low_now = client.job(low).await.unwrap();
    assert_eq!(low_now.counts.succeeded, 0, "the low task waited while the high one ran");
    let (low_finals, _) = run_to_completion(&client, low, Replay::Undelivered).await;
    let text = String::from_utf8(client.fetch(low_finals[0].result.as_ref().unwrap()).await.unwrap()).unwrap();
    let restored: u64 = text.strip_prefix("8000 restored_from=").unwrap().parse().unwrap();
    assert!(restored > 0, "the preempted task resumed from its checkpoint: {text}");
    assert!(engine.stats().tasks_preempted >= 1);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_runs_outside_the_allowed_hours() {
    let dir = tempfile::tempdir().unwrap();
    let server = idlegrid_server::Server::start(server_config(dir.path())).await.unwrap();
    let clock = ManualClock::at(12 * 60); // Monday noon
    let mut config = engine_config(&server.url(), dir.path(), "engine");
    config.owner.run_hours = WeeklySchedule::parse(&["mon-fri 18:00-08:00".to_string()]).unwrap();
    config.clock = Arc::new(clock.clone());
    config.governor_tick = Duration::from_millis(20);
    let engine = Engine::start(config).await.unwrap();
    let client = connect(&server.url()).await;
    let noop = upload_task(&client, "noop").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(job, (0..3).map(|i| spec(i, noop.hash, "x"))).await.unwrap();
    client.launch(job).await.unwrap();
    wait_for("the tasks to be staged", || engine.status().tasks.iter().filter(|t| t.state == "prepared").count() == 3)
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(engine.stats().tasks_succeeded, 0, "nothing ran at noon");
    let status = engine.status();
    assert!(status.reason.as_deref().unwrap_or("").contains("outside the allowed hours"), "{status:?}");
    clock.set(18 * 60 + 1);
    let (_, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(info.counts.succeeded, 3, "they ran once the hours began");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_budget_smaller_than_an_element_is_never_exceeded_and_the_reason_reaches_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = idlegrid_server::Server::start(server_config(dir.path())).await.unwrap();
    let mut config = engine_config(&server.url(), dir.path(), "engine");
    config.owner.disk_bytes_max = 1 << 20;
    let engine_dir = config.data_dir.clone();
    let engine = Engine::start(config).await.unwrap();
    let client = connect(&server.url()).await;
    let wordcount = upload_task(&client, "wordcount").await;
    let big = client.upload(vec![b'a'; 3 << 20], ElementKind::Data, "big.txt").await.unwrap();
    let job = client.create_job(JobProperties { attempts_max: 2, ..JobProperties::default() }).await.unwrap().job;
    let mut task = spec(0, wordcount.hash, "");
    task.data.insert("text".into(), big.hash);
    client.add_tasks(job, vec![task]).await.unwrap();
    client.launch(job).await.unwrap();
    let (finals, _) = run_to_completion(&client, job, Replay::Undelivered).await;
    let failure = finals[0].failure.clone().expect("the task could not run here");
    assert_eq!(failure.kind, FailureKind::AttemptsExhausted);
    assert!(failure.message.contains("disk budget"), "{}", failure.message);
    let on_disk: u64 =
        std::fs::read_dir(engine_dir.join("elements")).unwrap().flatten().map(|e| e.metadata().unwrap().len()).sum();
    assert!(on_disk <= 1 << 20, "the engine wrote {on_disk} bytes of elements");
    let status = engine.status();
    assert!(status.disk.used <= status.disk.max);
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tampered_element_is_detected_refetched_and_never_used() {
    let dir = tempfile::tempdir().unwrap();
    let server = idlegrid_server::Server::start(server_config(dir.path())).await.unwrap();
    let config = engine_config(&server.url(), dir.path(), "engine");
    let elements = config.data_dir.join("elements");
    let engine = Engine::start(config).await.unwrap();
    let client = connect(&server.url()).await;
    let wordcount = upload_task(&client, "wordcount").await;
    let text = client.upload(b"one two three\n".to_vec(), ElementKind::Data, "t.txt").await.unwrap();
    let run = |index: u64| {
        let mut task = spec(index, wordcount.hash, "");
        task.data.insert("text".into(), text.hash);
        task
    };
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(job, vec![run(0)]).await.unwrap();
    client.launch(job).await.unwrap();
    let (first, _) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(client.fetch(first[0].result.as_ref().unwrap()).await.unwrap(), b"1 3 14");
    // Someone alters the sealed element on the provider's disk.
    let path = elements.join(text.hash.to_string());
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(!bytes.windows(5).any(|w| w == b"three"), "elements are sealed at rest");
    let last = bytes.len() - 3;
    bytes[last] ^= 0x55;
    std::fs::write(&path, &bytes).unwrap();
    client.add_tasks(job, vec![run(1)]).await.unwrap();
    let (all, _) = run_to_completion(&client, job, Replay::All).await;
    let second = all.iter().find(|r| r.task == 1).unwrap();
    assert_eq!(client.fetch(second.result.as_ref().unwrap()).await.unwrap(), b"1 3 14", "the task ran on a fresh copy");
    assert!(second.attempts >= 2, "the first placement was refused when the seal did not hold");
    assert_ne!(std::fs::read(&path).unwrap(), bytes, "the element was fetched again");
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_refuses_a_server_whose_key_it_does_not_trust() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let server = idlegrid_server::Server::start(server_config(dir.path())).await.unwrap();
    let mut config = engine_config(&server.url(), dir.path(), "engine");
    config.server_key = Some(idlegrid_protocol::auth::Identity::generate().public_key_hex());
    let error = Engine::start(config).await.err().expect("a pinned key that does not match is refused").to_string();
    assert!(error.contains("refusing to work for it"), "{error}");
    // The key given at the first registration is kept: another server later is refused too.
    let config = engine_config(&server.url(), dir.path(), "engine2");
    let engine = Engine::start(config).await.unwrap();
    engine.shutdown().await;
    let other = idlegrid_server::Server::start(server_config(&dir.path().join("other"))).await.unwrap();
    // Its certificate authority is not the one the engine pinned: the engine does not register
    // with it, and keeps backing off (it says why in its log) rather than working for it.
    let moved = engine_config(&other.url(), dir.path(), "engine2");
    let waiting = tokio::spawn(Engine::start(moved));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "an engine does not work for a server it does not trust");
    waiting.abort();
    // Trusted by its CA (given by the owner), the other server still signs with another key.
    let mut moved = engine_config(&other.url(), dir.path(), "engine2");
    moved.server = moved.server.with_trust(idlegrid_client::ServerTrust::Ca(other.ca_pem().unwrap().to_string()));
    let error = Engine::start(moved).await.err().expect("a server with another key is refused").to_string();
    assert!(error.contains("refusing"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_in_headless_chromium_shows_a_running_task() {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("Chromium is needed for this test: `cargo xtask prerequisites --install` installs it");
    let dir = tempfile::tempdir().unwrap();
    let server = idlegrid_server::Server::start(server_config(dir.path())).await.unwrap();
    let mut config = engine_config(&server.url(), dir.path(), "engine");
    config.owner.status_listen = Some("127.0.0.1:0".into());
    // The page shows the priority the owner gets by default.
    config.owner.task_priority = idlegrid_engine::TaskPriority::Lowest;
    let engine = Engine::start(config).await.unwrap();
    let client = connect(&server.url()).await;
    let misbehave = upload_task(&client, "misbehave").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(job, vec![spec(0, misbehave.hash, "mode=stop-aware target=20000 every=20")]).await.unwrap();
    client.launch(job).await.unwrap();
    wait_for("the task to report progress", || {
        engine.status().tasks.iter().any(|t| t.state == "running" && t.progress > 0.0)
    })
    .await;
    let addr = engine.status_addr().unwrap();
    let profile = tempfile::tempdir().unwrap();
    let output = tokio::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{addr}/"))
        .output()
        .await
        .unwrap();
    let dom = String::from_utf8_lossy(&output.stdout);
    assert!(dom.contains("id=\"state\""), "no page: {dom}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(dom.contains("computing"), "{dom}");
    assert!(dom.contains("class=\"state\">running<"), "{dom}");
    assert!(dom.contains("SCHED_IDLE") || dom.contains("nice 19"), "{dom}");
    client.remove_job(job).await.unwrap();
    engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_contacts_the_server_only_inside_its_contact_hours() {
    let dir = tempfile::tempdir().unwrap();
    let server = idlegrid_server::Server::start(server_config(dir.path())).await.unwrap();
    let clock = ManualClock::at(12 * 60);
    let mut config = engine_config(&server.url(), dir.path(), "engine");
    config.owner.contact = idlegrid_engine::settings::ContactSchedule {
        every_seconds: 0,
        hours: WeeklySchedule::parse(&["daily 02:00-04:00".to_string()]).unwrap(),
    };
    config.clock = Arc::new(clock.clone());
    let engine = Engine::start(config).await.unwrap();
    let client = connect(&server.url()).await;
    let noop = upload_task(&client, "noop").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    client.add_tasks(job, (0..2).map(|i| spec(i, noop.hash, "x"))).await.unwrap();
    client.launch(job).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let info = client.job(job).await.unwrap();
    assert_eq!((info.counts.running, info.counts.succeeded), (0, 0), "no contact, no work: {info:?}");
    assert!(!engine.status().connected);
    clock.set(3 * 60);
    let (_, info) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(info.counts.succeeded, 2);
    engine.shutdown().await;
}
