//! Money across the platform's edge, end to end: clients ask for deposits and providers for
//! payouts with the `idlegrid` command, an operator approves or rejects them, and nothing else
//! creates or removes money; a payment processor plugged into the server confirms deposits; bad
//! numbers at the HTTP edge are answered 400 with the field named.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use idlegrid_client::{Accounts, ClientError, MoneyDesk};
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::{MoneyRequestInfo, MoneyRequestState};
use idlegrid_server::{PaymentAdapter, PaymentDecision};
use idlegrid_types::{JobProperties, PartyId, Role};

fn idlegrid(home: &Path, server: &str, ca: &Path, args: &[&str]) -> Output {
    Command::new(binary())
        .arg("--home")
        .arg(home)
        .args(["--server", server, "--server-ca"])
        .arg(ca)
        .args(args)
        .output()
        .unwrap()
}

/// Runs a command that must succeed; returns its output.
fn ok(home: &Path, server: &str, ca: &Path, args: &[&str]) -> String {
    let output = idlegrid(home, server, ca, args);
    let (out, err) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "idlegrid {args:?} failed:\n{out}{err}");
    out.into_owned()
}

/// Runs a command that must fail; returns its error output.
fn refused(home: &Path, server: &str, ca: &Path, args: &[&str]) -> String {
    let output = idlegrid(home, server, ca, args);
    assert!(
        !output.status.success(),
        "idlegrid {args:?} should have failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn request_number(out: &str) -> String {
    out.split_whitespace()
        .skip_while(|w| *w != "request")
        .nth(1)
        .unwrap_or_else(|| panic!("no request in {out}"))
        .into()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn money_enters_only_when_the_operator_approves_and_leaves_only_as_approved_payouts() {
    let dir = tempfile::tempdir().unwrap();
    let (client_home, operator_home) = (dir.path().join("client"), dir.path().join("operator"));
    let none = dir.path().join("none.pem");
    let id = ok(&operator_home, "https://127.0.0.1:1", &none, &["ops", "id"]);
    let operator: PartyId = id.trim().parse().unwrap();
    let mut config = server_config(dir.path());
    config.coordinator.operators = vec![operator];
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let (url, ca) = (server.url(), dir.path().join("ca.pem"));
    std::fs::write(&ca, server.ca_pem().unwrap()).unwrap();

    // A client asks to pay 50 in: nothing moves yet.
    let out = ok(&client_home, &url, &ca, &["account", "deposit", "50", "--reference", "INV-1042"]);
    assert!(out.contains("pending") && out.contains("50.000000") && out.contains("operator confirms"), "{out}");
    let deposit = request_number(&out);
    let again = ok(&client_home, &url, &ca, &["account", "deposit", "50", "--reference", "INV-1042"]);
    assert_eq!(request_number(&again), deposit, "the same reference is the same request");
    let out = ok(&client_home, &url, &ca, &["account"]);
    assert!(out.contains("balance   0.000000") && out.contains("waiting for the operator"), "{out}");
    // The client's own key cannot approve or credit.
    let client_key = Identity::load_or_create(&client_home.join("client.key")).unwrap();
    let transport = transport(&url, client_key.clone(), Role::Client).await;
    let error = MoneyDesk::new(&transport).approve(deposit.parse().unwrap(), "").await.unwrap_err();
    assert!(matches!(error, ClientError::Api { status: 403, .. }), "{error}");
    let error = MoneyDesk::new(&transport).credit(client_key.id(), 1_000_000, "SELF", "").await.unwrap_err();
    assert!(matches!(error, ClientError::Api { status: 403, .. }), "{error}");

    // The operator sees it, approves it twice: credited once.
    let out = ok(&operator_home, &url, &ca, &["ops", "requests"]);
    assert!(out.contains("INV-1042") && out.contains("pending"), "{out}");
    ok(&operator_home, &url, &ca, &["ops", "approve", &deposit, "--note", "bank-77"]);
    let out = ok(&operator_home, &url, &ca, &["ops", "approve", &deposit]);
    assert!(out.contains("approved") && out.contains("bank-77"), "the first decision stands: {out}");
    let out = ok(&client_home, &url, &ca, &["account"]);
    assert!(out.contains("balance   50.000000") && !out.contains("waiting"), "{out}");
    let out = ok(&client_home, &url, &ca, &["account", "statement", "--period", "whole"]);
    assert!(out.contains("Deposit") && out.contains("INV-1042") && out.contains("approved"), "{out}");
    let err = refused(&operator_home, &url, &ca, &["ops", "reject", &deposit, "--reason", "late"]);
    assert!(err.contains("approved already"), "{err}");

    // A provider asks for a payout: refused beyond its earnings, reserved within them.
    let engine_dir = dir.path().join("engine");
    let provider = Identity::load_or_create(&engine_dir.join("identity.key")).unwrap().id().clone();
    let engine_args = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["account".to_string(), "--engine-data".into(), engine_dir.display().to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        all
    };
    let as_provider =
        |args: &[&str]| ok(&client_home, &url, &ca, &engine_args(args).iter().map(String::as_str).collect::<Vec<_>>());
    let provider_refused = |args: &[&str]| {
        refused(&client_home, &url, &ca, &engine_args(args).iter().map(String::as_str).collect::<Vec<_>>())
    };
    let err = provider_refused(&["payout", "5", "--reference", "OUT-0"]);
    assert!(err.contains("limit"), "nothing earned, nothing paid out: {err}");
    let err = provider_refused(&["deposit", "5", "--reference", "IN-0"]);
    assert!(err.contains("payout instead"), "{err}");
    ok(&operator_home, &url, &ca, &["ops", "credit", &provider.to_string(), "30", "--reference", "EARN-1"]);
    let out = as_provider(&["payout", "20", "--reference", "OUT-1"]);
    assert!(out.contains("pending") && out.contains("reserved"), "{out}");
    let payout = request_number(&out);
    assert!(as_provider(&[]).contains("available 10.000000"), "the payout is reserved while it waits");
    let err = provider_refused(&["payout", "20", "--reference", "OUT-2"]);
    assert!(err.contains("limit"), "the reserved part cannot be paid out twice: {err}");
    ok(&operator_home, &url, &ca, &["ops", "approve", &payout, "--note", "sent"]);
    ok(&operator_home, &url, &ca, &["ops", "approve", &payout]);
    let out = as_provider(&[]);
    assert!(out.contains("balance   10.000000") && out.contains("available 10.000000"), "paid out once: {out}");
    let out = as_provider(&["requests"]);
    assert!(out.contains("OUT-1") && out.contains("approved") && !out.contains("OUT-2"), "{out}");
    let err = refused(&client_home, &url, &ca, &["account", "payout", "5", "--reference", "X"]);
    assert!(err.contains("--engine-data"), "{err}");
    let err = refused(&operator_home, &url, &ca, &["ops", "approve", "999"]);
    assert!(err.contains("does not exist"), "{err}");
    server.shutdown().await;
}

/// A stand-in for a bank feed: it knows which references were paid and which bounced.
#[derive(Debug)]
struct Bank;

impl PaymentAdapter for Bank {
    fn name(&self) -> &str {
        "test-bank"
    }

    fn review<'a>(&'a self, pending: &'a [MoneyRequestInfo]) -> futures::future::BoxFuture<'a, Vec<PaymentDecision>> {
        Box::pin(async move {
            pending
                .iter()
                .filter_map(|request| {
                    let approve = if request.reference.starts_with("PAID-") {
                        true
                    } else if request.reference.starts_with("BOUNCED-") {
                        false
                    } else {
                        return None;
                    };
                    Some(PaymentDecision { request: request.id, approve, note: format!("bank says {approve}") })
                })
                .collect()
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_adapter_the_operator_plugs_in_confirms_deposits() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.payment_adapter = Some(Arc::new(Bank));
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let client = connect(&server.url()).await;
    for reference in ["PAID-1", "BOUNCED-1", "WAIT-1"] {
        client.request_deposit(7_000_000, reference).await.unwrap();
    }
    let accounts = Accounts::new(client.transport());
    let started = std::time::Instant::now();
    let states = loop {
        let requests = accounts.requests(None).await.unwrap();
        let states: Vec<(String, MoneyRequestState, Option<String>)> =
            requests.into_iter().map(|r| (r.reference, r.state, r.decided_by)).collect();
        if states.iter().filter(|s| s.1 != MoneyRequestState::Pending).count() == 2 {
            break states;
        }
        assert!(started.elapsed() < PATIENCE, "the adapter never decided: {states:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let by = Some("payment:test-bank".to_string());
    assert_eq!(
        states,
        vec![
            ("PAID-1".into(), MoneyRequestState::Approved, by.clone()),
            ("BOUNCED-1".into(), MoneyRequestState::Rejected, by),
            ("WAIT-1".into(), MoneyRequestState::Pending, None),
        ]
    );
    assert_eq!(accounts.info().await.unwrap().balance_micros, 7_000_000, "only the confirmed payment counts");
    server.shutdown().await;
}

fn api_refusal(result: Result<impl std::fmt::Debug, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Api { status, report }) => (status, report.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_numbers_at_the_edge_get_a_400_naming_the_field() {
    let cluster = Cluster::start(0).await;
    let client = cluster.client().await;
    let transport = client.transport();
    let post = |body: serde_json::Value| async move {
        transport
            .call::<_, serde_json::Value>(
                reqwest::Method::POST,
                "/v1/account/deposits",
                Some(&body),
                Duration::from_secs(10),
            )
            .await
    };
    for (body, field) in [
        (serde_json::json!({ "amount_micros": i64::MAX, "reference": "R1" }), "amount"),
        (serde_json::json!({ "amount_micros": -5, "reference": "R2" }), "amount"),
        (serde_json::json!({ "amount_micros": 0, "reference": "R3" }), "amount"),
        (serde_json::json!({ "amount_micros": "ten", "reference": "R4" }), "amount_micros"),
        (serde_json::json!({ "amount_micros": 1e30, "reference": "R5" }), "amount_micros"),
        (serde_json::json!({ "amount_micros": 5, "reference": "has space" }), "reference"),
    ] {
        let (status, message) = api_refusal(post(body.clone()).await);
        assert_eq!(status, 400, "{body}: {message}");
        assert!(message.contains(field), "{body}: the error names {field}: {message}");
    }
    // A job's maximum cost: refused at creation, naming the field, through the message channel...
    for cost in [0, u64::MAX] {
        let error = client.create_job(JobProperties { cost_max_micros: Some(cost), ..JobProperties::default() }).await;
        match error {
            Err(ClientError::Refused(report)) => assert!(report.message.contains("cost_max_micros"), "{report}"),
            other => panic!("{cost}: {other:?}"),
        }
    }
    // ...and a negative one in a raw batch is a 400 naming it, not a 500.
    let batch = serde_json::json!({ "messages": [{ "seq": 1_000_000, "message": {
        "type": "CreateJob", "job": idlegrid_types::JobId::random().to_string(),
        "properties": { "cost_max_micros": -5 } } }] });
    let path = format!("/v1/sessions/{}/messages", client.session());
    let (status, message) = api_refusal(
        transport
            .call::<_, serde_json::Value>(reqwest::Method::POST, &path, Some(&batch), Duration::from_secs(10))
            .await,
    );
    assert_eq!(status, 400, "{message}");
    assert!(message.contains("messages[0]"), "the error says where: {message}");

    // The command line refuses such a job file at once (no retries), naming the field.
    let home = cluster.dir.path().join("home");
    let exe = example_task("noop");
    for cost in ["-5", "nan", "inf", "1e300"] {
        let file = cluster.dir.path().join(format!("job-{cost}.toml"));
        std::fs::write(&file, format!("executable = \"{}\"\ncost_max = {cost}\n[tasks]\ncount = 1\n", exe.display()))
            .unwrap();
        let (done, out, err) = cli(&home, &cluster.url(), &["job", "submit", file.to_str().unwrap()]);
        assert!(!done && err.contains("cost_max"), "{cost}: {out}{err}");
    }
}
