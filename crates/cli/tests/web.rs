//! The web manager against a real server over TLS: one-time sign-in links, session cookies,
//! CSRF tokens on every form, expiry, one client kept out of another's jobs, the provider's
//! and the operator's pages; and a real headless Chromium driven through ChromeDriver that signs
//! in, watches a job's figures change, downloads a result, stops and resumes the job.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use idlegrid_client::{Client, Transport};
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::TaskSpec;
use idlegrid_server::web::LoginLink;
use idlegrid_types::{JobId, JobProperties, JobState, Role};
use reqwest::{Method, StatusCode};

fn spec(index: u64, executable: idlegrid_types::ElementHash, params: &str) -> TaskSpec {
    TaskSpec { index, executable, data: BTreeMap::new(), params: params.as_bytes().to_vec(), priority: None }
}

async fn login_link(transport: &Transport) -> LoginLink {
    transport.call::<(), _>(Method::POST, "/v1/web/login", None, Duration::from_secs(30)).await.unwrap()
}

/// A browser-like HTTP client: trusts the server's CA, presents no client certificate, does
/// not follow redirects (the tests look at them) and keeps no cookies (the tests pass them).
fn browser(ca: &str) -> reqwest::Client {
    let config = idlegrid_pki::client_config(ca, None).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// Open a sign-in link; the session cookie it sets (`name=value`).
async fn sign_in(http: &reqwest::Client, link: &LoginLink) -> String {
    let response = http.get(&link.url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set_cookie = response.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().to_string();
    for flag in ["HttpOnly", "Secure", "SameSite=Strict"] {
        assert!(set_cookie.contains(flag), "{set_cookie}");
    }
    set_cookie.split(';').next().unwrap().to_string()
}

async fn page(http: &reqwest::Client, url: &str, cookie: &str) -> (StatusCode, String) {
    let response = http.get(url).header(reqwest::header::COOKIE, cookie).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

async fn post_form(http: &reqwest::Client, url: &str, cookie: &str, body: &str) -> (StatusCode, String) {
    let response = http
        .post(url)
        .header(reqwest::header::COOKIE, cookie)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (response.status(), response.text().await.unwrap())
}

/// The CSRF token the forms of a page carry.
fn csrf_of(html: &str) -> String {
    let marker = r#"name="csrf" value=""#;
    let start = html.find(marker).expect("a form with a CSRF token") + marker.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

/// A job of one long task that runs until stopped, launched and running.
async fn running_job(client: &Client, name: &str) -> JobId {
    let misbehave = upload_task(client, "misbehave").await;
    let properties = JobProperties { name: name.to_string(), ..JobProperties::default() };
    let job = client.create_job(properties).await.unwrap().job;
    let tasks = vec![spec(0, misbehave.hash, "mode=sleep ms=10"), spec(1, misbehave.hash, "mode=stop-aware every=20")];
    client.add_tasks(job, tasks).await.unwrap();
    client.launch(job).await.unwrap();
    wait_until("the job to run its long task with the short one done", || async {
        let counts = client.job(job).await.unwrap().counts;
        counts.running == 1 && counts.succeeded == 1
    })
    .await;
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sign_in_link_works_once_and_forms_without_the_sessions_csrf_token_are_refused() {
    let cluster = Cluster::start(2).await;
    let server = cluster.server.as_ref().unwrap();
    let http = browser(server.ca_pem().unwrap());
    let url = cluster.url();
    let alice = cluster.client().await;
    let job = running_job(&alice, "<b>alice's</b> job").await;

    let link = login_link(alice.transport()).await;
    assert!(link.url.starts_with(&format!("{url}/web/login/")), "{}", link.url);
    let cookie = sign_in(&http, &link).await;
    let (status, body) = page(&http, &link.url, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a link works once");
    assert!(body.contains("used already"), "{body}");

    let (status, body) = page(&http, &format!("{url}/web/jobs"), &cookie).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(&job.to_string()));
    assert!(body.contains("&lt;b&gt;alice's&lt;/b&gt; job") && !body.contains("<b>alice"), "names are escaped");
    let (status, job_page) = page(&http, &format!("{url}/web/jobs/{job}"), &cookie).await;
    assert_eq!(status, StatusCode::OK, "{job_page}");
    assert!(job_page.contains(r#"id="f-running">1<"#), "{job_page}");
    let csrf = csrf_of(&job_page);
    let (status, stats) = page(&http, &format!("{url}/web/jobs/{job}/stats"), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert_eq!((stats["succeeded"].as_u64(), stats["total"].as_u64()), (Some(1), Some(2)));

    // A form without the token, or with another, changes nothing.
    let stop = format!("{url}/web/jobs/{job}/stop");
    for body in ["", "csrf=", "csrf=0000000000000000000000000000000000000000000000000000000000000000"] {
        let (status, page) = post_form(&http, &stop, &cookie, body).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}: {page}");
        assert!(page.contains("CSRF token is missing or wrong"), "{page}");
    }
    assert_eq!(alice.job(job).await.unwrap().state, JobState::Running);
    // The session's own token stops the job, and another resumes it.
    let (status, _) = post_form(&http, &stop, &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(alice.job(job).await.unwrap().state, JobState::Stopped);
    let (status, _) = post_form(&http, &format!("{url}/web/jobs/{job}/resume"), &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(alice.job(job).await.unwrap().state, JobState::Running);

    // No cookie, a made-up cookie: not signed in.
    for cookie in ["", "idlegrid_web=made-up"] {
        let (status, body) = page(&http, &format!("{url}/web/jobs"), cookie).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{cookie}");
        assert!(body.contains("not signed in"), "{body}");
    }
    // A client's session opens no operator's or provider's page.
    for path in ["/web/ops", "/web/engine"] {
        let (status, body) = page(&http, &format!("{url}{path}"), &cookie).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
    }
    // Signing out ends the session.
    let (status, _) = post_form(&http, &format!("{url}/web/signout"), &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = page(&http, &format!("{url}/web/jobs"), &cookie).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    alice.remove_job(job).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_never_sees_anothers_job_or_results_through_a_page() {
    let cluster = Cluster::start(1).await;
    let server = cluster.server.as_ref().unwrap();
    let http = browser(server.ca_pem().unwrap());
    let url = cluster.url();
    let alice = cluster.client().await;
    let bob = cluster.client().await;
    let misbehave = upload_task(&alice, "misbehave").await;
    let job = alice.create_job(JobProperties::default()).await.unwrap().job;
    alice.add_tasks(job, vec![spec(0, misbehave.hash, "mode=sleep ms=10")]).await.unwrap();
    alice.launch(job).await.unwrap();
    wait_until("alice's job to complete", || async { alice.job(job).await.unwrap().state == JobState::Completed })
        .await;

    let alices = sign_in(&http, &login_link(alice.transport()).await).await;
    let (status, job_page) = page(&http, &format!("{url}/web/jobs/{job}"), &alices).await;
    assert_eq!(status, StatusCode::OK);
    let start = job_page.find(&format!("/web/jobs/{job}/results/")).expect("a download link");
    let download = &job_page[start..start + job_page[start..].find('"').unwrap()];
    let (status, bytes) = page(&http, &format!("{url}{download}"), &alices).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bytes, "slept 10");

    let bobs = sign_in(&http, &login_link(bob.transport()).await).await;
    let (_, list) = page(&http, &format!("{url}/web/jobs"), &bobs).await;
    assert!(!list.contains(&job.to_string()), "{list}");
    let bobs_csrf = csrf_of(&list);
    for path in [format!("/web/jobs/{job}"), format!("/web/jobs/{job}/stats"), download.to_string()] {
        let (status, body) = page(&http, &format!("{url}{path}"), &bobs).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(body.contains("does not exist"), "{path}: {body}");
    }
    for action in ["stop", "remove"] {
        let (status, _) =
            post_form(&http, &format!("{url}/web/jobs/{job}/{action}"), &bobs, &format!("csrf={bobs_csrf}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}");
    }
    assert!(alice.job(job).await.is_ok(), "alice's job is still there");
    // IDs that are not IDs, results that do not exist: a clear page.
    let (status, body) = page(&http, &format!("{url}/web/jobs/not-a-job"), &alices).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("id=\"problem\""), "{body}");
    let (status, body) = page(&http, &format!("{url}/web/jobs/{job}/results/999999"), &alices).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("has no result 999999"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_end_after_their_lifetime() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.web = idlegrid_server::WebTimes { link_ttl_ms: 60_000, idle_ms: 3_600_000, lifetime_ms: 1_000 };
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let http = browser(server.ca_pem().unwrap());
    let url = server.url();
    let client = transport(&url, Identity::generate(), Role::Client).await;
    let cookie = sign_in(&http, &login_link(&client).await).await;
    let (status, _) = page(&http, &format!("{url}/web/account"), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    // Being used does not keep a session past its lifetime.
    let body = wait_some("the session to expire", || async {
        let (status, body) = page(&http, &format!("{url}/web/account"), &cookie).await;
        (status == StatusCode::UNAUTHORIZED).then_some(body)
    })
    .await;
    assert!(body.contains("expired"), "{body}");
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_approves_a_deposit_with_a_form_and_reads_health_and_providers_read_their_engine() {
    let dir = tempfile::tempdir().unwrap();
    let operator = Identity::generate();
    let mut config = server_config(dir.path());
    config.coordinator.operators = vec![operator.id().clone()];
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let http = browser(server.ca_pem().unwrap());
    let url = server.url();
    let mut engine_config = engine_config(&url, dir.path(), "engine-0");
    engine_config.server =
        engine_config.server.with_trust(idlegrid_client::ServerTrust::Ca(server.ca_pem().unwrap().to_string()));
    let engine = idlegrid_engine::Engine::start(engine_config).await.unwrap();

    let client = transport(&url, Identity::generate(), Role::Client).await;
    let deposit = idlegrid_client::Accounts::new(&client).request_deposit(2_500_000, "web-deposit").await.unwrap();
    let ops = transport(&url, operator, Role::Operator).await;
    let cookie = sign_in(&http, &login_link(&ops).await).await;
    let (status, body) = page(&http, &format!("{url}/web/ops"), &cookie).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(r#"id="healthy">healthy<"#), "{body}");
    assert!(body.contains(&format!("approve-{}", deposit.id)), "{body}");
    assert!(body.contains("2.500000"), "{body}");
    let approve = format!("{url}/web/ops/requests/{}/approve", deposit.id);
    let (status, _) = post_form(&http, &approve, &cookie, "").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "no CSRF token, no approval");
    let (status, _) = post_form(&http, &approve, &cookie, &format!("csrf={}", csrf_of(&body))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let account = idlegrid_client::Accounts::new(&client).info().await.unwrap();
    assert_eq!(account.balance_micros, 2_500_000);
    let (_, body) = page(&http, &format!("{url}/web/ops"), &cookie).await;
    assert!(body.contains(r#"id="no-pending""#), "{body}");
    // The client sees the deposit in its account page.
    let clients = sign_in(&http, &login_link(&client).await).await;
    let (_, body) = page(&http, &format!("{url}/web/account"), &clients).await;
    assert!(body.contains("2.500000") && body.contains("deposit"), "{body}");

    // The engine's provider signs in with the engine's key and sees it connected.
    let identity = Identity::load_or_create(&dir.path().join("engine-0").join("identity.key")).unwrap();
    let provider = transport(&url, identity, Role::Provider).await;
    let cookie = sign_in(&http, &login_link(&provider).await).await;
    let (status, body) = page(&http, &format!("{url}/web"), &cookie).await;
    assert_eq!((status, body.is_empty()), (StatusCode::SEE_OTHER, true));
    let (status, body) = page(&http, &format!("{url}/web/engine"), &cookie).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(r#"id="state""#) && !body.contains("never connected"), "{body}");
    assert!(body.contains("Earnings"), "{body}");
    let (status, _) = page(&http, &format!("{url}/web/jobs"), &cookie).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "providers have no jobs");
    engine.shutdown().await;
    server.shutdown().await;
}
