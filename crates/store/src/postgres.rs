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
mod schema;
mod sessions;
mod system;
mod watches;
mod web;

use schema::MIGRATIONS;

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

fn ledger_json<T: serde::de::DeserializeOwned>(row: &Row, what: &str) -> Result<T, LedgerError> {
    get_json(row, 0, what).map_err(LedgerError::storage)
}

/// `replicas_wanted > 0` literally, so that the partial index task_assurance_wanting applies.
const TASKS_WANTING_REPLICAS: &str = "SELECT t.key, t.priority FROM task_assurance a JOIN tasks t ON t.key = a.task
     WHERE a.replicas_wanted > 0 AND t.state = 'running' ORDER BY t.priority DESC, t.key LIMIT $1";

/// Through assignments_provider_task: the provider's tasks come in key order, each looked up once.
const ASSURED_TASKS_OF_PROVIDER: &str =
    "SELECT DISTINCT a.task FROM assignments a JOIN task_assurance s ON s.task = a.task
     WHERE a.provider = $1 ORDER BY a.task LIMIT $2";

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

impl Tx for PgTx<'_> {
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
mod tests;
