//! The web manager in a real headless Chromium, driven through ChromeDriver (WebDriver): a
//! client signs in through a real link, watches a running job's counters and chart change,
//! downloads a result, stops and resumes the job from the page; a form whose CSRF token was
//! tampered with and a reused link are refused; a task stops and resumes from its row; a
//! provider reads its engine's earnings and an operator every instance's health. Screenshots go to
//! `target/test-artifacts/web/`.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use fantoccini::{Client as Browser, ClientBuilder, Locator};
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::TaskSpec;
use idlegrid_server::web::LoginLink;
use idlegrid_types::{JobProperties, JobState, Role, TaskState};
use reqwest::Method;

fn spec(index: u64, executable: idlegrid_types::ElementHash, params: &str) -> TaskSpec {
    TaskSpec { index, executable, data: BTreeMap::new(), params: params.as_bytes().to_vec(), priority: None }
}

fn artifacts() -> PathBuf {
    let dir = idlegrid_testkit::workspace_root().join("target").join("test-artifacts").join("web");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// ChromeDriver on a free port, killed when dropped.
fn chromedriver() -> (Process, u16) {
    let program = ["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("ChromeDriver is needed for this test: `cargo xtask prerequisites --install` installs it");
    let port = free_port();
    let child = Command::new(program)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (Process(child), port)
}

async fn open_browser(port: u16, profile: &std::path::Path) -> Browser {
    let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("Chromium is needed for this test: `cargo xtask prerequisites --install` installs it");
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "binary": chromium,
            "args": [
                "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--window-size=1200,1000",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    // The test server's CA is its own: the browser is told to accept it, as a person would add
    // it to their browser's trust.
    capabilities.insert("acceptInsecureCerts".into(), serde_json::Value::Bool(true));
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let url = format!("http://127.0.0.1:{port}");
    // ChromeDriver answers once it has started.
    wait_some("ChromeDriver to answer", || {
        let (connector, capabilities, url) = (connector.clone(), capabilities.clone(), url.clone());
        async move { ClientBuilder::new(connector).capabilities(capabilities).connect(&url).await.ok() }
    })
    .await
}

async fn text(browser: &Browser, css: &str) -> String {
    browser.find(Locator::Css(css)).await.unwrap().text().await.unwrap()
}

/// The text of an element, if the page has it now (a page being replaced may not).
async fn try_text(browser: &Browser, css: &str) -> Option<String> {
    browser.find(Locator::Css(css)).await.ok()?.text().await.ok()
}

async fn screenshot(browser: &Browser, name: &str) {
    let png = browser.screenshot().await.unwrap();
    std::fs::write(artifacts().join(name), png).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_signs_in_watches_a_job_live_downloads_a_result_and_stops_and_resumes_it_in_chromium() {
    let cluster = Cluster::start(2).await;
    let client = cluster.client().await;
    let misbehave = upload_task(&client, "misbehave").await;
    let properties = JobProperties { name: "browser job".into(), ..JobProperties::default() };
    let job = client.create_job(properties).await.unwrap().job;
    let tasks = vec![spec(0, misbehave.hash, "mode=sleep ms=10"), spec(1, misbehave.hash, "mode=stop-aware every=20")];
    client.add_tasks(job, tasks).await.unwrap();
    client.launch(job).await.unwrap();
    wait_until("the short task done and the long one running", || async {
        let counts = client.job(job).await.unwrap().counts;
        counts.succeeded == 1 && counts.running == 1
    })
    .await;

    let link: LoginLink =
        client.transport().call::<(), _>(Method::POST, "/v1/web/login", None, Duration::from_secs(30)).await.unwrap();
    let (_driver, port) = chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let browser = open_browser(port, profile.path()).await;

    // The link signs in and lands on the jobs list.
    browser.goto(&link.url).await.unwrap();
    assert!(browser.current_url().await.unwrap().path().ends_with("/web/jobs"));
    let cookies = browser.get_all_cookies().await.unwrap();
    let session = cookies.iter().find(|c| c.name() == "idlegrid_web").expect("the session cookie");
    assert_eq!((session.http_only(), session.secure()), (Some(true), Some(true)));
    screenshot(&browser, "jobs.png").await;
    browser.find(Locator::Css(&format!("a[href='/web/jobs/{job}']"))).await.unwrap().click().await.unwrap();

    // The page's figures come from the server and keep coming: the chart gathers samples.
    assert_eq!(text(&browser, "#f-running").await, "1");
    assert_eq!(text(&browser, "#f-succeeded").await, "1");
    wait_until("the chart to draw several samples", || async {
        let chart = browser.find(Locator::Css("#chart")).await.unwrap();
        let samples = chart.attr("data-samples").await.unwrap().and_then(|s| s.parse::<u32>().ok()).unwrap_or(0);
        samples >= 3
    })
    .await;
    assert_eq!(browser.find_all(Locator::Css("#chart polyline")).await.unwrap().len(), 4);
    screenshot(&browser, "job-running.png").await;

    // The result of the short task downloads (fetched by the page's own origin, with its cookie).
    let href = browser.find(Locator::Css("#results a")).await.unwrap().attr("href").await.unwrap().unwrap();
    let body = browser
        .execute("return fetch(arguments[0]).then(r => r.text());", vec![serde_json::Value::String(href)])
        .await
        .unwrap();
    assert_eq!(body, serde_json::Value::String("slept 10".into()));

    // A tampered CSRF token is refused and changes nothing.
    browser
        .execute("document.querySelectorAll('input[name=csrf]').forEach(i => i.value = 'forged');", vec![])
        .await
        .unwrap();
    browser.find(Locator::Css("#stop")).await.unwrap().click().await.unwrap();
    let refusal = wait_some("the refusal page", || async { try_text(&browser, "#problem").await }).await;
    assert!(refusal.contains("CSRF"), "{refusal}");
    assert_eq!(client.job(job).await.unwrap().state, JobState::Running);

    // Stop from the page: the server stops the job, and the page says so.
    browser.goto(&format!("{}/web/jobs/{job}", cluster.url())).await.unwrap();
    browser.find(Locator::Css("#stop")).await.unwrap().click().await.unwrap();
    wait_until("the job to stop", || async { client.job(job).await.unwrap().state == JobState::Stopped }).await;
    wait_until("the page to show it stopped", || async {
        try_text(&browser, "#f-state").await.as_deref() == Some("stopped")
    })
    .await;
    screenshot(&browser, "job-stopped.png").await;
    browser.find(Locator::Css("#resume")).await.unwrap().click().await.unwrap();
    wait_until("the job to run again", || async { client.job(job).await.unwrap().state == JobState::Running }).await;

    // One task stops and resumes from its own row of the task list.
    wait_until("the long task to run again", || async {
        client.task_status(job, 1).await.unwrap().state == TaskState::Running
    })
    .await;
    browser.goto(&format!("{}/web/jobs/{job}", cluster.url())).await.unwrap();
    browser.find(Locator::Css("#stop-1")).await.unwrap().click().await.unwrap();
    wait_until("the task to stop", || async { client.task_status(job, 1).await.unwrap().state == TaskState::Stopped })
        .await;
    wait_until("its row to say so", || async {
        try_text(&browser, "#task-1 td.state").await.as_deref() == Some("stopped")
    })
    .await;
    assert_eq!(text(&browser, "#task-0 td.state").await, "succeeded", "the other task is untouched");
    screenshot(&browser, "task-stopped.png").await;
    browser.find(Locator::Css("#resume-1")).await.unwrap().click().await.unwrap();
    wait_until("the task to run again", || async {
        client.task_status(job, 1).await.unwrap().state != TaskState::Stopped
    })
    .await;
    // The chart's succeeded and failed lines come from the history the server keeps.
    wait_until("the chart to draw the server's history", || async {
        let chart = browser.find(Locator::Css("#chart")).await.unwrap();
        chart.attr("data-history").await.unwrap().and_then(|s| s.parse::<u32>().ok()).unwrap_or(0) >= 1
    })
    .await;

    // The link worked once.
    browser.goto(&link.url).await.unwrap();
    assert!(text(&browser, "#problem").await.contains("used already"));
    screenshot(&browser, "link-reused.png").await;

    browser.close().await.unwrap();
    client.remove_job(job).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_reads_its_earnings_and_an_operator_the_health_of_every_instance_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let operator = Identity::generate();
    let mut config = server_config(dir.path());
    config.coordinator.operators = vec![operator.id().clone()];
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let url = server.url();
    let mut engine_config = engine_config(&url, dir.path(), "engine-0");
    engine_config.server =
        engine_config.server.with_trust(idlegrid_client::ServerTrust::Ca(server.ca_pem().unwrap().to_string()));
    let engine = idlegrid_engine::Engine::start(engine_config).await.unwrap();
    let identity = Identity::load_or_create(&dir.path().join("engine-0").join("identity.key")).unwrap();
    let provider = transport(&url, identity, Role::Provider).await;
    let ops = transport(&url, operator, Role::Operator).await;
    let link = |t: &idlegrid_client::Transport| {
        let t = t.clone();
        async move { t.call::<(), LoginLink>(Method::POST, "/v1/web/login", None, Duration::from_secs(30)).await.unwrap() }
    };

    let (_driver, port) = chromedriver();
    let profile = tempfile::tempdir().unwrap();
    let browser = open_browser(port, profile.path()).await;
    browser.goto(&link(&provider).await.url).await.unwrap();
    assert!(browser.current_url().await.unwrap().path().ends_with("/web/engine"));
    wait_until("the engine to be known connected", || async {
        browser.refresh().await.unwrap();
        try_text(&browser, "#state").await.is_some_and(|s| s != "never connected")
    })
    .await;
    let balance = text(&browser, "#balance").await;
    assert!(balance.contains("Balance") && balance.contains("0.000000"), "{balance}");
    screenshot(&browser, "engine-earnings.png").await;

    browser.goto(&link(&ops).await.url).await.unwrap();
    assert!(browser.current_url().await.unwrap().path().ends_with("/web/ops"));
    assert_eq!(text(&browser, "#healthy").await, "healthy");
    let instance = text(&browser, "#instances tbody").await;
    assert!(instance.contains(url.trim_start_matches("https://")), "{instance}");
    screenshot(&browser, "ops-health.png").await;
    browser.find(Locator::Css("a[href='/web/ops/logs']")).await.unwrap().click().await.unwrap();
    wait_some("the log search", || async { try_text(&browser, "#log-search").await }).await;
    screenshot(&browser, "ops-logs.png").await;
    browser.close().await.unwrap();
    engine.shutdown().await;
    server.shutdown().await;
}
