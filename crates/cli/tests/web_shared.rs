//! Web sessions shared by server instances on one PostgreSQL database: a sign-in link asked of
//! one instance opens on another, the cookie works on both, signing out on one ends it on the
//! other, and a session's lifetime is enforced wherever it is used. The operators' page lists
//! every instance's health. Uses the machine's PostgreSQL (127.0.0.1:5432, database `test`;
//! IDLEGRID_TEST_POSTGRES overrides), in a schema of its own.

mod common;

use std::time::Duration;

use common::*;
use idlegrid_protocol::auth::Identity;
use idlegrid_server::web::LoginLink;
use idlegrid_store::PostgresStore;
use idlegrid_types::Role;
use reqwest::{Method, StatusCode};

fn postgres_url() -> String {
    std::env::var("IDLEGRID_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
}

fn fresh_schema(name: &str) -> String {
    let url = postgres_url();
    let schema = format!("{name}_{}", std::process::id());
    PostgresStore::drop_schema(&url, &schema).unwrap();
    drop(
        PostgresStore::connect_in_schema(&url, &schema)
            .expect("PostgreSQL at 127.0.0.1:5432 (database test) is needed"),
    );
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{schema}")
}

fn browser(ca: &str) -> reqwest::Client {
    let config = idlegrid_pki::client_config(ca, None).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn page(http: &reqwest::Client, url: &str, cookie: &str) -> (StatusCode, String) {
    let response = http.get(url).header(reqwest::header::COOKIE, cookie).send().await.unwrap();
    (response.status(), response.text().await.unwrap())
}

/// Open a link at `base` (whatever instance issued it); the session cookie it sets.
async fn sign_in_at(http: &reqwest::Client, base: &str, link: &LoginLink) -> String {
    let path = &link.url[link.url.find("/web/login/").unwrap()..];
    let response = http.get(format!("{base}{path}")).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let set_cookie = response.headers()[reqwest::header::SET_COOKIE].to_str().unwrap().to_string();
    set_cookie.split(';').next().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_begun_on_one_instance_works_ends_and_expires_on_another() {
    let database = fresh_schema("web_shared");
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("ca");
    let authority = idlegrid_pki::Authority::load_or_create(&ca_dir, "web test").unwrap();
    let operator = Identity::generate();
    let start = |name: &str, lifetime_ms: u64| {
        let mut config = server_config(&dir.path().join(name));
        config.database = database.clone();
        config.elements = dir.path().join("elements").display().to_string();
        config.coordinator.operators = vec![operator.id().clone()];
        if let Some(tls) = config.tls.as_mut() {
            tls.ca_files = Some((ca_dir.join("ca.pem"), ca_dir.join("ca.key")));
        }
        config.web = idlegrid_server::WebTimes { link_ttl_ms: 60_000, idle_ms: 3_600_000, lifetime_ms };
        idlegrid_server::Server::start(config)
    };
    let a = start("a", 3_600_000).await.unwrap();
    let b = start("b", 3_600_000).await.unwrap();
    let http = browser(authority.cert_pem());
    let (url_a, url_b) = (a.url(), b.url());

    let client = transport(&url_a, Identity::generate(), Role::Client).await;
    let call = || client.call::<(), LoginLink>(Method::POST, "/v1/web/login", None, Duration::from_secs(30));
    // A link from instance A opens on B; the cookie works on both.
    let cookie = sign_in_at(&http, &url_b, &call().await.unwrap()).await;
    for base in [&url_a, &url_b] {
        let (status, body) = page(&http, &format!("{base}/web/account"), &cookie).await;
        assert_eq!(status, StatusCode::OK, "{base}: {body}");
    }
    // Signing out on A ends the session on B.
    let (_, account) = page(&http, &format!("{url_a}/web/account"), &cookie).await;
    let marker = r#"name="csrf" value=""#;
    let at = account.find(marker).unwrap() + marker.len();
    let csrf = &account[at..at + 64];
    let response = http
        .post(format!("{url_a}/web/signout"))
        .header(reqwest::header::COOKIE, &cookie)
        .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("csrf={csrf}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let (status, body) = page(&http, &format!("{url_b}/web/account"), &cookie).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // The operators' page of either instance lists both, healthy.
    let ops = transport(&url_b, operator.clone(), Role::Operator).await;
    let link = ops.call::<(), LoginLink>(Method::POST, "/v1/web/login", None, Duration::from_secs(30)).await.unwrap();
    let ops_cookie = sign_in_at(&http, &url_a, &link).await;
    let body = wait_some("both instances on the operators' page", || async {
        let (_, body) = page(&http, &format!("{url_a}/web/ops"), &ops_cookie).await;
        (body.matches(r#"data-health="healthy""#).count() == 2).then_some(body)
    })
    .await;
    for base in [&url_a, &url_b] {
        let address = base.trim_start_matches("https://");
        assert!(body.contains(address), "{address}: {body}");
    }

    // A third instance whose sessions live two seconds: a session begun on A, used on C, ends
    // there when its lifetime is over (C applies its own times to the stored session).
    let c = start("c", 2_000).await.unwrap();
    let cookie = sign_in_at(&http, &url_a, &call().await.unwrap()).await;
    let (status, _) = page(&http, &format!("{}/web/account", c.url()), &cookie).await;
    assert_eq!(status, StatusCode::OK);
    let body = wait_some("the session to expire on C", || async {
        let (status, body) = page(&http, &format!("{}/web/account", c.url()), &cookie).await;
        (status == StatusCode::UNAUTHORIZED).then_some(body)
    })
    .await;
    assert!(body.contains("expired") || body.contains("not signed in"), "{body}");
    c.shutdown().await;
    b.shutdown().await;
    a.shutdown().await;
}
