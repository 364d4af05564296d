//! PostgreSQL's schema: the migrations that build it, in order (each domain adds its own at
//! the end of the list).

/// Schema migrations, applied in order; the table `schema_version` records each one applied.
/// Entry N mirrors entry N of SQLite's list, so that a future migration is added to both at the
/// same position. Differences: integers are BIGINT, flags BOOLEAN, bytes BYTEA; row ids are
/// identity columns, which PostgreSQL never reuses, so SQLite's rebuild of `assignments` (to
/// stop reusing assignment ids) has no counterpart.
pub(super) const MIGRATIONS: &[&str] = &[
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
    super::requests::MIGRATION,
    super::market::MIGRATION,
    super::web::MIGRATION,
    super::watches::MIGRATION,
    super::market::EXECUTION_MIGRATION,
    super::caches::MIGRATION,
    super::elements::CHECKPOINT_MIGRATION,
    super::deliveries::MIGRATION,
    super::jobs::TRACE_MIGRATION,
];
