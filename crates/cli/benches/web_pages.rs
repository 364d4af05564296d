//! How long the web manager's pages of a job with a million tasks take to load (issue: no page
//! lists all tasks at once). A real server over TLS on SQLite; the job's tasks and a fifth of
//! their results are written straight into its database while it is stopped, then each page
//! is fetched with a session cookie, as a browser would. Prints a table; asserts nothing about
//! time. `cargo bench -p idlegrid-cli --bench web_pages` (IDLEGRID_BENCH_TASKS: how many tasks).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use idlegrid_client::{ChannelConfig, Client, Endpoint, ServerTrust};
use idlegrid_protocol::Payload;
use idlegrid_protocol::auth::Identity;
use idlegrid_server::web::LoginLink;
use idlegrid_server::{Server, ServerConfig};
use idlegrid_store::{NewResult, NewTask, SqliteStore, Store, StoreError};
use idlegrid_types::{ElementHash, JobCounts, JobId, JobProperties, JobState, TaskState};

/// Fetches of each page; the table shows the median and the slowest.
const ROUNDS: usize = 15;

fn config(dir: &Path) -> ServerConfig {
    let mut config = ServerConfig::new("127.0.0.1:0".parse().expect("an address"), dir.join("server"));
    config.maintenance_interval = Duration::from_secs(3600);
    config.rate_limits = idlegrid_server::RateLimits::unbounded();
    config
}

async fn start(dir: &Path) -> (idlegrid_server::ServerHandle, Endpoint) {
    let server = Server::start(config(dir)).await.expect("the server starts");
    let ca = server.ca_pem().expect("TLS").to_string();
    let endpoint = Endpoint::new(&server.url()).with_trust(ServerTrust::Ca(ca));
    (server, endpoint)
}

/// The job's tasks (all but `done` queued) and `done` results spread over the last hour.
fn fill(path: &Path, job: JobId, tasks: u64, done: u64, now_ms: u64) -> Result<(), StoreError> {
    let store = SqliteStore::open(path)?;
    let chunk = 50_000;
    for start in (0..tasks).step_by(chunk as usize) {
        store.write(|tx| {
            let batch: Vec<NewTask> = (start..(start + chunk).min(tasks))
                .map(|index| NewTask {
                    index,
                    priority: 0,
                    executable: ElementHash::of(b"bench"),
                    data: BTreeMap::new(),
                    params: index.to_le_bytes().to_vec(),
                    trace: None,
                })
                .collect();
            tx.insert_tasks(job, &batch)
        })?;
    }
    for start in (0..done).step_by(chunk as usize) {
        store.write(|tx| {
            for index in start..(start + chunk).min(done) {
                let task = tx.task(job, index)?.expect("inserted").key;
                tx.set_task_state(task, TaskState::Succeeded)?;
                let result = NewResult {
                    task,
                    job,
                    index,
                    state: TaskState::Succeeded,
                    result: Some(Payload::Inline(index.to_le_bytes().to_vec())),
                    failure: None,
                    cpu_ms: 10,
                    attempts: 1,
                };
                tx.insert_result(&result, now_ms - 3_600_000 + index * 3_600_000 / done)?;
            }
            Ok::<_, StoreError>(())
        })?;
    }
    store.write(|tx| {
        tx.move_job_tasks(job, &[TaskState::Created], TaskState::Queued)?;
        let counts = JobCounts { queued: tasks - done, succeeded: done, ..JobCounts::default() };
        tx.save_job_state(job, JobState::Running, &counts)
    })
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let tasks: u64 = std::env::var("IDLEGRID_BENCH_TASKS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let done = tasks / 5;
    let dir = tempfile::tempdir().expect("a temporary folder");
    let (server, endpoint) = start(dir.path()).await;
    let identity = Identity::generate();
    let client =
        Client::connect_with(endpoint, identity.clone(), "bench", ChannelConfig::default()).await.expect("a client");
    let job = client
        .create_job(JobProperties { name: "a million tasks".into(), ..JobProperties::default() })
        .await
        .expect("a job")
        .job;
    drop(client);
    server.shutdown().await;

    let began = Instant::now();
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis() as u64;
    fill(&dir.path().join("server").join("state.db"), job, tasks, done, now_ms).expect("the job's rows");
    eprintln!("wrote {tasks} tasks and {done} results in {:.1} s", began.elapsed().as_secs_f64());

    let (server, endpoint) = start(dir.path()).await;
    let ca = server.ca_pem().expect("TLS").to_string();
    let client = Client::connect_with(endpoint, identity, "bench", ChannelConfig::default()).await.expect("a client");
    let link: LoginLink = client
        .transport()
        .call::<(), _>(reqwest::Method::POST, "/v1/web/login", None, Duration::from_secs(30))
        .await
        .expect("a sign-in link");
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(idlegrid_pki::client_config(&ca, None).expect("trust"))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let opened = http.get(&link.url).send().await.expect("the link opens");
    let cookie = opened.headers()[reqwest::header::SET_COOKIE]
        .to_str()
        .expect("a cookie")
        .split(';')
        .next()
        .expect("a value")
        .to_string();
    let url = server.url();
    let middle = tasks / 2;
    let pages = [
        ("jobs list", "/web/jobs".to_string()),
        ("job page (first tasks and results)", format!("/web/jobs/{job}")),
        ("job page, tasks from the middle", format!("/web/jobs/{job}?tasks={middle}")),
        ("job page, results from the middle", format!("/web/jobs/{job}?after={}", done / 2)),
        ("live figures and history (JSON)", format!("/web/jobs/{job}/stats")),
        ("a result download", format!("/web/jobs/{job}/results/{}", done / 2)),
    ];
    println!("web pages of a job with {tasks} tasks ({done} results), {ROUNDS} fetches each, SQLite");
    println!("{:<40} {:>12} {:>12} {:>10}", "page", "median ms", "slowest ms", "bytes");
    for (name, path) in pages {
        let mut times = Vec::new();
        let mut bytes = 0;
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let response = http
                .get(format!("{url}{path}"))
                .header(reqwest::header::COOKIE, &cookie)
                .send()
                .await
                .expect("an answer");
            let status = response.status();
            let body = response.bytes().await.expect("a body");
            times.push(started.elapsed());
            assert!(status.is_success(), "{path}: {status}");
            bytes = body.len();
        }
        times.sort();
        println!("{name:<40} {:>12.1} {:>12.1} {bytes:>10}", millis(times[ROUNDS / 2]), millis(times[ROUNDS - 1]));
    }
    server.shutdown().await;
}
