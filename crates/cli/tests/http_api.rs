//! Bad requests get clear 4xx answers in the API's error format, never a panic, and nothing
//! already stored is lost.

mod common;

use common::*;
use idlegrid_protocol::auth::{Identity, body_hash};
use idlegrid_protocol::wire::{self, ErrorBody};
use idlegrid_types::JobProperties;
use reqwest::{Method, StatusCode};

struct Raw {
    http: reqwest::Client,
    url: String,
}

impl Raw {
    async fn send(
        &self,
        method: Method,
        path: &str,
        identity: Option<&Identity>,
        body: Vec<u8>,
    ) -> (StatusCode, String) {
        let mut request = self.http.request(method.clone(), format!("{}{}", self.url, path));
        if let Some(identity) = identity {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
            let h = identity.sign(method.as_str(), path, now, &body_hash(&body));
            request = request
                .header(wire::HEADER_ID, h.id)
                .header(wire::HEADER_TIME, h.time_ms)
                .header(wire::HEADER_SIGNATURE, h.signature);
        }
        let response = request.body(body).send().await.unwrap();
        let status = response.status();
        (status, response.text().await.unwrap())
    }
}

fn error_of(text: &str) -> String {
    serde_json::from_str::<ErrorBody>(text).unwrap_or_else(|e| panic!("not an error body ({e}): {text}")).error.message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_errors_and_lose_nothing() {
    // Plain HTTP: this is about what the API does with bad requests; TLS has its own tests.
    let cluster = Cluster::start_plain(0).await;
    let client = cluster.client().await;
    let noop = upload_task(&client, "noop").await;
    let job =
        client.create_job(JobProperties { name: "keep me".into(), ..JobProperties::default() }).await.unwrap().job;
    let raw = Raw { http: reqwest::Client::new(), url: cluster.url() };
    let identity = Identity::generate();
    raw.http
        .post(format!("{}/v1/register", cluster.url()))
        .json(&wire::RegisterRequest {
            role: idlegrid_types::Role::Client,
            public_key: identity.public_key_hex(),
            name: "raw".into(),
            csr: None,
        })
        .send()
        .await
        .unwrap();

    // No identity.
    let (status, text) = raw.send(Method::POST, "/v1/sessions", None, b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error_of(&text).contains("x-idlegrid-id"), "{text}");

    // An identity the server never saw.
    let stranger = Identity::generate();
    let (status, text) = raw.send(Method::POST, "/v1/sessions", Some(&stranger), b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(error_of(&text).contains("register first"), "{text}");

    // A forged signature: headers of one request on another body.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let h = identity.sign("POST", "/v1/sessions", now, &body_hash(b"{}"));
    let response = raw
        .http
        .post(format!("{}/v1/sessions", cluster.url()))
        .header(wire::HEADER_ID, h.id)
        .header(wire::HEADER_TIME, h.time_ms)
        .header(wire::HEADER_SIGNATURE, h.signature)
        .body(r#"{"resume":null,"x":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Malformed JSON, and JSON of the wrong shape.
    let (status, text) = raw.send(Method::POST, "/v1/sessions", Some(&identity), b"{not json".to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&text).contains("malformed JSON"), "{text}");
    let (status, text) =
        raw.send(Method::POST, "/v1/register", None, br#"{"role":"robot","public_key":"00"}"#.to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&text).contains("robot"), "{text}");

    // A session to post into.
    let (status, text) = raw.send(Method::POST, "/v1/sessions", Some(&identity), b"{}".to_vec()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let session: wire::SessionInfo = serde_json::from_str(&text).unwrap();
    let messages = format!("/v1/sessions/{}/messages", session.session);
    let (status, text) = raw
        .send(
            Method::POST,
            &messages,
            Some(&identity),
            br#"{"messages":[{"seq":1,"message":{"type":"Launch","job":"nope"}}]}"#.to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&text).contains("invalid job id 'nope'"), "{text}");
    let (status, text) = raw.send(Method::POST, &messages, Some(&identity), br#"{"messages":[{"seq":1,"message":{"type":"NodeStatus","state":"active","slots":1,"queue_capacity":1}}]}"#.to_vec()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a client cannot send engine messages: {text}");

    // Someone else's session, and a session that does not exist.
    let theirs = format!("/v1/sessions/{}/messages?after=0", client.session());
    let (status, _) = raw.send(Method::GET, &theirs, Some(&identity), Vec::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, text) =
        raw.send(Method::GET, "/v1/sessions/not-a-session/messages?after=0", Some(&identity), Vec::new()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error_of(&text).contains("invalid session id"), "{text}");
    let (status, text) = raw
        .send(
            Method::GET,
            &format!("/v1/sessions/{}/messages?after=zero", session.session),
            Some(&identity),
            Vec::new(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");

    // Unknown job through the REST view, and another client's job.
    let (status, text) = raw
        .send(Method::GET, &format!("/v1/jobs/{}", idlegrid_types::JobId::random()), Some(&identity), Vec::new())
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_of(&text).contains("does not exist"), "{text}");
    let (status, _) = raw.send(Method::GET, &format!("/v1/jobs/{job}"), Some(&identity), Vec::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "another client's job is invisible");

    // Oversized bodies: a message batch, and an element past the limit announced up front.
    // The server answers as soon as it sees the length and closes the connection: the client
    // sees the 413, or a broken pipe if it was still writing the body.
    let huge = vec![b' '; wire::limits::MESSAGE_BODY_BYTES_MAX + 1];
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let h = identity.sign("POST", &messages, now, &body_hash(&huge));
    let sent = raw
        .http
        .post(format!("{}{messages}", cluster.url()))
        .header(wire::HEADER_ID, h.id)
        .header(wire::HEADER_TIME, h.time_ms)
        .header(wire::HEADER_SIGNATURE, h.signature)
        .body(huge)
        .send()
        .await;
    match sent {
        Ok(response) => {
            assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
            assert!(error_of(&response.text().await.unwrap()).contains("exceeds the limit"));
        }
        Err(error) => assert!(error.is_request() || error.is_body(), "{error}"),
    }

    // An element whose bytes do not match its name.
    let claimed = idlegrid_types::ElementHash::of(b"the real bytes");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as u64;
    let path = format!("/v1/elements/{claimed}?kind=data");
    let h = identity.sign("PUT", &path, now, &claimed.to_string());
    let response = raw
        .http
        .put(format!("{}{path}", cluster.url()))
        .header(wire::HEADER_ID, h.id)
        .header(wire::HEADER_TIME, h.time_ms)
        .header(wire::HEADER_SIGNATURE, h.signature)
        .body("other bytes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(error_of(&response.text().await.unwrap()).contains("hash to"));
    let (status, _) = raw.send(Method::GET, &format!("/v1/elements/{claimed}"), Some(&identity), Vec::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was stored");
    // Another client's element is not readable without owning it.
    let (status, _) = raw.send(Method::GET, &format!("/v1/elements/{}", noop.hash), Some(&identity), Vec::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, text) = raw.send(Method::GET, "/v1/no/such/thing", None, Vec::new()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(error_of(&text).contains("no such endpoint"));

    // Everything stored before is intact.
    let info = client.job(job).await.unwrap();
    assert_eq!(info.properties.name, "keep me");
    assert_eq!(client.transport().element_size(&noop.hash).await.unwrap(), Some(noop.size));
}
