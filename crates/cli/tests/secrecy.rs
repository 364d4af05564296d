//! Secrecy towards providers (P6.3): what an engine receives names no client, job or task in
//! clear, and executables reach it stripped of names and custom sections.
//!
//! A real server and a real engine, on plain HTTP (the development mode) so that a recording
//! proxy between the engine and the server sees every byte the engine receives: message
//! bodies, element downloads and headers. The client uploads the pi example under a telling
//! file name, with custom sections added that carry its secrets (as an unstripped build would
//! carry source paths and names), and a data element under a telling file name; it runs a job
//! with a telling name. Nothing of that, in any textual or binary form, may be in what the
//! engine received, and the executable it received has no custom section.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use idlegrid_client::{ChannelConfig, Client};
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::{Replay, ServerToProvider, TaskSpec};
use idlegrid_protocol::wire::PollReply;
use idlegrid_testkit::chaos::{ChaosProxy, Exchange};
use idlegrid_types::{ElementHash, ElementKind, JobProperties};

const CLIENT_NAME: &str = "Client Name Zebra 5518";
const JOB_NAME: &str = "Confidential Job Name 7731";
const EXECUTABLE_FILE: &str = "secret-project-alpha-pi.wasm";
const DATA_FILE: &str = "secret-dataset-omega-4409.csv";
const TASKS: u64 = 4;
const SAMPLES: u64 = 200_000;

// --- WebAssembly, read and written by hand: independent of the client's stripping code. ---

fn leb128(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let byte = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn read_leb128(bytes: &[u8], at: &mut usize) -> usize {
    let (mut value, mut shift) = (0usize, 0);
    loop {
        let byte = *bytes.get(*at).expect("the module ends inside a number");
        *at += 1;
        value |= ((byte & 0x7f) as usize) << shift;
        if byte & 0x80 == 0 {
            return value;
        }
        shift += 7;
        assert!(shift < 35, "a section size longer than 5 bytes");
    }
}

/// Every section of a core module: (id, contents), with the custom section's name for id 0.
fn sections(module: &[u8]) -> Vec<(u8, Vec<u8>, Option<String>)> {
    assert!(module.starts_with(b"\0asm\x01\0\0\0"), "not a core WebAssembly module (header and version)");
    let mut at = 8;
    let mut sections = Vec::new();
    while at < module.len() {
        let id = module[at];
        at += 1;
        let size = read_leb128(module, &mut at);
        let contents = module.get(at..at + size).expect("a section runs past the end of the module").to_vec();
        at += size;
        let name = (id == 0).then(|| {
            let mut inner = 0;
            let length = read_leb128(&contents, &mut inner);
            String::from_utf8_lossy(&contents[inner..inner + length]).into_owned()
        });
        sections.push((id, contents, name));
    }
    sections
}

fn custom_section(name: &str, data: &[u8]) -> Vec<u8> {
    let mut contents = Vec::new();
    leb128(name.len(), &mut contents);
    contents.extend_from_slice(name.as_bytes());
    contents.extend_from_slice(data);
    let mut section = vec![0u8];
    leb128(contents.len(), &mut section);
    section.extend_from_slice(&contents);
    section
}

/// A `name` section naming the module (subsection 0), as toolchains write it.
fn name_section(module_name: &str) -> Vec<u8> {
    let mut name = Vec::new();
    leb128(module_name.len(), &mut name);
    name.extend_from_slice(module_name.as_bytes());
    let mut subsection = vec![0u8];
    leb128(name.len(), &mut subsection);
    subsection.extend_from_slice(&name);
    custom_section("name", &subsection)
}

/// `module` with custom sections carrying `secrets`: one after the first section, the rest at
/// the end, as an unstripped build has them.
fn with_secret_sections(module: &[u8], secrets: &[String]) -> Vec<u8> {
    // The first section: its id at offset 8, then its size.
    let mut first_end = 9;
    let size = read_leb128(module, &mut first_end);
    first_end += size;
    let text = secrets.join(" ");
    let mut out = module[..first_end].to_vec();
    out.extend(custom_section("secret-project-alpha-notes", text.as_bytes()));
    out.extend_from_slice(&module[first_end..]);
    out.extend(name_section(&format!("secret-project-alpha {text}")));
    out.extend(custom_section("producers", format!("processed-by {text}").as_bytes()));
    out.extend(custom_section(
        ".debug_str",
        format!("/home/client/secret-project-alpha/src/main.rs {text}").as_bytes(),
    ));
    out
}

// --- Searching what the engine received. ---

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard or URL-safe base64, padded or not; `None` for anything else.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    if text.len() < 4 || text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::new();
    let (mut bits, mut count) = (0u32, 0);
    for c in text.bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        bits = bits << 6 | value as u32;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    Some(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn contains_ignoring_case(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// What must not reach an engine: text (searched ignoring case) and raw bytes (exactly).
struct Secrets {
    text: Vec<(String, String)>,
    binary: Vec<(String, Vec<u8>)>,
}

impl Secrets {
    fn add_text(&mut self, label: &str, text: impl Into<String>) {
        self.text.push((label.to_string(), text.into()));
    }

    /// A UUID (job, session) in every textual form, and its raw bytes.
    fn add_uuid(&mut self, label: &str, uuid: &[u8; 16]) {
        let simple = hex_of(uuid);
        let hyphenated =
            format!("{}-{}-{}-{}-{}", &simple[..8], &simple[8..12], &simple[12..16], &simple[16..20], &simple[20..]);
        self.add_text(&format!("{label} (hyphenated)"), hyphenated);
        self.add_text(&format!("{label} (simple hex)"), simple);
        self.add_text(&format!("{label} (decimal)"), u128::from_be_bytes(*uuid).to_string());
        self.add_text(&format!("{label} (base64)"), base64_encode(uuid).trim_end_matches('=').to_string());
        self.binary.push((format!("{label} (raw bytes)"), uuid.to_vec()));
    }

    /// A name as is, and as it would appear in a URL.
    fn add_name(&mut self, label: &str, name: &str) {
        self.add_text(label, name);
        if name.contains(' ') {
            self.add_text(&format!("{label} (percent-encoded)"), name.replace(' ', "%20"));
            self.add_text(&format!("{label} (form-encoded)"), name.replace(' ', "+"));
        }
    }

    /// Which secrets `bytes` holds: directly, or inside any base64 string of a JSON document.
    fn found_in(&self, bytes: &[u8]) -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        let mut search = |haystack: &[u8], how: &str| {
            for (label, text) in &self.text {
                if contains_ignoring_case(haystack, text.as_bytes()) {
                    found.insert(format!("{label}{how}"));
                }
            }
            for (label, raw) in &self.binary {
                if contains(haystack, raw) {
                    found.insert(format!("{label}{how}"));
                }
            }
        };
        search(bytes, "");
        if let Ok(json) = serde_json::from_slice::<serde_json::Value>(bytes) {
            let mut strings = Vec::new();
            collect_strings(&json, &mut strings);
            for text in strings {
                if let Some(decoded) = base64_decode(&text) {
                    search(&decoded, " (in a base64 field)");
                }
            }
        }
        found
    }
}

fn collect_strings(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(text) => out.push(text.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        serde_json::Value::Object(fields) => fields.iter().for_each(|(k, v)| {
            out.push(k.clone());
            collect_strings(v, out)
        }),
        _ => {}
    }
}

/// Everything the engine got in one answer: headers, the body as sent, and as read.
fn received(exchange: &Exchange) -> Vec<(&'static str, Vec<u8>)> {
    let headers: Vec<u8> =
        exchange.response_headers.iter().flat_map(|(n, v)| [n.as_bytes(), b": ", v, b"\n"].concat()).collect();
    let mut parts = vec![("headers", headers), ("body", exchange.response_body.to_vec())];
    let content =
        exchange.response_content().unwrap_or_else(|e| panic!("{} {}: {e}", exchange.method, exchange.path_and_query));
    if content != exchange.response_body {
        parts.push(("decoded body", content));
    }
    parts
}

fn channel_config() -> ChannelConfig {
    ChannelConfig {
        poll_wait: std::time::Duration::from_secs(5),
        backoff_max: std::time::Duration::from_millis(500),
        ..ChannelConfig::default()
    }
}

#[test]
fn the_search_finds_what_it_looks_for() {
    let job = idlegrid_types::JobId::random();
    let mut secrets = Secrets { text: Vec::new(), binary: Vec::new() };
    secrets.add_uuid("job id", job.as_uuid().as_bytes());
    secrets.add_name("job name", JOB_NAME);
    assert!(secrets.found_in(job.to_string().as_bytes()).contains("job id (hyphenated)"), "IDs travel hyphenated");
    let upper = format!("{{\"job\":\"{}\"}}", job.to_string().to_uppercase());
    assert_eq!(secrets.found_in(upper.as_bytes()), BTreeSet::from(["job id (hyphenated)".to_string()]));
    let hidden =
        format!("{{\"params\":\"{}\"}}", base64_encode(&[b"xy".as_slice(), job.as_uuid().as_bytes(), b"z"].concat()));
    assert!(secrets.found_in(hidden.as_bytes()).contains("job id (raw bytes) (in a base64 field)"), "{hidden}");
    let named = format!("GET /x?name={}", JOB_NAME.replace(' ', "%20").to_lowercase());
    assert!(secrets.found_in(named.as_bytes()).contains("job name (percent-encoded)"));
    let mut binary = vec![0u8; 100];
    binary.extend_from_slice(job.as_uuid().as_bytes());
    assert!(secrets.found_in(&binary).contains("job id (raw bytes)"));
    assert!(secrets.found_in(b"{\"assignment\":17,\"ticket\":\"abc.17.99\"}").is_empty());

    let module = example_task_bytes("noop");
    let injected = with_secret_sections(&module, &["hello".to_string()]);
    let names: Vec<_> = sections(&injected).into_iter().filter_map(|(_, _, name)| name).collect();
    assert_eq!(names, ["secret-project-alpha-notes", "name", "producers", ".debug_str"]);
    let stripped = idlegrid_client::strip_executable(&injected).unwrap();
    let plain: Vec<_> = sections(&module).into_iter().filter(|(id, _, _)| *id != 0).collect();
    assert_eq!(sections(&stripped), plain, "stripping leaves the module as built");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_receives_no_client_job_or_file_name_and_no_custom_section() {
    logs();
    let dir = tempfile::tempdir().unwrap();
    let mut config = server_config(dir.path());
    config.tls = None;
    let server = idlegrid_server::Server::start(config).await.unwrap();
    let upstream: std::net::SocketAddr = server.url().trim_start_matches("http://").parse().unwrap();
    let proxy = ChaosProxy::recorder(upstream).await.unwrap();
    let engine = idlegrid_engine::Engine::start(engine_config(&proxy.url(), dir.path(), "engine-0")).await.unwrap();

    let identity = Identity::generate();
    let (client_id, client_key) = (identity.id().clone(), identity.public_key());
    let client = Client::connect_with(server.url().as_str(), identity, CLIENT_NAME, channel_config()).await.unwrap();

    // The executable carries the client's secrets in custom sections, and a telling file name.
    let pi = example_task_bytes("pi");
    let injected = with_secret_sections(
        &pi,
        &[
            client_id.to_string(),
            hex_of(&client_key),
            CLIENT_NAME.to_string(),
            JOB_NAME.to_string(),
            EXECUTABLE_FILE.to_string(),
        ],
    );
    assert_eq!(sections(&injected).iter().filter(|(id, _, _)| *id == 0).count(), 4);
    let executable_path = dir.path().join(EXECUTABLE_FILE);
    std::fs::write(&executable_path, &injected).unwrap();
    let executable = client.upload_file(&executable_path, ElementKind::Executable).await.unwrap();
    assert_ne!(executable.hash, ElementHash::of(&injected), "the client uploads the stripped module");
    let data_path = dir.path().join(DATA_FILE);
    std::fs::write(&data_path, b"12,34\n56,78\n").unwrap();
    let data = client.upload_file(&data_path, ElementKind::Data).await.unwrap();

    let info =
        client.create_job(JobProperties { name: JOB_NAME.to_string(), ..JobProperties::default() }).await.unwrap();
    let job = info.job;
    assert_eq!(info.properties.name, JOB_NAME);
    let specs = (0..TASKS).map(|i| TaskSpec {
        index: i,
        executable: executable.hash,
        data: BTreeMap::from([("input".to_string(), data.hash)]),
        params: format!("samples={SAMPLES} seed={}", i + 1).into_bytes(),
        priority: None,
    });
    client.add_tasks(job, specs).await.unwrap();
    client.launch(job).await.unwrap();
    let (finals, done) = run_to_completion(&client, job, Replay::Undelivered).await;
    assert_eq!(done.counts.succeeded, TASKS, "{finals:#?}");
    for report in &finals {
        let result = client.fetch(report.result.as_ref().expect("a result")).await.unwrap();
        let text = String::from_utf8(result).unwrap();
        assert!(text.ends_with(&format!(" {SAMPLES}")), "pi ran on the stripped module: {text}");
    }

    let recorded = proxy.recorded();
    engine.shutdown().await;

    // The recording holds the assignments and the element downloads: an empty or partial
    // recording cannot pass.
    let mut assignments = BTreeMap::new();
    for exchange in &recorded {
        if exchange.method != "GET" || !exchange.path_and_query.contains("/messages") || exchange.status != 200 {
            continue;
        }
        let content = exchange.response_content().unwrap();
        let reply: PollReply<ServerToProvider> =
            serde_json::from_slice(&content).expect("a poll reply of provider messages");
        for envelope in reply.messages {
            if let ServerToProvider::Task(assignment) = envelope.message {
                assignments.insert(assignment.assignment, assignment);
            }
        }
    }
    assert!(
        assignments.len() as u64 >= TASKS,
        "the recording holds every assignment: {} of {TASKS}",
        assignments.len()
    );
    for assignment in assignments.values() {
        assert_eq!(assignment.executable.hash, executable.hash);
        assert_eq!(assignment.data.get("input").map(|e| e.hash), Some(data.hash));
    }
    let downloads = |hash: ElementHash| -> Vec<Vec<u8>> {
        recorded
            .iter()
            .filter(|e| {
                e.method == "GET" && e.path_and_query.starts_with(&format!("/v1/elements/{hash}")) && e.status == 200
            })
            .map(|e| e.response_content().unwrap())
            .collect()
    };
    let executables = downloads(executable.hash);
    assert!(!executables.is_empty(), "the recording holds the executable's download");
    assert!(!downloads(data.hash).is_empty(), "the recording holds the data's download");
    let hash_text = executable.hash.to_string();
    assert!(
        recorded.iter().any(|e| contains(&e.response_content().unwrap(), hash_text.as_bytes())),
        "messages name the executable by hash"
    );

    // The executable arrives without any custom section, and otherwise as built.
    let built: Vec<_> = sections(&pi).into_iter().filter(|(id, _, _)| *id != 0).collect();
    for bytes in &executables {
        assert_eq!(ElementHash::of(bytes), executable.hash, "the engine got the element it was told about");
        let received = sections(bytes);
        let custom: Vec<_> = received.iter().filter_map(|(_, _, name)| name.clone()).collect();
        assert!(custom.is_empty(), "custom sections reached the engine: {custom:?}");
        assert_eq!(received, built, "every other section arrives as built");
    }

    // Nothing names the client, the job or the files.
    let mut secrets = Secrets { text: Vec::new(), binary: Vec::new() };
    secrets.add_text("client party id", client_id.to_string());
    secrets.add_text("client public key (hex)", hex_of(&client_key));
    secrets.add_text("client public key (base64)", base64_encode(&client_key).trim_end_matches('=').to_string());
    secrets.binary.push(("client party id (raw bytes)".into(), client_id.as_bytes().to_vec()));
    secrets.binary.push(("client public key (raw bytes)".into(), client_key.to_vec()));
    secrets.add_uuid("client session id", client.session().as_uuid().as_bytes());
    secrets.add_name("client name", CLIENT_NAME);
    secrets.add_uuid("job id", job.as_uuid().as_bytes());
    secrets.add_name("job name", JOB_NAME);
    secrets.add_name("executable file name", EXECUTABLE_FILE);
    secrets.add_name("data file name", DATA_FILE);
    secrets.add_text("executable file stem", "secret-project-alpha");
    secrets.add_text("data file stem", "secret-dataset-omega");
    let mut leaks = Vec::new();
    for exchange in &recorded {
        for (part, bytes) in received(exchange) {
            for secret in secrets.found_in(&bytes) {
                leaks.push(format!(
                    "{secret} in the {part} of the answer to {} {}",
                    exchange.method, exchange.path_and_query
                ));
            }
        }
    }
    assert!(leaks.is_empty(), "the engine received what names the client, the job or its files:\n{}", leaks.join("\n"));
    let bytes: usize = recorded.iter().map(|e| e.response_body.len()).sum();
    eprintln!("searched {} answers to the engine ({bytes} bytes), {} assignments", recorded.len(), assignments.len());
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
