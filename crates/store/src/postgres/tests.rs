//! The PostgreSQL store against a real server: conformance, migrations, the write lock across
//! instances, conflicts run again, corrupt rows, dead connections and use from async code.

use std::cell::RefCell;

use super::*;

/// The test database: CI provides it; IDLEGRID_TEST_POSTGRES overrides the URL. The tests
/// fail (never skip) when it is unreachable.
fn url() -> String {
    std::env::var("IDLEGRID_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string())
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
    let of_provider = plan(&mut client, &ASSURED_TASKS_OF_PROVIDER.replace("$1", "int4send(7)").replace("$2", "10"));
    assert!(of_provider.contains("assignments_provider_task") && !of_provider.contains("Seq Scan"), "{of_provider}");
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
                        let n: u64 =
                            tx.meta("counter")?.map(|v| String::from_utf8(v).unwrap().parse().unwrap()).unwrap_or(0);
                        std::thread::yield_now();
                        tx.set_meta("counter", n.saturating_add(1).to_string().as_bytes())
                    };
                    let outcome = if retrying { store.write_retrying(increment) } else { store.write(increment) };
                    if let Err(error) = outcome {
                        assert!(!retrying, "{error}");
                        let message = error.to_string();
                        assert!(message.contains("conflicted with another") && message.contains("retry"), "{message}");
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
        message.contains("cannot connect to PostgreSQL at 127.0.0.1:1/test") && message.contains("check --database"),
        "{message}"
    );
    let error = PostgresStore::connect("postgres://user:secret@[bad/x").err().expect("invalid URL");
    assert!(error.to_string().contains("invalid PostgreSQL URL") && !error.to_string().contains("secret"), "{error}");
    let error =
        PostgresStore::connect_in_schema(&url(), "Robert'); DROP TABLE students;--").err().expect("invalid schema");
    assert!(error.to_string().contains("invalid schema name"), "{error}");
}

#[test]
fn corrupt_rows_are_errors_as_in_every_store() {
    let schemas = Schemas::new();
    let schema = schemas.name();
    let store = schemas.store_in(&schema);
    let client = RefCell::new(schemas.client());
    crate::conformance::corrupt_rows_are_errors(&store, |_, statement| {
        client.borrow_mut().batch_execute(&format!("SET search_path = {schema}; {statement}")).unwrap();
    });
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
        trace: None,
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
    let session =
        SessionRow { id: SessionId::random(), inbound_acked: 0, outbound_head: 0, outbound_acked: 0, last_seen_ms: 0 };
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
        tokio::task::spawn_blocking(move || blocking.write(|tx| tx.set_meta("k", b"blocking"))).await.unwrap().unwrap();
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
