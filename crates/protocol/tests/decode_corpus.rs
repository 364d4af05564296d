//! The fuzz checks of the wire on the stable toolchain: the corpus kept in `fuzz/corpus/`
//! (decoding, tickets) replayed through the same checks as the cargo-fuzz targets, plus
//! proptest-generated inputs: random bytes, corpus entries with random edits, and JSON built
//! from the catalogue's own field names and tags, so that CI exercises them without nightly.

#[path = "../../../fuzz/src/protocol_checks.rs"]
mod checks;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
}

/// Every file of a target's corpus.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = corpus_dir(target);
    let mut files: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("the kept corpus {} is missing: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect();
    files.sort();
    files
}

fn decode_corpus() -> &'static [(PathBuf, Vec<u8>)] {
    static CORPUS: OnceLock<Vec<(PathBuf, Vec<u8>)>> = OnceLock::new();
    CORPUS.get_or_init(|| corpus("decode_messages"))
}

#[test]
fn the_kept_decode_corpus_passes_the_checks() {
    let files = decode_corpus();
    assert!(files.len() >= 50, "the corpus lost its seeds: {} files", files.len());
    let mut accepted_files = 0;
    for (path, bytes) in files {
        let accepted = std::panic::catch_unwind(|| checks::check_decode(bytes))
            .unwrap_or_else(|_| panic!("corpus entry {} fails the checks", path.display()));
        accepted_files += (accepted > 0) as usize;
    }
    // The seeds are valid messages of every direction: most of the corpus decodes as
    // something, so the round trips are really exercised.
    assert!(accepted_files >= 50, "only {accepted_files} corpus entries decode as any wire type");
}

#[test]
fn the_kept_ticket_corpus_passes_the_checks() {
    let files = corpus("tickets");
    assert!(files.len() >= 4, "the corpus lost its seeds: {} files", files.len());
    for (path, bytes) in &files {
        std::panic::catch_unwind(|| checks::check_tickets(bytes))
            .unwrap_or_else(|_| panic!("corpus entry {} fails the checks", path.display()));
    }
    // The seed ticket is genuine: the checks do see a valid one.
    let seed = std::fs::read_to_string(corpus_dir("tickets").join("seed-ticket")).unwrap();
    let holder = idlegrid_types::PartyId::from_public_key(&[1; 32]);
    assert!(idlegrid_protocol::ticket::Ticket::verify(&seed, checks::TICKET_SECRET, &holder, 0).is_ok());
}

/// Names that occur in the catalogue, so that generated JSON reaches past the first field.
const KEYS: &[&str] = &[
    "type",
    "direction",
    "message",
    "job",
    "task",
    "tasks",
    "index",
    "executable",
    "data",
    "params",
    "priority",
    "properties",
    "replay",
    "element",
    "hash",
    "size",
    "name",
    "state",
    "progress",
    "status",
    "result",
    "failure",
    "kind",
    "cpu_ms",
    "attempts",
    "counts",
    "assignment",
    "checkpoint",
    "limits",
    "ticket",
    "signature",
    "seq",
    "reply_to",
    "messages",
    "ack",
    "after",
    "wait_ms",
    "max",
    "inline",
    "code",
    "error",
    "slots",
    "queue_capacity",
    "settings",
    "jobs",
    "created_unix_ms",
    "cluster",
    "task_limits",
    "attempts_max",
    "inbound_acked",
    "outbound_head",
    "outbound_acked",
    "session",
    "role",
    "public_key",
    "amount_micros",
    "reference",
    "url",
    "version",
];

const TAGS: &[&str] = &[
    "GetConfig",
    "CreateJob",
    "Task",
    "Launch",
    "Stop",
    "Resume",
    "Attach",
    "TaskStatus",
    "JobProperties",
    "Error",
    "NodeStatus",
    "Contents",
    "Heartbeat",
    "Upgrade",
    "RemoveTask",
    "Deposit",
    "client_to_server",
    "server_to_client",
    "server_to_provider",
    "provider_to_server",
    "succeeded",
    "running",
    "failed",
    "active",
    "all",
    "undelivered",
    "client",
    "provider",
    "trap",
    "bad_request",
];

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(|n| Value::Number(n.into())),
        any::<i64>().prop_map(|n| Value::Number(n.into())),
        // Floats of every size, including past what an f32 holds.
        prop_oneof![
            Just(0.5),
            Just(-0.0),
            Just(1e39),
            Just(-1e39),
            Just(3.4e38),
            Just(1e-46),
            Just(f64::MAX),
            any::<f64>()
        ]
        .prop_filter_map("finite", |f| Number::from_f64(f).map(Value::Number)),
        proptest::sample::select(TAGS).prop_map(|s| Value::String(s.to_string())),
        "[0-9a-f]{32}|[0-9a-f]{64}|[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-8[0-9a-f]{3}-[0-9a-f]{12}|[A-Za-z0-9+/=]{0,12}"
            .prop_map(Value::String),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::vec((proptest::sample::select(KEYS), inner), 0..8).prop_map(|fields| {
                Value::Object(fields.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn random_bytes_decode_safely(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        checks::check_decode(&data);
        checks::check_tickets(&data);
    }

    #[test]
    fn corpus_entries_with_random_edits_decode_safely(
        pick in any::<proptest::sample::Index>(),
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    ) {
        let (_, original) = pick.get(decode_corpus());
        let mut data = original.clone();
        for (at, byte, how) in edits {
            if data.is_empty() {
                data.push(byte);
                continue;
            }
            let at = at.index(data.len());
            match how {
                0 => data[at] = byte,
                1 => data.insert(at, byte),
                _ => { data.remove(at); }
            }
        }
        checks::check_decode(&data);
    }

    #[test]
    fn json_built_from_the_catalogue_decodes_safely(value in json(), tag in proptest::sample::select(TAGS)) {
        checks::check_decode(&serde_json::to_vec(&value).unwrap());
        // And the same object under a message tag, as the catalogue's enums expect.
        if let Value::Object(mut fields) = value {
            fields.insert("type".into(), Value::String(tag.to_string()));
            let tagged = Value::Object(fields);
            checks::check_decode(&serde_json::to_vec(&tagged).unwrap());
            let wrapped = serde_json::json!({ "direction": "provider_to_server", "message": tagged });
            checks::check_decode(&serde_json::to_vec(&wrapped).unwrap());
        }
    }

    #[test]
    fn ticket_forgeries_grant_nothing(data in proptest::collection::vec(any::<u8>(), 0..64)) {
        checks::check_ticket_forgery(&data);
    }
}
