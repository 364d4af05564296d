//! The embedded store: one SQLite database file in WAL mode.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use idlegrid_protocol::Payload;
use idlegrid_protocol::messages::{NodeState, Replay};
use idlegrid_types::{
    AssignmentId, ElementHash, ElementKind, JobCounts, JobId, JobState, PartyId, Role, SessionId, TaskIndex, TaskState,
};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::model::*;
use crate::prelude::*;
use crate::{Store, StoreError, StoreResult};

mod accounts;
mod caches;
mod deliveries;
mod elements;
mod jobs;
mod market;
mod providers;
mod requests;
mod sessions;
mod system;
mod watches;
mod web;

/// Schema migrations, applied in order; `PRAGMA user_version` records how many ran.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE parties (
    id BLOB PRIMARY KEY, role TEXT NOT NULL, public_key BLOB NOT NULL, name TEXT NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE sessions (
    id BLOB PRIMARY KEY, party BLOB NOT NULL, inbound_acked INTEGER NOT NULL, outbound_head INTEGER NOT NULL,
    outbound_acked INTEGER NOT NULL, last_seen_ms INTEGER NOT NULL);
CREATE INDEX sessions_idle ON sessions(last_seen_ms);
CREATE TABLE outbox (
    session BLOB NOT NULL, seq INTEGER NOT NULL, reply_to INTEGER, body TEXT NOT NULL, result_id INTEGER,
    PRIMARY KEY (session, seq)) WITHOUT ROWID;
CREATE TABLE providers (
    id BLOB PRIMARY KEY, session BLOB, state TEXT NOT NULL, slots INTEGER NOT NULL, capacity INTEGER NOT NULL,
    assigned INTEGER NOT NULL DEFAULT 0, last_contact_ms INTEGER NOT NULL, profile TEXT);
CREATE TABLE elements (hash BLOB PRIMARY KEY, size INTEGER NOT NULL, created_ms INTEGER NOT NULL);
CREATE TABLE element_grants (
    owner BLOB NOT NULL, hash BLOB NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, created_ms INTEGER NOT NULL,
    PRIMARY KEY (owner, hash)) WITHOUT ROWID;
CREATE INDEX element_grants_hash ON element_grants(hash);
CREATE TABLE jobs (
    id BLOB PRIMARY KEY, client BLOB NOT NULL, properties TEXT NOT NULL, state TEXT NOT NULL,
    n_created INTEGER NOT NULL, n_queued INTEGER NOT NULL, n_running INTEGER NOT NULL, n_stopped INTEGER NOT NULL,
    n_succeeded INTEGER NOT NULL, n_failed INTEGER NOT NULL, created_ms INTEGER NOT NULL);
CREATE INDEX jobs_client ON jobs(client);
CREATE TABLE job_elements (job BLOB NOT NULL, hash BLOB NOT NULL, PRIMARY KEY (job, hash)) WITHOUT ROWID;
CREATE INDEX job_elements_hash ON job_elements(hash);
CREATE TABLE tasks (
    key INTEGER PRIMARY KEY, job BLOB NOT NULL, idx INTEGER NOT NULL, state TEXT NOT NULL, priority INTEGER NOT NULL,
    executable BLOB NOT NULL, data TEXT NOT NULL, params BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    checkpoint BLOB, progress REAL NOT NULL DEFAULT 0, status TEXT, cpu_ms INTEGER NOT NULL DEFAULT 0,
    UNIQUE (job, idx));
CREATE INDEX tasks_queued ON tasks(priority DESC, key) WHERE state = 'queued';
CREATE INDEX tasks_job_state ON tasks(job, state);
CREATE TABLE task_requests (task INTEGER NOT NULL, session BLOB NOT NULL, reply_to INTEGER NOT NULL);
CREATE INDEX task_requests_task ON task_requests(task);
CREATE TABLE assignments (
    id INTEGER PRIMARY KEY, task INTEGER NOT NULL, provider BLOB NOT NULL, active INTEGER NOT NULL,
    created_ms INTEGER NOT NULL, ended_ms INTEGER);
CREATE INDEX assignments_task ON assignments(task);
CREATE INDEX assignments_active_provider ON assignments(provider) WHERE active = 1;
CREATE TABLE results (
    id INTEGER PRIMARY KEY, task INTEGER NOT NULL UNIQUE, job BLOB NOT NULL, idx INTEGER NOT NULL, state TEXT NOT NULL,
    result TEXT, failure TEXT, cpu_ms INTEGER NOT NULL, attempts INTEGER NOT NULL, delivered INTEGER NOT NULL,
    created_ms INTEGER NOT NULL);
CREATE INDEX results_job ON results(job, id);
CREATE TABLE attachments (
    session BLOB NOT NULL, job BLOB NOT NULL, replay TEXT NOT NULL, cursor INTEGER NOT NULL,
    completion_sent INTEGER NOT NULL, PRIMARY KEY (session, job)) WITHOUT ROWID;
CREATE INDEX attachments_job ON attachments(job);
"#,
    r#"
CREATE TABLE ledger_accounts (
    id TEXT PRIMARY KEY, debits_posted INTEGER NOT NULL, credits_posted INTEGER NOT NULL,
    debits_pending INTEGER NOT NULL, credits_pending INTEGER NOT NULL, body TEXT NOT NULL);
CREATE TABLE ledger_transfers (
    id INTEGER PRIMARY KEY, key TEXT NOT NULL UNIQUE, debit TEXT NOT NULL, credit TEXT NOT NULL,
    created_ms INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX ledger_transfers_debit ON ledger_transfers(debit, created_ms);
CREATE INDEX ledger_transfers_credit ON ledger_transfers(credit, created_ms);
CREATE TABLE ledger_reservations (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE work_records (
    id INTEGER PRIMARY KEY, job BLOB NOT NULL, launched_ms INTEGER NOT NULL, billed INTEGER NOT NULL DEFAULT 0,
    body TEXT NOT NULL);
CREATE INDEX work_records_unbilled ON work_records(launched_ms) WHERE billed = 0;
CREATE INDEX work_records_job ON work_records(job);
CREATE TABLE notices (
    id INTEGER PRIMARY KEY, client BLOB NOT NULL, channel TEXT NOT NULL, body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, next_try_ms INTEGER NOT NULL, delivered INTEGER NOT NULL DEFAULT 0,
    last_error TEXT);
CREATE INDEX notices_due ON notices(next_try_ms) WHERE delivered = 0;
CREATE TABLE client_settings (client BLOB PRIMARY KEY, body TEXT NOT NULL);
ALTER TABLE jobs ADD COLUMN hold TEXT;
ALTER TABLE jobs ADD COLUMN completed_ms INTEGER;
ALTER TABLE jobs ADD COLUMN purge_warned INTEGER NOT NULL DEFAULT 0;
ALTER TABLE results ADD COLUMN archived BLOB;
-- Assignment ids key the journal of work: they must never be reused after a deletion.
CREATE TABLE assignments_v2 (
    id INTEGER PRIMARY KEY AUTOINCREMENT, task INTEGER NOT NULL, provider BLOB NOT NULL, active INTEGER NOT NULL,
    created_ms INTEGER NOT NULL, ended_ms INTEGER);
INSERT INTO assignments_v2 (id, task, provider, active, created_ms, ended_ms)
    SELECT id, task, provider, active, created_ms, ended_ms FROM assignments;
DROP TABLE assignments;
ALTER TABLE assignments_v2 RENAME TO assignments;
CREATE INDEX assignments_task ON assignments(task);
CREATE INDEX assignments_active_provider ON assignments(provider) WHERE active = 1;
"#,
    r#"
CREATE TABLE revocations (party BLOB PRIMARY KEY, reason TEXT NOT NULL, revoked_ms INTEGER NOT NULL);
CREATE TABLE logs (
    id INTEGER PRIMARY KEY, time_ms INTEGER NOT NULL, received_ms INTEGER NOT NULL, party BLOB NOT NULL, role TEXT NOT NULL,
    level TEXT NOT NULL, component TEXT NOT NULL, job BLOB, message TEXT NOT NULL);
CREATE INDEX logs_received ON logs(received_ms);
"#,
    r#"
-- Result assurance (P6.1, P6.2). The coordinator's state documents are opaque here; only what
-- a query selects on has a column of its own.
CREATE TABLE task_assurance (task INTEGER PRIMARY KEY, state TEXT NOT NULL, replicas_wanted INTEGER NOT NULL);
-- Few tasks want replicas at any time: the scheduler finds them without scanning the others.
CREATE INDEX task_assurance_wanting ON task_assurance(task) WHERE replicas_wanted > 0;
-- Every task a provider ever held, ended assignments included (re-checking a quarantined one).
CREATE INDEX assignments_provider_task ON assignments(provider, task);
CREATE TABLE provider_records (provider BLOB PRIMARY KEY, record TEXT NOT NULL, quarantined INTEGER NOT NULL);
CREATE INDEX provider_records_quarantined ON provider_records(provider) WHERE quarantined = 1;
CREATE TABLE known_answers (task INTEGER PRIMARY KEY, digest BLOB NOT NULL, created_ms INTEGER NOT NULL);
CREATE INDEX known_answers_newest ON known_answers(created_ms DESC, task DESC);
CREATE TABLE spot_checks (assignment INTEGER PRIMARY KEY, expected BLOB NOT NULL);
"#,
    requests::MIGRATION,
    market::MIGRATION,
    web::MIGRATION,
    watches::MIGRATION,
    market::EXECUTION_MIGRATION,
    caches::MIGRATION,
    elements::CHECKPOINT_MIGRATION,
    deliveries::MIGRATION,
    jobs::TRACE_MIGRATION,
];

/// SQLite behind a mutex: SQLite serialises writers anyway, and one connection keeps the
/// statement cache warm.
pub struct SqliteStore {
    connection: Mutex<Connection>,
}

impl SqliteStore {
    /// Open (creating if needed) and migrate the database at `path`.
    pub fn open(path: &Path) -> StoreResult<SqliteStore> {
        // The database holds the server's secrets: it and its folder are created owner-only.
        // SQLite gives its journal files the database file's mode.
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let mut folder = std::fs::DirBuilder::new();
            folder.recursive(true);
            #[cfg(unix)]
            std::os::unix::fs::DirBuilderExt::mode(&mut folder, 0o700);
            folder
                .create(parent)
                .map_err(|e| StoreError::Database(format!("cannot create {}: {e}", parent.display())))?;
        }
        let mut file = std::fs::OpenOptions::new();
        file.write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
        file.open(path)
            .map_err(|e| StoreError::Database(format!("cannot create the database {}: {e}", path.display())))?;
        let connection = Connection::open(path)
            .map_err(|e| StoreError::Database(format!("cannot open the database {}: {e}", path.display())))?;
        Self::setup(connection)
    }

    pub fn open_in_memory() -> StoreResult<SqliteStore> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(mut connection: Connection) -> StoreResult<SqliteStore> {
        // WAL with NORMAL sync survives a killed process (not a power cut mid-write, which
        // loses at most the last transactions, never corrupts).
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        connection.pragma_update(None, "foreign_keys", "OFF")?;
        connection.busy_timeout(std::time::Duration::from_secs(10))?;
        connection.set_prepared_statement_cache_capacity(128);
        let version: i64 = connection.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(0);
        if version > MIGRATIONS.len() {
            return Err(StoreError::Corrupt(format!(
                "the database has schema version {version}, newer than this program knows ({}): use a newer idlegrid",
                MIGRATIONS.len()
            )));
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = connection.transaction()?;
            tx.execute_batch(migration)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(SqliteStore { connection: Mutex::new(connection) })
    }
}

impl Store for SqliteStore {
    fn write<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        let mut connection = self.connection.lock().unwrap_or_else(|p| p.into_inner());
        let tx =
            connection.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate).map_err(StoreError::from)?;
        let result = f(&mut SqliteTx { tx: &tx });
        match result {
            Ok(value) => {
                tx.commit().map_err(StoreError::from)?;
                Ok(value)
            }
            Err(error) => {
                // Dropping the transaction rolls it back.
                drop(tx);
                Err(error)
            }
        }
    }
}

struct SqliteTx<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A stored count, time or id: never negative, and a negative one is corrupt data, not zero.
fn uint(value: i64) -> rusqlite::Result<u64> {
    u64::try_from(value).map_err(|_| corrupt(&format!("{value} stored where a non-negative number belongs")))
}

/// Data that does not decode: reported (as `StoreError::Corrupt`), never replaced by a default.
fn corrupt(what: &str) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Null, what.to_string().into())
}

fn get_party_id(row: &Row, i: usize) -> rusqlite::Result<PartyId> {
    let bytes: Vec<u8> = row.get(i)?;
    let hex = hex::encode(bytes);
    hex.parse().map_err(|_| corrupt("party id"))
}

fn get_uuid(row: &Row, i: usize) -> rusqlite::Result<uuid::Uuid> {
    let bytes: Vec<u8> = row.get(i)?;
    uuid::Uuid::from_slice(&bytes).map_err(|_| corrupt("uuid"))
}

fn get_job_id(row: &Row, i: usize) -> rusqlite::Result<JobId> {
    Ok(get_uuid(row, i)?.to_string().parse().expect("a uuid prints as a valid job id"))
}

fn get_session_id(row: &Row, i: usize) -> rusqlite::Result<SessionId> {
    Ok(get_uuid(row, i)?.to_string().parse().expect("a uuid prints as a valid session id"))
}

fn get_hash(row: &Row, i: usize) -> rusqlite::Result<ElementHash> {
    let bytes: Vec<u8> = row.get(i)?;
    let array: [u8; 32] = bytes.try_into().map_err(|_| corrupt("element hash"))?;
    Ok(ElementHash::from_bytes(array))
}

fn get_json<T: serde::de::DeserializeOwned>(row: &Row, i: usize) -> rusqlite::Result<T> {
    let text: String = row.get(i)?;
    serde_json::from_str(&text).map_err(|e| corrupt(&format!("json: {e}")))
}

fn get_opt_json<T: serde::de::DeserializeOwned>(row: &Row, i: usize) -> rusqlite::Result<Option<T>> {
    let text: Option<String> = row.get(i)?;
    text.map(|t| serde_json::from_str(&t).map_err(|e| corrupt(&format!("json: {e}")))).transpose()
}

fn json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("model types serialize")
}

fn task_state(row: &Row, i: usize) -> rusqlite::Result<TaskState> {
    let text: String = row.get(i)?;
    TaskState::parse(&text).ok_or_else(|| corrupt("task state"))
}

fn node_state_str(state: NodeState) -> &'static str {
    match state {
        NodeState::Active => "active",
        NodeState::Paused => "paused",
        NodeState::ShuttingDown => "shutting_down",
    }
}

fn node_state(text: &str) -> rusqlite::Result<NodeState> {
    match text {
        "active" => Ok(NodeState::Active),
        "paused" => Ok(NodeState::Paused),
        "shutting_down" => Ok(NodeState::ShuttingDown),
        _ => Err(corrupt(&format!("unknown provider state {text:?}"))),
    }
}

fn replay_str(replay: Replay) -> &'static str {
    match replay {
        Replay::Undelivered => "undelivered",
        Replay::All => "all",
        Replay::None => "none",
    }
}

fn replay(text: &str) -> rusqlite::Result<Replay> {
    match text {
        "undelivered" => Ok(Replay::Undelivered),
        "all" => Ok(Replay::All),
        "none" => Ok(Replay::None),
        _ => Err(corrupt(&format!("unknown replay {text:?}"))),
    }
}

fn ledger_error(error: rusqlite::Error) -> idlegrid_ledger::LedgerError {
    idlegrid_ledger::LedgerError::storage(error)
}

fn ledger_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, idlegrid_ledger::LedgerError> {
    serde_json::from_str(text).map_err(idlegrid_ledger::LedgerError::storage)
}

/// `replicas_wanted > 0` literally, so that the partial index task_assurance_wanting applies;
/// CROSS JOIN keeps the assurance rows the outer loop (without statistics SQLite would rather
/// scan every task for `state = 'running'`).
const TASKS_WANTING_REPLICAS: &str =
    "SELECT t.key, t.priority FROM task_assurance a CROSS JOIN tasks t ON t.key = a.task
     WHERE a.replicas_wanted > 0 AND t.state = 'running' ORDER BY t.priority DESC, t.key LIMIT ?1";

/// Through assignments_provider_task: the provider's tasks come in key order, each looked up once.
const ASSURED_TASKS_OF_PROVIDER: &str =
    "SELECT DISTINCT a.task FROM assignments a CROSS JOIN task_assurance s ON s.task = a.task
     WHERE a.provider = ?1 ORDER BY a.task LIMIT ?2";

impl SqliteTx<'_> {
    fn collect<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        f: impl FnMut(&Row) -> rusqlite::Result<T>,
    ) -> StoreResult<Vec<T>> {
        let mut stmt = self.tx.prepare_cached(sql)?;
        let rows = stmt.query_map(params, f)?;
        rows.collect::<Result<Vec<_>, _>>().map_err(Into::into)
    }
}

impl Tx for SqliteTx<'_> {
    fn market(&mut self) -> &mut dyn crate::market::MarketTx {
        self
    }

    fn web(&mut self) -> &mut dyn crate::web::WebTx {
        self
    }

    fn watches(&mut self) -> &mut dyn crate::watches::WatchTx {
        self
    }

    fn caches(&mut self) -> &mut dyn crate::caches::CacheTx {
        self
    }

    fn deliveries(&mut self) -> &mut dyn crate::deliveries::DeliveryTx {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(store: &SqliteStore, sql: &str, params: impl rusqlite::Params) -> String {
        let connection = store.connection.lock().unwrap();
        let mut statement = connection.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let rows = statement.query_map(params, |r| r.get::<_, String>(3)).unwrap();
        rows.collect::<Result<Vec<_>, _>>().unwrap().join("\n")
    }

    #[test]
    fn a_corrupt_row_is_an_error_not_a_default() {
        let store = SqliteStore::open_in_memory().unwrap();
        let id = PartyId::from_public_key(&[7; 32]);
        store.write(|tx| tx.upsert_provider(&id, NodeState::Active, 2, 2, 1)).unwrap();
        let read = |store: &SqliteStore| store.read(|tx| tx.provider(&id));
        assert_eq!(read(&store).unwrap().unwrap().last_contact_ms, 1);
        for corruption in [
            "UPDATE providers SET last_contact_ms = -5",
            "UPDATE providers SET last_contact_ms = 1, state = 'dancing'",
            "UPDATE providers SET state = 'active', session = x'0102'",
        ] {
            store.connection.lock().unwrap().execute(corruption, []).unwrap();
            match read(&store) {
                Err(StoreError::Corrupt(message)) => assert!(!message.is_empty()),
                other => panic!("{corruption}: {other:?}"),
            }
        }
    }

    #[test]
    fn corrupt_rows_are_errors_as_in_every_store() {
        let store = SqliteStore::open_in_memory().unwrap();
        crate::conformance::corrupt_rows_are_errors(&store, |store, statement| {
            store.connection.lock().unwrap().execute_batch(statement).unwrap();
        });
    }

    #[test]
    fn assurance_queries_use_their_indexes() {
        let store = SqliteStore::open_in_memory().unwrap();
        let wanting = plan(&store, TASKS_WANTING_REPLICAS, [10]);
        assert!(wanting.contains("task_assurance_wanting") && !wanting.contains("SCAN t"), "{wanting}");
        let of_provider = plan(&store, ASSURED_TASKS_OF_PROVIDER, params![&[0u8; 32][..], 10]);
        assert!(of_provider.contains("assignments_provider_task"), "{of_provider}");
    }

    #[cfg(unix)]
    #[test]
    fn the_database_and_its_folder_are_created_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data").join("state.db");
        let store = SqliteStore::open(&path).unwrap();
        store.write(|tx| tx.set_meta("k", b"secret")).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        let wal = path.with_extension("db-wal");
        assert_eq!(mode(&wal), 0o600, "the journal holds the same secrets");
    }
}
