//! Results delivered outside the server (`ExternalDelivery`): a real HTTP receiver started by
//! the test gets each final result of a job as a PUT naming the job, the task, its state and
//! the SHA-256, after retries when it refuses at first; the client sees how delivery goes;
//! results already in are delivered when asked later; a receiver that never accepts ends as
//! failed with its answer; bad URLs are refused.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use common::*;
use idlegrid_protocol::messages::{DeliveryReport, Replay, TaskSpec};
use idlegrid_types::{ElementHash, JobProperties};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    body: Vec<u8>,
    answered: StatusCode,
}

#[derive(Clone, Default)]
struct Receiver {
    received: Arc<Mutex<Vec<Received>>>,
    /// Requests to `/flaky/...` refused with 503 before it accepts.
    flaky_refusals_left: Arc<Mutex<u32>>,
}

async fn put(
    State(receiver): State<Receiver>,
    Path((inbox, _rest)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let answered = match inbox.as_str() {
        "broken" => StatusCode::INTERNAL_SERVER_ERROR,
        "flaky" => {
            let mut left = receiver.flaky_refusals_left.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::NO_CONTENT
            }
        }
        _ => StatusCode::NO_CONTENT,
    };
    receiver.received.lock().unwrap().push(Received {
        path: uri.path().to_string(),
        query: uri.query().map(str::to_string),
        headers,
        body: body.to_vec(),
        answered,
    });
    answered
}

async fn start_receiver(refusals: u32) -> (Receiver, u16) {
    let receiver = Receiver { flaky_refusals_left: Arc::new(Mutex::new(refusals)), ..Receiver::default() };
    let app = axum::Router::new().route("/{inbox}/{*rest}", axum::routing::put(put)).with_state(receiver.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (receiver, port)
}

fn header(request: &Received, name: &str) -> String {
    request.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

async fn report(client: &idlegrid_client::Client, job: idlegrid_types::JobId) -> DeliveryReport {
    client.deliver_results(job, None, None).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_are_delivered_to_the_clients_url_with_retries_and_the_client_sees_how_it_goes() {
    logs();
    let (receiver, port) = start_receiver(2).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    // The receiver is on loopback, which deliveries (like webhooks) may reach only if allowed.
    config.coordinator.webhook_allow = vec!["127.0.0.0/8".parse().unwrap()];
    config.coordinator.delivery_attempts_max = 3;
    config.coordinator.delivery_retry_ms_max = 300;
    config.notice_interval = std::time::Duration::from_millis(100);
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let engines = [
        idlegrid_engine::Engine::start(engine_config(&server.url(), dir.path(), "engine-0")).await.unwrap(),
        idlegrid_engine::Engine::start(engine_config(&server.url(), dir.path(), "engine-1")).await.unwrap(),
    ];
    let client = connect(&server.url()).await;
    let pi = upload_task(&client, "pi").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let tasks = 4u64;
    let specs = (0..tasks).map(|index| TaskSpec {
        index,
        executable: pi.hash,
        data: BTreeMap::new(),
        params: format!("samples=20000 seed={}", index + 1).into_bytes(),
        priority: None,
    });
    client.add_tasks(job, specs).await.unwrap();

    // Bad targets are refused, naming what is wrong.
    for (url, why) in
        [("ftp://127.0.0.1/x", "http or https"), ("http://10.1.2.3/x", "--webhook-allow"), ("not a url", "not a URL")]
    {
        let error = client.deliver_results(job, None, Some(url.into())).await.unwrap_err().to_string();
        assert!(error.contains(why), "{url}: {error}");
    }
    let missing = client.deliver_results(job, Some(99), Some(format!("http://127.0.0.1:{port}/x/y"))).await;
    assert!(missing.unwrap_err().to_string().contains("no task 99"));
    assert_eq!(report(&client, job).await.url, None, "nothing refused was kept");

    // Asked before the results exist: each is delivered as it arrives. The receiver refuses
    // the first two attempts; the token in the query is the receiver's, not for reports.
    let url = format!("http://127.0.0.1:{port}/flaky/results?token=secret");
    let asked = client.deliver_results(job, None, Some(url)).await.unwrap();
    assert_eq!(asked.url.as_deref(), Some(format!("http://127.0.0.1:{port}/flaky/results").as_str()));
    assert_eq!((asked.pending, asked.delivered, asked.failed), (0, 0, 0));
    client.launch(job).await.unwrap();
    let (finals, _) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(finals.len() as u64, tasks);
    let mut results = BTreeMap::new();
    for report in &finals {
        results.insert(report.task, client.fetch(report.result.as_ref().unwrap()).await.unwrap());
    }
    wait_until("every result to be delivered", || async { report(&client, job).await.delivered == tasks }).await;
    let delivered = report(&client, job).await;
    assert_eq!((delivered.pending, delivered.failed), (0, 0), "{delivered:?}");
    assert!(delivered.deliveries.iter().all(|d| d.state == "delivered" && d.delivered_ms.is_some()));
    let attempts: u32 = delivered.deliveries.iter().map(|d| d.attempts).sum();
    assert_eq!(attempts as u64, tasks + 2, "two refusals, each retried: {delivered:?}");

    let received = receiver.received.lock().unwrap().clone();
    assert_eq!(received.len() as u64, tasks + 2);
    let accepted: Vec<&Received> = received.iter().filter(|r| r.answered.is_success()).collect();
    let mut seen = BTreeMap::new();
    for request in &accepted {
        assert_eq!(request.path, "/flaky/results");
        assert_eq!(request.query.as_deref(), Some("token=secret"), "the URL is used as given");
        assert_eq!(header(request, "x-idlegrid-job"), job.to_string());
        assert_eq!(header(request, "x-idlegrid-state"), "succeeded");
        assert_eq!(header(request, "x-idlegrid-sha256"), ElementHash::of(&request.body).to_string());
        let task: u64 = header(request, "x-idlegrid-task").parse().unwrap();
        assert!(seen.insert(task, request.body.clone()).is_none(), "task {task} accepted twice");
    }
    assert_eq!(seen, results, "each task's result, byte for byte");

    // Asked after the results are in, for one task only, at another URL: that result goes.
    let again = client.deliver_results(job, Some(2), Some(format!("http://127.0.0.1:{port}/again/2"))).await.unwrap();
    assert_eq!(again.task, Some(2));
    wait_until("task 2's result to be delivered again", || async {
        receiver.received.lock().unwrap().iter().any(|r| r.path == "/again/2")
    })
    .await;
    let to_again: Vec<Received> =
        receiver.received.lock().unwrap().iter().filter(|r| r.path.starts_with("/again")).cloned().collect();
    assert_eq!(to_again.len(), 1);
    assert_eq!((header(&to_again[0], "x-idlegrid-task"), &to_again[0].body), ("2".to_string(), &results[&2]));

    // A receiver that never accepts: the delivery ends as failed, with its answer.
    client.deliver_results(job, Some(1), Some(format!("http://127.0.0.1:{port}/broken/1"))).await.unwrap();
    wait_until("the delivery to the broken receiver to be given up", || async {
        report(&client, job).await.failed == 1
    })
    .await;
    let given_up = report(&client, job).await;
    let task1 = given_up.deliveries.iter().find(|d| d.task == 1).unwrap();
    assert_eq!((task1.state.as_str(), task1.attempts), ("failed", 3), "{task1:?}");
    assert!(task1.last_error.as_deref().unwrap_or_default().contains("500"), "{task1:?}");
    let broken = receiver.received.lock().unwrap().iter().filter(|r| r.path == "/broken/1").count();
    assert_eq!(broken, 3, "tried as often as the server allows, no more");

    for engine in engines {
        engine.shutdown().await;
    }
    server.shutdown().await;
}
