//! Traces across processes: a server, an engine and a client (`job submit --watch`), each an
//! `idlegrid` process, export their spans over OTLP/HTTP to a real receiver started here (an
//! axum server decoding the protobuf `ExportTraceServiceRequest`). The spans of one task, from
//! all three, share one trace and link parent to child across the processes; with nothing
//! configured, nothing is sent.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use common::*;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message;

/// One span as the receiver got it.
#[derive(Debug, Clone)]
struct Received {
    service: String,
    name: String,
    trace: String,
    span: String,
    parent: String,
    attributes: BTreeMap<String, String>,
}

/// An OTLP/HTTP trace receiver on a free port, keeping every span and counting requests.
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
    requests: Arc<Mutex<u64>>,
}

fn text(value: Option<&opentelemetry_proto::tonic::common::v1::AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn decode(body: &[u8]) -> Vec<Received> {
    let request = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export request");
    let mut spans = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|a| a.key == "service.name"))
            .map(|a| text(a.value.as_ref()))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push(Received {
                    service: service.clone(),
                    name: span.name.clone(),
                    trace: hex::encode(&span.trace_id),
                    span: hex::encode(&span.span_id),
                    parent: hex::encode(&span.parent_span_id),
                    attributes: span.attributes.iter().map(|a| (a.key.clone(), text(a.value.as_ref()))).collect(),
                });
            }
        }
    }
    spans
}

async fn start_receiver(address: &str) -> Receiver {
    let spans: Arc<Mutex<Vec<Received>>> = Arc::default();
    let requests: Arc<Mutex<u64>> = Arc::default();
    let (kept, counted) = (spans.clone(), requests.clone());
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: Bytes| {
            let (kept, counted) = (kept.clone(), counted.clone());
            async move {
                *counted.lock().unwrap() += 1;
                kept.lock().unwrap().extend(decode(&body));
                ([("content-type", "application/x-protobuf")], ExportTraceServiceResponse::default().encode_to_vec())
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .unwrap_or_else(|e| panic!("the test's OTLP receiver cannot listen on {address}: {e}"));
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver { url, spans, requests }
}

impl Receiver {
    fn spans(&self) -> Vec<Received> {
        self.spans.lock().unwrap().clone()
    }
}

/// How each process is told where traces go.
#[derive(Clone, Copy)]
enum Config<'a> {
    /// Nothing: no flag, and the standard variables removed from the environment.
    Nothing,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL).
    Env(&'a str),
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL).
    TracesEnv(&'a str),
    /// `--otlp-endpoint`.
    Flag(&'a str),
}

fn idlegrid(config: Config<'_>) -> Command {
    let mut command = Command::new(binary());
    for name in
        ["OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_SDK_DISABLED"]
    {
        command.env_remove(name);
    }
    // Exporters batch: a short interval, so that the receiver sees spans while the test waits.
    command.env("OTEL_BSP_SCHEDULE_DELAY", "100");
    match config {
        Config::Nothing => {}
        Config::Env(base) => {
            command.env("OTEL_EXPORTER_OTLP_ENDPOINT", base);
        }
        Config::TracesEnv(base) => {
            command.env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", format!("{base}/v1/traces"));
        }
        Config::Flag(base) => {
            command.args(["--otlp-endpoint", base]);
        }
    }
    command
}

/// A server, an engine and a client's `job submit --watch` of two pi tasks, each process with
/// its own configuration; returns after the client got both results, with the server and
/// engine still running.
struct Platform {
    server: Process,
    engine: Process,
    job: idlegrid_types::JobId,
    dir: tempfile::TempDir,
}

impl Platform {
    /// The trace context the server keeps with each of the job's two tasks.
    fn stored_traces(&self) -> Vec<Option<String>> {
        use idlegrid_store::Store;
        let store = idlegrid_store::SqliteStore::open(&self.dir.path().join("server/state.db")).unwrap();
        store
            .write(|tx: &mut dyn idlegrid_store::Tx| -> Result<Vec<Option<String>>, idlegrid_store::StoreError> {
                (0..2).map(|index| Ok(tx.task(self.job, index)?.expect("the task").trace)).collect()
            })
            .unwrap()
    }
}

async fn run_job(server: Config<'_>, engine: Config<'_>, client: Config<'_>) -> Platform {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("https://127.0.0.1:{port}");
    let server = idlegrid(server)
        .args(["server", "--listen", &format!("127.0.0.1:{port}"), "--data"])
        .arg(dir.path().join("server"))
        .args(["--log", "warn", "--benchmark-interval-secs", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let server = Process(server);
    wait_healthy(&url).await;
    let engine = idlegrid(engine)
        .args(["--server", &url, "engine", "--data"])
        .arg(dir.path().join("engine"))
        .args(["--cores", "2", "--status-listen", "127.0.0.1:0", "--log", "warn", "--task-priority", "normal"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let engine = Process(engine);
    let job = dir.path().join("job.toml");
    let pi = example_task("pi");
    std::fs::write(
        &job,
        format!(
            "name = \"pi\"\nexecutable = \"{}\"\n[tasks]\ncount = 2\nparams = \"samples=1000 seed={{index}}\"\n",
            pi.display()
        ),
    )
    .unwrap();
    let output = idlegrid(client)
        .arg("--home")
        .arg(dir.path().join("home"))
        .args(["--server", &url, "job", "submit", "--watch"])
        .arg(&job)
        .output()
        .unwrap();
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{out}{err}");
    assert!(out.contains("2 tasks succeeded, 0 failed"), "{out}{err}");
    let job = out.split_whitespace().skip_while(|w| *w != "job").nth(1).expect("the job's ID").parse().unwrap();
    Platform { server, engine, job, dir }
}

/// Ask a process to stop as an operator would (SIGTERM) and wait until it has: a process that
/// exports traces flushes them before it exits.
fn terminate(process: &mut Process) {
    // SAFETY: kill has no memory preconditions; the pid is our child's, not yet reaped.
    unsafe { libc::kill(process.0.id() as i32, libc::SIGTERM) };
    process.0.wait().unwrap();
}

fn named<'a>(spans: &'a [Received], service: &str, name: &str) -> Vec<&'a Received> {
    spans.iter().filter(|s| s.service == service && s.name == name).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tasks_spans_from_client_server_and_engine_form_one_trace() {
    let receiver = start_receiver("127.0.0.1:0").await;
    let base = receiver.url.as_str();
    // Each process configured in one of the three ways.
    let platform = run_job(Config::Env(base), Config::Flag(base), Config::TracesEnv(base)).await;

    // The client flushed when it exited: its root span is there.
    let spans = receiver.spans();
    let roots = named(&spans, "idlegrid-client", "job.submit");
    assert_eq!(roots.len(), 1, "{spans:#?}");
    let root = roots[0].clone();
    assert_eq!(root.parent, "", "job.submit starts the trace");
    let trace = root.trace.clone();

    // The server and the engine export in batches: wait for both tasks' spans of every kind.
    let spans = wait_some("the spans of both tasks from the engine and the server", || {
        let spans = receiver.spans();
        let complete = named(&spans, "idlegrid-engine", "engine.run").len() >= 2
            && named(&spans, "idlegrid-engine", "engine.stage").len() >= 2
            && named(&spans, "idlegrid-server", "server.result").len() >= 2;
        async move { complete.then_some(spans) }
    })
    .await;
    let by_id: BTreeMap<&str, &Received> = spans.iter().map(|s| (s.span.as_str(), s)).collect();
    let parent_of = |span: &Received| by_id.get(span.parent.as_str()).copied();

    // Every span of the job is in the root's trace.
    for span in &spans {
        assert_eq!(span.trace, trace, "one trace for the whole job: {span:#?}");
    }

    // Client -> server: the requests of the submission are server spans under the client's
    // span; the engine's downloads of the task's elements are under its staging span.
    let requests: Vec<&Received> =
        spans.iter().filter(|s| s.service == "idlegrid-server" && s.name.contains(' ')).collect();
    for request in &requests {
        let parent = parent_of(request).unwrap_or_else(|| panic!("the caller's span of {request:#?}"));
        assert!(
            parent.service == "idlegrid-client"
                || (parent.service.as_str(), parent.name.as_str()) == ("idlegrid-engine", "engine.stage"),
            "{request:#?} under {parent:#?}"
        );
        assert!(request.attributes.contains_key("http.response.status_code"), "{request:#?}");
    }
    let request_under = |name: &str, caller: &str| {
        requests.iter().any(|r| r.name == name && parent_of(r).is_some_and(|p| p.name == caller))
    };
    assert!(request_under("POST /v1/sessions/{session}/messages", "job.submit"), "the tasks sent: {requests:#?}");
    assert!(request_under("PUT /v1/elements/{hash}", "job.submit"), "the executable's upload: {requests:#?}");
    assert!(request_under("GET /v1/elements/{hash}", "engine.stage"), "the engine's download: {requests:#?}");

    // Server -> engine: the engine's spans of each task are children of the server span of the
    // request that stored the task (the trace context travelled in the assignment).
    for name in ["engine.stage", "engine.run"] {
        let engine_spans = named(&spans, "idlegrid-engine", name);
        let assignments: std::collections::BTreeSet<&str> =
            engine_spans.iter().map(|s| s.attributes["assignment"].as_str()).collect();
        assert_eq!(assignments.len(), 2, "{name} once per task: {engine_spans:#?}");
        for span in engine_spans {
            let parent = parent_of(span).unwrap_or_else(|| panic!("the parent of {span:#?}"));
            assert_eq!(parent.service, "idlegrid-server", "{span:#?}");
            assert_eq!(parent.name, "POST /v1/sessions/{session}/messages", "{span:#?}");
        }
    }

    // Engine -> server: the result of each task is handled in a span under the engine's run
    // (the trace context travelled back in the status).
    for result in named(&spans, "idlegrid-server", "server.result") {
        let parent = parent_of(result).unwrap_or_else(|| panic!("the parent of {result:#?}"));
        assert_eq!((parent.service.as_str(), parent.name.as_str()), ("idlegrid-engine", "engine.run"), "{result:#?}");
        assert_eq!(result.attributes["assignment"], parent.attributes["assignment"]);
        assert_eq!(result.attributes["state"], "succeeded");
    }

    // Server -> client: the client received both results within its trace.
    let received = named(&spans, "idlegrid-client", "client.result");
    assert_eq!(received.len(), 2, "{received:#?}");
    for span in received {
        assert_eq!(span.parent, root.span, "{span:#?}");
        assert_eq!(span.attributes["state"], "succeeded");
    }

    // The server kept each task's trace context: the span of the request that carried it.
    for stored in platform.stored_traces() {
        let stored = stored.expect("a traced task keeps its trace context");
        let parent = idlegrid_protocol::TraceParent::parse(&stored).unwrap();
        assert_eq!(parent.trace_id(), trace);
        assert_eq!(by_id[parent.span_id()].name, "POST /v1/sessions/{session}/messages");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_configured_nothing_is_sent() {
    // Where an OTLP/HTTP exporter sends by default, had one been set up anyway.
    let receiver = start_receiver("127.0.0.1:4318").await;
    let mut platform = run_job(Config::Nothing, Config::Nothing, Config::Nothing).await;
    // No trace context travelled with the tasks.
    assert_eq!(platform.stored_traces(), vec![None, None]);
    // The client has exited; the server and engine exit too, as a configured process would
    // after flushing its last spans. Only then is silence conclusive.
    terminate(&mut platform.engine);
    terminate(&mut platform.server);
    assert_eq!(*receiver.requests.lock().unwrap(), 0, "{:#?}", receiver.spans());
}
