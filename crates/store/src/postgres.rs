//! The shared store: PostgreSQL 15 or later, for several server instances on one database
//! (scale-out). Same schema and semantics as [`crate::SqliteStore`]; both pass the same
//! [`crate::conformance`] suite.
//!
//! Writers are serialised across every process with a transaction-level advisory lock (see
//! [`PostgresStore::write`]); reads run without it in a read-only snapshot. A transaction that
//! PostgreSQL rolls back for a conflict (a deadlock, a serialization failure) is run again by
//! [`Store::write_retrying`], the server's path.
//!
//! Threads: the synchronous `postgres` client drives each call with `block_on` on a runtime of
//! its own, which panics on a thread that runs async tasks. The server runs every transaction
//! inside `tokio::task::spawn_blocking` (`AppState::run` in crates/server/src/lib.rs), where
//! blocking is allowed. As a safety net `write` and `read` leave a multi-threaded runtime's
//! worker with `block_in_place`, `connect` runs on a thread of its own, and the pool closes its
//! connections on a thread of its own; a transaction started by a task of a current-thread
//! runtime still panics, so call the store from `spawn_blocking` there.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Display;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use idlegrid_ledger::{
    Account, AccountId, IdempotencyKey, LedgerError, LedgerStore, LedgerTotals, Micros, MoneyRequest, RequestFilter,
    RequestKind, Reservation, Transfer, TransferId,
};
use idlegrid_protocol::Payload;
use idlegrid_protocol::messages::{NodeState, Replay};
use idlegrid_types::{
    AssignmentId, ElementHash, ElementKind, JobCounts, JobId, JobState, PartyId, Role, SessionId, TaskIndex, TaskState,
};
use postgres::types::{FromSql, ToSql};
use postgres::{Client, NoTls, Row, Statement};

use crate::model::*;
use crate::tx::Tx;
use crate::{Store, StoreError, StoreResult};

mod market;
mod requests;

/// Schema migrations, applied in order; the table `schema_version` records each one applied.
/// Entry N mirrors entry N of SQLite's list, so that a future migration is added to both at the
/// same position. Differences: integers are BIGINT, flags BOOLEAN, bytes BYTEA; row ids are
/// identity columns, which PostgreSQL never reuses, so SQLite's rebuild of `assignments` (to
/// stop reusing assignment ids) has no counterpart.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value BYTEA NOT NULL);
CREATE TABLE parties (
    id BYTEA PRIMARY KEY, role TEXT NOT NULL, public_key BYTEA NOT NULL, name TEXT NOT NULL, created_ms BIGINT NOT NULL);
CREATE TABLE sessions (
    id BYTEA PRIMARY KEY, party BYTEA NOT NULL, inbound_acked BIGINT NOT NULL, outbound_head BIGINT NOT NULL,
    outbound_acked BIGINT NOT NULL, last_seen_ms BIGINT NOT NULL);
CREATE INDEX sessions_idle ON sessions(last_seen_ms);
CREATE TABLE outbox (
    session BYTEA NOT NULL, seq BIGINT NOT NULL, reply_to BIGINT, body TEXT NOT NULL, result_id BIGINT,
    PRIMARY KEY (session, seq));
CREATE TABLE providers (
    id BYTEA PRIMARY KEY, session BYTEA, state TEXT NOT NULL, slots BIGINT NOT NULL, capacity BIGINT NOT NULL,
    assigned BIGINT NOT NULL DEFAULT 0, last_contact_ms BIGINT NOT NULL, profile TEXT);
CREATE TABLE elements (hash BYTEA PRIMARY KEY, size BIGINT NOT NULL, created_ms BIGINT NOT NULL);
CREATE TABLE element_grants (
    owner BYTEA NOT NULL, hash BYTEA NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL, created_ms BIGINT NOT NULL,
    PRIMARY KEY (owner, hash));
CREATE INDEX element_grants_hash ON element_grants(hash);
CREATE TABLE jobs (
    id BYTEA PRIMARY KEY, client BYTEA NOT NULL, properties TEXT NOT NULL, state TEXT NOT NULL,
    n_created BIGINT NOT NULL, n_queued BIGINT NOT NULL, n_running BIGINT NOT NULL, n_stopped BIGINT NOT NULL,
    n_succeeded BIGINT NOT NULL, n_failed BIGINT NOT NULL, created_ms BIGINT NOT NULL);
CREATE INDEX jobs_client ON jobs(client);
CREATE TABLE job_elements (job BYTEA NOT NULL, hash BYTEA NOT NULL, PRIMARY KEY (job, hash));
CREATE INDEX job_elements_hash ON job_elements(hash);
CREATE TABLE tasks (
    key BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, job BYTEA NOT NULL, idx BIGINT NOT NULL, state TEXT NOT NULL,
    priority BIGINT NOT NULL, executable BYTEA NOT NULL, data TEXT NOT NULL, params BYTEA NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0, checkpoint BYTEA, progress DOUBLE PRECISION NOT NULL DEFAULT 0, status TEXT,
    cpu_ms BIGINT NOT NULL DEFAULT 0,
    UNIQUE (job, idx));
CREATE INDEX tasks_queued ON tasks(priority DESC, key) WHERE state = 'queued';
CREATE INDEX tasks_job_state ON tasks(job, state);
CREATE TABLE task_requests (task BIGINT NOT NULL, session BYTEA NOT NULL, reply_to BIGINT NOT NULL);
CREATE INDEX task_requests_task ON task_requests(task);
CREATE TABLE assignments (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, task BIGINT NOT NULL, provider BYTEA NOT NULL,
    active BOOLEAN NOT NULL, created_ms BIGINT NOT NULL, ended_ms BIGINT);
CREATE INDEX assignments_task ON assignments(task);
CREATE INDEX assignments_active_provider ON assignments(provider) WHERE active;
CREATE TABLE results (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, task BIGINT NOT NULL UNIQUE, job BYTEA NOT NULL,
    idx BIGINT NOT NULL, state TEXT NOT NULL, result TEXT, failure TEXT, cpu_ms BIGINT NOT NULL, attempts BIGINT NOT NULL,
    delivered BOOLEAN NOT NULL, created_ms BIGINT NOT NULL);
CREATE INDEX results_job ON results(job, id);
CREATE TABLE attachments (
    session BYTEA NOT NULL, job BYTEA NOT NULL, replay TEXT NOT NULL, cursor BIGINT NOT NULL,
    completion_sent BOOLEAN NOT NULL, PRIMARY KEY (session, job));
CREATE INDEX attachments_job ON attachments(job);
"#,
    r#"
CREATE TABLE ledger_accounts (
    id TEXT PRIMARY KEY, debits_posted BIGINT NOT NULL, credits_posted BIGINT NOT NULL,
    debits_pending BIGINT NOT NULL, credits_pending BIGINT NOT NULL, body TEXT NOT NULL);
CREATE TABLE ledger_transfers (
    id BIGINT PRIMARY KEY, key TEXT NOT NULL UNIQUE, debit TEXT NOT NULL, credit TEXT NOT NULL,
    created_ms BIGINT NOT NULL, body TEXT NOT NULL);
CREATE INDEX ledger_transfers_debit ON ledger_transfers(debit, created_ms);
CREATE INDEX ledger_transfers_credit ON ledger_transfers(credit, created_ms);
CREATE TABLE ledger_reservations (id BIGINT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE work_records (
    id BIGINT PRIMARY KEY, job BYTEA NOT NULL, launched_ms BIGINT NOT NULL, billed BOOLEAN NOT NULL DEFAULT FALSE,
    body TEXT NOT NULL);
CREATE INDEX work_records_unbilled ON work_records(launched_ms) WHERE NOT billed;
CREATE INDEX work_records_job ON work_records(job);
CREATE TABLE notices (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, client BYTEA NOT NULL, channel TEXT NOT NULL, body TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0, next_try_ms BIGINT NOT NULL, delivered BOOLEAN NOT NULL DEFAULT FALSE,
    last_error TEXT);
CREATE INDEX notices_due ON notices(next_try_ms) WHERE NOT delivered;
CREATE TABLE client_settings (client BYTEA PRIMARY KEY, body TEXT NOT NULL);
ALTER TABLE jobs ADD COLUMN hold TEXT;
ALTER TABLE jobs ADD COLUMN completed_ms BIGINT;
ALTER TABLE jobs ADD COLUMN purge_warned BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE results ADD COLUMN archived BYTEA;
"#,
    r#"
CREATE TABLE revocations (party BYTEA PRIMARY KEY, reason TEXT NOT NULL, revoked_ms BIGINT NOT NULL);
CREATE TABLE logs (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, time_ms BIGINT NOT NULL, received_ms BIGINT NOT NULL,
    party BYTEA NOT NULL, role TEXT NOT NULL, level TEXT NOT NULL, component TEXT NOT NULL, job BYTEA, message TEXT NOT NULL);
CREATE INDEX logs_received ON logs(received_ms);
"#,
    r#"
CREATE TABLE task_assurance (task BIGINT PRIMARY KEY, state TEXT NOT NULL, replicas_wanted BIGINT NOT NULL);
CREATE INDEX task_assurance_wanting ON task_assurance(task) WHERE replicas_wanted > 0;
CREATE INDEX assignments_provider_task ON assignments(provider, task);
CREATE TABLE provider_records (provider BYTEA PRIMARY KEY, record TEXT NOT NULL, quarantined BOOLEAN NOT NULL);
CREATE INDEX provider_records_quarantined ON provider_records(provider) WHERE quarantined;
CREATE TABLE known_answers (task BIGINT PRIMARY KEY, digest BYTEA NOT NULL, created_ms BIGINT NOT NULL);
CREATE INDEX known_answers_newest ON known_answers(created_ms DESC, task DESC);
CREATE TABLE spot_checks (assignment BIGINT PRIMARY KEY, expected BYTEA NOT NULL);
"#,
    requests::MIGRATION,
    market::MIGRATION,
    market::EXECUTION_MIGRATION,
];

/// Connections kept open at most; further callers wait for one.
const POOL_SIZE: usize = 8;
/// How many times [`Store::write_retrying`] runs a transaction that keeps conflicting with
/// others before it reports the conflict.
const CONFLICT_ATTEMPTS: u32 = 40;
/// The longest pause between two attempts of a conflicting transaction (the pause grows with
/// the attempts and is drawn at random below it, so that the two sides of a conflict part).
const CONFLICT_PAUSE_MAX: Duration = Duration::from_millis(20);
/// How long a caller waits for a free connection before giving up.
const POOL_WAIT: Duration = Duration::from_secs(30);
/// Used when the URL sets no `connect_timeout`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// First half of the advisory lock key of write transactions and migrations ("IGWR"); the
/// second half is a hash of the schema, so that stores in different schemas of one database do
/// not wait for each other.
const WRITE_LOCK_CLASS: i32 = 0x4947_5752;

/// PostgreSQL through a small pool of synchronous connections.
pub struct PostgresStore {
    pool: Pool,
    /// Second half of the advisory lock key (see [`WRITE_LOCK_CLASS`]); also names the wake-up
    /// channel.
    lock_key: i32,
}

impl PostgresStore {
    /// Connect to `url` (`postgres://user[:password]@host[:port]/database[?options]`, for
    /// example `options=-csearch_path%3Didlegrid` to use a schema), and create or migrate the
    /// schema. Only unencrypted connections (no TLS) are supported.
    pub fn connect(url: &str) -> StoreResult<PostgresStore> {
        let config = parse_url(url)?;
        off_runtime(move || PostgresStore::open(config, None))
    }

    /// Like [`PostgresStore::connect`], in `schema` (created if missing; lowercase letters,
    /// digits and `_`): every pooled connection has it as its `search_path`. Tests use a fresh
    /// schema each for isolation.
    pub fn connect_in_schema(url: &str, schema: &str) -> StoreResult<PostgresStore> {
        check_schema_name(schema)?;
        let mut config = parse_url(url)?;
        let options = match config.get_options() {
            Some(options) if !options.is_empty() => format!("{options} -c search_path={schema}"),
            _ => format!("-c search_path={schema}"),
        };
        config.options(&options);
        let schema = schema.to_string();
        off_runtime(move || PostgresStore::open(config, Some(&schema)))
    }

    /// Drop `schema` and everything in it (tests, benchmarks): `DROP SCHEMA ... CASCADE`.
    pub fn drop_schema(url: &str, schema: &str) -> StoreResult<()> {
        check_schema_name(schema)?;
        let config = parse_url(url)?;
        let schema = schema.to_string();
        off_runtime(move || {
            let pool = Pool::new(config, 1);
            let mut conn = pool.get()?;
            let client = &mut conn.conn_mut()?.client;
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .map_err(|e| pg_error(&format!("cannot drop the schema {schema}"), e))?;
            conn.healthy = true;
            Ok(())
        })
    }

    fn open(config: postgres::Config, schema: Option<&str>) -> StoreResult<PostgresStore> {
        let pool = Pool::new(config, POOL_SIZE);
        let mut conn = pool.get()?;
        let client = &mut conn.conn_mut()?.client;
        let schema_name = match schema {
            Some(schema) => schema.to_string(),
            None => {
                let current: Option<String> = client
                    .query_one("SELECT current_schema()", &[])
                    .map_err(|e| pg_error("cannot read the current schema", e))
                    .and_then(|row| col(&row, 0, "current_schema()"))?;
                current.ok_or_else(|| {
                    StoreError::Database(format!(
                        "the search_path of {} names no existing schema: create the schema, or fix options=-csearch_path in --database",
                        pool.target
                    ))
                })?
            }
        };
        let lock_key = fnv1a32(schema_name.as_bytes());
        migrate(client, schema, lock_key)?;
        conn.healthy = true;
        drop(conn);
        Ok(PostgresStore { pool, lock_key })
    }

    /// Hear, on a thread of its own, of the sessions other instances (and this one) announced
    /// with [`Tx::announce_wakes`], and call `on_wake` for each, until `stop` is set. A lost
    /// connection is re-established after a second; polls still end at their deadline
    /// meanwhile, so nothing is lost, only later.
    pub fn listen_wakes(
        &self,
        on_wake: impl Fn(SessionId) + Send + 'static,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ) {
        use std::sync::atomic::Ordering;
        let config = self.pool.config.clone();
        let channel = wake_channel(self.lock_key);
        let spawned = std::thread::Builder::new().name("pg-wakes".into()).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut client = match config
                    .connect(NoTls)
                    .and_then(|mut c| c.batch_execute(&format!("LISTEN {channel}")).map(|_| c))
                {
                    Ok(client) => client,
                    Err(error) => {
                        tracing::warn!(%error, "cannot listen for wake-ups from other instances; retrying in 1 s");
                        std::thread::sleep(Duration::from_secs(1));
                        continue;
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    let mut notifications = client.notifications();
                    let mut iter = notifications.timeout_iter(Duration::from_millis(500));
                    let next = postgres::fallible_iterator::FallibleIterator::next(&mut iter);
                    match next {
                        Ok(Some(note)) => {
                            for id in note.payload().split(',') {
                                if let Ok(session) = id.parse::<SessionId>() {
                                    on_wake(session);
                                }
                            }
                        }
                        Ok(None) => {}
                        Err(error) => {
                            tracing::warn!(%error, "lost the wake-up connection to PostgreSQL; reconnecting");
                            break;
                        }
                    }
                }
            }
        });
        if let Err(error) = spawned {
            tracing::error!(%error, "cannot start the wake-up listener; polls across instances wait for their deadline");
        }
    }

    /// Run `f` in a transaction of the given kind on a pooled connection: commit on `Ok`, roll
    /// back on `Err`. [`Attempt::Conflict`] when PostgreSQL rolled it back for a conflict with
    /// another transaction (serialization failure or deadlock): running it again may succeed.
    fn transaction<R, E: From<StoreError>>(
        &self,
        write: bool,
        f: impl FnOnce(&mut dyn Tx) -> Result<R, E>,
    ) -> Attempt<R, E> {
        let mut conn = match self.begin(write) {
            Ok(conn) => conn,
            Err(error) => return Attempt::Done(Err(error.into())),
        };
        let Conn { client, statements } = match conn.conn_mut() {
            Ok(conn) => conn,
            Err(error) => return Attempt::Done(Err(error.into())),
        };
        let mut tx =
            PgTx { client, wake_channel: wake_channel(self.lock_key), statements, failed: None, conflict: None };
        let result = f(&mut tx);
        let failed = tx.failed.take();
        let conflict = tx.conflict.take();
        let client = match conn.conn_mut() {
            Ok(conn) => &mut conn.client,
            Err(error) => return Attempt::Done(Err(error.into())),
        };
        if let Some(conflict) = conflict {
            // Whatever `f` made of the failed statement, the transaction is lost.
            conn.healthy = client.batch_execute("ROLLBACK").is_ok();
            return Attempt::Conflict(conflict);
        }
        Attempt::Done(match (result, failed) {
            (Ok(value), None) => match client.batch_execute("COMMIT") {
                Ok(()) => {
                    conn.healthy = true;
                    Ok(value)
                }
                Err(e) if is_conflict(&e) => {
                    // Rolled back at commit: some conflicts (serialization failures) show only then.
                    conn.healthy = true;
                    return Attempt::Conflict(pg_error("cannot commit the transaction", e).to_string());
                }
                Err(e) => Err({
                    if e.is_closed() || client.is_closed() {
                        // The commit may have happened before the connection broke.
                        StoreError::Database(
                            "the connection to PostgreSQL was lost during COMMIT: the transaction may or may not \
                             have been committed; check the database and retry the request"
                                .to_string(),
                        )
                    } else {
                        pg_error("cannot commit the transaction (it was rolled back)", e)
                    }
                }
                .into()),
            },
            (Ok(_), Some(failure)) => {
                // PostgreSQL aborts a transaction at its first failed statement and would turn
                // COMMIT into a silent ROLLBACK; SQLite would have kept the other statements.
                // Say so rather than lose the work without a word.
                conn.healthy = client.batch_execute("ROLLBACK").is_ok();
                Err(StoreError::Database(format!(
                    "a statement failed inside the transaction ({failure}) and PostgreSQL rolled the whole transaction back; \
                     the caller ignored the error: return it instead, or retry the request"
                ))
                .into())
            }
            (Err(error), _) => {
                conn.healthy = client.batch_execute("ROLLBACK").is_ok();
                Err(error)
            }
        })
    }

    /// A pooled connection inside a new transaction. An idle connection that died (the database
    /// restarted) is replaced before anything ran, so callers never see that.
    fn begin(&self, write: bool) -> StoreResult<Pooled<'_>> {
        // Writers: READ COMMITTED, so that every statement after the lock sees what the previous
        // holder committed (a REPEATABLE READ snapshot would be taken by the lock statement
        // itself, before the wait, and miss it). Readers: one consistent snapshot.
        let begin = if write {
            format!(
                "BEGIN ISOLATION LEVEL READ COMMITTED; SELECT pg_advisory_xact_lock({WRITE_LOCK_CLASS}, {})",
                self.lock_key
            )
        } else {
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY".to_string()
        };
        let mut attempts = 0;
        loop {
            attempts += 1;
            let mut conn = self.pool.get()?;
            let reused = conn.reused;
            let client = &mut conn.conn_mut()?.client;
            match client.batch_execute(&begin) {
                Ok(()) => return Ok(conn),
                Err(error) if reused && (error.is_closed() || client.is_closed()) && attempts <= POOL_SIZE + 1 => {
                    continue;
                }
                Err(error) => return Err(pg_error("cannot begin a transaction", error)),
            }
        }
    }
}

impl Store for PostgresStore {
    /// Write transactions are serialised across every process that shares the database: each
    /// takes `pg_advisory_xact_lock` first and holds it until commit or rollback. The
    /// coordinator was written for SQLite, which serialises writers, and assumes that nothing
    /// changes under a transaction (counts read then written back, outbox sequence numbers,
    /// `MAX(id) + 1` transfer ids, result ids that a session's cursor passes in commit order).
    /// Cost: one more statement per transaction (sent with BEGIN, so no extra round trip) and no
    /// parallelism between writers, so write throughput is bounded by one transaction's latency
    /// at a time, as with SQLite. Reads ([`Store::read`]) take no lock.
    ///
    /// Why not SERIALIZABLE without the lock: tried, with every server transaction retried on
    /// conflict ([`Store::write_retrying`] and `FOR UPDATE SKIP LOCKED` claims). The
    /// coordinator's transactions overlap too much for it: each engine request runs a
    /// scheduling pass that reads every provider with room and the head of the queue and
    /// writes providers' loads, tasks, the job's counts and the client's outbox, so nearly
    /// every pair of concurrent transactions conflicts (serialization failures "identified as
    /// a pivot", deadlocks on `providers`), and three instances with six engines retried
    /// without end. Lifting the lock needs transactions that touch little shared state first
    /// (see ARCHITECTURE.md).
    ///
    /// `write` runs its `FnOnce` once; should PostgreSQL still roll it back for a conflict
    /// (with a transaction outside this lock), the error says to retry.
    fn write<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        blocking(|| match self.transaction(true, f) {
            Attempt::Done(result) => result,
            Attempt::Conflict(error) => Err(StoreError::Database(format!(
                "{error}: the transaction conflicted with another one and was rolled back; retry the request"
            ))
            .into()),
        })
    }

    /// Runs `f` up to [`CONFLICT_ATTEMPTS`] times while PostgreSQL rolls it back for conflicts
    /// with other transactions, pausing a little longer (at random) after each.
    fn write_retrying<R, E: From<StoreError>>(&self, mut f: impl FnMut(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        blocking(|| {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.transaction(true, &mut f) {
                    Attempt::Done(result) => return result,
                    Attempt::Conflict(error) if attempt >= CONFLICT_ATTEMPTS => {
                        return Err(StoreError::Database(format!(
                            "{error}: the transaction conflicted with others {attempt} times in a row; retry the request later"
                        ))
                        .into());
                    }
                    Attempt::Conflict(_) => std::thread::sleep(conflict_pause(attempt)),
                }
            }
        })
    }

    /// A read-only snapshot (REPEATABLE READ, READ ONLY) without the write lock: it runs
    /// alongside writers, and a write inside it fails.
    fn read<R, E: From<StoreError>>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<R, E>) -> Result<R, E> {
        blocking(|| match self.transaction(false, f) {
            Attempt::Done(result) => result,
            // A read-only snapshot conflicts with nothing; should PostgreSQL say otherwise, the
            // caller hears of it.
            Attempt::Conflict(error) => Err(StoreError::Database(format!("{error}; retry the request")).into()),
        })
    }
}

/// How a transaction ended.
enum Attempt<R, E> {
    /// Committed (`Ok`) or rolled back for a reason that another attempt would not change.
    Done(Result<R, E>),
    /// Rolled back because it conflicted with another transaction.
    Conflict(String),
}

/// A serialization failure or a deadlock: PostgreSQL rolled the transaction back because of
/// others running at the same time.
fn is_conflict(error: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    matches!(error.code(), Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED)
}

/// The pause before attempt `attempt + 1` of a conflicting transaction: random, below a bound
/// that doubles with each attempt up to [`CONFLICT_PAUSE_MAX`].
fn conflict_pause(attempt: u32) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let bound = Duration::from_micros(100u64 << attempt.min(16)).min(CONFLICT_PAUSE_MAX);
    // A fresh RandomState is seeded differently each time: enough to part two colliding sides.
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(attempt);
    let fraction = (hasher.finish() % 1024) as u32;
    bound * fraction / 1024
}

/// Run blocking database work from any thread: on a worker of a multi-threaded tokio runtime,
/// through `block_in_place` (elsewhere, such as in `spawn_blocking`, it runs as is).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Run `f` on a thread of its own when called inside a tokio runtime, where the synchronous
/// client would panic.
fn off_runtime<T: Send>(f: impl FnOnce() -> StoreResult<T> + Send) -> StoreResult<T> {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|scope| match scope.spawn(f).join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

fn parse_url(url: &str) -> StoreResult<postgres::Config> {
    let mut config: postgres::Config = url.parse().map_err(|e| {
        // The URL may hold a password: the message does not repeat it.
        StoreError::Database(format!(
            "invalid PostgreSQL URL in --database ({e}): expected postgres://user@host:port/database"
        ))
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        // Names the server's connections in pg_stat_activity.
        config.application_name("idlegrid");
    }
    config.notice_callback(|notice| tracing::debug!(message = notice.message(), "PostgreSQL notice"));
    Ok(config)
}

/// Schema names are put into SQL and connection options, so only plain identifiers pass.
fn check_schema_name(schema: &str) -> StoreResult<()> {
    let mut chars = schema.chars();
    let valid = schema.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(StoreError::Database(format!(
            "invalid schema name {schema:?}: use 1 to 63 lowercase letters, digits and '_', not starting with a digit"
        )))
    }
}

/// A stable 32-bit hash (FNV-1a) for the advisory lock key: the same in every process and
/// version, unlike Rust's `Hash`.
fn fnv1a32(bytes: &[u8]) -> i32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash as i32
}

/// Apply the missing migrations under the write lock, so that instances starting together do
/// not race; creates `schema` first if given.
fn migrate(client: &mut Client, schema: Option<&str>, lock_key: i32) -> StoreResult<()> {
    let step = |client: &mut Client, sql: &str, what: &str| client.batch_execute(sql).map_err(|e| pg_error(what, e));
    step(
        client,
        &format!("BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK_CLASS}, {lock_key})"),
        "cannot begin the migration",
    )?;
    let migrated = (|| {
        if let Some(schema) = schema {
            step(client, &format!("CREATE SCHEMA IF NOT EXISTS {schema}"), "cannot create the schema")?;
        }
        step(
            client,
            "CREATE TABLE IF NOT EXISTS schema_version (version BIGINT PRIMARY KEY)",
            "cannot create schema_version",
        )?;
        let version: i64 = client
            .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
            .map_err(|e| pg_error("cannot read schema_version", e))
            .and_then(|row| col(&row, 0, "schema_version.version"))?;
        let version = usize::try_from(version).unwrap_or(0);
        if version > MIGRATIONS.len() {
            return Err(StoreError::Corrupt(format!(
                "the database has schema version {version}, newer than this program knows ({}): use a newer idlegrid",
                MIGRATIONS.len()
            )));
        }
        for (i, migration) in MIGRATIONS.iter().enumerate().skip(version) {
            step(client, migration, &format!("migration {} failed", i + 1))?;
            client
                .execute("INSERT INTO schema_version (version) VALUES ($1)", &[&((i + 1) as i64)])
                .map_err(|e| pg_error("cannot record the migration", e))?;
        }
        step(client, "COMMIT", "cannot commit the migration")
    })();
    if migrated.is_err() {
        let _ = client.batch_execute("ROLLBACK");
    }
    migrated
}

/// A database error as a `StoreError`, with PostgreSQL's own message, detail and hint.
fn pg_error(context: &str, error: postgres::Error) -> StoreError {
    if let Some(db) = error.as_db_error() {
        let mut message = format!("{context}: {} ({})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            message.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            message.push_str(&format!("; hint: {hint}"));
        }
        return StoreError::Database(message);
    }
    if error.is_closed() {
        return StoreError::Database(format!(
            "{context}: the connection to PostgreSQL was lost (the transaction was rolled back); retry, and check that the database is up"
        ));
    }
    StoreError::Database(format!("{context}: {error}"))
}

// ---- the pool

/// A connection and the statements prepared on it (named statements outlive transactions).
struct Conn {
    client: Client,
    statements: HashMap<String, Statement>,
}

struct Pool {
    config: postgres::Config,
    /// Where the pool connects, for messages (no password).
    target: String,
    size: usize,
    state: Mutex<PoolState>,
    returned: Condvar,
}

struct PoolState {
    idle: Vec<Conn>,
    /// Connections idle or lent out.
    open: usize,
}

impl Pool {
    fn new(config: postgres::Config, size: usize) -> Pool {
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .enumerate()
            .map(|(i, host)| {
                let port = config.get_ports().get(i).or(config.get_ports().first()).copied().unwrap_or(5432);
                match host {
                    postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
                    #[cfg(unix)]
                    postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
                }
            })
            .collect();
        let target = format!(
            "{}/{} (user {})",
            if hosts.is_empty() { "localhost:5432".to_string() } else { hosts.join(",") },
            config.get_dbname().unwrap_or("(default database)"),
            config.get_user().unwrap_or("(default user)")
        );
        Pool {
            config,
            target,
            size,
            state: Mutex::new(PoolState { idle: Vec::new(), open: 0 }),
            returned: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// An idle connection, a new one if fewer than `size` are open, or the next one returned.
    fn get(&self) -> StoreResult<Pooled<'_>> {
        let deadline = Instant::now() + POOL_WAIT;
        let mut state = self.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(Pooled { pool: self, conn: Some(conn), reused: true, healthy: false });
            }
            if state.open < self.size {
                state.open += 1;
                drop(state);
                return match self.config.connect(NoTls) {
                    Ok(client) => Ok(Pooled {
                        pool: self,
                        conn: Some(Conn { client, statements: HashMap::new() }),
                        reused: false,
                        healthy: false,
                    }),
                    Err(error) => {
                        self.put_back(None);
                        Err(StoreError::Database(format!(
                            "cannot connect to PostgreSQL at {}: {error}: is it running? check --database",
                            self.target
                        )))
                    }
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(StoreError::Database(format!(
                    "all {} connections to PostgreSQL at {} stayed busy for {} s: transactions are too slow or the server too busy",
                    self.size,
                    self.target,
                    POOL_WAIT.as_secs()
                )));
            }
            state = self.returned.wait_timeout(state, deadline - now).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// Return a connection (`None`: it was closed) and wake a waiter.
    fn put_back(&self, conn: Option<Conn>) {
        let mut state = self.lock();
        match conn {
            Some(conn) => state.idle.push(conn),
            None => state.open = state.open.saturating_sub(1),
        }
        drop(state);
        self.returned.notify_one();
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.state.get_mut().unwrap_or_else(|p| p.into_inner()).idle);
        // Closing a synchronous client blocks, which panics inside an async task.
        if tokio::runtime::Handle::try_current().is_ok() {
            let _ = std::thread::spawn(move || drop(idle)).join();
        }
    }
}

/// A connection lent out; it goes back to the pool on drop if `healthy` (its transaction was
/// committed or rolled back), and is closed otherwise (an error or a panic mid-transaction:
/// closing it rolls the transaction back).
struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    /// Taken from the idle list (it may have died since), rather than opened now.
    reused: bool,
    healthy: bool,
}

impl Pooled<'_> {
    fn conn_mut(&mut self) -> StoreResult<&mut Conn> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Database("internal error: the pooled connection was already returned".into()))
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let conn = self.conn.take().filter(|conn| self.healthy && !conn.client.is_closed());
        if conn.is_none() {
            self.healthy = false;
        }
        self.pool.put_back(conn);
    }
}

// ---- encoding and decoding

fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn corrupt(what: &str, error: impl Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {error}"))
}

/// Column `i` of `row`; `what` names it (`table.column`) in the error.
fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize, what: &str) -> StoreResult<T> {
    row.try_get(i).map_err(|e| corrupt(what, e))
}

fn get_u64(row: &Row, i: usize, what: &str) -> StoreResult<u64> {
    let value: i64 = col(row, i, what)?;
    u64::try_from(value).map_err(|_| corrupt(what, format!("{value} is negative")))
}

fn get_u32(row: &Row, i: usize, what: &str) -> StoreResult<u32> {
    let value: i64 = col(row, i, what)?;
    u32::try_from(value).map_err(|_| corrupt(what, format!("{value} is out of range")))
}

fn get_i32(row: &Row, i: usize, what: &str) -> StoreResult<i32> {
    let value: i64 = col(row, i, what)?;
    i32::try_from(value).map_err(|_| corrupt(what, format!("{value} is out of range")))
}

fn party_id(bytes: &[u8], what: &str) -> StoreResult<PartyId> {
    hex::encode(bytes).parse().map_err(|e| corrupt(what, e))
}

fn wake_channel(lock_key: i32) -> String {
    format!("idlegrid_wake_{}", lock_key as u32)
}

fn revocation_row(row: &Row) -> StoreResult<RevocationRow> {
    Ok(RevocationRow {
        party: get_party_id(row, 0, "revocations.party")?,
        reason: col(row, 1, "revocations.reason")?,
        revoked_ms: get_u64(row, 2, "revocations.revoked_ms")?,
    })
}

fn get_party_id(row: &Row, i: usize, what: &str) -> StoreResult<PartyId> {
    party_id(col(row, i, what)?, what)
}

fn to_uuid(bytes: &[u8], what: &str) -> StoreResult<uuid::Uuid> {
    uuid::Uuid::from_slice(bytes).map_err(|e| corrupt(what, e))
}

fn job_id(bytes: &[u8], what: &str) -> StoreResult<JobId> {
    to_uuid(bytes, what)?.to_string().parse().map_err(|e| corrupt(what, e))
}

fn session_id(bytes: &[u8], what: &str) -> StoreResult<SessionId> {
    to_uuid(bytes, what)?.to_string().parse().map_err(|e| corrupt(what, e))
}

fn get_job_id(row: &Row, i: usize, what: &str) -> StoreResult<JobId> {
    job_id(col(row, i, what)?, what)
}

fn get_session_id(row: &Row, i: usize, what: &str) -> StoreResult<SessionId> {
    session_id(col(row, i, what)?, what)
}

fn hash(bytes: &[u8], what: &str) -> StoreResult<ElementHash> {
    let array: [u8; 32] = bytes.try_into().map_err(|_| corrupt(what, format!("{} bytes, expected 32", bytes.len())))?;
    Ok(ElementHash::from_bytes(array))
}

fn get_hash(row: &Row, i: usize, what: &str) -> StoreResult<ElementHash> {
    hash(col(row, i, what)?, what)
}

fn get_json<T: serde::de::DeserializeOwned>(row: &Row, i: usize, what: &str) -> StoreResult<T> {
    let text: &str = col(row, i, what)?;
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

fn get_opt_json<T: serde::de::DeserializeOwned>(row: &Row, i: usize, what: &str) -> StoreResult<Option<T>> {
    let text: Option<&str> = col(row, i, what)?;
    text.map(|t| serde_json::from_str(t).map_err(|e| corrupt(what, e))).transpose()
}

fn json<T: serde::Serialize>(value: &T, what: &str) -> StoreResult<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Database(format!("cannot encode {what} as JSON: {e}")))
}

fn get_task_state(row: &Row, i: usize, what: &str) -> StoreResult<TaskState> {
    let text: &str = col(row, i, what)?;
    TaskState::parse(text).ok_or_else(|| corrupt(what, format!("unknown task state {text:?}")))
}

fn node_state_str(state: NodeState) -> &'static str {
    match state {
        NodeState::Active => "active",
        NodeState::Paused => "paused",
        NodeState::ShuttingDown => "shutting_down",
    }
}

fn node_state(text: &str, what: &str) -> StoreResult<NodeState> {
    match text {
        "active" => Ok(NodeState::Active),
        "paused" => Ok(NodeState::Paused),
        "shutting_down" => Ok(NodeState::ShuttingDown),
        _ => Err(corrupt(what, format!("unknown provider state {text:?}"))),
    }
}

fn replay_str(replay: Replay) -> &'static str {
    match replay {
        Replay::Undelivered => "undelivered",
        Replay::All => "all",
        Replay::None => "none",
    }
}

fn replay(text: &str, what: &str) -> StoreResult<Replay> {
    match text {
        "undelivered" => Ok(Replay::Undelivered),
        "all" => Ok(Replay::All),
        "none" => Ok(Replay::None),
        _ => Err(corrupt(what, format!("unknown replay {text:?}"))),
    }
}

const TASK_COLUMNS: &str =
    "key, job, idx, state, priority, executable, data, params, attempts, checkpoint, progress, status, cpu_ms";

fn task_row(row: &Row) -> StoreResult<TaskRow> {
    let checkpoint: Option<&[u8]> = col(row, 9, "tasks.checkpoint")?;
    let progress: f64 = col(row, 10, "tasks.progress")?;
    Ok(TaskRow {
        key: col(row, 0, "tasks.key")?,
        job: get_job_id(row, 1, "tasks.job")?,
        index: get_u64(row, 2, "tasks.idx")?,
        state: get_task_state(row, 3, "tasks.state")?,
        priority: get_i32(row, 4, "tasks.priority")?,
        executable: get_hash(row, 5, "tasks.executable")?,
        data: get_json(row, 6, "tasks.data")?,
        params: col(row, 7, "tasks.params")?,
        attempts: get_u32(row, 8, "tasks.attempts")?,
        checkpoint: checkpoint.map(|b| hash(b, "tasks.checkpoint")).transpose()?,
        progress: progress as f32,
        status: get_opt_json(row, 11, "tasks.status")?,
        cpu_ms: get_u64(row, 12, "tasks.cpu_ms")?,
    })
}

const JOB_COLUMNS: &str =
    "id, client, properties, state, n_created, n_queued, n_running, n_stopped, n_succeeded, n_failed, created_ms, hold";

fn job_row(row: &Row) -> StoreResult<JobRow> {
    let state: &str = col(row, 3, "jobs.state")?;
    Ok(JobRow {
        id: get_job_id(row, 0, "jobs.id")?,
        client: get_party_id(row, 1, "jobs.client")?,
        properties: get_json(row, 2, "jobs.properties")?,
        state: JobState::parse(state).ok_or_else(|| corrupt("jobs.state", format!("unknown job state {state:?}")))?,
        counts: JobCounts {
            created: get_u64(row, 4, "jobs.n_created")?,
            queued: get_u64(row, 5, "jobs.n_queued")?,
            running: get_u64(row, 6, "jobs.n_running")?,
            stopped: get_u64(row, 7, "jobs.n_stopped")?,
            succeeded: get_u64(row, 8, "jobs.n_succeeded")?,
            failed: get_u64(row, 9, "jobs.n_failed")?,
        },
        created_ms: get_u64(row, 10, "jobs.created_ms")?,
        hold: col(row, 11, "jobs.hold")?,
    })
}

const ASSIGNMENT_COLUMNS: &str = "id, task, provider, active, created_ms";

fn assignment_row(row: &Row) -> StoreResult<AssignmentRow> {
    let active: bool = col(row, 3, "assignments.active")?;
    Ok(AssignmentRow {
        id: AssignmentId(get_u64(row, 0, "assignments.id")?),
        task: col(row, 1, "assignments.task")?,
        provider: get_party_id(row, 2, "assignments.provider")?,
        state: if active { AssignmentRowState::Active } else { AssignmentRowState::Ended },
        created_ms: get_u64(row, 4, "assignments.created_ms")?,
    })
}

const RESULT_COLUMNS: &str = "id, task, job, idx, state, result, failure, cpu_ms, attempts, delivered, archived";

/// `replicas_wanted > 0` literally, so that the partial index task_assurance_wanting applies.
const TASKS_WANTING_REPLICAS: &str = "SELECT t.key, t.priority FROM task_assurance a JOIN tasks t ON t.key = a.task
     WHERE a.replicas_wanted > 0 AND t.state = 'running' ORDER BY t.priority DESC, t.key LIMIT $1";
/// Through assignments_provider_task: the provider's tasks come in key order, each looked up once.
const ASSURED_TASKS_OF_PROVIDER: &str =
    "SELECT DISTINCT a.task FROM assignments a JOIN task_assurance s ON s.task = a.task
     WHERE a.provider = $1 ORDER BY a.task LIMIT $2";

/// A result's payload: the JSON column, or the archived (gzip) copy of it.
fn result_payload(row: &Row) -> StoreResult<Option<Payload>> {
    use std::io::Read;
    if let Some(archived) = col::<Option<&[u8]>>(row, 10, "results.archived")? {
        let mut text = String::new();
        flate2::read::GzDecoder::new(archived).read_to_string(&mut text).map_err(|e| corrupt("results.archived", e))?;
        return serde_json::from_str(&text).map(Some).map_err(|e| corrupt("results.archived", e));
    }
    get_opt_json(row, 5, "results.result")
}

fn result_row(row: &Row) -> StoreResult<ResultRow> {
    Ok(ResultRow {
        id: col(row, 0, "results.id")?,
        result: NewResult {
            task: col(row, 1, "results.task")?,
            job: get_job_id(row, 2, "results.job")?,
            index: get_u64(row, 3, "results.idx")?,
            state: get_task_state(row, 4, "results.state")?,
            result: result_payload(row)?,
            failure: get_opt_json(row, 6, "results.failure")?,
            cpu_ms: get_u64(row, 7, "results.cpu_ms")?,
            attempts: get_u32(row, 8, "results.attempts")?,
        },
        delivered: col(row, 9, "results.delivered")?,
    })
}

fn attachment_row(row: &Row) -> StoreResult<AttachmentRow> {
    Ok(AttachmentRow {
        session: get_session_id(row, 0, "attachments.session")?,
        job: get_job_id(row, 1, "attachments.job")?,
        replay: replay(col(row, 2, "attachments.replay")?, "attachments.replay")?,
        cursor: col(row, 3, "attachments.cursor")?,
        completion_sent: col(row, 4, "attachments.completion_sent")?,
    })
}

// ---- the transaction

type Params<'p> = &'p [&'p (dyn ToSql + Sync)];

struct PgTx<'a> {
    client: &'a mut Client,
    /// Where this schema's instances hear of new messages (see [`PostgresStore::listen_wakes`]).
    wake_channel: String,
    statements: &'a mut HashMap<String, Statement>,
    /// The first statement that failed: PostgreSQL refuses everything after it until rollback.
    failed: Option<String>,
    /// Set when a statement failed for a conflict with another transaction (see
    /// [`is_conflict`]): the transaction is rolled back and may be run again.
    conflict: Option<String>,
}

impl PgTx<'_> {
    /// The prepared statement for `sql`, prepared once per connection: a prepared statement
    /// runs in one round trip instead of two.
    fn statement(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    fn fail(&mut self, sql: &str, error: postgres::Error) -> StoreError {
        let first_line = sql.split_whitespace().take(6).collect::<Vec<_>>().join(" ");
        let conflict = is_conflict(&error);
        let error = pg_error(&format!("{first_line} ..."), error);
        self.failed.get_or_insert_with(|| error.to_string());
        if conflict {
            self.conflict.get_or_insert_with(|| error.to_string());
        }
        error
    }

    fn query(&mut self, sql: &str, params: Params<'_>) -> StoreResult<Vec<Row>> {
        let result = self.statement(sql).and_then(|statement| self.client.query(&statement, params));
        result.map_err(|e| self.fail(sql, e))
    }

    fn query_opt(&mut self, sql: &str, params: Params<'_>) -> StoreResult<Option<Row>> {
        let result = self.statement(sql).and_then(|statement| self.client.query_opt(&statement, params));
        result.map_err(|e| self.fail(sql, e))
    }

    fn query_one(&mut self, sql: &str, params: Params<'_>) -> StoreResult<Row> {
        let result = self.statement(sql).and_then(|statement| self.client.query_one(&statement, params));
        result.map_err(|e| self.fail(sql, e))
    }

    fn execute(&mut self, sql: &str, params: Params<'_>) -> StoreResult<u64> {
        let result = self.statement(sql).and_then(|statement| self.client.execute(&statement, params));
        result.map_err(|e| self.fail(sql, e))
    }

    fn collect<T>(
        &mut self,
        sql: &str,
        params: Params<'_>,
        f: impl FnMut(&Row) -> StoreResult<T>,
    ) -> StoreResult<Vec<T>> {
        self.query(sql, params)?.iter().map(f).collect()
    }

    /// Lower the load of the providers whose assignments were just ended.
    fn release_providers(&mut self, providers: &[Vec<u8>]) -> StoreResult<()> {
        for provider in providers {
            self.execute("UPDATE providers SET assigned = GREATEST(assigned - 1, 0) WHERE id = $1", &[provider])?;
        }
        Ok(())
    }
}

const PROVIDER_COLUMNS: &str = "id, session, state, slots, capacity, assigned, last_contact_ms";

fn provider_row(row: &Row) -> StoreResult<ProviderRow> {
    let session: Option<&[u8]> = col(row, 1, "providers.session")?;
    Ok(ProviderRow {
        id: get_party_id(row, 0, "providers.id")?,
        session: session.map(|b| session_id(b, "providers.session")).transpose()?,
        state: node_state(col(row, 2, "providers.state")?, "providers.state")?,
        slots: get_u32(row, 3, "providers.slots")?,
        capacity: get_u32(row, 4, "providers.capacity")?,
        assigned: get_u32(row, 5, "providers.assigned")?,
        last_contact_ms: get_u64(row, 6, "providers.last_contact_ms")?,
    })
}

impl Tx for PgTx<'_> {
    fn market(&mut self) -> &mut dyn crate::market::MarketTx {
        self
    }

    fn ledger(&mut self) -> &mut dyn LedgerStore {
        self
    }

    fn mark_job_completed(&mut self, id: JobId, now_ms: u64) -> StoreResult<()> {
        self.execute(
            "UPDATE jobs SET completed_ms = COALESCE(completed_ms, $2) WHERE id = $1",
            &[&&id.as_uuid().as_bytes()[..], &int(now_ms)],
        )?;
        Ok(())
    }

    fn completed_jobs_with_undelivered_results(
        &mut self,
        completed_before_ms: u64,
        limit: u32,
    ) -> StoreResult<Vec<(JobId, u64, bool)>> {
        self.collect(
            "SELECT j.id, j.completed_ms, j.purge_warned FROM jobs j
             WHERE j.state = 'completed' AND j.completed_ms IS NOT NULL AND j.completed_ms < $1
               AND EXISTS (SELECT 1 FROM results r WHERE r.job = j.id AND NOT r.delivered)
             ORDER BY j.completed_ms LIMIT $2",
            &[&int(completed_before_ms), &i64::from(limit)],
            |row| {
                Ok((
                    get_job_id(row, 0, "jobs.id")?,
                    get_u64(row, 1, "jobs.completed_ms")?,
                    col(row, 2, "jobs.purge_warned")?,
                ))
            },
        )
    }

    fn set_purge_warned(&mut self, id: JobId) -> StoreResult<()> {
        self.execute("UPDATE jobs SET purge_warned = TRUE WHERE id = $1", &[&&id.as_uuid().as_bytes()[..]])?;
        Ok(())
    }

    fn archive_results(&mut self, job: JobId, delivered: bool) -> StoreResult<u64> {
        use std::io::Write;
        let rows = self.collect(
            "SELECT id, result FROM results WHERE job = $1 AND archived IS NULL AND result IS NOT NULL AND delivered = $2",
            &[&&job.as_uuid().as_bytes()[..], &delivered],
            |row| Ok((col::<i64>(row, 0, "results.id")?, col::<Option<String>>(row, 1, "results.result")?)),
        )?;
        let mut archived = 0;
        for (id, result) in rows {
            let Some(result) = result else { continue };
            let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(result.as_bytes()).map_err(|e| StoreError::Database(e.to_string()))?;
            let compressed = encoder.finish().map_err(|e| StoreError::Database(e.to_string()))?;
            self.execute("UPDATE results SET archived = $2, result = NULL WHERE id = $1", &[&id, &compressed])?;
            archived += 1;
        }
        Ok(archived)
    }

    fn set_job_hold(&mut self, id: JobId, hold: Option<&str>) -> StoreResult<()> {
        self.execute("UPDATE jobs SET hold = $2 WHERE id = $1", &[&&id.as_uuid().as_bytes()[..], &hold])?;
        Ok(())
    }

    fn held_jobs_of_client(&mut self, client: &PartyId, hold: &str) -> StoreResult<Vec<JobRow>> {
        self.collect(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE client = $1 AND hold = $2 ORDER BY created_ms, id"),
            &[&&client.as_bytes()[..], &hold],
            job_row,
        )
    }

    fn upsert_work_record(&mut self, record: &idlegrid_ledger::WorkRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO work_records (id, job, launched_ms, body) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET job = EXCLUDED.job, launched_ms = EXCLUDED.launched_ms, body = EXCLUDED.body",
            &[&int(record.id), &&record.job.as_uuid().as_bytes()[..], &int(record.launched_ms), &json(record, "a work record")?],
        )?;
        Ok(())
    }

    fn work_record(&mut self, id: u64) -> StoreResult<Option<idlegrid_ledger::WorkRecord>> {
        self.query_opt("SELECT body FROM work_records WHERE id = $1", &[&int(id)])?
            .map(|row| get_json(&row, 0, "work_records.body"))
            .transpose()
    }

    fn unbilled_work_records(
        &mut self,
        launched_before_ms: u64,
        limit: u32,
    ) -> StoreResult<Vec<idlegrid_ledger::WorkRecord>> {
        self.collect(
            "SELECT body FROM work_records WHERE NOT billed AND launched_ms < $1 ORDER BY launched_ms, id LIMIT $2",
            &[&int(launched_before_ms), &i64::from(limit)],
            |row| get_json(row, 0, "work_records.body"),
        )
    }

    fn mark_work_records_billed(&mut self, ids: &[u64]) -> StoreResult<()> {
        let ids: Vec<i64> = ids.iter().map(|id| int(*id)).collect();
        self.execute("UPDATE work_records SET billed = TRUE WHERE id = ANY($1)", &[&ids])?;
        Ok(())
    }

    fn work_records_of_job(&mut self, job: JobId) -> StoreResult<Vec<idlegrid_ledger::WorkRecord>> {
        self.collect(
            "SELECT body FROM work_records WHERE job = $1 ORDER BY id",
            &[&&job.as_uuid().as_bytes()[..]],
            |row| get_json(row, 0, "work_records.body"),
        )
    }

    fn unbilled_records_of_job(&mut self, job: JobId) -> StoreResult<u64> {
        let row = self.query_one(
            "SELECT COUNT(*) FROM work_records WHERE job = $1 AND NOT billed",
            &[&&job.as_uuid().as_bytes()[..]],
        )?;
        get_u64(&row, 0, "COUNT(work_records)")
    }

    fn push_notice(&mut self, client: &PartyId, channel: &str, body: &str, now_ms: u64) -> StoreResult<i64> {
        let row = self.query_one(
            "INSERT INTO notices (client, channel, body, next_try_ms) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&&client.as_bytes()[..], &channel, &body, &int(now_ms)],
        )?;
        col(&row, 0, "notices.id")
    }

    fn due_notices(&mut self, now_ms: u64, limit: u32) -> StoreResult<Vec<NoticeRow>> {
        self.collect(
            "SELECT id, client, channel, body, attempts, next_try_ms FROM notices
             WHERE NOT delivered AND next_try_ms <= $1 ORDER BY next_try_ms, id LIMIT $2",
            &[&int(now_ms), &i64::from(limit)],
            |row| {
                Ok(NoticeRow {
                    id: col(row, 0, "notices.id")?,
                    client: get_party_id(row, 1, "notices.client")?,
                    channel: col(row, 2, "notices.channel")?,
                    body: col(row, 3, "notices.body")?,
                    attempts: get_u32(row, 4, "notices.attempts")?,
                    next_try_ms: get_u64(row, 5, "notices.next_try_ms")?,
                })
            },
        )
    }

    fn notice_attempted(&mut self, id: i64, delivered: bool, next_try_ms: u64, error: Option<&str>) -> StoreResult<()> {
        self.execute(
            "UPDATE notices SET attempts = attempts + 1, delivered = $2, next_try_ms = $3, last_error = $4 WHERE id = $1",
            &[&id, &delivered, &int(next_try_ms), &error],
        )?;
        Ok(())
    }

    fn client_settings(&mut self, client: &PartyId) -> StoreResult<Option<String>> {
        self.query_opt("SELECT body FROM client_settings WHERE client = $1", &[&&client.as_bytes()[..]])?
            .map(|row| col(&row, 0, "client_settings.body"))
            .transpose()
    }

    fn set_client_settings(&mut self, client: &PartyId, body: &str) -> StoreResult<()> {
        self.execute(
            "INSERT INTO client_settings (client, body) VALUES ($1, $2) ON CONFLICT (client) DO UPDATE SET body = EXCLUDED.body",
            &[&&client.as_bytes()[..], &body],
        )?;
        Ok(())
    }

    fn meta(&mut self, key: &str) -> StoreResult<Option<Vec<u8>>> {
        self.query_opt("SELECT value FROM meta WHERE key = $1", &[&key])?
            .map(|row| col(&row, 0, "meta.value"))
            .transpose()
    }

    fn set_meta(&mut self, key: &str, value: &[u8]) -> StoreResult<()> {
        self.execute(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&key, &value],
        )?;
        Ok(())
    }

    fn insert_party(&mut self, party: &PartyRow) -> StoreResult<bool> {
        let n = self.execute(
            "INSERT INTO parties (id, role, public_key, name, created_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO NOTHING",
            &[
                &&party.id.as_bytes()[..],
                &party.role.as_str(),
                &&party.public_key[..],
                &party.name,
                &int(party.created_ms),
            ],
        )?;
        Ok(n == 1)
    }

    fn party(&mut self, id: &PartyId) -> StoreResult<Option<PartyRow>> {
        let Some(row) = self.query_opt(
            "SELECT id, role, public_key, name, created_ms FROM parties WHERE id = $1",
            &[&&id.as_bytes()[..]],
        )?
        else {
            return Ok(None);
        };
        let role: &str = col(&row, 1, "parties.role")?;
        let key: &[u8] = col(&row, 2, "parties.public_key")?;
        Ok(Some(PartyRow {
            id: get_party_id(&row, 0, "parties.id")?,
            role: role.parse::<Role>().map_err(|e| corrupt("parties.role", e))?,
            public_key: key
                .try_into()
                .map_err(|_| corrupt("parties.public_key", format!("{} bytes, expected 32", key.len())))?,
            name: col(&row, 3, "parties.name")?,
            created_ms: get_u64(&row, 4, "parties.created_ms")?,
        }))
    }

    fn insert_logs(&mut self, lines: &[LogRow]) -> StoreResult<()> {
        for line in lines {
            let job = line.job.map(|j| j.as_uuid().as_bytes().to_vec());
            self.execute(
                "INSERT INTO logs (time_ms, received_ms, party, role, level, component, job, message) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &int(line.time_ms),
                    &int(line.received_ms),
                    &&line.party.as_bytes()[..],
                    &line.role.as_str(),
                    &line.level,
                    &line.component,
                    &job,
                    &line.message,
                ],
            )?;
        }
        Ok(())
    }

    fn logs(&mut self, filter: &LogFilter) -> StoreResult<Vec<LogRow>> {
        let party = filter.party.as_ref().map(|p| p.as_bytes().to_vec());
        let job = filter.job.map(|j| j.as_uuid().as_bytes().to_vec());
        let rows = self.query(
            "SELECT id, time_ms, received_ms, party, role, level, component, job, message FROM logs
             WHERE ($1::TEXT IS NULL OR component = $1) AND ($2::BYTEA IS NULL OR party = $2) AND ($3::BYTEA IS NULL OR job = $3)
               AND ($4::TEXT IS NULL OR level = $4) AND received_ms >= $5 AND received_ms < $6
             ORDER BY id DESC LIMIT $7",
            &[
                &filter.component,
                &party,
                &job,
                &filter.level,
                &int(filter.since_ms.unwrap_or(0)),
                &int(filter.until_ms.unwrap_or(i64::MAX as u64)),
                &i64::from(filter.limit),
            ],
        )?;
        rows.iter()
            .map(|row| {
                let role: &str = col(row, 4, "logs.role")?;
                let job: Option<&[u8]> = col(row, 7, "logs.job")?;
                Ok(LogRow {
                    id: get_u64(row, 0, "logs.id")?,
                    time_ms: get_u64(row, 1, "logs.time_ms")?,
                    received_ms: get_u64(row, 2, "logs.received_ms")?,
                    party: get_party_id(row, 3, "logs.party")?,
                    role: role.parse::<Role>().map_err(|e| corrupt("logs.role", e))?,
                    level: col(row, 5, "logs.level")?,
                    component: col(row, 6, "logs.component")?,
                    job: match job {
                        Some(_) => Some(get_job_id(row, 7, "logs.job")?),
                        None => None,
                    },
                    message: col(row, 8, "logs.message")?,
                })
            })
            .collect()
    }

    fn delete_logs_before(&mut self, before_ms: u64) -> StoreResult<u64> {
        self.execute("DELETE FROM logs WHERE received_ms < $1", &[&int(before_ms)])
    }

    fn census(&mut self, contact_since_ms: u64) -> StoreResult<Census> {
        let row = self
            .query_opt(
                "SELECT COALESCE(SUM(n_queued), 0)::BIGINT, COALESCE(SUM(n_running), 0)::BIGINT,
                    COUNT(*) FILTER (WHERE state <> 'completed')::BIGINT FROM jobs",
                &[],
            )?
            .ok_or_else(|| StoreError::Database("the census query returned no row".into()))?;
        let engines = self
            .query_opt(
                "SELECT COUNT(*) FROM providers WHERE session IS NOT NULL AND last_contact_ms >= $1",
                &[&int(contact_since_ms)],
            )?
            .ok_or_else(|| StoreError::Database("the census query returned no row".into()))?;
        Ok(Census {
            tasks_queued: get_u64(&row, 0, "census.queued")?,
            tasks_running: get_u64(&row, 1, "census.running")?,
            jobs_active: get_u64(&row, 2, "census.active")?,
            engines_connected: get_u64(&engines, 0, "census.engines")?,
        })
    }

    fn announce_wakes(&mut self, sessions: &[SessionId]) -> StoreResult<()> {
        // Delivered at commit, and not at all on rollback: exactly the wake-ups that are true.
        // A payload holds at most 8000 bytes: 100 IDs of 37 bytes each fit.
        for chunk in sessions.chunks(100) {
            let payload = chunk.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",");
            let channel = self.wake_channel.clone();
            self.query("SELECT pg_notify($1, $2)", &[&channel, &payload])?;
        }
        Ok(())
    }

    fn revoke_party(&mut self, r: &RevocationRow) -> StoreResult<bool> {
        let n = self.execute(
            "INSERT INTO revocations (party, reason, revoked_ms) VALUES ($1, $2, $3) ON CONFLICT (party) DO NOTHING",
            &[&&r.party.as_bytes()[..], &r.reason, &int(r.revoked_ms)],
        )?;
        Ok(n == 1)
    }

    fn revocation(&mut self, party: &PartyId) -> StoreResult<Option<RevocationRow>> {
        let row = self.query_opt(
            "SELECT party, reason, revoked_ms FROM revocations WHERE party = $1",
            &[&&party.as_bytes()[..]],
        )?;
        row.map(|row| revocation_row(&row)).transpose()
    }

    fn revocations(&mut self) -> StoreResult<Vec<RevocationRow>> {
        let rows = self.query("SELECT party, reason, revoked_ms FROM revocations ORDER BY revoked_ms, party", &[])?;
        rows.iter().map(revocation_row).collect()
    }

    fn insert_session(&mut self, party: &PartyId, s: &SessionRow) -> StoreResult<()> {
        self.execute(
            "INSERT INTO sessions (id, party, inbound_acked, outbound_head, outbound_acked, last_seen_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &&s.id.as_uuid().as_bytes()[..],
                &&party.as_bytes()[..],
                &int(s.inbound_acked),
                &int(s.outbound_head),
                &int(s.outbound_acked),
                &int(s.last_seen_ms),
            ],
        )?;
        Ok(())
    }

    fn session(&mut self, id: SessionId) -> StoreResult<Option<OwnedSession>> {
        let Some(row) = self.query_opt(
            "SELECT party, inbound_acked, outbound_head, outbound_acked, last_seen_ms FROM sessions WHERE id = $1",
            &[&&id.as_uuid().as_bytes()[..]],
        )?
        else {
            return Ok(None);
        };
        Ok(Some(OwnedSession {
            party: get_party_id(&row, 0, "sessions.party")?,
            session: SessionRow {
                id,
                inbound_acked: get_u64(&row, 1, "sessions.inbound_acked")?,
                outbound_head: get_u64(&row, 2, "sessions.outbound_head")?,
                outbound_acked: get_u64(&row, 3, "sessions.outbound_acked")?,
                last_seen_ms: get_u64(&row, 4, "sessions.last_seen_ms")?,
            },
        }))
    }

    fn set_session_inbound(&mut self, id: SessionId, inbound_acked: u64, now_ms: u64) -> StoreResult<()> {
        self.execute(
            "UPDATE sessions SET inbound_acked = $2, last_seen_ms = $3 WHERE id = $1",
            &[&&id.as_uuid().as_bytes()[..], &int(inbound_acked), &int(now_ms)],
        )?;
        Ok(())
    }

    fn touch_session(&mut self, id: SessionId, now_ms: u64) -> StoreResult<()> {
        self.execute(
            "UPDATE sessions SET last_seen_ms = $2 WHERE id = $1",
            &[&&id.as_uuid().as_bytes()[..], &int(now_ms)],
        )?;
        Ok(())
    }

    fn delete_session(&mut self, id: SessionId) -> StoreResult<()> {
        let key = &id.as_uuid().as_bytes()[..];
        self.execute("DELETE FROM outbox WHERE session = $1", &[&key])?;
        self.execute("DELETE FROM attachments WHERE session = $1", &[&key])?;
        self.execute("DELETE FROM sessions WHERE id = $1", &[&key])?;
        self.execute("UPDATE providers SET session = NULL WHERE session = $1", &[&key])?;
        Ok(())
    }

    fn sessions_idle_since(&mut self, before_ms: u64, limit: u32) -> StoreResult<Vec<SessionId>> {
        self.collect(
            "SELECT id FROM sessions WHERE last_seen_ms < $1 LIMIT $2",
            &[&int(before_ms), &i64::from(limit)],
            |row| get_session_id(row, 0, "sessions.id"),
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
        let row = self
            .query_opt(
                "UPDATE sessions SET outbound_head = outbound_head + 1 WHERE id = $1 RETURNING outbound_head",
                &[&key],
            )?
            .ok_or_else(|| StoreError::Conflict(format!("session {session} does not exist")))?;
        let seq: i64 = col(&row, 0, "sessions.outbound_head")?;
        self.execute(
            "INSERT INTO outbox (session, seq, reply_to, body, result_id) VALUES ($1, $2, $3, $4, $5)",
            &[&key, &seq, &reply_to.map(int), &body, &result],
        )?;
        u64::try_from(seq).map_err(|_| corrupt("sessions.outbound_head", format!("{seq} is negative")))
    }

    fn outbox_after(&mut self, session: SessionId, after: u64, limit: u32) -> StoreResult<Vec<OutboxRow>> {
        self.collect(
            "SELECT seq, reply_to, body FROM outbox WHERE session = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&&session.as_uuid().as_bytes()[..], &int(after), &i64::from(limit)],
            |row| {
                let reply_to: Option<i64> = col(row, 1, "outbox.reply_to")?;
                Ok(OutboxRow {
                    seq: get_u64(row, 0, "outbox.seq")?,
                    reply_to: reply_to
                        .map(|r| u64::try_from(r).map_err(|_| corrupt("outbox.reply_to", format!("{r} is negative"))))
                        .transpose()?,
                    body: col(row, 2, "outbox.body")?,
                })
            },
        )
    }

    fn ack_outbox(&mut self, session: SessionId, upto: u64) -> StoreResult<Vec<i64>> {
        let key = &session.as_uuid().as_bytes()[..];
        let results = self.collect(
            "DELETE FROM outbox WHERE session = $1 AND seq <= $2 RETURNING result_id",
            &[&key, &int(upto)],
            |row| col::<Option<i64>>(row, 0, "outbox.result_id"),
        )?;
        self.execute(
            "UPDATE sessions SET outbound_acked = GREATEST(outbound_acked, LEAST($2, outbound_head)) WHERE id = $1",
            &[&key, &int(upto)],
        )?;
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
        self.execute(
            "INSERT INTO providers (id, state, slots, capacity, last_contact_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, slots = EXCLUDED.slots, capacity = EXCLUDED.capacity,
                                            last_contact_ms = EXCLUDED.last_contact_ms",
            &[&&id.as_bytes()[..], &node_state_str(state), &i64::from(slots), &i64::from(capacity), &int(now_ms)],
        )?;
        Ok(())
    }

    fn set_provider_profile(&mut self, id: &PartyId, profile_json: &str) -> StoreResult<()> {
        self.execute("UPDATE providers SET profile = $2 WHERE id = $1", &[&&id.as_bytes()[..], &profile_json])?;
        Ok(())
    }

    fn provider_profile(&mut self, id: &PartyId) -> StoreResult<Option<String>> {
        match self.query_opt("SELECT profile FROM providers WHERE id = $1", &[&&id.as_bytes()[..]])? {
            Some(row) => Ok(row
                .try_get::<_, Option<String>>(0)
                .map_err(|e| StoreError::Corrupt(format!("providers.profile: {e}")))?),
            None => Ok(None),
        }
    }

    fn set_provider_session(&mut self, id: &PartyId, session: Option<SessionId>) -> StoreResult<()> {
        let session = session.map(|s| s.as_uuid().as_bytes().to_vec());
        let n = self.execute("UPDATE providers SET session = $2 WHERE id = $1", &[&&id.as_bytes()[..], &session])?;
        if n == 0 {
            self.execute(
                "INSERT INTO providers (id, session, state, slots, capacity, last_contact_ms) VALUES ($1, $2, 'paused', 0, 0, 0)",
                &[&&id.as_bytes()[..], &session],
            )?;
        }
        Ok(())
    }

    fn touch_provider(&mut self, id: &PartyId, now_ms: u64) -> StoreResult<()> {
        self.execute(
            "UPDATE providers SET last_contact_ms = GREATEST(last_contact_ms, $2) WHERE id = $1",
            &[&&id.as_bytes()[..], &int(now_ms)],
        )?;
        Ok(())
    }

    fn provider(&mut self, id: &PartyId) -> StoreResult<Option<ProviderRow>> {
        let sql = format!("SELECT {PROVIDER_COLUMNS} FROM providers WHERE id = $1");
        let Some(row) = self.query_opt(&sql, &[&&id.as_bytes()[..]])? else {
            return Ok(None);
        };
        provider_row(&row).map(Some)
    }

    fn providers_heard_since(&mut self, contact_since_ms: u64, limit: u32) -> StoreResult<Vec<ProviderRow>> {
        let sql = format!("SELECT {PROVIDER_COLUMNS} FROM providers WHERE last_contact_ms >= $1 ORDER BY id LIMIT $2");
        self.collect(&sql, &[&int(contact_since_ms), &i64::from(limit)], provider_row)
    }

    fn providers_with_room(&mut self, contact_since_ms: u64) -> StoreResult<Vec<ProviderRoom>> {
        self.collect(
            "SELECT id, session, capacity - assigned FROM providers
             WHERE state = 'active' AND session IS NOT NULL AND capacity > assigned AND last_contact_ms >= $1
             ORDER BY id",
            &[&int(contact_since_ms)],
            |row| {
                Ok(ProviderRoom {
                    id: get_party_id(row, 0, "providers.id")?,
                    session: get_session_id(row, 1, "providers.session")?,
                    room: get_u32(row, 2, "providers.capacity - assigned")?,
                })
            },
        )
    }

    fn insert_element(&mut self, hash: &ElementHash, size: u64, now_ms: u64) -> StoreResult<()> {
        self.execute(
            "INSERT INTO elements (hash, size, created_ms) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING",
            &[&&hash.as_bytes()[..], &int(size), &int(now_ms)],
        )?;
        Ok(())
    }

    fn element_size(&mut self, hash: &ElementHash) -> StoreResult<Option<u64>> {
        self.query_opt("SELECT size FROM elements WHERE hash = $1", &[&&hash.as_bytes()[..]])?
            .map(|row| get_u64(&row, 0, "elements.size"))
            .transpose()
    }

    fn grant_element(
        &mut self,
        owner: &PartyId,
        hash: &ElementHash,
        kind: ElementKind,
        name: &str,
        now_ms: u64,
    ) -> StoreResult<()> {
        self.execute(
            "INSERT INTO element_grants (owner, hash, kind, name, created_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (owner, hash) DO UPDATE SET kind = EXCLUDED.kind,
                 name = CASE WHEN EXCLUDED.name = '' THEN element_grants.name ELSE EXCLUDED.name END",
            &[&&owner.as_bytes()[..], &&hash.as_bytes()[..], &kind.as_str(), &name, &int(now_ms)],
        )?;
        Ok(())
    }

    fn element_grant(&mut self, owner: &PartyId, hash: &ElementHash) -> StoreResult<Option<ElementGrant>> {
        let Some(row) = self.query_opt(
            "SELECT g.kind, g.name, e.size FROM element_grants g JOIN elements e ON e.hash = g.hash
             WHERE g.owner = $1 AND g.hash = $2",
            &[&&owner.as_bytes()[..], &&hash.as_bytes()[..]],
        )?
        else {
            return Ok(None);
        };
        let kind: &str = col(&row, 0, "element_grants.kind")?;
        Ok(Some(ElementGrant {
            kind: kind.parse().map_err(|e| corrupt("element_grants.kind", e))?,
            name: col(&row, 1, "element_grants.name")?,
            size: get_u64(&row, 2, "elements.size")?,
        }))
    }

    fn revoke_element(&mut self, owner: &PartyId, hash: &ElementHash) -> StoreResult<bool> {
        let n = self.execute(
            "DELETE FROM element_grants WHERE owner = $1 AND hash = $2",
            &[&&owner.as_bytes()[..], &&hash.as_bytes()[..]],
        )?;
        Ok(n > 0)
    }

    fn add_job_elements(&mut self, job: JobId, hashes: &[ElementHash]) -> StoreResult<()> {
        let hashes: Vec<&[u8]> = hashes.iter().map(|h| &h.as_bytes()[..]).collect();
        self.execute(
            "INSERT INTO job_elements (job, hash) SELECT $1, h FROM UNNEST($2::BYTEA[]) AS h ON CONFLICT DO NOTHING",
            &[&&job.as_uuid().as_bytes()[..], &hashes],
        )?;
        Ok(())
    }

    fn unreferenced_elements(&mut self, created_before_ms: u64, limit: u32) -> StoreResult<Vec<ElementHash>> {
        self.collect(
            "SELECT e.hash FROM elements e
             WHERE e.created_ms < $1
               AND NOT EXISTS (SELECT 1 FROM element_grants g WHERE g.hash = e.hash)
               AND NOT EXISTS (SELECT 1 FROM job_elements j WHERE j.hash = e.hash)
             LIMIT $2",
            &[&int(created_before_ms), &i64::from(limit)],
            |row| get_hash(row, 0, "elements.hash"),
        )
    }

    fn element_usage(&mut self, owner: &PartyId) -> StoreResult<ElementUsage> {
        let row = self.query_one(
            "SELECT COALESCE(SUM(e.size), 0)::BIGINT, COUNT(*) FROM element_grants g JOIN elements e ON e.hash = g.hash
             WHERE g.owner = $1",
            &[&&owner.as_bytes()[..]],
        )?;
        Ok(ElementUsage {
            bytes: get_u64(&row, 0, "SUM(elements.size)")?,
            elements: get_u64(&row, 1, "COUNT(element_grants)")?,
        })
    }

    fn element_visible_to_client(&mut self, client: &PartyId, hash: &ElementHash) -> StoreResult<bool> {
        let row = self.query_one(
            "SELECT EXISTS (SELECT 1 FROM element_grants WHERE owner = $1 AND hash = $2)
                 OR EXISTS (SELECT 1 FROM job_elements je JOIN jobs j ON j.id = je.job
                            WHERE je.hash = $2 AND j.client = $1)",
            &[&&client.as_bytes()[..], &&hash.as_bytes()[..]],
        )?;
        col(&row, 0, "EXISTS(element_grants)")
    }

    fn delete_element(&mut self, hash: &ElementHash) -> StoreResult<()> {
        self.execute("DELETE FROM elements WHERE hash = $1", &[&&hash.as_bytes()[..]])?;
        Ok(())
    }

    fn insert_job(&mut self, job: &JobRow) -> StoreResult<bool> {
        let c = &job.counts;
        let n = self.execute(
            "INSERT INTO jobs (id, client, properties, state, n_created, n_queued, n_running, n_stopped, n_succeeded,
                               n_failed, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (id) DO NOTHING",
            &[
                &&job.id.as_uuid().as_bytes()[..],
                &&job.client.as_bytes()[..],
                &json(&job.properties, "job properties")?,
                &job.state.as_str(),
                &int(c.created),
                &int(c.queued),
                &int(c.running),
                &int(c.stopped),
                &int(c.succeeded),
                &int(c.failed),
                &int(job.created_ms),
            ],
        )?;
        Ok(n == 1)
    }

    fn job(&mut self, id: JobId) -> StoreResult<Option<JobRow>> {
        self.query_opt(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"), &[&&id.as_uuid().as_bytes()[..]])?
            .map(|row| job_row(&row))
            .transpose()
    }

    fn jobs_of_client(&mut self, client: &PartyId) -> StoreResult<Vec<JobRow>> {
        self.collect(
            &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE client = $1 ORDER BY created_ms, id"),
            &[&&client.as_bytes()[..]],
            job_row,
        )
    }

    fn save_job_state(&mut self, id: JobId, state: JobState, c: &JobCounts) -> StoreResult<()> {
        self.execute(
            "UPDATE jobs SET state = $2, n_created = $3, n_queued = $4, n_running = $5, n_stopped = $6,
                             n_succeeded = $7, n_failed = $8 WHERE id = $1",
            &[
                &&id.as_uuid().as_bytes()[..],
                &state.as_str(),
                &int(c.created),
                &int(c.queued),
                &int(c.running),
                &int(c.stopped),
                &int(c.succeeded),
                &int(c.failed),
            ],
        )?;
        Ok(())
    }

    fn delete_job(&mut self, id: JobId) -> StoreResult<()> {
        let key = &id.as_uuid().as_bytes()[..];
        // Assignments first: they are found through the job's tasks.
        let ended = self.collect(
            "UPDATE assignments SET active = FALSE WHERE active AND task IN (SELECT key FROM tasks WHERE job = $1)
             RETURNING provider",
            &[&key],
            |row| col::<Vec<u8>>(row, 0, "assignments.provider"),
        )?;
        self.release_providers(&ended)?;
        self.execute(
            "DELETE FROM spot_checks WHERE assignment IN
             (SELECT a.id FROM assignments a JOIN tasks t ON t.key = a.task WHERE t.job = $1)",
            &[&key],
        )?;
        self.execute("DELETE FROM assignments WHERE task IN (SELECT key FROM tasks WHERE job = $1)", &[&key])?;
        self.execute("DELETE FROM task_assurance WHERE task IN (SELECT key FROM tasks WHERE job = $1)", &[&key])?;
        self.execute("DELETE FROM known_answers WHERE task IN (SELECT key FROM tasks WHERE job = $1)", &[&key])?;
        self.execute("DELETE FROM results WHERE job = $1", &[&key])?;
        self.execute("DELETE FROM task_requests WHERE task IN (SELECT key FROM tasks WHERE job = $1)", &[&key])?;
        self.execute("DELETE FROM tasks WHERE job = $1", &[&key])?;
        self.execute("DELETE FROM attachments WHERE job = $1", &[&key])?;
        self.execute("DELETE FROM job_elements WHERE job = $1", &[&key])?;
        self.execute("DELETE FROM jobs WHERE id = $1", &[&key])?;
        Ok(())
    }

    fn insert_tasks(&mut self, job: JobId, tasks: &[NewTask]) -> StoreResult<()> {
        // One statement for the batch (a round trip per task would dominate a large job's
        // submission). SQLite inserts up to the first index that exists and stops there with
        // a conflict; the same prefix is found first here, so both leave the same rows.
        let key = &job.as_uuid().as_bytes()[..];
        let indexes: Vec<i64> = tasks.iter().map(|t| int(t.index)).collect();
        let existing: HashSet<i64> = self
            .collect("SELECT idx FROM tasks WHERE job = $1 AND idx = ANY($2)", &[&key, &indexes], |row| {
                col(row, 0, "tasks.idx")
            })?
            .into_iter()
            .collect();
        let mut seen = HashSet::new();
        let prefix = indexes.iter().position(|i| existing.contains(i) || !seen.insert(*i)).unwrap_or(tasks.len());
        let batch = &tasks[..prefix];
        let mut data = Vec::with_capacity(batch.len());
        for task in batch {
            let names: BTreeMap<&String, String> = task.data.iter().map(|(k, v)| (k, v.to_string())).collect();
            data.push(json(&names, "task data")?);
        }
        let priorities: Vec<i64> = batch.iter().map(|t| i64::from(t.priority)).collect();
        let executables: Vec<&[u8]> = batch.iter().map(|t| &t.executable.as_bytes()[..]).collect();
        let params: Vec<&[u8]> = batch.iter().map(|t| &t.params[..]).collect();
        let inserted = self.execute(
            "INSERT INTO tasks (job, idx, state, priority, executable, data, params)
             SELECT $1, t.idx, 'created', t.priority, t.executable, t.data, t.params
             FROM UNNEST($2::BIGINT[], $3::BIGINT[], $4::BYTEA[], $5::TEXT[], $6::BYTEA[])
                  WITH ORDINALITY AS t(idx, priority, executable, data, params, n)
             ORDER BY t.n
             ON CONFLICT (job, idx) DO NOTHING",
            &[&key, &&indexes[..prefix], &priorities, &executables, &data, &params],
        )?;
        if prefix < tasks.len() || inserted < prefix as u64 {
            let index = tasks.get(prefix).map(|t| t.index.to_string()).unwrap_or_else(|| "in the batch".to_string());
            return Err(StoreError::Conflict(format!("task {index} of job {job} exists already")));
        }
        Ok(())
    }

    fn task(&mut self, job: JobId, index: TaskIndex) -> StoreResult<Option<TaskRow>> {
        self.query_opt(
            &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE job = $1 AND idx = $2"),
            &[&&job.as_uuid().as_bytes()[..], &int(index)],
        )?
        .map(|row| task_row(&row))
        .transpose()
    }

    fn task_by_key(&mut self, key: TaskKey) -> StoreResult<Option<TaskRow>> {
        self.query_opt(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE key = $1"), &[&key])?
            .map(|row| task_row(&row))
            .transpose()
    }

    fn set_task_state(&mut self, key: TaskKey, state: TaskState) -> StoreResult<()> {
        self.execute("UPDATE tasks SET state = $2 WHERE key = $1", &[&key, &state.as_str()])?;
        Ok(())
    }

    fn move_job_tasks(&mut self, job: JobId, from: &[TaskState], to: TaskState) -> StoreResult<Vec<(TaskState, u64)>> {
        let mut moved = Vec::new();
        for state in from {
            let n = self.execute(
                "UPDATE tasks SET state = $3 WHERE job = $1 AND state = $2",
                &[&&job.as_uuid().as_bytes()[..], &state.as_str(), &to.as_str()],
            )?;
            moved.push((*state, n));
        }
        Ok(moved)
    }

    fn set_task_progress(&mut self, key: TaskKey, progress: f32, status: Option<&Payload>) -> StoreResult<()> {
        let status = status.map(|s| json(s, "task status")).transpose()?;
        self.execute(
            "UPDATE tasks SET progress = $2, status = COALESCE($3, status) WHERE key = $1",
            &[&key, &f64::from(progress), &status],
        )?;
        Ok(())
    }

    fn set_task_checkpoint(&mut self, key: TaskKey, checkpoint: Option<&ElementHash>) -> StoreResult<()> {
        let checkpoint = checkpoint.map(|h| &h.as_bytes()[..]);
        self.execute("UPDATE tasks SET checkpoint = $2 WHERE key = $1", &[&key, &checkpoint])?;
        Ok(())
    }

    fn set_task_run(&mut self, key: TaskKey, attempts: u32, cpu_ms: u64) -> StoreResult<()> {
        self.execute(
            "UPDATE tasks SET attempts = $2, cpu_ms = $3 WHERE key = $1",
            &[&key, &i64::from(attempts), &int(cpu_ms)],
        )?;
        Ok(())
    }

    fn delete_task(&mut self, key: TaskKey) -> StoreResult<()> {
        let ended = self.collect(
            "UPDATE assignments SET active = FALSE WHERE active AND task = $1 RETURNING provider",
            &[&key],
            |row| col::<Vec<u8>>(row, 0, "assignments.provider"),
        )?;
        self.release_providers(&ended)?;
        self.execute(
            "DELETE FROM spot_checks WHERE assignment IN (SELECT id FROM assignments WHERE task = $1)",
            &[&key],
        )?;
        self.execute("DELETE FROM assignments WHERE task = $1", &[&key])?;
        self.execute("DELETE FROM task_assurance WHERE task = $1", &[&key])?;
        self.execute("DELETE FROM known_answers WHERE task = $1", &[&key])?;
        self.execute("DELETE FROM results WHERE task = $1", &[&key])?;
        self.execute("DELETE FROM task_requests WHERE task = $1", &[&key])?;
        self.execute("DELETE FROM tasks WHERE key = $1", &[&key])?;
        Ok(())
    }

    fn queued_tasks(&mut self, limit: u32) -> StoreResult<Vec<QueuedTask>> {
        self.collect(
            "SELECT key, priority FROM tasks WHERE state = 'queued' ORDER BY priority DESC, key LIMIT $1",
            &[&i64::from(limit)],
            |row| Ok(QueuedTask { key: col(row, 0, "tasks.key")?, priority: get_i32(row, 1, "tasks.priority")? }),
        )
    }

    fn add_task_request(&mut self, task: TaskKey, session: SessionId, reply_to: u64) -> StoreResult<()> {
        self.execute(
            "INSERT INTO task_requests (task, session, reply_to) VALUES ($1, $2, $3)",
            &[&task, &&session.as_uuid().as_bytes()[..], &int(reply_to)],
        )?;
        Ok(())
    }

    fn take_task_requests(&mut self, task: TaskKey) -> StoreResult<Vec<(SessionId, u64)>> {
        self.collect("DELETE FROM task_requests WHERE task = $1 RETURNING session, reply_to", &[&task], |row| {
            Ok((get_session_id(row, 0, "task_requests.session")?, get_u64(row, 1, "task_requests.reply_to")?))
        })
    }

    fn insert_assignment(&mut self, task: TaskKey, provider: &PartyId, now_ms: u64) -> StoreResult<AssignmentId> {
        let row = self.query_one(
            "INSERT INTO assignments (task, provider, active, created_ms) VALUES ($1, $2, TRUE, $3) RETURNING id",
            &[&task, &&provider.as_bytes()[..], &int(now_ms)],
        )?;
        let id = get_u64(&row, 0, "assignments.id")?;
        self.execute("UPDATE providers SET assigned = assigned + 1 WHERE id = $1", &[&&provider.as_bytes()[..]])?;
        Ok(AssignmentId(id))
    }

    fn assignment(&mut self, id: AssignmentId) -> StoreResult<Option<AssignmentRow>> {
        self.query_opt(&format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE id = $1"), &[&int(id.0)])?
            .map(|row| assignment_row(&row))
            .transpose()
    }

    fn end_assignment(&mut self, id: AssignmentId, now_ms: u64) -> StoreResult<bool> {
        let row = self.query_opt(
            "UPDATE assignments SET active = FALSE, ended_ms = $2 WHERE id = $1 AND active RETURNING provider",
            &[&int(id.0), &int(now_ms)],
        )?;
        match row {
            None => Ok(false),
            Some(row) => {
                self.release_providers(&[col(&row, 0, "assignments.provider")?])?;
                Ok(true)
            }
        }
    }

    fn active_assignments_of_task(&mut self, task: TaskKey) -> StoreResult<Vec<AssignmentRow>> {
        self.collect(
            &format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE task = $1 AND active ORDER BY id"),
            &[&task],
            assignment_row,
        )
    }

    fn active_assignments_of_provider(&mut self, provider: &PartyId) -> StoreResult<Vec<AssignmentRow>> {
        self.collect(
            &format!("SELECT {ASSIGNMENT_COLUMNS} FROM assignments WHERE provider = $1 AND active ORDER BY id"),
            &[&&provider.as_bytes()[..]],
            assignment_row,
        )
    }

    fn active_assignments_of_job(&mut self, job: JobId) -> StoreResult<Vec<AssignmentRow>> {
        self.collect(
            &format!(
                "SELECT {ASSIGNMENT_COLUMNS} FROM assignments
                 WHERE active AND task IN (SELECT key FROM tasks WHERE job = $1) ORDER BY id"
            ),
            &[&&job.as_uuid().as_bytes()[..]],
            assignment_row,
        )
    }

    fn silent_assignments(&mut self, contact_before_ms: u64, limit: u32) -> StoreResult<Vec<AssignmentRow>> {
        self.collect(
            "SELECT a.id, a.task, a.provider, a.active, a.created_ms FROM assignments a JOIN providers p ON p.id = a.provider
             WHERE a.active AND p.last_contact_ms < $1 ORDER BY a.id LIMIT $2",
            &[&int(contact_before_ms), &i64::from(limit)],
            assignment_row,
        )
    }

    fn insert_result(&mut self, r: &NewResult, now_ms: u64) -> StoreResult<i64> {
        let result = r.result.as_ref().map(|p| json(p, "a result")).transpose()?;
        let failure = r.failure.as_ref().map(|f| json(f, "a failure")).transpose()?;
        let row = self.query_one(
            "INSERT INTO results (task, job, idx, state, result, failure, cpu_ms, attempts, delivered, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, FALSE, $9) RETURNING id",
            &[
                &r.task,
                &&r.job.as_uuid().as_bytes()[..],
                &int(r.index),
                &r.state.as_str(),
                &result,
                &failure,
                &int(r.cpu_ms),
                &i64::from(r.attempts),
                &int(now_ms),
            ],
        )?;
        col(&row, 0, "results.id")
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
                "SELECT {RESULT_COLUMNS} FROM results WHERE job = $1 AND id > $2 AND NOT delivered ORDER BY id LIMIT $3"
            )
        } else {
            format!("SELECT {RESULT_COLUMNS} FROM results WHERE job = $1 AND id > $2 ORDER BY id LIMIT $3")
        };
        self.collect(&sql, &[&&job.as_uuid().as_bytes()[..], &after, &i64::from(limit)], result_row)
    }

    fn last_result_id(&mut self, job: JobId) -> StoreResult<i64> {
        let row = self
            .query_one("SELECT COALESCE(MAX(id), 0) FROM results WHERE job = $1", &[&&job.as_uuid().as_bytes()[..]])?;
        col(&row, 0, "MAX(results.id)")
    }

    fn mark_delivered(&mut self, result_ids: &[i64]) -> StoreResult<()> {
        self.execute("UPDATE results SET delivered = TRUE WHERE id = ANY($1)", &[&result_ids])?;
        Ok(())
    }

    fn upsert_attachment(&mut self, a: &AttachmentRow) -> StoreResult<()> {
        self.execute(
            "INSERT INTO attachments (session, job, replay, cursor, completion_sent) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (session, job) DO UPDATE SET replay = EXCLUDED.replay, cursor = EXCLUDED.cursor,
                                                      completion_sent = EXCLUDED.completion_sent",
            &[
                &&a.session.as_uuid().as_bytes()[..],
                &&a.job.as_uuid().as_bytes()[..],
                &replay_str(a.replay),
                &a.cursor,
                &a.completion_sent,
            ],
        )?;
        Ok(())
    }

    fn delete_attachment(&mut self, session: SessionId, job: JobId) -> StoreResult<()> {
        self.execute(
            "DELETE FROM attachments WHERE session = $1 AND job = $2",
            &[&&session.as_uuid().as_bytes()[..], &&job.as_uuid().as_bytes()[..]],
        )?;
        Ok(())
    }

    fn attachments_of_job(&mut self, job: JobId) -> StoreResult<Vec<AttachmentRow>> {
        self.collect(
            "SELECT session, job, replay, cursor, completion_sent FROM attachments WHERE job = $1",
            &[&&job.as_uuid().as_bytes()[..]],
            attachment_row,
        )
    }

    fn attachments_of_session(&mut self, session: SessionId) -> StoreResult<Vec<AttachmentRow>> {
        self.collect(
            "SELECT session, job, replay, cursor, completion_sent FROM attachments WHERE session = $1",
            &[&&session.as_uuid().as_bytes()[..]],
            attachment_row,
        )
    }

    fn task_assurance(&mut self, task: TaskKey) -> StoreResult<Option<AssuranceRow>> {
        self.query_opt("SELECT state, replicas_wanted FROM task_assurance WHERE task = $1", &[&task])?
            .map(|row| {
                Ok(AssuranceRow {
                    state: col(&row, 0, "task_assurance.state")?,
                    replicas_wanted: get_u32(&row, 1, "task_assurance.replicas_wanted")?,
                })
            })
            .transpose()
    }

    fn set_task_assurance(&mut self, task: TaskKey, state: &str, replicas_wanted: u32) -> StoreResult<()> {
        self.execute(
            "INSERT INTO task_assurance (task, state, replicas_wanted) VALUES ($1, $2, $3)
             ON CONFLICT (task) DO UPDATE SET state = EXCLUDED.state, replicas_wanted = EXCLUDED.replicas_wanted",
            &[&task, &state, &i64::from(replicas_wanted)],
        )?;
        Ok(())
    }

    fn tasks_wanting_replicas(&mut self, limit: u32) -> StoreResult<Vec<QueuedTask>> {
        self.collect(TASKS_WANTING_REPLICAS, &[&i64::from(limit)], |row| {
            Ok(QueuedTask { key: col(row, 0, "tasks.key")?, priority: get_i32(row, 1, "tasks.priority")? })
        })
    }

    fn assured_tasks_of_provider(&mut self, provider: &PartyId, limit: u32) -> StoreResult<Vec<TaskKey>> {
        self.collect(ASSURED_TASKS_OF_PROVIDER, &[&&provider.as_bytes()[..], &i64::from(limit)], |row| {
            col(row, 0, "assignments.task")
        })
    }

    fn provider_record(&mut self, provider: &PartyId) -> StoreResult<Option<String>> {
        self.query_opt("SELECT record FROM provider_records WHERE provider = $1", &[&&provider.as_bytes()[..]])?
            .map(|row| col(&row, 0, "provider_records.record"))
            .transpose()
    }

    fn set_provider_record(&mut self, provider: &PartyId, record: &str, quarantined: bool) -> StoreResult<()> {
        self.execute(
            "INSERT INTO provider_records (provider, record, quarantined) VALUES ($1, $2, $3)
             ON CONFLICT (provider) DO UPDATE SET record = EXCLUDED.record, quarantined = EXCLUDED.quarantined",
            &[&&provider.as_bytes()[..], &record, &quarantined],
        )?;
        Ok(())
    }

    fn quarantined_providers(&mut self) -> StoreResult<Vec<PartyId>> {
        self.collect("SELECT provider FROM provider_records WHERE quarantined ORDER BY provider", &[], |row| {
            get_party_id(row, 0, "provider_records.provider")
        })
    }

    fn insert_known_answer(&mut self, task: TaskKey, digest: &ElementHash, now_ms: u64) -> StoreResult<()> {
        // A repeat is a new insertion: it moves the answer to the newest.
        self.execute(
            "INSERT INTO known_answers (task, digest, created_ms) VALUES ($1, $2, $3)
             ON CONFLICT (task) DO UPDATE SET digest = EXCLUDED.digest, created_ms = EXCLUDED.created_ms",
            &[&task, &&digest.as_bytes()[..], &int(now_ms)],
        )?;
        Ok(())
    }

    fn known_answers(&mut self, limit: u32) -> StoreResult<Vec<(TaskKey, ElementHash)>> {
        self.collect(
            "SELECT task, digest FROM known_answers ORDER BY created_ms DESC, task DESC LIMIT $1",
            &[&i64::from(limit)],
            |row| Ok((col(row, 0, "known_answers.task")?, get_hash(row, 1, "known_answers.digest")?)),
        )
    }

    fn insert_spot_check(&mut self, assignment: AssignmentId, expected: &ElementHash) -> StoreResult<()> {
        self.execute(
            "INSERT INTO spot_checks (assignment, expected) VALUES ($1, $2)
             ON CONFLICT (assignment) DO UPDATE SET expected = EXCLUDED.expected",
            &[&int(assignment.0), &&expected.as_bytes()[..]],
        )?;
        Ok(())
    }

    fn spot_check(&mut self, assignment: AssignmentId) -> StoreResult<Option<ElementHash>> {
        self.query_opt("SELECT expected FROM spot_checks WHERE assignment = $1", &[&int(assignment.0)])?
            .map(|row| get_hash(&row, 0, "spot_checks.expected"))
            .transpose()
    }
}

// ---- the ledger

fn ledger_json<T: serde::de::DeserializeOwned>(row: &Row, what: &str) -> Result<T, LedgerError> {
    get_json(row, 0, what).map_err(LedgerError::storage)
}

/// The ledger's state in PostgreSQL, as in SQLite: accounts keep their four sums in columns for
/// the balance check; everything else is the ledger's own JSON.
impl LedgerStore for PgTx<'_> {
    fn account(&mut self, id: &AccountId) -> Result<Option<Account>, LedgerError> {
        let row = self
            .query_opt("SELECT body FROM ledger_accounts WHERE id = $1", &[&id.to_string()])
            .map_err(LedgerError::storage)?;
        row.map(|row| ledger_json(&row, "ledger_accounts.body")).transpose()
    }

    fn put_account(&mut self, account: &Account) -> Result<(), LedgerError> {
        let body = json(account, "an account").map_err(LedgerError::storage)?;
        self.execute(
            "INSERT INTO ledger_accounts (id, debits_posted, credits_posted, debits_pending, credits_pending, body)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET debits_posted = EXCLUDED.debits_posted, credits_posted = EXCLUDED.credits_posted,
                                            debits_pending = EXCLUDED.debits_pending,
                                            credits_pending = EXCLUDED.credits_pending, body = EXCLUDED.body",
            &[
                &account.id.to_string(),
                &account.debits_posted.as_i64(),
                &account.credits_posted.as_i64(),
                &account.debits_pending.as_i64(),
                &account.credits_pending.as_i64(),
                &body,
            ],
        )
        .map_err(LedgerError::storage)?;
        Ok(())
    }

    fn accounts(&mut self) -> Result<Vec<Account>, LedgerError> {
        let rows = self.query("SELECT body FROM ledger_accounts ORDER BY id", &[]).map_err(LedgerError::storage)?;
        rows.iter().map(|row| ledger_json(row, "ledger_accounts.body")).collect()
    }

    fn next_transfer_id(&mut self) -> Result<TransferId, LedgerError> {
        let row =
            self.query_one("SELECT COALESCE(MAX(id), 0) FROM ledger_transfers", &[]).map_err(LedgerError::storage)?;
        let max = get_u64(&row, 0, "MAX(ledger_transfers.id)").map_err(LedgerError::storage)?;
        Ok(TransferId(max + 1))
    }

    fn insert_transfer(&mut self, transfer: &Transfer) -> Result<(), LedgerError> {
        let body = json(transfer, "a transfer").map_err(LedgerError::storage)?;
        self.execute(
            "INSERT INTO ledger_transfers (id, key, debit, credit, created_ms, body) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &int(transfer.id.0),
                &transfer.key().as_str(),
                &transfer.debit.to_string(),
                &transfer.credit.to_string(),
                &int(transfer.created_ms),
                &body,
            ],
        )
        .map_err(LedgerError::storage)?;
        Ok(())
    }

    fn transfer(&mut self, id: TransferId) -> Result<Option<Transfer>, LedgerError> {
        let row = self
            .query_opt("SELECT body FROM ledger_transfers WHERE id = $1", &[&int(id.0)])
            .map_err(LedgerError::storage)?;
        row.map(|row| ledger_json(&row, "ledger_transfers.body")).transpose()
    }

    fn transfer_by_key(&mut self, key: &IdempotencyKey) -> Result<Option<Transfer>, LedgerError> {
        let row = self
            .query_opt("SELECT body FROM ledger_transfers WHERE key = $1", &[&key.as_str()])
            .map_err(LedgerError::storage)?;
        row.map(|row| ledger_json(&row, "ledger_transfers.body")).transpose()
    }

    fn transfers_of_account(
        &mut self,
        account: &AccountId,
        created_from_ms: u64,
        created_to_ms: u64,
    ) -> Result<Vec<Transfer>, LedgerError> {
        let rows = self
            .query(
                "SELECT body FROM ledger_transfers WHERE (debit = $1 OR credit = $1) AND created_ms >= $2 AND created_ms < $3 ORDER BY id",
                &[&account.to_string(), &int(created_from_ms), &int(created_to_ms)],
            )
            .map_err(LedgerError::storage)?;
        rows.iter().map(|row| ledger_json(row, "ledger_transfers.body")).collect()
    }

    fn reservation(&mut self, id: TransferId) -> Result<Option<Reservation>, LedgerError> {
        let row = self
            .query_opt("SELECT body FROM ledger_reservations WHERE id = $1", &[&int(id.0)])
            .map_err(LedgerError::storage)?;
        row.map(|row| ledger_json(&row, "ledger_reservations.body")).transpose()
    }

    fn put_reservation(&mut self, reservation: &Reservation) -> Result<(), LedgerError> {
        let body = json(reservation, "a reservation").map_err(LedgerError::storage)?;
        self.execute(
            "INSERT INTO ledger_reservations (id, body) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
            &[&int(reservation.id.0), &body],
        )
        .map_err(LedgerError::storage)?;
        Ok(())
    }

    fn next_request_id(&mut self) -> Result<u64, LedgerError> {
        self.next_money_request_id()
    }

    fn insert_request(&mut self, request: &MoneyRequest) -> Result<(), LedgerError> {
        self.write_money_request(request, false)
    }

    fn put_request(&mut self, request: &MoneyRequest) -> Result<(), LedgerError> {
        self.write_money_request(request, true)
    }

    fn request(&mut self, id: u64) -> Result<Option<MoneyRequest>, LedgerError> {
        self.money_request(id)
    }

    fn request_by_reference(
        &mut self,
        account: &AccountId,
        kind: RequestKind,
        reference: &str,
    ) -> Result<Option<MoneyRequest>, LedgerError> {
        self.money_request_by_reference(account, kind, reference)
    }

    fn requests(&mut self, filter: &RequestFilter) -> Result<Vec<MoneyRequest>, LedgerError> {
        self.money_requests(filter)
    }

    fn totals(&mut self) -> Result<LedgerTotals, LedgerError> {
        // SUM of BIGINT is NUMERIC in PostgreSQL; the cast back fails on overflow, as SQLite's
        // integer SUM does.
        let row = self
            .query_one(
                "SELECT COUNT(*), COALESCE(SUM(debits_posted), 0)::BIGINT, COALESCE(SUM(credits_posted), 0)::BIGINT,
                        COALESCE(SUM(debits_pending), 0)::BIGINT, COALESCE(SUM(credits_pending), 0)::BIGINT
                 FROM ledger_accounts",
                &[],
            )
            .map_err(LedgerError::storage)?;
        let sum = |i: usize, what: &str| col::<i64>(&row, i, what).map(Micros::new).map_err(LedgerError::storage);
        Ok(LedgerTotals {
            accounts: get_u64(&row, 0, "COUNT(ledger_accounts)").map_err(LedgerError::storage)?,
            debits_posted: sum(1, "SUM(ledger_accounts.debits_posted)")?,
            credits_posted: sum(2, "SUM(ledger_accounts.credits_posted)")?,
            debits_pending: sum(3, "SUM(ledger_accounts.debits_pending)")?,
            credits_pending: sum(4, "SUM(ledger_accounts.credits_pending)")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// The test database: CI provides it; IDLEGRID_TEST_POSTGRES overrides the URL. The tests
    /// fail (never skip) when it is unreachable.
    fn url() -> String {
        std::env::var("IDLEGRID_TEST_POSTGRES")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
    }

    /// Stores in fresh schemas (`igtest_<random>`), dropped at the end, also when a test fails.
    struct Schemas {
        url: String,
        names: RefCell<Vec<String>>,
    }

    impl Schemas {
        fn new() -> Schemas {
            Schemas { url: url(), names: RefCell::new(Vec::new()) }
        }

        fn name(&self) -> String {
            let name = format!("igtest_{}", uuid::Uuid::new_v4().simple());
            self.names.borrow_mut().push(name.clone());
            name
        }

        fn store(&self) -> PostgresStore {
            self.store_in(&self.name())
        }

        fn store_in(&self, schema: &str) -> PostgresStore {
            PostgresStore::connect_in_schema(&self.url, schema).unwrap_or_else(|e| {
                panic!("PostgreSQL is needed for these tests (set IDLEGRID_TEST_POSTGRES to another URL): {e}")
            })
        }

        fn client(&self) -> Client {
            Client::connect(&self.url, NoTls).expect("connect to the test database")
        }
    }

    impl Drop for Schemas {
        fn drop(&mut self) {
            for name in self.names.borrow().iter() {
                if let Err(error) = PostgresStore::drop_schema(&self.url, name) {
                    eprintln!("could not drop the test schema {name}: {error}");
                }
            }
        }
    }

    #[test]
    fn postgres_conforms() {
        let schemas = Schemas::new();
        crate::conformance::run_all(|| schemas.store());
    }

    /// With as many rows as make the planner care: 5000 running tasks, 5 of them wanting
    /// replicas, 50 providers with 100 assignments each.
    #[test]
    fn assurance_queries_use_their_indexes() {
        let schemas = Schemas::new();
        let schema = schemas.name();
        drop(schemas.store_in(&schema));
        let mut client = schemas.client();
        client
            .batch_execute(&format!(
                "SET search_path = {schema};
                 INSERT INTO tasks (job, idx, state, priority, executable, data, params)
                     SELECT '\\x00', g, 'running', 0, '\\x00', '{{}}', '\\x00' FROM generate_series(1, 5000) g;
                 INSERT INTO task_assurance (task, state, replicas_wanted)
                     SELECT key, '{{}}', CASE WHEN key % 1000 = 0 THEN 1 ELSE 0 END FROM tasks;
                 INSERT INTO assignments (task, provider, active, created_ms)
                     SELECT key, int4send((key % 50)::INT), FALSE, 0 FROM tasks;
                 ANALYZE"
            ))
            .unwrap();
        let plan = |client: &mut Client, sql: &str| -> String {
            let lines = client.query(&format!("EXPLAIN {sql}"), &[]).unwrap();
            lines.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>().join("\n")
        };
        let wanting = plan(&mut client, &TASKS_WANTING_REPLICAS.replace("$1", "10"));
        assert!(wanting.contains("task_assurance_wanting") && !wanting.contains("Seq Scan"), "{wanting}");
        let of_provider =
            plan(&mut client, &ASSURED_TASKS_OF_PROVIDER.replace("$1", "int4send(7)").replace("$2", "10"));
        assert!(
            of_provider.contains("assignments_provider_task") && !of_provider.contains("Seq Scan"),
            "{of_provider}"
        );
    }

    #[test]
    fn reopening_runs_no_migration_twice_and_keeps_the_data() {
        let schemas = Schemas::new();
        let schema = schemas.name();
        crate::conformance::parties_are_unique(&schemas.store_in(&schema));
        let store = schemas.store_in(&schema);
        let party = PartyId::from_public_key(&[1; 32]);
        let found = store.read(|tx| -> StoreResult<bool> { Ok(tx.party(&party)?.is_some()) }).unwrap();
        assert!(found);
        let mut client = schemas.client();
        let versions: Vec<i64> = client
            .query(&format!("SELECT version FROM {schema}.schema_version ORDER BY version"), &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(versions, (1..=MIGRATIONS.len() as i64).collect::<Vec<_>>());
        // A database migrated by a newer program is refused, not misread.
        client.execute(&format!("INSERT INTO {schema}.schema_version VALUES (999)"), &[]).unwrap();
        let error = PostgresStore::connect_in_schema(&schemas.url, &schema).err().expect("newer schema refused");
        assert!(error.to_string().contains("use a newer idlegrid"), "{error}");
    }

    #[test]
    fn instances_starting_together_migrate_once() {
        let schemas = Schemas::new();
        let schema = schemas.name();
        std::thread::scope(|scope| {
            let handles: Vec<_> =
                (0..4).map(|_| scope.spawn(|| PostgresStore::connect_in_schema(&schemas.url, &schema))).collect();
            for handle in handles {
                handle.join().unwrap().unwrap();
            }
        });
    }

    /// Each transaction reads a counter and writes it back incremented, from two stores on one
    /// schema (two server processes) and many threads: the counter at the end, and how many
    /// transactions reported a conflict.
    fn increment_counter(stores: &[PostgresStore; 2], retrying: bool) -> (u64, u64) {
        const THREADS: usize = 12;
        const ROUNDS: u64 = 25;
        let failed = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for thread in 0..THREADS {
                let store = &stores[thread % 2];
                let failed = &failed;
                scope.spawn(move || {
                    for _ in 0..ROUNDS {
                        let increment = |tx: &mut dyn Tx| -> StoreResult<()> {
                            let n: u64 = tx
                                .meta("counter")?
                                .map(|v| String::from_utf8(v).unwrap().parse().unwrap())
                                .unwrap_or(0);
                            std::thread::yield_now();
                            tx.set_meta("counter", n.saturating_add(1).to_string().as_bytes())
                        };
                        let outcome = if retrying { store.write_retrying(increment) } else { store.write(increment) };
                        if let Err(error) = outcome {
                            assert!(!retrying, "{error}");
                            let message = error.to_string();
                            assert!(
                                message.contains("conflicted with another") && message.contains("retry"),
                                "{message}"
                            );
                            failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        let n = stores[0].read(|tx| tx.meta("counter")).unwrap().unwrap();
        let n: u64 = String::from_utf8(n).unwrap().parse().unwrap();
        (n, failed.into_inner())
    }

    #[test]
    fn writers_are_serialised_across_instances() {
        // Without the lock, READ COMMITTED would lose increments; with it, no transaction
        // conflicts, on either path.
        let schemas = Schemas::new();
        let schema = schemas.name();
        let stores = [schemas.store_in(&schema), schemas.store_in(&schema)];
        assert_eq!(increment_counter(&stores, true), (300, 0));
        assert_eq!(increment_counter(&stores, false), (600, 0));
    }

    #[test]
    fn a_conflicting_transaction_is_run_again() {
        // A deadlock with a transaction outside the lock (here a second connection that takes
        // row locks in the other order): PostgreSQL rolls one side back; `write_retrying` runs
        // the closure again and it commits.
        let schemas = Schemas::new();
        let schema = schemas.name();
        let store = schemas.store_in(&schema);
        store
            .write(|tx| -> StoreResult<()> {
                tx.set_meta("a", b"0")?;
                tx.set_meta("b", b"0")
            })
            .unwrap();
        let mut config = parse_url(&url()).unwrap();
        config.options(&format!("-c search_path={schema}"));
        let mut other = config.connect(NoTls).unwrap();
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let attempts = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|scope| {
            let outside = scope.spawn(move || {
                let mut tx = other.transaction().unwrap();
                tx.execute("UPDATE meta SET value = 'x' WHERE key = 'b'", &[]).unwrap();
                locked_tx.send(()).unwrap();
                go_rx.recv_timeout(Duration::from_secs(60)).unwrap();
                // Waits for the store's lock on "a": one of the two is rolled back.
                match tx.execute("UPDATE meta SET value = 'x' WHERE key = 'a'", &[]) {
                    Ok(_) => tx.commit().is_ok(),
                    Err(_) => false,
                }
            });
            locked_rx.recv_timeout(Duration::from_secs(60)).unwrap();
            let go = std::sync::Mutex::new(Some(go_tx));
            store
                .write_retrying(|tx| -> StoreResult<()> {
                    attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tx.set_meta("a", b"1")?;
                    if let Some(go) = go.lock().unwrap().take() {
                        go.send(()).unwrap();
                    }
                    tx.set_meta("b", b"1")
                })
                .unwrap();
            let outside_committed = outside.join().unwrap();
            // PostgreSQL rolls back the side that finds the deadlock: if that was the store's
            // transaction, it ran a second time.
            let attempts = attempts.load(std::sync::atomic::Ordering::Relaxed);
            assert!(attempts == 2 || !outside_committed, "{attempts} attempts; outside committed: {outside_committed}");
        });
        let b = store.read(|tx| tx.meta("b")).unwrap();
        assert_eq!(b, Some(b"1".to_vec()), "the store's transaction committed last or alone");
    }

    #[test]
    fn an_unreachable_database_says_what_to_do() {
        let error =
            PostgresStore::connect("postgres://postgres@127.0.0.1:1/test").err().expect("nothing listens on port 1");
        let message = error.to_string();
        assert!(
            message.contains("cannot connect to PostgreSQL at 127.0.0.1:1/test")
                && message.contains("check --database"),
            "{message}"
        );
        let error = PostgresStore::connect("postgres://user:secret@[bad/x").err().expect("invalid URL");
        assert!(
            error.to_string().contains("invalid PostgreSQL URL") && !error.to_string().contains("secret"),
            "{error}"
        );
        let error =
            PostgresStore::connect_in_schema(&url(), "Robert'); DROP TABLE students;--").err().expect("invalid schema");
        assert!(error.to_string().contains("invalid schema name"), "{error}");
    }

    #[test]
    fn corrupt_rows_are_reported_with_their_column() {
        let schemas = Schemas::new();
        let schema = schemas.name();
        let store = schemas.store_in(&schema);
        let client_id = PartyId::from_public_key(&[1; 32]);
        let job = crate::JobRow {
            id: JobId::random(),
            client: client_id.clone(),
            properties: Default::default(),
            state: JobState::Defining,
            counts: JobCounts::default(),
            created_ms: 1,
            hold: None,
        };
        let task = NewTask {
            index: 0,
            priority: 0,
            executable: ElementHash::of(b"x"),
            data: BTreeMap::new(),
            params: Vec::new(),
        };
        store
            .write(|tx| -> StoreResult<()> {
                tx.insert_job(&job)?;
                tx.insert_tasks(job.id, &[task])
            })
            .unwrap();
        let mut client = schemas.client();
        client
            .batch_execute(&format!(
                "UPDATE {schema}.tasks SET state = 'exploded'; UPDATE {schema}.jobs SET properties = '[1'"
            ))
            .unwrap();
        let task = store.read(|tx| tx.task(job.id, 0));
        assert!(
            matches!(task, Err(StoreError::Corrupt(ref m)) if m.contains("tasks.state") && m.contains("exploded")),
            "{task:?}"
        );
        let jobs = store.read(|tx| tx.jobs_of_client(&client_id));
        assert!(matches!(jobs, Err(StoreError::Corrupt(ref m)) if m.contains("jobs.properties")), "{jobs:?}");
        client.batch_execute(&format!("UPDATE {schema}.tasks SET executable = '\\x00', state = 'queued'")).unwrap();
        let task = store.read(|tx| tx.task(job.id, 0));
        assert!(matches!(task, Err(StoreError::Corrupt(ref m)) if m.contains("tasks.executable")), "{task:?}");
    }

    #[test]
    fn a_swallowed_statement_error_is_not_committed() {
        let schemas = Schemas::new();
        let store = schemas.store();
        let party = crate::PartyRow {
            id: PartyId::from_public_key(&[1; 32]),
            role: Role::Client,
            public_key: [1; 32],
            name: "p".into(),
            created_ms: 1,
        };
        let session = SessionRow {
            id: SessionId::random(),
            inbound_acked: 0,
            outbound_head: 0,
            outbound_acked: 0,
            last_seen_ms: 0,
        };
        let result = store.write(|tx| -> StoreResult<()> {
            tx.insert_party(&party)?;
            tx.insert_session(&party.id, &session)?;
            assert!(tx.insert_session(&party.id, &session).is_err(), "the id is taken");
            Ok(())
        });
        let error = result.expect_err("PostgreSQL rolled the transaction back: the write must say so");
        assert!(error.to_string().contains("rolled the whole transaction back"), "{error}");
        let stored = store.read(|tx| tx.party(&party.id)).unwrap();
        assert_eq!(stored, None, "nothing of the transaction was kept");
        // The connection went back to the pool in a usable state.
        for _ in 0..POOL_SIZE + 1 {
            store.write(|tx| tx.set_meta("k", b"v")).unwrap();
        }
    }

    #[test]
    fn reads_are_read_only() {
        let schemas = Schemas::new();
        let store = schemas.store();
        let error = store.read(|tx| tx.set_meta("k", b"v")).expect_err("a read cannot write");
        assert!(error.to_string().contains("read-only"), "{error}");
        assert_eq!(store.read(|tx| tx.meta("k")).unwrap(), None);
    }

    #[test]
    fn dead_connections_are_replaced() {
        let schemas = Schemas::new();
        let schema = schemas.name();
        let name = format!("{schema}_app");
        let separator = if schemas.url.contains('?') { '&' } else { '?' };
        let store =
            PostgresStore::connect_in_schema(&format!("{}{separator}application_name={name}", schemas.url), &schema)
                .unwrap();
        store.write(|tx| tx.set_meta("k", b"1")).unwrap();
        // The database restarts, say: every idle connection of the pool dies.
        let mut client = schemas.client();
        let killed: i64 = client
            .query_one(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                &[&name],
            )
            .unwrap()
            .get(0);
        assert!(killed >= 1);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(store.read(|tx| tx.meta("k")).unwrap(), Some(b"1".to_vec()));
        store.write(|tx| tx.set_meta("k", b"2")).unwrap();
    }

    #[test]
    fn works_from_tokio_and_closes_in_async_code() {
        let schemas = Schemas::new();
        let schema = schemas.name();
        let url = schemas.url.clone();
        // Multi-threaded runtime: connect, write from a task (block_in_place) and from
        // spawn_blocking, and drop the store inside a task.
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let (url_a, schema_a) = (url.clone(), schema.clone());
        runtime.block_on(async move {
            let store = std::sync::Arc::new(PostgresStore::connect_in_schema(&url_a, &schema_a).unwrap());
            store.write(|tx| tx.set_meta("k", b"task")).unwrap();
            let blocking = store.clone();
            tokio::task::spawn_blocking(move || blocking.write(|tx| tx.set_meta("k", b"blocking")))
                .await
                .unwrap()
                .unwrap();
            let value = tokio::spawn(async move {
                let value = store.read(|tx| tx.meta("k")).unwrap();
                drop(store);
                value
            })
            .await
            .unwrap();
            assert_eq!(value, Some(b"blocking".to_vec()));
        });
        // Current-thread runtime (#[tokio::test]): the server's way, spawn_blocking.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let store = std::sync::Arc::new(PostgresStore::connect_in_schema(&url, &schema).unwrap());
            let blocking = store.clone();
            let value = tokio::task::spawn_blocking(move || blocking.read(|tx| tx.meta("k"))).await.unwrap().unwrap();
            assert_eq!(value, Some(b"blocking".to_vec()));
            drop(store);
        });
    }
}
