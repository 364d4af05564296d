//! Nobody gets in where they don't belong (issue 7): mutual TLS, the access table row by row,
//! one client against another's objects, operators and revocation.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use idlegrid_client::{ClientError, Transport};
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::{Replay, TaskSpec};
use idlegrid_protocol::wire::{RevokeReply, RevokeRequest};
use idlegrid_server::access::{Callers, RULES};
use idlegrid_types::{ElementHash, ElementKind, ElementRef, JobId, JobProperties, JobState, PartyId, Role, SessionId};
use reqwest::Method;

const WAIT: Duration = Duration::from_secs(20);

async fn server_with_operator(operator: &Identity) -> (tempfile::TempDir, idlegrid_server::ServerHandle) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.coordinator.operators = vec![operator.id().clone()];
    let server = idlegrid_server::Server::start(config).await.unwrap();
    (dir, server)
}

/// A reqwest client trusting the server's CA and presenting `certificate` (PEM) for `identity`.
fn http_with(ca: &str, certificate: Option<(&str, &Identity)>) -> reqwest::Client {
    let key;
    let client_cert = match certificate {
        Some((pem, identity)) => {
            key = identity.private_key_pkcs8_der();
            Some((pem, &key[..]))
        }
        None => None,
    };
    let config = idlegrid_pki::client_config(ca, client_cert).unwrap();
    reqwest::Client::builder().tls_backend_preconfigured(config).build().unwrap()
}

fn signed(
    http: &reqwest::Client,
    url: &str,
    identity: &Identity,
    method: Method,
    path: &str,
) -> reqwest::RequestBuilder {
    let headers = identity.sign(method.as_str(), path, now_ms(), &idlegrid_protocol::auth::body_hash(b""));
    http.request(method, format!("{url}{path}"))
        .header(idlegrid_protocol::wire::HEADER_ID, headers.id)
        .header(idlegrid_protocol::wire::HEADER_TIME, headers.time_ms)
        .header(idlegrid_protocol::wire::HEADER_SIGNATURE, headers.signature)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_the_certificate_issued_at_registration_are_refused() {
    let (_dir, server) = server_with_operator(&Identity::generate()).await;
    let url = server.url();
    let ca = server.ca_pem().unwrap().to_string();
    let identity = Identity::generate();
    let registered = transport(&url, identity.clone(), Role::Client).await;
    registered
        .call::<(), Vec<idlegrid_protocol::messages::JobInfo>>(Method::GET, "/v1/jobs", None, WAIT)
        .await
        .expect("with its certificate");

    // Properly signed, but no client certificate: refused with the way to get one.
    let bare = http_with(&ca, None);
    let response = signed(&bare, &url, &identity, Method::GET, "/v1/jobs").send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().contains("client certificate"));
    // Health and registration need none.
    assert_eq!(bare.get(format!("{url}/v1/health")).send().await.unwrap().status(), 200);

    // A certificate for the same key from another CA: the TLS handshake itself fails.
    let impostor_ca = idlegrid_pki::Authority::generate("impostor").unwrap();
    let csr = idlegrid_pki::party_request(&identity.private_key_pkcs8_der()).unwrap();
    let forged = impostor_ca.issue_party(&csr, &identity.public_key(), std::time::SystemTime::now()).unwrap();
    let forged_client = http_with(&ca, Some((&forged, &identity)));
    let error = signed(&forged_client, &url, &identity, Method::GET, "/v1/jobs")
        .send()
        .await
        .expect_err("the handshake is refused");
    assert!(error.is_connect() || error.is_request(), "{error:?}");

    // A genuine certificate of party A, with requests signed by party B: refused.
    let other = Identity::generate();
    transport(&url, other.clone(), Role::Client).await;
    let csr = idlegrid_pki::party_request(&identity.private_key_pkcs8_der()).unwrap();
    let request = idlegrid_protocol::wire::RegisterRequest {
        public_key: identity.public_key_hex(),
        role: Role::Client,
        name: "a".into(),
        csr: Some(csr),
    };
    let reply: idlegrid_protocol::wire::RegisterResponse =
        bare.post(format!("{url}/v1/register")).json(&request).send().await.unwrap().json().await.unwrap();
    let a_cert = reply.certificate.expect("a certificate");
    let as_a = http_with(&ca, Some((&a_cert, &identity)));
    let response = signed(&as_a, &url, &other, Method::GET, "/v1/jobs").send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert!(response.text().await.unwrap().contains("another party than the client certificate names"));
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_party_that_pinned_another_ca_refuses_the_server() {
    let (_dir, server) = server_with_operator(&Identity::generate()).await;
    let other_ca = idlegrid_pki::Authority::generate("someone else").unwrap();
    let endpoint = idlegrid_client::Endpoint::new(&server.url())
        .with_trust(idlegrid_client::ServerTrust::Ca(other_ca.cert_pem().to_string()));
    let transport = Transport::new(endpoint, Identity::generate()).unwrap();
    let error = transport.register(Role::Client, "wary").await.expect_err("an impostor server is refused");
    assert!(matches!(error, ClientError::Untrusted(_)), "{error:?}");
    assert!(!error.is_transient(), "not retried by itself");
    server.shutdown().await;
}

/// What one call of a row returned: the status, and whether the access table refused it.
async fn attempt(transport: &Transport, method: &str, path: &str) -> (u16, bool) {
    let result: Result<(), ClientError> = match method {
        "PUT" => transport.upload(b"row by row".to_vec().into(), ElementKind::Data, "row").await.map(|_| ()),
        "HEAD" => transport.element_size(&ElementHash::of(b"nothing")).await.map(|_| ()),
        "GET" if path.starts_with("/v1/elements/") => {
            let element = ElementRef { hash: ElementHash::of(b"nothing"), size: 7 };
            transport.download_bytes(&element, None, 100).await.map(|_| ())
        }
        "GET" => transport.call_text(Method::GET, path, WAIT).await.map(|_| ()),
        "DELETE" => transport.call_empty(Method::DELETE, path, WAIT).await,
        "POST" => transport
            .call::<serde_json::Value, serde_json::Value>(Method::POST, path, Some(&serde_json::json!({})), WAIT)
            .await
            .map(|_| ()),
        other => panic!("no way to call {other}"),
    };
    match result {
        Ok(()) => (200, false),
        // Answers to HEAD have no body to name the reason (an upload asks HEAD first); for
        // the roles allowed there, the coordinator never answers 403.
        Err(ClientError::Api { status, .. }) if method == "HEAD" || method == "PUT" => (status, status == 403),
        Err(ClientError::Api { status, report }) => (status, status == 403 && report.message.contains("may not call")),
        Err(error) => panic!("{method} {path}: {error}"),
    }
}

fn concrete(path: &str, hash: &ElementHash) -> String {
    path.replace("{session}", &SessionId::random().to_string())
        .replace("{hash}", &hash.to_string())
        .replace("{job}", &JobId::random().to_string())
        .replace("{request}", "1")
        .replace("{offer}", "1")
        .replace("{negotiation}", "1")
        .replace("{contract}", "1")
        .replace("{number}", "1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_table_holds_row_by_row_for_every_role() {
    let operator = Identity::generate();
    let (_dir, server) = server_with_operator(&operator).await;
    let url = server.url();
    let mut parties = Vec::new();
    for (role, identity) in [
        (Role::Client, Identity::generate()),
        (Role::Provider, Identity::generate()),
        (Role::Operator, operator.clone()),
    ] {
        parties.push((role, transport(&url, identity, role).await));
    }
    let stranger = Transport::new(endpoint(&url).await, Identity::generate()).unwrap();
    let hash = ElementHash::of(b"row by row");
    let mut checked = 0;
    for rule in RULES {
        let mut path = concrete(rule.path, &hash);
        if rule.method == "GET" && rule.path.ends_with("/messages") {
            path.push_str("?after=0"); // a poll without its query is malformed before anyone is asked
        }
        for (role, transport) in &parties {
            let (status, refused_by_table) = attempt(transport, rule.method, &path).await;
            let allowed = match rule.callers {
                Callers::Anyone => true,
                Callers::Roles(roles) => roles.contains(role),
            };
            assert_eq!(
                refused_by_table,
                !allowed,
                "{} {} as {}: status {status}, expected {}",
                rule.method,
                rule.path,
                role.as_str(),
                if allowed { "allowed" } else { "refused by the table" }
            );
            assert!(status < 500, "{} {} as {}: {status}", rule.method, rule.path, role.as_str());
            checked += 1;
        }
        // An unregistered key is stopped before any role is looked at.
        if matches!(rule.callers, Callers::Roles(_)) && rule.method != "PUT" {
            let (status, _) = attempt(&stranger, rule.method, &path).await;
            assert!(
                status == 401 || status == 404 && rule.method == "HEAD",
                "{} {} as a stranger: {status}",
                rule.method,
                rule.path
            );
        }
    }
    assert_eq!(checked, RULES.len() * 3);
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_cannot_see_or_touch_another_clients_job_elements_or_results() {
    let cluster = Cluster::start(1).await;
    let alice = cluster.client().await;
    let bob = cluster.client().await;
    let misbehave = upload_task(&alice, "misbehave").await;
    let secret = alice.upload(b"alice's data".to_vec(), ElementKind::Data, "secret.txt").await.unwrap();
    let job = alice.create_job(JobProperties::default()).await.unwrap().job;
    // A result large enough to travel as an element on the server, not inline.
    let spec = TaskSpec {
        index: 0,
        executable: misbehave.hash,
        data: BTreeMap::new(),
        params: b"mode=big-result bytes=300000".to_vec(),
        priority: None,
    };
    alice.add_tasks(job, vec![spec]).await.unwrap();
    alice.launch(job).await.unwrap();
    let (finals, _) = run_to_completion(&alice, job, Replay::All).await;
    let result = finals[0].result.clone().unwrap();
    assert!(matches!(result, idlegrid_protocol::Payload::Element(_)), "{result:?}");

    assert!(bob.job(job).await.is_err(), "bob cannot read alice's job");
    assert!(bob.jobs().await.unwrap().iter().all(|j| j.job != job), "nor list it");
    assert!(bob.fetch(&result).await.is_err(), "nor fetch her result");
    let download = bob.transport().download_bytes(&secret, None, 1 << 20).await;
    assert!(matches!(download, Err(ClientError::Api { status: 404, .. })), "nor her data: {download:?}");
    assert_eq!(bob.transport().element_size(&secret.hash).await.unwrap(), None, "nor learn that it exists");
    assert!(bob.remove_job(job).await.is_err(), "nor remove her job");
    assert!(bob.stop(job, None).await.is_err(), "nor stop it");
    let info = alice.job(job).await.unwrap();
    assert_eq!(info.state, JobState::Completed, "alice's job is untouched");
    assert_eq!(alice.fetch(&result).await.unwrap().len(), 300_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_engine_loses_its_task_gets_no_more_work_and_cannot_come_back() {
    logs();
    let operator = Identity::generate();
    let (dir, server) = server_with_operator(&operator).await;
    let url = server.url();
    let mut config = engine_config(&url, dir.path(), "doomed");
    config.server = endpoint(&url).await;
    let doomed = idlegrid_engine::Engine::start(config).await.unwrap();
    let doomed_id: PartyId = doomed.id().parse().unwrap();
    let client = connect(&url).await;
    let misbehave = upload_task(&client, "misbehave").await;
    let job = client.create_job(JobProperties::default()).await.unwrap().job;
    let spec = TaskSpec {
        index: 0,
        executable: misbehave.hash,
        data: BTreeMap::new(),
        params: b"mode=sleep ms=2000 i=0".to_vec(),
        priority: None,
    };
    client.add_tasks(job, vec![spec]).await.unwrap();
    client.launch(job).await.unwrap();
    wait_for("the doomed engine to run the task", || !doomed.status().tasks.is_empty()).await;

    // Only operators may revoke, and only keys the server names may be operators.
    let client_transport = client.transport();
    let request = RevokeRequest { party: doomed_id.clone(), reason: "forged results".into() };
    let refused = client_transport.call::<_, RevokeReply>(Method::POST, "/v1/ops/revoke", Some(&request), WAIT).await;
    assert!(matches!(refused, Err(ClientError::Api { status: 403, .. })), "{refused:?}");
    let pretender = Transport::new(endpoint(&url).await, Identity::generate()).unwrap();
    let error = pretender.register(Role::Operator, "pretender").await.expect_err("not an operator");
    assert!(error.to_string().contains("--operator"), "{error}");

    let ops = transport(&url, operator, Role::Operator).await;
    let reply: RevokeReply = ops.call(Method::POST, "/v1/ops/revoke", Some(&request), WAIT).await.unwrap();
    assert!(reply.revoked_now);
    let again: RevokeReply = ops.call(Method::POST, "/v1/ops/revoke", Some(&request), WAIT).await.unwrap();
    assert!(!again.revoked_now, "a retry changes nothing");

    // The task goes to another engine and completes there.
    let mut config = engine_config(&url, dir.path(), "honest");
    config.server = endpoint(&url).await;
    let honest = idlegrid_engine::Engine::start(config).await.unwrap();
    let (finals, info) = run_to_completion(&client, job, Replay::All).await;
    assert_eq!(info.counts.succeeded, 1);
    assert_eq!(finals.len(), 1);
    assert_eq!(honest.status().tasks_succeeded, 1, "the honest engine ran it");

    // The revoked key is refused everywhere, even with its still-valid certificate.
    let doomed_identity = Identity::load_or_create(&dir.path().join("doomed").join("identity.key")).unwrap();
    let as_doomed = Transport::new(endpoint(&url).await, doomed_identity).unwrap();
    let error = as_doomed.register(Role::Provider, "doomed").await.expect_err("cannot register again");
    assert!(error.to_string().contains("revoked"), "{error}");
    let list: Vec<idlegrid_protocol::wire::RevocationInfo> =
        ops.call::<(), _>(Method::GET, "/v1/ops/revocations", None, WAIT).await.unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].party, doomed_id);
    assert_eq!(list[0].reason, "forged results");
    doomed.shutdown().await;
    honest.shutdown().await;
    server.shutdown().await;
}

/// The database (signing key, ticket secret) and the CA key are the server's user's alone: they
/// and their folders are created owner-only, and a server refuses to start on one that other
/// users can read, saying how to fix it.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_and_databases_are_owner_only_and_a_readable_secret_stops_the_server() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let config = server_config(dir.path());
    let data = config.data_dir.clone();
    let server = idlegrid_server::Server::start(config.clone()).await.unwrap();
    server.shutdown().await;
    let mode = |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    for folder in [data.clone(), data.join("tls"), data.join("elements")] {
        assert_eq!(mode(&folder), 0o700, "{}", folder.display());
    }
    for file in [data.join("state.db"), data.join("tls").join("ca.key")] {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }

    for secret in [data.join("state.db"), data.join("state.db-wal"), data.join("tls").join("ca.key")] {
        if !secret.exists() {
            std::fs::File::create(&secret).unwrap();
        }
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o644)).unwrap();
        let error = match idlegrid_server::Server::start(config.clone()).await {
            Ok(_) => panic!("a server started on {} readable by others", secret.display()),
            Err(error) => format!("{error:#}"),
        };
        assert!(error.contains(&format!("chmod 600 {}", secret.display())), "{error}");
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let server = idlegrid_server::Server::start(config).await.expect("starts once the secrets are private again");
    server.shutdown().await;
}

/// Registrations from one address are rate-limited (429 with Retry-After), and so is every
/// endpoint without an identity; a refused registration, for its rate or for a certificate
/// request of another key, stores nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_are_rate_limited_per_address_and_refused_ones_store_nothing() {
    use idlegrid_server::{Rate, RateLimits};
    use idlegrid_store::Store;
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    // Refills too slow to matter during the test: the counts below are exact.
    config.rate_limits = RateLimits {
        unauthenticated: Rate { burst: 30, per_second: 0.001 },
        registrations: Rate { burst: 5, per_second: 0.001 },
    };
    let database = config.data_dir.join("state.db");
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let url = server.url();
    let http = http_with(server.ca_pem().unwrap(), None);
    let register = |identity: &Identity, csr_key: &Identity| {
        let request = idlegrid_protocol::wire::RegisterRequest {
            role: Role::Client,
            public_key: identity.public_key_hex(),
            name: "burst".into(),
            csr: Some(idlegrid_pki::party_request(&csr_key.private_key_pkcs8_der()).unwrap()),
        };
        http.post(format!("{url}/v1/register")).json(&request).send()
    };

    // A certificate request for another key: refused, and the party is not stored.
    let mismatched = Identity::generate();
    let response = register(&mismatched, &Identity::generate()).await.unwrap();
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert!(text.contains("another key"), "{text}");

    // A burst of twenty: the bucket's four remaining tokens pass, the rest wait.
    let (mut accepted, mut refused) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        let identity = Identity::generate();
        let response = register(&identity, &identity).await.unwrap();
        match response.status().as_u16() {
            200 => accepted.push(identity.id().clone()),
            429 => {
                let wait: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!(wait >= 1);
                let text = response.text().await.unwrap();
                assert!(text.contains("too many registrations from this address"), "{text}");
                refused.push(identity.id().clone());
            }
            other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
        }
    }
    assert_eq!((accepted.len(), refused.len()), (4, 16));

    // Every request without an identity draws on its own bucket: 21 taken, 9 left.
    for _ in 0..9 {
        assert_eq!(http.get(format!("{url}/v1/health")).send().await.unwrap().status(), 200);
    }
    let response = http.get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    server.shutdown().await;

    let store = idlegrid_store::SqliteStore::open(&database).unwrap();
    store
        .read(|tx| -> Result<(), idlegrid_store::StoreError> {
            for id in &accepted {
                assert!(tx.party(id)?.is_some(), "an accepted registration is stored");
            }
            for id in refused.iter().chain([mismatched.id()]) {
                assert!(tx.party(id)?.is_none(), "a refused registration is not stored");
            }
            Ok(())
        })
        .unwrap();
}
