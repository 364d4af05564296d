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
    // The client library said who it is when its session started (ClientProfile).
    let (_, account) = page(&http, &format!("{url}/web/account"), &cookie).await;
    let software = format!("Client software: test (idlegrid-client {})", env!("CARGO_PKG_VERSION"));
    assert!(account.contains(&software), "{account}");

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

/// A form field's value, percent-encoded.
fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

/// The state a job's page shows for one task row.
fn task_state_in(page: &str, task: u64) -> Option<String> {
    let row = &page[page.find(&format!(r#"<tr id="task-{task}">"#))?..];
    let marker = r#"<td class="state">"#;
    let start = row.find(marker)? + marker.len();
    Some(row[start..start + row[start..].find('<')?].to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_is_stopped_resumed_and_removed_from_its_row_and_long_lists_come_in_pages() {
    let cluster = Cluster::start(1).await;
    let server = cluster.server.as_ref().unwrap();
    let http = browser(server.ca_pem().unwrap());
    let url = cluster.url();
    let alice = cluster.client().await;
    let misbehave = upload_task(&alice, "misbehave").await;
    let job = alice.create_job(JobProperties::default()).await.unwrap().job;
    // More tasks than a page lists; each runs until it is stopped.
    let tasks = (0..55).map(|i| spec(i, misbehave.hash, "mode=stop-aware every=20")).collect::<Vec<_>>();
    alice.add_tasks(job, tasks).await.unwrap();
    alice.launch(job).await.unwrap();
    wait_until("a task to run", || async { alice.job(job).await.unwrap().counts.running >= 1 }).await;

    let cookie = sign_in(&http, &login_link(alice.transport()).await).await;
    let base = format!("{url}/web/jobs/{job}");
    let (status, first) = page(&http, &base, &cookie).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first.matches(r#"<tr id="task-"#).count(), 50, "one page of tasks");
    assert!(first.contains(r#"id="task-49""#) && !first.contains(r#"id="task-50""#));
    assert!(first.contains(&format!(r#"href="/web/jobs/{job}?tasks=49""#)), "a link to the next page");
    let (_, second) = page(&http, &format!("{base}?tasks=49"), &cookie).await;
    assert_eq!(second.matches(r#"<tr id="task-"#).count(), 5);
    assert_eq!(task_state_in(&second, 54).as_deref(), Some("queued"), "{second}");
    let csrf = csrf_of(&second);

    // A queued task stops and resumes from its row; nothing else changes.
    let (status, _) = post_form(&http, &format!("{base}/tasks/54/stop"), &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(alice.task_status(job, 54).await.unwrap().state, idlegrid_types::TaskState::Stopped);
    let (_, second) = page(&http, &format!("{base}?tasks=49"), &cookie).await;
    assert_eq!(task_state_in(&second, 54).as_deref(), Some("stopped"));
    assert_eq!(alice.job(job).await.unwrap().counts.stopped, 1);
    let (status, _) = post_form(&http, &format!("{base}/tasks/54/resume"), &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(alice.job(job).await.unwrap().counts.stopped, 0);

    // A running task stops on its engine, and runs again when resumed.
    let running = (0..50).find(|&t| task_state_in(&first, t).as_deref() == Some("running")).expect("a running row");
    let (status, _) = post_form(&http, &format!("{base}/tasks/{running}/stop"), &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    wait_until("the running task to be stopped", || async {
        alice.task_status(job, running).await.unwrap().state == idlegrid_types::TaskState::Stopped
    })
    .await;
    let (status, _) =
        post_form(&http, &format!("{base}/tasks/{running}/resume"), &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_ne!(alice.task_status(job, running).await.unwrap().state, idlegrid_types::TaskState::Stopped);

    // A removed task leaves the list and the job.
    let (status, _) = post_form(&http, &format!("{base}/tasks/53/remove"), &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert_eq!(alice.job(job).await.unwrap().counts.total(), 54);
    let (_, second) = page(&http, &format!("{base}?tasks=49"), &cookie).await;
    assert!(!second.contains(r#"id="task-53""#) && second.contains(r#"id="task-54""#));

    // Without the token, for a task that is not there, or as another client: refused.
    let (status, _) = post_form(&http, &format!("{base}/tasks/54/stop"), &cookie, "csrf=forged").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = post_form(&http, &format!("{base}/tasks/999/stop"), &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, _) = post_form(&http, &format!("{base}/tasks/x/stop"), &cookie, &format!("csrf={csrf}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let bob = cluster.client().await;
    let bobs = sign_in(&http, &login_link(bob.transport()).await).await;
    let (_, list) = page(&http, &format!("{url}/web/jobs"), &bobs).await;
    let (status, _) =
        post_form(&http, &format!("{base}/tasks/54/remove"), &bobs, &format!("csrf={}", csrf_of(&list))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(alice.job(job).await.unwrap().counts.total(), 54, "bob removed nothing");

    // The figures the page polls carry the chart's history, kept by the server.
    let (_, stats) = page(&http, &format!("{base}/stats"), &cookie).await;
    let stats: serde_json::Value = serde_json::from_str(&stats).unwrap();
    assert!(!stats["history"].as_array().unwrap().is_empty(), "{stats}");
    alice.remove_job(job).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_parties_trade_through_the_market_forms_from_offer_to_contract() {
    let cluster = Cluster::start(0).await;
    let server = cluster.server.as_ref().unwrap();
    let http = browser(server.ca_pem().unwrap());
    let url = cluster.url();
    let seller = cluster.client().await;
    let buyer = cluster.client().await;
    let sellers = sign_in(&http, &login_link(seller.transport()).await).await;
    let buyers = sign_in(&http, &login_link(buyer.transport()).await).await;

    // The seller publishes an offer negotiated in person, from the form's document.
    let (status, market) = page(&http, &format!("{url}/web/market"), &sellers).await;
    assert_eq!(status, StatusCode::OK, "{market}");
    let seller_csrf = csrf_of(&market);
    let offer = r#"{"resource": {"category": "memory", "attributes": {"memory_mb": 4096, "read_ns": 80, "write_ns": 90, "duration_s": 3600}}, "listing": {"price": 2000000}, "negotiation": {"mode": "person"}}"#;
    let form = format!("csrf={seller_csrf}&offer={}", form_encode(offer));
    let (status, body) = post_form(&http, &format!("{url}/web/market/offers"), &sellers, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let (status, body) =
        post_form(&http, &format!("{url}/web/market/offers"), &sellers, &format!("csrf={seller_csrf}&offer=%7B")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("not a valid offer"), "{body}");
    let (_, market) = page(&http, &format!("{url}/web/market"), &sellers).await;
    let offers = seller
        .transport()
        .call::<(), Vec<serde_json::Value>>(Method::GET, "/v1/market/offers", None, Duration::from_secs(30))
        .await
        .unwrap();
    let offer_id = offers[0]["id"].as_u64().unwrap();
    assert!(market.contains(&format!(r#"id="offer-{offer_id}""#)), "{market}");

    // The buyer searches, keeps the search as a request, and proposes a price in person.
    let (_, market) = page(&http, &format!("{url}/web/market"), &buyers).await;
    let buyer_csrf = csrf_of(&market);
    let (status, found) = post_form(
        &http,
        &format!("{url}/web/market/search"),
        &buyers,
        &format!("csrf={buyer_csrf}&category=memory&quantity_min=&price_max=5&requirements=&rank=&keep=on"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert!(found.contains(&format!(r#"id="negotiate-{offer_id}""#)), "{found}");
    assert!(found.contains("Kept as request"), "{found}");
    let (status, _) = post_form(
        &http,
        &format!("{url}/web/market/offers/{offer_id}/negotiate"),
        &buyers,
        &format!("csrf={buyer_csrf}&price=1.5"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // The negotiation waits for the seller, who counters; the buyer accepts: a contract.
    let (_, market) = page(&http, &format!("{url}/web/market"), &sellers).await;
    let start = market.find(r#"id="counter-"#).expect("a counter form for the seller") + r#"id="counter-"#.len();
    let negotiation: u64 = market[start..start + market[start..].find('"').unwrap()].parse().unwrap();
    let (_, buyers_view) = page(&http, &format!("{url}/web/market"), &buyers).await;
    assert!(!buyers_view.contains(&format!(r#"id="accept-{negotiation}""#)), "not the buyer's turn");
    let answer = |who: &str, csrf: &str, what: &str, extra: &str| {
        (format!("{url}/web/market/negotiations/{negotiation}/{what}"), who.to_string(), format!("csrf={csrf}{extra}"))
    };
    let (to, who, form) = answer(&sellers, &seller_csrf, "counter", "&price=1.8");
    let (status, body) = post_form(&http, &to, &who, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let (to, who, form) = answer(&buyers, &buyer_csrf, "accept", "");
    let (status, body) = post_form(&http, &to, &who, &form).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    for cookie in [&sellers, &buyers] {
        let (_, market) = page(&http, &format!("{url}/web/market"), cookie).await;
        assert!(market.contains(r#"id="contracts""#) && market.contains("1.800000"), "{market}");
    }
    // A form without the token changes nothing; the seller withdraws nothing of the buyer's.
    let (status, _) = post_form(&http, &format!("{url}/web/market/search"), &buyers, "category=memory").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let requests = buyer
        .transport()
        .call::<(), Vec<serde_json::Value>>(Method::GET, "/v1/market/requests", None, Duration::from_secs(30))
        .await
        .unwrap();
    let request = requests[0]["id"].as_u64().unwrap();
    let (status, _) = post_form(
        &http,
        &format!("{url}/web/market/requests/{request}/withdraw"),
        &sellers,
        &format!("csrf={seller_csrf}"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = post_form(
        &http,
        &format!("{url}/web/market/requests/{request}/withdraw"),
        &buyers,
        &format!("csrf={buyer_csrf}"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_searches_the_collected_logs() {
    let dir = tempfile::tempdir().unwrap();
    let operator = Identity::generate();
    let mut config = server_config(dir.path());
    config.coordinator.operators = vec![operator.id().clone()];
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let http = browser(server.ca_pem().unwrap());
    let url = server.url();
    let provider = transport(&url, Identity::generate(), Role::Provider).await;
    let line = |level: &str, message: &str| idlegrid_protocol::wire::LogLine {
        time_ms: 1_000,
        level: level.into(),
        component: "engine::run".into(),
        message: message.into(),
        assignment: None,
        job: None,
    };
    let batch = idlegrid_protocol::wire::LogBatch {
        lines: vec![line("warn", "disk almost full"), line("info", "task <b>started</b>")],
    };
    provider
        .call::<_, serde_json::Value>(Method::POST, "/v1/logs", Some(&batch), Duration::from_secs(30))
        .await
        .unwrap();

    let ops = transport(&url, operator, Role::Operator).await;
    let cookie = sign_in(&http, &login_link(&ops).await).await;
    let (status, body) = page(&http, &format!("{url}/web/ops/logs"), &cookie).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains("disk almost full") && body.contains("task &lt;b&gt;started"), "{body}");
    let (_, body) = page(&http, &format!("{url}/web/ops/logs?q=DISK"), &cookie).await;
    assert!(body.contains("disk almost full") && !body.contains("started"), "{body}");
    let (_, body) = page(&http, &format!("{url}/web/ops/logs?level=info"), &cookie).await;
    assert!(!body.contains("disk almost full") && body.contains("started"), "{body}");
    let (_, body) = page(&http, &format!("{url}/web/ops/logs?q=nothing+like+it"), &cookie).await;
    assert!(body.contains(r#"id="no-lines""#), "{body}");
    let (status, body) = page(&http, &format!("{url}/web/ops/logs?party=not-a-party"), &cookie).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // The instances table lists this instance, healthy.
    let (_, body) = page(&http, &format!("{url}/web/ops"), &cookie).await;
    assert!(body.contains(r#"data-health="healthy""#), "{body}");
    // Another party's session opens no log page.
    let cookie = sign_in(&http, &login_link(&provider).await).await;
    let (status, _) = page(&http, &format!("{url}/web/ops/logs"), &cookie).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    server.shutdown().await;
}
