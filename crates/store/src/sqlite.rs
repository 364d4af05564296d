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
use crate::tx::Tx;
use crate::{Store, StoreError, StoreResult};

mod market;
mod requests;

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
    market::EXECUTION_MIGRATION,
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

fn replay(text: &str) -> Replay {
    match text {
        "all" => Replay::All,
        "none" => Replay::None,
        _ => Replay::Undelivered,
    }
}

const TASK_COLUMNS: &str =
    "key, job, idx, state, priority, executable, data, params, attempts, checkpoint, progress, status, cpu_ms";

fn task_row(row: &Row) -> rusqlite::Result<TaskRow> {
    let data: BTreeMap<String, ElementHash> = get_json(row, 6)?;
    let checkpoint: Option<Vec<u8>> = row.get(9)?;
    Ok(TaskRow {
        key: row.get(0)?,
        job: get_job_id(row, 1)?,
        index: uint(row.get(2)?)?,
        state: task_state(row, 3)?,
        priority: row.get(4)?,
        executable: get_hash(row, 5)?,
        data,
        params: row.get(7)?,
        attempts: row.get(8)?,
        checkpoint: checkpoint
            .map(|b| b.try_into().map(ElementHash::from_bytes).map_err(|_| corrupt("checkpoint hash")))
            .transpose()?,
        progress: row.get::<_, f64>(10)? as f32,
        status: get_opt_json(row, 11)?,
        cpu_ms: uint(row.get(12)?)?,
    })
}

const JOB_COLUMNS: &str =
    "id, client, properties, state, n_created, n_queued, n_running, n_stopped, n_succeeded, n_failed, created_ms, hold";

fn job_row(row: &Row) -> rusqlite::Result<JobRow> {
    let state: String = row.get(3)?;
    Ok(JobRow {
        id: get_job_id(row, 0)?,
        client: get_party_id(row, 1)?,
        properties: get_json(row, 2)?,
        state: JobState::parse(&state).ok_or_else(|| corrupt("job state"))?,
        counts: JobCounts {
            created: uint(row.get(4)?)?,
            queued: uint(row.get(5)?)?,
            running: uint(row.get(6)?)?,
            stopped: uint(row.get(7)?)?,
            succeeded: uint(row.get(8)?)?,
            failed: uint(row.get(9)?)?,
        },
        created_ms: uint(row.get(10)?)?,
        hold: row.get(11)?,
    })
}

fn assignment_row(row: &Row) -> rusqlite::Result<AssignmentRow> {
    let active: bool = row.get(3)?;
    Ok(AssignmentRow {
        id: AssignmentId(uint(row.get(0)?)?),
        task: row.get(1)?,
        provider: get_party_id(row, 2)?,
        state: if active { AssignmentRowState::Active } else { AssignmentRowState::Ended },
        created_ms: uint(row.get(4)?)?,
    })
}

/// A result's payload: the JSON column, or the archived (gzip) copy of it.
fn result_payload(row: &Row) -> rusqlite::Result<Option<Payload>> {
    use std::io::Read;
    if let Some(archived) = row.get::<_, Option<Vec<u8>>>(10)? {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&archived[..])
            .read_to_string(&mut text)
            .map_err(|_| corrupt("archived result"))?;
        return serde_json::from_str(&text).map(Some).map_err(|_| corrupt("archived result"));
    }
    get_opt_json(row, 5)
}

fn result_row(row: &Row) -> rusqlite::Result<ResultRow> {
    Ok(ResultRow {
        id: row.get(0)?,
        result: NewResult {
            task: row.get(1)?,
            job: get_job_id(row, 2)?,
            index: uint(row.get(3)?)?,
            state: task_state(row, 4)?,
            result: result_payload(row)?,
            failure: get_opt_json(row, 6)?,
            cpu_ms: uint(row.get(7)?)?,
            attempts: row.get(8)?,
        },
        delivered: row.get(9)?,
    })
}

fn attachment_row(row: &Row) -> rusqlite::Result<AttachmentRow> {
    let replay_text: String = row.get(2)?;
    Ok(AttachmentRow {
        session: get_session_id(row, 0)?,
        job: get_job_id(row, 1)?,
        replay: replay(&replay_text),
        cursor: row.get(3)?,
        completion_sent: row.get(4)?,
    })
}

const ASSIGNMENT_COLUMNS: &str = "id, task, provider, active, created_ms";
const RESULT_COLUMNS: &str = "id, task, job, idx, state, result, failure, cpu_ms, attempts, delivered, archived";
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

const PROVIDER_COLUMNS: &str = "id, session, state, slots, capacity, assigned, last_contact_ms";

fn provider_row(row: &Row) -> rusqlite::Result<ProviderRow> {
    let session: Option<Vec<u8>> = row.get(1)?;
    let state: String = row.get(2)?;
    Ok(ProviderRow {
        id: get_party_id(row, 0)?,
        session: session
            .map(|b| uuid::Uuid::from_slice(&b).map_err(|_| corrupt("provider session id")))
            .transpose()?
            .map(|u| u.to_string().parse().expect("a uuid prints as a valid session id")),
        state: node_state(&state)?,
        slots: row.get(3)?,
        capacity: row.get(4)?,
        assigned: row.get(5)?,
        last_contact_ms: uint(row.get(6)?)?,
    })
}

impl Tx for SqliteTx<'_> {
    fn market(&mut self) -> &mut dyn crate::market::MarketTx {
        self
    }

    fn ledger(&mut self) -> &mut dyn idlegrid_ledger::LedgerStore {
        self
    }

    fn mark_job_completed(&mut self, id: JobId, now_ms: u64) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE jobs SET completed_ms = COALESCE(completed_ms, ?2) WHERE id = ?1")?
            .execute(params![&id.as_uuid().as_bytes()[..], int(now_ms)])?;
        Ok(())
    }

    fn completed_jobs_with_undelivered_results(
        &mut self,
        completed_before_ms: u64,
        limit: u32,
    ) -> StoreResult<Vec<(JobId, u64, bool)>> {
        self.collect(
            "SELECT j.id, j.completed_ms, j.purge_warned FROM jobs j
             WHERE j.state = 'completed' AND j.completed_ms IS NOT NULL AND j.completed_ms < ?1
               AND EXISTS (SELECT 1 FROM results r WHERE r.job = j.id AND r.delivered = 0)
             ORDER BY j.completed_ms LIMIT ?2",
            params![int(completed_before_ms), limit],
            |row| Ok((get_job_id(row, 0)?, uint(row.get(1)?)?, row.get(2)?)),
        )
    }

    fn set_purge_warned(&mut self, id: JobId) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE jobs SET purge_warned = 1 WHERE id = ?1")?
            .execute([&id.as_uuid().as_bytes()[..]])?;
        Ok(())
    }

    fn archive_results(&mut self, job: JobId, delivered: bool) -> StoreResult<u64> {
        use std::io::Write;
        let rows: Vec<(i64, Option<String>)> = self.collect(
            "SELECT id, result FROM results WHERE job = ?1 AND archived IS NULL AND result IS NOT NULL AND delivered = ?2",
            params![&job.as_uuid().as_bytes()[..], delivered],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )?;
        let mut stmt = self.tx.prepare_cached("UPDATE results SET archived = ?2, result = NULL WHERE id = ?1")?;
        let mut archived = 0;
        for (id, result) in rows {
            let Some(result) = result else { continue };
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(result.as_bytes()).map_err(|e| StoreError::Database(e.to_string()))?;
            let compressed = encoder.finish().map_err(|e| StoreError::Database(e.to_string()))?;
            stmt.execute(params![id, compressed])?;
            archived += 1;
        }
        Ok(archived)
    }

    fn set_job_hold(&mut self, id: JobId, hold: Option<&str>) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE jobs SET hold = ?2 WHERE id = ?1")?
            .execute(params![&id.as_uuid().as_bytes()[..], hold])?;
        Ok(())
    }

    fn held_jobs_of_client(&mut self, client: &PartyId, hold: &str) -> StoreResult<Vec<JobRow>> {
        self.collect(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE client = ?1 AND hold = ?2 ORDER BY created_ms, id"),
            params![&client.as_bytes()[..], hold],
            job_row,
        )
    }

    fn upsert_work_record(&mut self, record: &idlegrid_ledger::WorkRecord) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO work_records (id, job, launched_ms, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET job = ?2, launched_ms = ?3, body = ?4",
            )?
            .execute(params![
                int(record.id),
                &record.job.as_uuid().as_bytes()[..],
                int(record.launched_ms),
                json(record)
            ])?;
        Ok(())
    }

    fn work_record(&mut self, id: u64) -> StoreResult<Option<idlegrid_ledger::WorkRecord>> {
        Ok(self
            .tx
            .prepare_cached("SELECT body FROM work_records WHERE id = ?1")?
            .query_row([int(id)], |row| get_json(row, 0))
            .optional()?)
    }

    fn unbilled_work_records(
        &mut self,
        launched_before_ms: u64,
        limit: u32,
    ) -> StoreResult<Vec<idlegrid_ledger::WorkRecord>> {
        self.collect(
            "SELECT body FROM work_records WHERE billed = 0 AND launched_ms < ?1 ORDER BY launched_ms, id LIMIT ?2",
            params![int(launched_before_ms), limit],
            |row| get_json(row, 0),
        )
    }

    fn mark_work_records_billed(&mut self, ids: &[u64]) -> StoreResult<()> {
        let mut stmt = self.tx.prepare_cached("UPDATE work_records SET billed = 1 WHERE id = ?1")?;
        for id in ids {
            stmt.execute([int(*id)])?;
        }
        Ok(())
    }

    fn work_records_of_job(&mut self, job: JobId) -> StoreResult<Vec<idlegrid_ledger::WorkRecord>> {
        self.collect(
            "SELECT body FROM work_records WHERE job = ?1 ORDER BY id",
            [&job.as_uuid().as_bytes()[..]],
            |row| get_json(row, 0),
        )
    }

    fn unbilled_records_of_job(&mut self, job: JobId) -> StoreResult<u64> {
        Ok(uint(
            self.tx
                .prepare_cached("SELECT COUNT(*) FROM work_records WHERE job = ?1 AND billed = 0")?
                .query_row([&job.as_uuid().as_bytes()[..]], |r| r.get(0))?,
        )?)
    }

    fn push_notice(&mut self, client: &PartyId, channel: &str, body: &str, now_ms: u64) -> StoreResult<i64> {
        Ok(self
            .tx
            .prepare_cached(
                "INSERT INTO notices (client, channel, body, next_try_ms) VALUES (?1, ?2, ?3, ?4) RETURNING id",
            )?
            .query_row(params![&client.as_bytes()[..], channel, body, int(now_ms)], |r| r.get(0))?)
    }

    fn due_notices(&mut self, now_ms: u64, limit: u32) -> StoreResult<Vec<NoticeRow>> {
        self.collect(
            "SELECT id, client, channel, body, attempts, next_try_ms FROM notices
             WHERE delivered = 0 AND next_try_ms <= ?1 ORDER BY next_try_ms, id LIMIT ?2",
            params![int(now_ms), limit],
            |row| {
                Ok(NoticeRow {
                    id: row.get(0)?,
                    client: get_party_id(row, 1)?,
                    channel: row.get(2)?,
                    body: row.get(3)?,
                    attempts: row.get(4)?,
                    next_try_ms: uint(row.get(5)?)?,
                })
            },
        )
    }

    fn notice_attempted(&mut self, id: i64, delivered: bool, next_try_ms: u64, error: Option<&str>) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE notices SET attempts = attempts + 1, delivered = ?2, next_try_ms = ?3, last_error = ?4 WHERE id = ?1")?
            .execute(params![id, delivered, int(next_try_ms), error])?;
        Ok(())
    }

    fn client_settings(&mut self, client: &PartyId) -> StoreResult<Option<String>> {
        Ok(self
            .tx
            .prepare_cached("SELECT body FROM client_settings WHERE client = ?1")?
            .query_row([&client.as_bytes()[..]], |r| r.get(0))
            .optional()?)
    }

    fn set_client_settings(&mut self, client: &PartyId, body: &str) -> StoreResult<()> {
        self.tx
            .prepare_cached("INSERT INTO client_settings (client, body) VALUES (?1, ?2) ON CONFLICT (client) DO UPDATE SET body = ?2")?
            .execute(params![&client.as_bytes()[..], body])?;
        Ok(())
    }

    fn meta(&mut self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        Ok(self
            .tx
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    fn set_meta(&mut self, key: &str, value: &[u8]) -> StoreResult<()> {
        self.tx
            .prepare_cached("INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = ?2")?
            .execute(params![key, value])?;
        Ok(())
    }

    fn insert_party(&mut self, party: &PartyRow) -> StoreResult<bool> {
        let n = self
            .tx
            .prepare_cached(
                "INSERT INTO parties (id, role, public_key, name, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![
                &party.id.as_bytes()[..],
                party.role.as_str(),
                &party.public_key[..],
                party.name,
                int(party.created_ms)
            ])?;
        Ok(n == 1)
    }

    fn party(&mut self, id: &PartyId) -> StoreResult<Option<PartyRow>> {
        Ok(self
            .tx
            .prepare_cached("SELECT id, role, public_key, name, created_ms FROM parties WHERE id = ?1")?
            .query_row([&id.as_bytes()[..]], |row| {
                let role: String = row.get(1)?;
                let key: Vec<u8> = row.get(2)?;
                Ok(PartyRow {
                    id: get_party_id(row, 0)?,
                    role: role.parse::<Role>().map_err(|_| corrupt("role"))?,
                    public_key: key.try_into().map_err(|_| corrupt("public key"))?,
                    name: row.get(3)?,
                    created_ms: uint(row.get(4)?)?,
                })
            })
            .optional()?)
    }

    fn insert_logs(&mut self, lines: &[LogRow]) -> StoreResult<()> {
        let mut statement = self.tx.prepare_cached(
            "INSERT INTO logs (time_ms, received_ms, party, role, level, component, job, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for line in lines {
            statement.execute(params![
                int(line.time_ms),
                int(line.received_ms),
                &line.party.as_bytes()[..],
                line.role.as_str(),
                line.level,
                line.component,
                line.job.map(|j| j.as_uuid().as_bytes().to_vec()),
                line.message
            ])?;
        }
        Ok(())
    }

    fn logs(&mut self, filter: &LogFilter) -> StoreResult<Vec<LogRow>> {
        self.collect(
            "SELECT id, time_ms, received_ms, party, role, level, component, job, message FROM logs
             WHERE (?1 IS NULL OR component = ?1) AND (?2 IS NULL OR party = ?2) AND (?3 IS NULL OR job = ?3)
               AND (?4 IS NULL OR level = ?4) AND received_ms >= ?5 AND received_ms < ?6
             ORDER BY id DESC LIMIT ?7",
            params![
                filter.component,
                filter.party.as_ref().map(|p| p.as_bytes().to_vec()),
                filter.job.map(|j| j.as_uuid().as_bytes().to_vec()),
                filter.level,
                int(filter.since_ms.unwrap_or(0)),
                int(filter.until_ms.unwrap_or(i64::MAX as u64)),
                i64::from(filter.limit)
            ],
            |row| {
                let role: String = row.get(4)?;
                let job: Option<Vec<u8>> = row.get(7)?;
                Ok(LogRow {
                    id: uint(row.get(0)?)?,
                    time_ms: uint(row.get(1)?)?,
                    received_ms: uint(row.get(2)?)?,
                    party: get_party_id(row, 3)?,
                    role: role.parse::<Role>().map_err(|_| corrupt("role"))?,
                    level: row.get(5)?,
                    component: row.get(6)?,
                    job: match job {
                        Some(_) => Some(get_job_id(row, 7)?),
                        None => None,
                    },
                    message: row.get(8)?,
                })
            },
        )
    }

    fn delete_logs_before(&mut self, before_ms: u64) -> StoreResult<u64> {
        Ok(self.tx.prepare_cached("DELETE FROM logs WHERE received_ms < ?1")?.execute([int(before_ms)])? as u64)
    }

    fn census(&mut self, contact_since_ms: u64) -> StoreResult<Census> {
        // From the jobs' counters, so the cost grows with jobs, not tasks.
        let (queued, running, active): (i64, i64, i64) = self
            .tx
            .prepare_cached(
                "SELECT COALESCE(SUM(n_queued), 0), COALESCE(SUM(n_running), 0),
                    COALESCE(SUM(CASE WHEN state <> 'completed' THEN 1 ELSE 0 END), 0) FROM jobs",
            )?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        let engines: i64 = self
            .tx
            .prepare_cached("SELECT COUNT(*) FROM providers WHERE session IS NOT NULL AND last_contact_ms >= ?1")?
            .query_row([int(contact_since_ms)], |r| r.get(0))?;
        Ok(Census {
            tasks_queued: uint(queued)?,
            tasks_running: uint(running)?,
            jobs_active: uint(active)?,
            engines_connected: uint(engines)?,
        })
    }

    fn revoke_party(&mut self, r: &RevocationRow) -> StoreResult<bool> {
        let n = self
            .tx
            .prepare_cached("INSERT INTO revocations (party, reason, revoked_ms) VALUES (?1, ?2, ?3) ON CONFLICT (party) DO NOTHING")?
            .execute(params![&r.party.as_bytes()[..], r.reason, int(r.revoked_ms)])?;
        Ok(n == 1)
    }

    fn revocation(&mut self, party: &PartyId) -> StoreResult<Option<RevocationRow>> {
        Ok(self
            .tx
            .prepare_cached("SELECT party, reason, revoked_ms FROM revocations WHERE party = ?1")?
            .query_row([&party.as_bytes()[..]], |row| {
                Ok(RevocationRow { party: get_party_id(row, 0)?, reason: row.get(1)?, revoked_ms: uint(row.get(2)?)? })
            })
            .optional()?)
    }

    fn revocations(&mut self) -> StoreResult<Vec<RevocationRow>> {
        let mut statement =
            self.tx.prepare_cached("SELECT party, reason, revoked_ms FROM revocations ORDER BY revoked_ms, party")?;
        let rows = statement.query_map([], |row| {
            Ok(RevocationRow { party: get_party_id(row, 0)?, reason: row.get(1)?, revoked_ms: uint(row.get(2)?)? })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn insert_session(&mut self, party: &PartyId, s: &SessionRow) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO sessions (id, party, inbound_acked, outbound_head, outbound_acked, last_seen_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                &s.id.as_uuid().as_bytes()[..],
                &party.as_bytes()[..],
                int(s.inbound_acked),
                int(s.outbound_head),
                int(s.outbound_acked),
                int(s.last_seen_ms)
            ])?;
        Ok(())
    }

    fn session(&mut self, id: SessionId) -> StoreResult<Option<OwnedSession>> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT party, inbound_acked, outbound_head, outbound_acked, last_seen_ms FROM sessions WHERE id = ?1",
            )?
            .query_row([&id.as_uuid().as_bytes()[..]], |row| {
                Ok(OwnedSession {
                    party: get_party_id(row, 0)?,
                    session: SessionRow {
                        id,
                        inbound_acked: uint(row.get(1)?)?,
                        outbound_head: uint(row.get(2)?)?,
                        outbound_acked: uint(row.get(3)?)?,
                        last_seen_ms: uint(row.get(4)?)?,
                    },
                })
            })
            .optional()?)
    }

    fn set_session_inbound(&mut self, id: SessionId, inbound_acked: u64, now_ms: u64) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE sessions SET inbound_acked = ?2, last_seen_ms = ?3 WHERE id = ?1")?
            .execute(params![&id.as_uuid().as_bytes()[..], int(inbound_acked), int(now_ms)])?;
        Ok(())
    }

    fn touch_session(&mut self, id: SessionId, now_ms: u64) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE sessions SET last_seen_ms = ?2 WHERE id = ?1")?
            .execute(params![&id.as_uuid().as_bytes()[..], int(now_ms)])?;
        Ok(())
    }

    fn delete_session(&mut self, id: SessionId) -> StoreResult<()> {
        let key = &id.as_uuid().as_bytes()[..];
        self.tx.prepare_cached("DELETE FROM outbox WHERE session = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM attachments WHERE session = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM sessions WHERE id = ?1")?.execute([key])?;
        self.tx.prepare_cached("UPDATE providers SET session = NULL WHERE session = ?1")?.execute([key])?;
        Ok(())
    }

    fn sessions_idle_since(&mut self, before_ms: u64, limit: u32) -> StoreResult<Vec<SessionId>> {
        self.collect(
            "SELECT id FROM sessions WHERE last_seen_ms < ?1 LIMIT ?2",
            params![int(before_ms), limit],
            |row| get_session_id(row, 0),
        )
    }

    fn push_outbox(
        &mut self,
        session: SessionId,
        reply_to: Option<u64>,
        body: &str,
        result: Option<i64>,
    ) -> StoreResult<u64> {
        let key = &session.as_uuid().as_bytes()[..];
        let seq: i64 = self
            .tx
            .prepare_cached(
                "UPDATE sessions SET outbound_head = outbound_head + 1 WHERE id = ?1 RETURNING outbound_head",
            )?
            .query_row([key], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::Conflict(format!("session {session} does not exist")))?;
        self.tx
            .prepare_cached("INSERT INTO outbox (session, seq, reply_to, body, result_id) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![key, seq, reply_to.map(int), body, result])?;
        Ok(uint(seq)?)
    }

    fn outbox_after(&mut self, session: SessionId, after: u64, limit: u32) -> StoreResult<Vec<OutboxRow>> {
        self.collect(
            "SELECT seq, reply_to, body FROM outbox WHERE session = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            params![&session.as_uuid().as_bytes()[..], int(after), limit],
            |row| {
                Ok(OutboxRow {
                    seq: uint(row.get(0)?)?,
                    reply_to: row.get::<_, Option<i64>>(1)?.map(uint).transpose()?,
                    body: row.get(2)?,
                })
            },
        )
    }

    fn ack_outbox(&mut self, session: SessionId, upto: u64) -> StoreResult<Vec<i64>> {
        let key = &session.as_uuid().as_bytes()[..];
        let results = self.collect(
            "DELETE FROM outbox WHERE session = ?1 AND seq <= ?2 RETURNING result_id",
            params![key, int(upto)],
            |row| row.get::<_, Option<i64>>(0),
        )?;
        self.tx
            .prepare_cached(
                "UPDATE sessions SET outbound_acked = MAX(outbound_acked, MIN(?2, outbound_head)) WHERE id = ?1",
            )?
            .execute(params![key, int(upto)])?;
        Ok(results.into_iter().flatten().collect())
    }

    fn upsert_provider(
        &mut self,
        id: &PartyId,
        state: NodeState,
        slots: u32,
        capacity: u32,
        now_ms: u64,
    ) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO providers (id, state, slots, capacity, last_contact_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET state = ?2, slots = ?3, capacity = ?4, last_contact_ms = ?5",
            )?
            .execute(params![&id.as_bytes()[..], node_state_str(state), slots, capacity, int(now_ms)])?;
        Ok(())
    }

    fn set_provider_profile(&mut self, id: &PartyId, profile_json: &str) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE providers SET profile = ?2 WHERE id = ?1")?
            .execute(params![&id.as_bytes()[..], profile_json])?;
        Ok(())
    }

    fn provider_profile(&mut self, id: &PartyId) -> StoreResult<Option<String>> {
        Ok(self
            .tx
            .prepare_cached("SELECT profile FROM providers WHERE id = ?1")?
            .query_row([&id.as_bytes()[..]], |row| row.get::<_, Option<String>>(0))
            .optional()?
            .flatten())
    }

    fn set_provider_session(&mut self, id: &PartyId, session: Option<SessionId>) -> StoreResult<()> {
        let session = session.map(|s| s.as_uuid().as_bytes().to_vec());
        let n = self
            .tx
            .prepare_cached("UPDATE providers SET session = ?2 WHERE id = ?1")?
            .execute(params![&id.as_bytes()[..], session])?;
        if n == 0 {
            self.tx
                .prepare_cached(
                    "INSERT INTO providers (id, session, state, slots, capacity, last_contact_ms) VALUES (?1, ?2, 'paused', 0, 0, 0)",
                )?
                .execute(params![&id.as_bytes()[..], session])?;
        }
        Ok(())
    }

    fn touch_provider(&mut self, id: &PartyId, now_ms: u64) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE providers SET last_contact_ms = MAX(last_contact_ms, ?2) WHERE id = ?1")?
            .execute(params![&id.as_bytes()[..], int(now_ms)])?;
        Ok(())
    }

    fn provider(&mut self, id: &PartyId) -> StoreResult<Option<ProviderRow>> {
        Ok(self
            .tx
            .prepare_cached(&format!("SELECT {PROVIDER_COLUMNS} FROM providers WHERE id = ?1"))?
            .query_row([&id.as_bytes()[..]], provider_row)
            .optional()?)
    }

    fn providers_heard_since(&mut self, contact_since_ms: u64, limit: u32) -> StoreResult<Vec<ProviderRow>> {
        self.collect(
            &format!("SELECT {PROVIDER_COLUMNS} FROM providers WHERE last_contact_ms >= ?1 ORDER BY id LIMIT ?2"),
            params![int(contact_since_ms), limit],
            provider_row,
        )
    }

    fn providers_with_room(&mut self, contact_since_ms: u64) -> StoreResult<Vec<ProviderRoom>> {
        self.collect(
            "SELECT id, session, capacity - assigned FROM providers
             WHERE state = 'active' AND session IS NOT NULL AND capacity > assigned AND last_contact_ms >= ?1
             ORDER BY id",
            params![int(contact_since_ms)],
            |row| Ok(ProviderRoom { id: get_party_id(row, 0)?, session: get_session_id(row, 1)?, room: row.get(2)? }),
        )
    }

    fn insert_element(&mut self, hash: &ElementHash, size: u64, now_ms: u64) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO elements (hash, size, created_ms) VALUES (?1, ?2, ?3) ON CONFLICT (hash) DO NOTHING",
            )?
            .execute(params![&hash.as_bytes()[..], int(size), int(now_ms)])?;
        Ok(())
    }

    fn element_size(&mut self, hash: &ElementHash) -> StoreResult<Option<u64>> {
        Ok(self
            .tx
            .prepare_cached("SELECT size FROM elements WHERE hash = ?1")?
            .query_row([&hash.as_bytes()[..]], |r| r.get::<_, i64>(0))
            .optional()?
            .map(uint)
            .transpose()?)
    }

    fn grant_element(
        &mut self,
        owner: &PartyId,
        hash: &ElementHash,
        kind: ElementKind,
        name: &str,
        now_ms: u64,
    ) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO element_grants (owner, hash, kind, name, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (owner, hash) DO UPDATE SET kind = ?3, name = CASE WHEN ?4 = '' THEN name ELSE ?4 END",
            )?
            .execute(params![&owner.as_bytes()[..], &hash.as_bytes()[..], kind.as_str(), name, int(now_ms)])?;
        Ok(())
    }

    fn element_grant(&mut self, owner: &PartyId, hash: &ElementHash) -> StoreResult<Option<ElementGrant>> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT g.kind, g.name, e.size FROM element_grants g JOIN elements e ON e.hash = g.hash
                 WHERE g.owner = ?1 AND g.hash = ?2",
            )?
            .query_row([&owner.as_bytes()[..], &hash.as_bytes()[..]], |row| {
                let kind: String = row.get(0)?;
                Ok(ElementGrant {
                    kind: kind.parse().map_err(|_| corrupt("element kind"))?,
                    name: row.get(1)?,
                    size: uint(row.get(2)?)?,
                })
            })
            .optional()?)
    }

    fn revoke_element(&mut self, owner: &PartyId, hash: &ElementHash) -> StoreResult<bool> {
        let n = self
            .tx
            .prepare_cached("DELETE FROM element_grants WHERE owner = ?1 AND hash = ?2")?
            .execute([&owner.as_bytes()[..], &hash.as_bytes()[..]])?;
        Ok(n > 0)
    }

    fn add_job_elements(&mut self, job: JobId, hashes: &[ElementHash]) -> StoreResult<()> {
        let mut stmt =
            self.tx.prepare_cached("INSERT INTO job_elements (job, hash) VALUES (?1, ?2) ON CONFLICT DO NOTHING")?;
        for hash in hashes {
            stmt.execute([&job.as_uuid().as_bytes()[..], &hash.as_bytes()[..]])?;
        }
        Ok(())
    }

    fn unreferenced_elements(&mut self, created_before_ms: u64, limit: u32) -> StoreResult<Vec<ElementHash>> {
        self.collect(
            "SELECT e.hash FROM elements e
             WHERE e.created_ms < ?1
               AND NOT EXISTS (SELECT 1 FROM element_grants g WHERE g.hash = e.hash)
               AND NOT EXISTS (SELECT 1 FROM job_elements j WHERE j.hash = e.hash)
             LIMIT ?2",
            params![int(created_before_ms), limit],
            |row| get_hash(row, 0),
        )
    }

    fn element_usage(&mut self, owner: &PartyId) -> StoreResult<ElementUsage> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT COALESCE(SUM(e.size), 0), COUNT(*) FROM element_grants g JOIN elements e ON e.hash = g.hash
                 WHERE g.owner = ?1",
            )?
            .query_row([&owner.as_bytes()[..]], |row| {
                Ok(ElementUsage { bytes: uint(row.get(0)?)?, elements: uint(row.get(1)?)? })
            })?)
    }

    fn element_visible_to_client(&mut self, client: &PartyId, hash: &ElementHash) -> StoreResult<bool> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM element_grants WHERE owner = ?1 AND hash = ?2)
                     OR EXISTS (SELECT 1 FROM job_elements je JOIN jobs j ON j.id = je.job
                                WHERE je.hash = ?2 AND j.client = ?1)",
            )?
            .query_row([&client.as_bytes()[..], &hash.as_bytes()[..]], |r| r.get(0))?)
    }

    fn delete_element(&mut self, hash: &ElementHash) -> StoreResult<()> {
        self.tx.prepare_cached("DELETE FROM elements WHERE hash = ?1")?.execute([&hash.as_bytes()[..]])?;
        Ok(())
    }

    fn insert_job(&mut self, job: &JobRow) -> StoreResult<bool> {
        let c = &job.counts;
        let n = self
            .tx
            .prepare_cached(
                "INSERT INTO jobs (id, client, properties, state, n_created, n_queued, n_running, n_stopped, n_succeeded,
                                   n_failed, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![
                &job.id.as_uuid().as_bytes()[..],
                &job.client.as_bytes()[..],
                json(&job.properties),
                job.state.as_str(),
                int(c.created),
                int(c.queued),
                int(c.running),
                int(c.stopped),
                int(c.succeeded),
                int(c.failed),
                int(job.created_ms)
            ])?;
        Ok(n == 1)
    }

    fn job(&mut self, id: JobId) -> StoreResult<Option<JobRow>> {
        Ok(self
            .tx
            .prepare_cached(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?1"))?
            .query_row([&id.as_uuid().as_bytes()[..]], job_row)
            .optional()?)
    }

    fn jobs_of_client(&mut self, client: &PartyId) -> StoreResult<Vec<JobRow>> {
        self.collect(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE client = ?1 ORDER BY created_ms, id"),
            [&client.as_bytes()[..]],
            job_row,
        )
    }

    fn save_job_state(&mut self, id: JobId, state: JobState, c: &JobCounts) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "UPDATE jobs SET state = ?2, n_created = ?3, n_queued = ?4, n_running = ?5, n_stopped = ?6,
                                 n_succeeded = ?7, n_failed = ?8 WHERE id = ?1",
            )?
            .execute(params![
                &id.as_uuid().as_bytes()[..],
                state.as_str(),
                int(c.created),
                int(c.queued),
                int(c.running),
                int(c.stopped),
                int(c.succeeded),
                int(c.failed)
            ])?;
        Ok(())
    }

    fn delete_job(&mut self, id: JobId) -> StoreResult<()> {
        let key = &id.as_uuid().as_bytes()[..];
        // Assignments first: they are found through the job's tasks.
        let ended = self.collect(
            "UPDATE assignments SET active = 0 WHERE active = 1 AND task IN (SELECT key FROM tasks WHERE job = ?1)
             RETURNING provider",
            [key],
            |row| row.get::<_, Vec<u8>>(0),
        )?;
        for provider in ended {
            self.tx
                .prepare_cached("UPDATE providers SET assigned = MAX(assigned - 1, 0) WHERE id = ?1")?
                .execute([provider])?;
        }
        self.tx
            .prepare_cached(
                "DELETE FROM spot_checks WHERE assignment IN
                 (SELECT a.id FROM assignments a JOIN tasks t ON t.key = a.task WHERE t.job = ?1)",
            )?
            .execute([key])?;
        self.tx
            .prepare_cached("DELETE FROM assignments WHERE task IN (SELECT key FROM tasks WHERE job = ?1)")?
            .execute([key])?;
        // Task keys can be reused after a deletion: nothing may stay keyed by them.
        self.tx
            .prepare_cached("DELETE FROM task_assurance WHERE task IN (SELECT key FROM tasks WHERE job = ?1)")?
            .execute([key])?;
        self.tx
            .prepare_cached("DELETE FROM known_answers WHERE task IN (SELECT key FROM tasks WHERE job = ?1)")?
            .execute([key])?;
        self.tx.prepare_cached("DELETE FROM results WHERE job = ?1")?.execute([key])?;
        self.tx
            .prepare_cached("DELETE FROM task_requests WHERE task IN (SELECT key FROM tasks WHERE job = ?1)")?
            .execute([key])?;
        self.tx.prepare_cached("DELETE FROM tasks WHERE job = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM attachments WHERE job = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM job_elements WHERE job = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM jobs WHERE id = ?1")?.execute([key])?;
        Ok(())
    }

    fn insert_tasks(&mut self, job: JobId, tasks: &[NewTask]) -> StoreResult<()> {
        let mut stmt = self.tx.prepare_cached(
            "INSERT INTO tasks (job, idx, state, priority, executable, data, params) VALUES (?1, ?2, 'created', ?3, ?4, ?5, ?6)",
        )?;
        for task in tasks {
            let data: BTreeMap<&String, String> = task.data.iter().map(|(k, v)| (k, v.to_string())).collect();
            let inserted = stmt.execute(params![
                &job.as_uuid().as_bytes()[..],
                int(task.index),
                task.priority,
                &task.executable.as_bytes()[..],
                json(&data),
                task.params
            ]);
            match inserted {
                Ok(_) => {}
                Err(rusqlite::Error::SqliteFailure(e, _)) if e.code == rusqlite::ErrorCode::ConstraintViolation => {
                    return Err(StoreError::Conflict(format!("task {} of job {job} exists already", task.index)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    fn task(&mut self, job: JobId, index: TaskIndex) -> StoreResult<Option<TaskRow>> {
        Ok(self
            .tx
            .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE job = ?1 AND idx = ?2"))?
            .query_row(params![&job.as_uuid().as_bytes()[..], int(index)], task_row)
            .optional()?)
    }

    fn task_by_key(&mut self, key: TaskKey) -> StoreResult<Option<TaskRow>> {
        Ok(self
            .tx
            .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE key = ?1"))?
            .query_row([key], task_row)
            .optional()?)
    }

    fn set_task_state(&mut self, key: TaskKey, state: TaskState) -> StoreResult<()> {
        self.tx.prepare_cached("UPDATE tasks SET state = ?2 WHERE key = ?1")?.execute(params![key, state.as_str()])?;
        Ok(())
    }

    fn move_job_tasks(&mut self, job: JobId, from: &[TaskState], to: TaskState) -> StoreResult<Vec<(TaskState, u64)>> {
        let mut moved = Vec::new();
        for state in from {
            let n = self
                .tx
                .prepare_cached("UPDATE tasks SET state = ?3 WHERE job = ?1 AND state = ?2")?
                .execute(params![&job.as_uuid().as_bytes()[..], state.as_str(), to.as_str()])?;
            moved.push((*state, n as u64));
        }
        Ok(moved)
    }

    fn set_task_progress(&mut self, key: TaskKey, progress: f32, status: Option<&Payload>) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE tasks SET progress = ?2, status = COALESCE(?3, status) WHERE key = ?1")?
            .execute(params![key, progress as f64, status.map(json)])?;
        Ok(())
    }

    fn set_task_checkpoint(&mut self, key: TaskKey, checkpoint: Option<&ElementHash>) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE tasks SET checkpoint = ?2 WHERE key = ?1")?
            .execute(params![key, checkpoint.map(|h| h.as_bytes().to_vec())])?;
        Ok(())
    }

    fn set_task_run(&mut self, key: TaskKey, attempts: u32, cpu_ms: u64) -> StoreResult<()> {
        self.tx.prepare_cached("UPDATE tasks SET attempts = ?2, cpu_ms = ?3 WHERE key = ?1")?.execute(params![
            key,
            attempts,
            int(cpu_ms)
        ])?;
        Ok(())
    }

    fn delete_task(&mut self, key: TaskKey) -> StoreResult<()> {
        let ended = self.collect(
            "UPDATE assignments SET active = 0 WHERE active = 1 AND task = ?1 RETURNING provider",
            [key],
            |row| row.get::<_, Vec<u8>>(0),
        )?;
        for provider in ended {
            self.tx
                .prepare_cached("UPDATE providers SET assigned = MAX(assigned - 1, 0) WHERE id = ?1")?
                .execute([provider])?;
        }
        self.tx
            .prepare_cached("DELETE FROM spot_checks WHERE assignment IN (SELECT id FROM assignments WHERE task = ?1)")?
            .execute([key])?;
        self.tx.prepare_cached("DELETE FROM assignments WHERE task = ?1")?.execute([key])?;
        // Task keys can be reused after a deletion: nothing may stay keyed by them.
        self.tx.prepare_cached("DELETE FROM task_assurance WHERE task = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM known_answers WHERE task = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM results WHERE task = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM task_requests WHERE task = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM tasks WHERE key = ?1")?.execute([key])?;
        Ok(())
    }

    fn queued_tasks(&mut self, limit: u32) -> StoreResult<Vec<QueuedTask>> {
        self.collect(
            "SELECT key, priority FROM tasks WHERE state = 'queued' ORDER BY priority DESC, key LIMIT ?1",
            [limit],
            |row| Ok(QueuedTask { key: row.get(0)?, priority: row.get(1)? }),
        )
    }

    fn add_task_request(&mut self, task: TaskKey, session: SessionId, reply_to: u64) -> StoreResult<()> {
        self.tx
            .prepare_cached("INSERT INTO task_requests (task, session, reply_to) VALUES (?1, ?2, ?3)")?
            .execute(params![task, &session.as_uuid().as_bytes()[..], int(reply_to)])?;
        Ok(())
    }

    fn take_task_requests(&mut self, task: TaskKey) -> StoreResult<Vec<(SessionId, u64)>> {
        self.collect("DELETE FROM task_requests WHERE task = ?1 RETURNING session, reply_to", [task], |row| {
            Ok((get_session_id(row, 0)?, uint(row.get(1)?)?))
        })
    }

    fn insert_assignment(&mut self, task: TaskKey, provider: &PartyId, now_ms: u64) -> StoreResult<AssignmentId> {
        let id: i64 = self
            .tx
            .prepare_cached(
                "INSERT INTO assignments (task, provider, active, created_ms) VALUES (?1, ?2, 1, ?3) RETURNING id",
            )?
            .query_row(params![task, &provider.as_bytes()[..], int(now_ms)], |r| r.get(0))?;
        self.tx
            .prepare_cached("UPDATE providers SET assigned = assigned + 1 WHERE id = ?1")?
            .execute([&provider.as_bytes()[..]])?;
        Ok(AssignmentId(uint(id)?))
    }

    fn assignment(&mut self, id: AssignmentId) -> StoreResult<Option<AssignmentRow>> {
        Ok(self
            .tx
            .prepare_cached(&format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE id = ?1"))?
            .query_row([int(id.0)], assignment_row)
            .optional()?)
    }

    fn end_assignment(&mut self, id: AssignmentId, now_ms: u64) -> StoreResult<bool> {
        let provider: Option<Vec<u8>> = self
            .tx
            .prepare_cached(
                "UPDATE assignments SET active = 0, ended_ms = ?2 WHERE id = ?1 AND active = 1 RETURNING provider",
            )?
            .query_row(params![int(id.0), int(now_ms)], |r| r.get(0))
            .optional()?;
        match provider {
            None => Ok(false),
            Some(provider) => {
                self.tx
                    .prepare_cached("UPDATE providers SET assigned = MAX(assigned - 1, 0) WHERE id = ?1")?
                    .execute([provider])?;
                Ok(true)
            }
        }
    }

    fn active_assignments_of_task(&mut self, task: TaskKey) -> StoreResult<Vec<AssignmentRow>> {
        self.collect(
            &format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE task = ?1 AND active = 1 ORDER BY id"),
            [task],
            assignment_row,
        )
    }

    fn active_assignments_of_provider(&mut self, provider: &PartyId) -> StoreResult<Vec<AssignmentRow>> {
        self.collect(
            &format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE provider = ?1 AND active = 1 ORDER BY id"),
            [&provider.as_bytes()[..]],
            assignment_row,
        )
    }

    fn active_assignments_of_job(&mut self, job: JobId) -> StoreResult<Vec<AssignmentRow>> {
        self.collect(
            &format!(
                "SELECT {ASSIGNMENT_COLUMNS} FROM assignments
                 WHERE active = 1 AND task IN (SELECT key FROM tasks WHERE job = ?1) ORDER BY id"
            ),
            [&job.as_uuid().as_bytes()[..]],
            assignment_row,
        )
    }

    fn silent_assignments(&mut self, contact_before_ms: u64, limit: u32) -> StoreResult<Vec<AssignmentRow>> {
        self.collect(
            "SELECT a.id, a.task, a.provider, a.active, a.created_ms FROM assignments a JOIN providers p ON p.id = a.provider
             WHERE a.active = 1 AND p.last_contact_ms < ?1 ORDER BY a.id LIMIT ?2",
            params![int(contact_before_ms), limit],
            assignment_row,
        )
    }

    fn insert_result(&mut self, r: &NewResult, now_ms: u64) -> StoreResult<i64> {
        Ok(self
            .tx
            .prepare_cached(
                "INSERT INTO results (task, job, idx, state, result, failure, cpu_ms, attempts, delivered, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9) RETURNING id",
            )?
            .query_row(
                params![
                    r.task,
                    &r.job.as_uuid().as_bytes()[..],
                    int(r.index),
                    r.state.as_str(),
                    r.result.as_ref().map(json),
                    r.failure.as_ref().map(json),
                    int(r.cpu_ms),
                    r.attempts,
                    int(now_ms)
                ],
                |row| row.get(0),
            )?)
    }

    fn results_after(
        &mut self,
        job: JobId,
        after: i64,
        undelivered_only: bool,
        limit: u32,
    ) -> StoreResult<Vec<ResultRow>> {
        let sql = if undelivered_only {
            format!(
                "SELECT {RESULT_COLUMNS} FROM results WHERE job = ?1 AND id > ?2 AND delivered = 0 ORDER BY id LIMIT ?3"
            )
        } else {
            format!("SELECT {RESULT_COLUMNS} FROM results WHERE job = ?1 AND id > ?2 ORDER BY id LIMIT ?3")
        };
        self.collect(&sql, params![&job.as_uuid().as_bytes()[..], after, limit], result_row)
    }

    fn last_result_id(&mut self, job: JobId) -> StoreResult<i64> {
        Ok(self
            .tx
            .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM results WHERE job = ?1")?
            .query_row([&job.as_uuid().as_bytes()[..]], |r| r.get(0))?)
    }

    fn mark_delivered(&mut self, result_ids: &[i64]) -> StoreResult<()> {
        let mut stmt = self.tx.prepare_cached("UPDATE results SET delivered = 1 WHERE id = ?1")?;
        for id in result_ids {
            stmt.execute([id])?;
        }
        Ok(())
    }

    fn upsert_attachment(&mut self, a: &AttachmentRow) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO attachments (session, job, replay, cursor, completion_sent) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (session, job) DO UPDATE SET replay = ?3, cursor = ?4, completion_sent = ?5",
            )?
            .execute(params![
                &a.session.as_uuid().as_bytes()[..],
                &a.job.as_uuid().as_bytes()[..],
                replay_str(a.replay),
                a.cursor,
                a.completion_sent
            ])?;
        Ok(())
    }

    fn delete_attachment(&mut self, session: SessionId, job: JobId) -> StoreResult<()> {
        self.tx
            .prepare_cached("DELETE FROM attachments WHERE session = ?1 AND job = ?2")?
            .execute([&session.as_uuid().as_bytes()[..], &job.as_uuid().as_bytes()[..]])?;
        Ok(())
    }

    fn attachments_of_job(&mut self, job: JobId) -> StoreResult<Vec<AttachmentRow>> {
        self.collect(
            "SELECT session, job, replay, cursor, completion_sent FROM attachments WHERE job = ?1",
            [&job.as_uuid().as_bytes()[..]],
            attachment_row,
        )
    }

    fn attachments_of_session(&mut self, session: SessionId) -> StoreResult<Vec<AttachmentRow>> {
        self.collect(
            "SELECT session, job, replay, cursor, completion_sent FROM attachments WHERE session = ?1",
            [&session.as_uuid().as_bytes()[..]],
            attachment_row,
        )
    }

    fn task_assurance(&mut self, task: TaskKey) -> StoreResult<Option<AssuranceRow>> {
        Ok(self
            .tx
            .prepare_cached("SELECT state, replicas_wanted FROM task_assurance WHERE task = ?1")?
            .query_row([task], |row| Ok(AssuranceRow { state: row.get(0)?, replicas_wanted: row.get(1)? }))
            .optional()?)
    }

    fn set_task_assurance(&mut self, task: TaskKey, state: &str, replicas_wanted: u32) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO task_assurance (task, state, replicas_wanted) VALUES (?1, ?2, ?3)
                 ON CONFLICT (task) DO UPDATE SET state = ?2, replicas_wanted = ?3",
            )?
            .execute(params![task, state, replicas_wanted])?;
        Ok(())
    }

    fn tasks_wanting_replicas(&mut self, limit: u32) -> StoreResult<Vec<QueuedTask>> {
        self.collect(TASKS_WANTING_REPLICAS, [limit], |row| Ok(QueuedTask { key: row.get(0)?, priority: row.get(1)? }))
    }

    fn assured_tasks_of_provider(&mut self, provider: &PartyId, limit: u32) -> StoreResult<Vec<TaskKey>> {
        self.collect(ASSURED_TASKS_OF_PROVIDER, params![&provider.as_bytes()[..], limit], |row| row.get(0))
    }

    fn provider_record(&mut self, provider: &PartyId) -> StoreResult<Option<String>> {
        Ok(self
            .tx
            .prepare_cached("SELECT record FROM provider_records WHERE provider = ?1")?
            .query_row([&provider.as_bytes()[..]], |r| r.get(0))
            .optional()?)
    }

    fn set_provider_record(&mut self, provider: &PartyId, record: &str, quarantined: bool) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO provider_records (provider, record, quarantined) VALUES (?1, ?2, ?3)
                 ON CONFLICT (provider) DO UPDATE SET record = ?2, quarantined = ?3",
            )?
            .execute(params![&provider.as_bytes()[..], record, quarantined])?;
        Ok(())
    }

    fn quarantined_providers(&mut self) -> StoreResult<Vec<PartyId>> {
        self.collect("SELECT provider FROM provider_records WHERE quarantined = 1 ORDER BY provider", [], |row| {
            get_party_id(row, 0)
        })
    }

    fn insert_known_answer(&mut self, task: TaskKey, digest: &ElementHash, now_ms: u64) -> StoreResult<()> {
        // A repeat is a new insertion: it moves the answer to the newest.
        self.tx
            .prepare_cached(
                "INSERT INTO known_answers (task, digest, created_ms) VALUES (?1, ?2, ?3)
                 ON CONFLICT (task) DO UPDATE SET digest = ?2, created_ms = ?3",
            )?
            .execute(params![task, &digest.as_bytes()[..], int(now_ms)])?;
        Ok(())
    }

    fn known_answers(&mut self, limit: u32) -> StoreResult<Vec<(TaskKey, ElementHash)>> {
        self.collect(
            "SELECT task, digest FROM known_answers ORDER BY created_ms DESC, task DESC LIMIT ?1",
            [limit],
            |row| Ok((row.get(0)?, get_hash(row, 1)?)),
        )
    }

    fn insert_spot_check(&mut self, assignment: AssignmentId, expected: &ElementHash) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO spot_checks (assignment, expected) VALUES (?1, ?2) ON CONFLICT (assignment) DO UPDATE SET expected = ?2",
            )?
            .execute(params![int(assignment.0), &expected.as_bytes()[..]])?;
        Ok(())
    }

    fn spot_check(&mut self, assignment: AssignmentId) -> StoreResult<Option<ElementHash>> {
        Ok(self
            .tx
            .prepare_cached("SELECT expected FROM spot_checks WHERE assignment = ?1")?
            .query_row([int(assignment.0)], |row| get_hash(row, 0))
            .optional()?)
    }
}

fn ledger_error(error: rusqlite::Error) -> idlegrid_ledger::LedgerError {
    idlegrid_ledger::LedgerError::storage(error)
}

fn ledger_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, idlegrid_ledger::LedgerError> {
    serde_json::from_str(text).map_err(idlegrid_ledger::LedgerError::storage)
}

/// The ledger's state in SQLite. Accounts keep their four sums in columns for the balance
/// check; everything else is the ledger's own JSON.
impl idlegrid_ledger::LedgerStore for SqliteTx<'_> {
    fn account(
        &mut self,
        id: &idlegrid_ledger::AccountId,
    ) -> Result<Option<idlegrid_ledger::Account>, idlegrid_ledger::LedgerError> {
        let body: Option<String> = self
            .tx
            .prepare_cached("SELECT body FROM ledger_accounts WHERE id = ?1")
            .and_then(|mut s| s.query_row([id.to_string()], |r| r.get(0)).optional())
            .map_err(ledger_error)?;
        body.map(|b| ledger_json(&b)).transpose()
    }

    fn put_account(&mut self, account: &idlegrid_ledger::Account) -> Result<(), idlegrid_ledger::LedgerError> {
        self.tx
            .prepare_cached(
                "INSERT INTO ledger_accounts (id, debits_posted, credits_posted, debits_pending, credits_pending, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET debits_posted = ?2, credits_posted = ?3, debits_pending = ?4,
                                                credits_pending = ?5, body = ?6",
            )
            .and_then(|mut s| {
                s.execute(params![
                    account.id.to_string(),
                    account.debits_posted.as_i64(),
                    account.credits_posted.as_i64(),
                    account.debits_pending.as_i64(),
                    account.credits_pending.as_i64(),
                    json(account)
                ])
            })
            .map_err(ledger_error)?;
        Ok(())
    }

    fn accounts(&mut self) -> Result<Vec<idlegrid_ledger::Account>, idlegrid_ledger::LedgerError> {
        let bodies: Vec<String> = self
            .collect("SELECT body FROM ledger_accounts ORDER BY id", [], |r| r.get(0))
            .map_err(idlegrid_ledger::LedgerError::storage)?;
        bodies.iter().map(|b| ledger_json(b)).collect()
    }

    fn next_transfer_id(&mut self) -> Result<idlegrid_ledger::TransferId, idlegrid_ledger::LedgerError> {
        let max: i64 = self
            .tx
            .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM ledger_transfers")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(ledger_error)?;
        Ok(idlegrid_ledger::TransferId(uint(max).map_err(ledger_error)? + 1))
    }

    fn insert_transfer(&mut self, transfer: &idlegrid_ledger::Transfer) -> Result<(), idlegrid_ledger::LedgerError> {
        self.tx
            .prepare_cached("INSERT INTO ledger_transfers (id, key, debit, credit, created_ms, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .and_then(|mut s| {
                s.execute(params![
                    int(transfer.id.0),
                    transfer.key().to_string(),
                    transfer.debit.to_string(),
                    transfer.credit.to_string(),
                    int(transfer.created_ms),
                    json(transfer)
                ])
            })
            .map_err(ledger_error)?;
        Ok(())
    }

    fn transfer(
        &mut self,
        id: idlegrid_ledger::TransferId,
    ) -> Result<Option<idlegrid_ledger::Transfer>, idlegrid_ledger::LedgerError> {
        let body: Option<String> = self
            .tx
            .prepare_cached("SELECT body FROM ledger_transfers WHERE id = ?1")
            .and_then(|mut s| s.query_row([int(id.0)], |r| r.get(0)).optional())
            .map_err(ledger_error)?;
        body.map(|b| ledger_json(&b)).transpose()
    }

    fn transfer_by_key(
        &mut self,
        key: &idlegrid_ledger::IdempotencyKey,
    ) -> Result<Option<idlegrid_ledger::Transfer>, idlegrid_ledger::LedgerError> {
        let body: Option<String> = self
            .tx
            .prepare_cached("SELECT body FROM ledger_transfers WHERE key = ?1")
            .and_then(|mut s| s.query_row([key.to_string()], |r| r.get(0)).optional())
            .map_err(ledger_error)?;
        body.map(|b| ledger_json(&b)).transpose()
    }

    fn transfers_of_account(
        &mut self,
        account: &idlegrid_ledger::AccountId,
        created_from_ms: u64,
        created_to_ms: u64,
    ) -> Result<Vec<idlegrid_ledger::Transfer>, idlegrid_ledger::LedgerError> {
        let bodies: Vec<String> = self
            .collect(
                "SELECT body FROM ledger_transfers WHERE (debit = ?1 OR credit = ?1) AND created_ms >= ?2 AND created_ms < ?3 ORDER BY id",
                params![account.to_string(), int(created_from_ms), int(created_to_ms)],
                |r| r.get(0),
            )
            .map_err(idlegrid_ledger::LedgerError::storage)?;
        bodies.iter().map(|b| ledger_json(b)).collect()
    }

    fn reservation(
        &mut self,
        id: idlegrid_ledger::TransferId,
    ) -> Result<Option<idlegrid_ledger::Reservation>, idlegrid_ledger::LedgerError> {
        let body: Option<String> = self
            .tx
            .prepare_cached("SELECT body FROM ledger_reservations WHERE id = ?1")
            .and_then(|mut s| s.query_row([int(id.0)], |r| r.get(0)).optional())
            .map_err(ledger_error)?;
        body.map(|b| ledger_json(&b)).transpose()
    }

    fn put_reservation(
        &mut self,
        reservation: &idlegrid_ledger::Reservation,
    ) -> Result<(), idlegrid_ledger::LedgerError> {
        self.tx
            .prepare_cached(
                "INSERT INTO ledger_reservations (id, body) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET body = ?2",
            )
            .and_then(|mut s| s.execute(params![int(reservation.id.0), json(reservation)]))
            .map_err(ledger_error)?;
        Ok(())
    }

    fn next_request_id(&mut self) -> Result<u64, idlegrid_ledger::LedgerError> {
        self.next_money_request_id()
    }

    fn insert_request(&mut self, request: &idlegrid_ledger::MoneyRequest) -> Result<(), idlegrid_ledger::LedgerError> {
        self.write_money_request(request, false)
    }

    fn put_request(&mut self, request: &idlegrid_ledger::MoneyRequest) -> Result<(), idlegrid_ledger::LedgerError> {
        self.write_money_request(request, true)
    }

    fn request(&mut self, id: u64) -> Result<Option<idlegrid_ledger::MoneyRequest>, idlegrid_ledger::LedgerError> {
        self.money_request(id)
    }

    fn request_by_reference(
        &mut self,
        account: &idlegrid_ledger::AccountId,
        kind: idlegrid_ledger::RequestKind,
        reference: &str,
    ) -> Result<Option<idlegrid_ledger::MoneyRequest>, idlegrid_ledger::LedgerError> {
        self.money_request_by_reference(account, kind, reference)
    }

    fn requests(
        &mut self,
        filter: &idlegrid_ledger::RequestFilter,
    ) -> Result<Vec<idlegrid_ledger::MoneyRequest>, idlegrid_ledger::LedgerError> {
        self.money_requests(filter)
    }

    fn totals(&mut self) -> Result<idlegrid_ledger::LedgerTotals, idlegrid_ledger::LedgerError> {
        let (accounts, dp, cp, dq, cq): (i64, i64, i64, i64, i64) = self
            .tx
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(debits_posted), 0), COALESCE(SUM(credits_posted), 0),
                        COALESCE(SUM(debits_pending), 0), COALESCE(SUM(credits_pending), 0) FROM ledger_accounts",
            )
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))))
            .map_err(ledger_error)?;
        use idlegrid_ledger::Micros;
        Ok(idlegrid_ledger::LedgerTotals {
            accounts: uint(accounts).map_err(ledger_error)?,
            debits_posted: Micros::new(dp),
            credits_posted: Micros::new(cp),
            debits_pending: Micros::new(dq),
            credits_pending: Micros::new(cq),
        })
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
