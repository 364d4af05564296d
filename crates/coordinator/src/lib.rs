//! The server's logic without I/O. Every operation runs inside a store transaction (`&mut dyn
//! Tx`) with the current time passed in, and returns its answer plus [`Effects`] for the I/O
//! shell to carry out (wake long polls, delete element bytes). It never reads the clock, opens a
//! socket or touches a file, so it can be driven by tests and simulations directly.
//!
//! Architecture invariants:
//! - A party message is processed exactly once: its effects and the session's inbound position
//!   commit in the same transaction.
//! - A task is `running` iff it has at least one active assignment, except briefly for a task
//!   stopped by its client whose engine has not handed it back yet.
//! - The first final result of a task wins; later ones are ignored and their engines told to
//!   drop the task.
//! - A final result reaches a client session through the session's outbox, at most a window of
//!   messages ahead of the session's acknowledgements, and is marked delivered only when a
//!   session acknowledges the message that carried it.

pub mod assurance;
pub mod benchmark;
mod caches;
pub mod checkpoints;
mod client;
pub mod client_profile;
mod cluster;
pub mod contents;
mod deadlines;
pub mod deliveries;
mod engine_config;
mod engine_news;
mod error;
pub mod logs;
pub mod market;
pub mod money;
mod operator;
mod own_logs;
mod pass;
mod preemption;
mod profiles;
mod provider;
pub mod requests;
mod retention;
mod schedule;
mod session;
mod silence;
mod terms;
mod watches;
pub mod webhooks;

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use idlegrid_protocol::auth::{Claim, parse_public_key};
use idlegrid_protocol::ticket::Ticket;
use idlegrid_protocol::wire::{RegisterRequest, RegisterResponse};
use idlegrid_random::RandomSource;
use idlegrid_store::{PartyRow, Tx};
use idlegrid_types::{ElementHash, ElementKind, PartyId, Role, SessionId};

pub use cluster::JobExplanation;
pub use error::{CoordinatorError, ErrorKind};
pub use profiles::{
    BENCHMARK_GFLOPS_MAX, BENCHMARK_RETRY_MS, BenchmarkInFlight, ProviderProfile, benchmark_element, benchmark_seconds,
};

/// How often engines are benchmarked when the server runs them (6 hours).
pub const BENCHMARK_INTERVAL_DEFAULT_MS: u64 = 6 * 3600 * 1000;
/// Matrix size of the benchmark: about half a second of one core in the sandbox.
pub const BENCHMARK_SIZE_DEFAULT: u32 = 640;

/// How much one upload may bring; `quota` is the client's usage when its storage quota, not
/// the element limit, is what binds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadAllowance {
    pub bytes_max: u64,
    pub quota: Option<idlegrid_store::ElementUsage>,
}

/// Tunable limits and intervals of the coordinator.
#[derive(Debug, Clone)]
pub struct CoordinatorConfig {
    /// An engine not heard from for this long loses its tasks to other engines.
    pub provider_silence_ms_max: u64,
    /// How long an element ticket stays valid.
    pub ticket_ttl_ms: u64,
    /// Final results a client session may have unacknowledged in its outbox (flow control that
    /// keeps client memory bounded whatever the job's size).
    pub client_window_messages: u64,
    /// Sessions idle this long are deleted (undelivered results stay with their jobs).
    pub session_idle_ms_max: u64,
    /// Most tasks assigned in one scheduling pass.
    pub schedule_batch_max: u32,
    /// Most tasks an engine may ask to hold.
    pub engine_capacity_max: u32,
    /// Elements unreferenced for this long are deleted.
    pub element_grace_ms: u64,
    /// Largest element accepted.
    pub element_bytes_max: u64,
    /// Prices and pay (P7.2-P7.5).
    pub pricing: idlegrid_ledger::PricingConfig,
    /// How far a client's account may go below zero before its jobs are held (P7.6); `None`:
    /// no limit.
    pub client_overdraft_max_micros: Option<i64>,
    /// Power rating of an engine until it is measured (GFLOPS).
    pub engine_power_gflops_default: f64,
    /// Delivery attempts of a notice before it is given up.
    pub notice_attempts_max: u32,
    /// Results nobody fetched are compressed this long after their job completed...
    pub archive_after_ms: u64,
    /// ...and deleted, with their elements, this long after (P4.11)...
    pub results_retention_ms: u64,
    /// ...after a warning this long before.
    pub purge_warning_ms: u64,
    /// Log lines a party may send per minute (P4.9).
    pub log_lines_per_minute_max: u32,
    /// Log lines are kept this long.
    pub log_retention_ms: u64,
    /// Jobs a client may have on the server at once (completed ones count until removed).
    pub jobs_per_client_max: u32,
    /// Tasks one job may hold.
    pub tasks_per_job_max: u64,
    /// Parties that may register as operators (IDs: hashes of their public keys).
    pub operators: Vec<PartyId>,
    /// How long a party's key and revocation status are cached: a revocation made through
    /// another server instance takes effect here within this time (at once on this one).
    pub key_cache_ttl_ms: u64,
    /// How often providers get test tasks with known answers (P6.2).
    pub spot_checks: idlegrid_assurance::SpotCheckPolicy,
    /// How many wrong answers to test tasks quarantine a provider.
    pub quarantine: idlegrid_assurance::QuarantineRule,
    /// The assumed fraction of saboteurs, from which credibility follows (Sarmenta).
    pub credibility: idlegrid_assurance::CredibilityModel,
    /// How often each engine's CPU speed is measured by a benchmark task (P5.1): when it first
    /// reports its profile, then whenever its last measurement is older than this. `None`: no
    /// benchmarks (the default here, so that tests count only their own assignments; the
    /// `idlegrid server` command turns them on, every [`BENCHMARK_INTERVAL_DEFAULT_MS`]).
    pub benchmark_interval_ms: Option<u64>,
    /// Matrix size n of the benchmark (2 n³ floating-point operations).
    pub benchmark_size: u32,
    /// Placement of jobs that ask for a virtual cluster (P5.3-P5.7).
    pub scheduler: idlegrid_scheduler::SchedulerConfig,
    /// The bartering market: valuation coefficients, commission, negotiation bounds.
    pub market: market::MarketConfig,
    /// Address ranges notice webhooks may reach although they are not public (loopback,
    /// private, link-local); empty: public addresses only.
    pub webhook_allow: Vec<webhooks::NetRange>,
    /// Bytes of elements one client may store (counted as stored, after decompression).
    pub client_storage_bytes_max: u64,
    /// Elements one client may store.
    pub client_elements_max: u64,
    /// How often engines upload running tasks' checkpoints (P1.5).
    pub checkpoint_uploads: checkpoints::CheckpointUploads,
    /// An engine whose owner came back hands its tasks over when its availability history
    /// expects it busy for at least this long (P4.5); `None`: tasks wait for their engine.
    pub migrate_after_busy_ms: Option<u64>,
    /// Whether and how waiting tasks of a higher priority take engines from running ones (P5.6).
    pub preemption: idlegrid_scheduler::preempt::PreemptionPolicy,
    /// How often an engine in contact is asked what it holds (`GetContents`) besides after a
    /// silence or a disagreement; `None`: only then.
    pub contents_audit_ms: Option<u64>,
    /// Attempts at delivering a result to a client's URL before it is given up.
    pub delivery_attempts_max: u32,
    /// Longest wait between two attempts at a delivery (the wait doubles from a second).
    pub delivery_retry_ms_max: u64,
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            provider_silence_ms_max: 120_000,
            ticket_ttl_ms: 6 * 3600 * 1000,
            client_window_messages: 1024,
            session_idle_ms_max: 7 * 24 * 3600 * 1000,
            schedule_batch_max: 2000,
            engine_capacity_max: 1024,
            element_grace_ms: 3600 * 1000,
            element_bytes_max: 1 << 30,
            pricing: idlegrid_ledger::PricingConfig::default(),
            client_overdraft_max_micros: Some(100_000_000),
            engine_power_gflops_default: 1.0,
            notice_attempts_max: 20,
            archive_after_ms: 24 * 3600 * 1000,
            results_retention_ms: 30 * 24 * 3600 * 1000,
            purge_warning_ms: 3 * 24 * 3600 * 1000,
            operators: Vec::new(),
            jobs_per_client_max: 10_000,
            log_lines_per_minute_max: 600,
            log_retention_ms: 14 * 24 * 3600 * 1000,
            tasks_per_job_max: 10_000_000,
            key_cache_ttl_ms: 10_000,
            spot_checks: idlegrid_assurance::SpotCheckPolicy::default(),
            quarantine: idlegrid_assurance::QuarantineRule::default(),
            credibility: idlegrid_assurance::CredibilityModel::default(),
            benchmark_interval_ms: None,
            benchmark_size: BENCHMARK_SIZE_DEFAULT,
            scheduler: idlegrid_scheduler::SchedulerConfig::default(),
            market: market::MarketConfig::default(),
            webhook_allow: Vec::new(),
            client_storage_bytes_max: 16 << 30,
            client_elements_max: 100_000,
            checkpoint_uploads: checkpoints::CheckpointUploads::default(),
            migrate_after_busy_ms: None,
            preemption: idlegrid_scheduler::preempt::PreemptionPolicy::default(),
            contents_audit_ms: Some(3600 * 1000),
            delivery_attempts_max: 12,
            delivery_retry_ms_max: 600_000,
        }
    }
}

/// What the I/O shell must do after the transaction commits.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Effects {
    /// Sessions with new messages: wake their long polls.
    pub wake: BTreeSet<SessionId>,
    /// Element bytes nobody refers to any more.
    pub delete_elements: Vec<ElementHash>,
    /// Tasks that reached a final state (for the instance's tasks-per-second figure).
    pub tasks_concluded: u64,
    /// Results to compare with their job's validator; the verdicts go to
    /// `Coordinator::record_comparison`.
    pub comparisons: Vec<assurance::PendingComparison>,
    /// Market operations done (offers, searches, negotiations, contracts).
    pub market: market::MarketCounts,
}

impl Effects {
    pub fn merge(&mut self, other: Effects) {
        self.wake.extend(other.wake);
        self.delete_elements.extend(other.delete_elements);
        self.tasks_concluded += other.tasks_concluded;
        self.comparisons.extend(other.comparisons);
        self.market.merge(other.market);
    }
}

/// An authenticated party.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub id: PartyId,
    pub role: Role,
}

/// The server's brain. Cheap to share: its only state is configuration, the ticket secret and
/// a cache of public keys and revocations (parties never change their key).
pub struct Coordinator {
    config: CoordinatorConfig,
    secret: Vec<u8>,
    /// Signs task assignments; engines pin its public key at registration (P3.7).
    signer: idlegrid_protocol::auth::Identity,
    keys: Mutex<HashMap<PartyId, CachedKey>>,
    log_rates: logs::LogRates,
    /// The benchmark tasks (P5.1), when benchmarks are on or were once.
    benchmark: Option<profiles::BenchmarkSetup>,
    /// Every draw the coordinator makes (spot checks, replication, benchmark picks): secret in
    /// production, seeded in tests and simulations.
    random: Mutex<Box<dyn RandomSource + Send>>,
    /// The market's search index, following the offers table (see `market`).
    market_index: market::SharedIndex,
}

/// The server's own randomness, from the operating system's generator: providers cannot predict
/// which assignment is a spot check or which result gets checked.
struct ServerRandom;

impl RandomSource for ServerRandom {
    fn next_u64(&mut self) -> u64 {
        rand::random()
    }
}

/// What authentication needs to know of a party, cached for `key_cache_ttl_ms`.
#[derive(Clone, Copy)]
struct CachedKey {
    role: Role,
    key: [u8; 32],
    revoked: bool,
    loaded_ms: u64,
}

const SECRET_KEY: &str = "ticket_secret";
const SIGNING_KEY: &str = "assignment_signing_key";
const UPGRADE_KEY: &str = "engine_upgrade";
const KEY_CACHE_ENTRIES_MAX: usize = 100_000;

impl Coordinator {
    /// Load (or create on first start) the ticket secret from the store.
    pub fn new(config: CoordinatorConfig, tx: &mut dyn Tx) -> Result<Coordinator, CoordinatorError> {
        Coordinator::with_random_source(config, tx, Box::new(ServerRandom))
    }

    /// As [`Coordinator::new`], drawing from `random` (a seeded source makes a test or a
    /// simulation repeatable). Keys and secrets still come from the operating system.
    pub fn with_random_source(
        config: CoordinatorConfig,
        tx: &mut dyn Tx,
        mut random: Box<dyn RandomSource + Send>,
    ) -> Result<Coordinator, CoordinatorError> {
        let secret = match tx.meta(SECRET_KEY)? {
            Some(secret) => secret,
            None => {
                let mut secret = vec![0u8; 32];
                rand::fill(&mut secret[..]);
                tx.set_meta(SECRET_KEY, &secret)?;
                secret
            }
        };
        let signer = match tx.meta(SIGNING_KEY)? {
            Some(seed) if seed.len() == 32 => {
                let mut bytes = [0u8; 32];
                bytes.copy_from_slice(&seed);
                idlegrid_protocol::auth::Identity::from_seed(bytes)
            }
            _ => {
                let mut seed = [0u8; 32];
                rand::fill(&mut seed[..]);
                tx.set_meta(SIGNING_KEY, &seed)?;
                idlegrid_protocol::auth::Identity::from_seed(seed)
            }
        };
        // Benchmark tasks belong to the server's own party; they are known even when
        // benchmarks are off, so that late answers to earlier ones are still recognised.
        let benchmark = match config.benchmark_interval_ms {
            Some(_) => Some(profiles::install_benchmark(tx, signer.id(), config.benchmark_size, &mut *random)?),
            None => profiles::load_benchmark(tx)?,
        };
        let coordinator = Coordinator {
            config,
            secret,
            signer,
            keys: Mutex::new(HashMap::new()),
            log_rates: logs::LogRates::default(),
            benchmark,
            random: Mutex::new(random),
            market_index: Default::default(),
        };
        coordinator.open_system_accounts(tx, 0)?;
        // The search index is rebuilt from the store at start.
        drop(coordinator.sync_market_index(tx)?);
        Ok(coordinator)
    }

    /// The coordinator's random source, for one decision at a time.
    pub(crate) fn random(&self) -> std::sync::MutexGuard<'_, Box<dyn RandomSource + Send>> {
        // A poisoned lock holds a generator in a valid state: draws go on.
        self.random.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    /// The public key engines verify assignments with (hex).
    pub fn server_key(&self) -> String {
        self.signer.public_key_hex()
    }

    /// Offer a new engine build (P3.11) to every engine that reports another version. The
    /// element's bytes must be stored already.
    pub fn publish_upgrade(
        &self,
        tx: &mut dyn Tx,
        version: &str,
        element: idlegrid_types::ElementRef,
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        if version.is_empty() || version.len() > 64 {
            return Err(CoordinatorError::bad_request("an upgrade version is 1 to 64 characters"));
        }
        tx.insert_element(&element.hash, element.size, now_ms)?;
        let signature = self.signer.sign_bytes(&idlegrid_protocol::messages::upgrade_signed_bytes(version, &element));
        let offer =
            idlegrid_protocol::messages::ServerToProvider::Upgrade { version: version.to_string(), element, signature };
        tx.set_meta(UPGRADE_KEY, serde_json::to_string(&offer).expect("messages serialize").as_bytes())?;
        Ok(())
    }

    /// The upgrade on offer, if any.
    pub(crate) fn upgrade(
        &self,
        tx: &mut dyn Tx,
    ) -> Result<Option<idlegrid_protocol::messages::ServerToProvider>, idlegrid_store::StoreError> {
        Ok(tx.meta(UPGRADE_KEY)?.and_then(|bytes| serde_json::from_slice(&bytes).ok()))
    }

    /// Seal an assignment with the server's signature.
    pub(crate) fn sign(
        &self,
        mut assignment: idlegrid_protocol::messages::Assignment,
    ) -> idlegrid_protocol::messages::Assignment {
        assignment.signature = self.signer.sign_bytes(&assignment.signed_bytes());
        assignment
    }

    /// Register a party by its public key (P4.1). Registering the same key again is harmless.
    pub fn register(
        &self,
        tx: &mut dyn Tx,
        request: &RegisterRequest,
        now_ms: u64,
    ) -> Result<RegisterResponse, CoordinatorError> {
        let key = parse_public_key(&request.public_key)
            .map_err(|_| CoordinatorError::bad_request("public_key must be a 64-character hex Ed25519 public key"))?;
        if request.name.len() > 200 {
            return Err(CoordinatorError::bad_request("name must be at most 200 bytes"));
        }
        let id = PartyId::from_public_key(&key);
        if request.role == Role::Operator && !self.config.operators.contains(&id) {
            return Err(CoordinatorError::forbidden(format!(
                "{id} is not an operator of this server; start the server with --operator {id} to make it one"
            )));
        }
        if let Some(revocation) = tx.revocation(&id)? {
            return Err(CoordinatorError::forbidden(format!(
                "party {id} is revoked ({}); register with a new key",
                revocation.reason
            )));
        }
        let row = PartyRow {
            id: id.clone(),
            role: request.role,
            public_key: key,
            name: request.name.clone(),
            created_ms: now_ms,
        };
        if !tx.insert_party(&row)? {
            let existing =
                tx.party(&id)?.ok_or_else(|| CoordinatorError::internal("party vanished during registration"))?;
            if existing.role != request.role {
                return Err(CoordinatorError::conflict(format!(
                    "this key is registered as a {}; use another key for a {}",
                    existing.role.as_str(),
                    request.role.as_str()
                )));
            }
        }
        self.open_party_account(tx, &id, request.role, now_ms)?;
        Ok(RegisterResponse { id, role: request.role, server_key: self.server_key(), certificate: None })
    }

    /// Check a signed request; returns who sent it.
    pub fn authenticate(
        &self,
        tx: &mut dyn Tx,
        claim: &Claim,
        method: &str,
        path_and_query: &str,
        body_sha256_hex: &str,
        now_ms: u64,
    ) -> Result<Party, CoordinatorError> {
        let ttl = self.config.key_cache_ttl_ms;
        let cached = self.keys.lock().unwrap_or_else(|p| p.into_inner()).get(&claim.id).copied();
        let entry = match cached {
            Some(entry) if now_ms.saturating_sub(entry.loaded_ms) < ttl => entry,
            _ => {
                let party = tx.party(&claim.id)?.ok_or_else(|| {
                    CoordinatorError::unauthenticated(format!(
                        "unknown party {}: register first (POST /v1/register)",
                        claim.id
                    ))
                })?;
                let revoked = tx.revocation(&claim.id)?.is_some();
                let entry = CachedKey { role: party.role, key: party.public_key, revoked, loaded_ms: now_ms };
                let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
                if keys.len() >= KEY_CACHE_ENTRIES_MAX {
                    keys.clear();
                }
                keys.insert(party.id, entry);
                entry
            }
        };
        claim
            .verify(&entry.key, method, path_and_query, body_sha256_hex, now_ms)
            .map_err(|e| CoordinatorError::unauthenticated(e.to_string()))?;
        if entry.revoked {
            return Err(CoordinatorError::forbidden(format!(
                "party {} is revoked by the operator: its certificate and key are no longer honoured",
                claim.id
            )));
        }
        let role = entry.role;
        Ok(Party { id: claim.id.clone(), role })
    }

    /// Whether the store has a party (for the key cache's cold path in tests).
    pub fn knows(&self, tx: &mut dyn Tx, id: &PartyId) -> Result<bool, CoordinatorError> {
        Ok(tx.party(id)?.is_some())
    }

    /// Record an element whose bytes the shell has stored and verified (P4.4). A client becomes
    /// an owner; an engine's uploads (results, checkpoints) are owned by the job that refers to
    /// them once the engine's status arrives.
    pub fn element_stored(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        hash: &ElementHash,
        size: u64,
        kind: ElementKind,
        name: &str,
        now_ms: u64,
    ) -> Result<(), CoordinatorError> {
        if name.len() > 256 {
            return Err(CoordinatorError::bad_request("element name must be at most 256 bytes"));
        }
        if party.role == Role::Client && tx.element_grant(&party.id, hash)?.is_none() {
            // Checked again in the transaction that counts it: concurrent uploads each saw
            // room for themselves alone.
            let usage = tx.element_usage(&party.id)?;
            let (bytes_max, elements_max) = (self.config.client_storage_bytes_max, self.config.client_elements_max);
            if usage.elements >= elements_max || usage.bytes.saturating_add(size) > bytes_max {
                return Err(self.quota_exceeded(usage, size));
            }
        }
        tx.insert_element(hash, size, now_ms)?;
        if party.role == Role::Client {
            tx.grant_element(&party.id, hash, kind, name, now_ms)?;
        }
        Ok(())
    }

    /// How many bytes an upload of `hash` by `party` may bring: the element limit, or for a
    /// client what is left of its storage quota if that is less. A client at its element
    /// quota is refused before it sends anything.
    pub fn upload_allowance(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        hash: &ElementHash,
    ) -> Result<UploadAllowance, CoordinatorError> {
        let element_max = self.config.element_bytes_max;
        if party.role != Role::Client || tx.element_grant(&party.id, hash)?.is_some() {
            return Ok(UploadAllowance { bytes_max: element_max, quota: None });
        }
        let usage = tx.element_usage(&party.id)?;
        if usage.elements >= self.config.client_elements_max {
            return Err(self.quota_exceeded(usage, 0));
        }
        let left = self.config.client_storage_bytes_max.saturating_sub(usage.bytes);
        if left < element_max {
            Ok(UploadAllowance { bytes_max: left, quota: Some(usage) })
        } else {
            Ok(UploadAllowance { bytes_max: element_max, quota: None })
        }
    }

    /// The refusal of an upload past a client's storage quota: the quota and the usage.
    pub fn quota_exceeded(&self, usage: idlegrid_store::ElementUsage, adding: u64) -> CoordinatorError {
        let adding = if adding > 0 { format!(" (this upload: {adding} bytes or more)") } else { String::new() };
        CoordinatorError::too_large(format!(
            "storage quota exceeded: this client stores {} bytes in {} elements{adding}; its quota is {} bytes \
             and {} elements. Remove elements it no longer needs, or ask the server's operator for more",
            usage.bytes, usage.elements, self.config.client_storage_bytes_max, self.config.client_elements_max
        ))
    }

    /// Whether a party already has an element (so it need not upload it again). A client has
    /// only elements it owns: one its jobs merely refer to (a task's checkpoint, a result) may
    /// go with them, so uploading it makes the client its owner. Deduplication across clients
    /// stays invisible.
    pub fn element_known(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        hash: &ElementHash,
    ) -> Result<Option<u64>, CoordinatorError> {
        let size = tx.element_size(hash)?;
        match (party.role, size) {
            (_, None) => Ok(None),
            (Role::Client, Some(size)) => Ok(tx.element_grant(&party.id, hash)?.is_some().then_some(size)),
            (Role::Provider | Role::Operator, Some(_)) => Ok(None),
        }
    }

    /// Check that a party may download an element. Engines need a valid ticket for an active
    /// assignment whose task uses the element.
    pub fn authorize_download(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        hash: &ElementHash,
        ticket: Option<&str>,
        now_ms: u64,
    ) -> Result<u64, CoordinatorError> {
        let not_found = || CoordinatorError::not_found_element(format!("element {hash} not found"));
        let size = tx.element_size(hash)?.ok_or_else(not_found)?;
        match party.role {
            Role::Client => {
                if tx.element_visible_to_client(&party.id, hash)?
                    || self.market_client_may_fetch(tx, &party.id, hash)?
                {
                    Ok(size)
                } else {
                    Err(not_found())
                }
            }
            Role::Provider => {
                // The published engine upgrade is for every engine.
                if let Some(idlegrid_protocol::messages::ServerToProvider::Upgrade { element, .. }) =
                    self.upgrade(tx)?
                    && element.hash == *hash
                {
                    return Ok(size);
                }
                if ticket.is_none() && self.market_engine_may_fetch(tx, &party.id, hash)? {
                    return Ok(size); // a storage buyer's blob this engine keeps
                }
                let ticket = ticket.ok_or_else(|| {
                    CoordinatorError::forbidden("engines need the assignment's ticket (x-idlegrid-ticket)")
                })?;
                let ticket = Ticket::verify(ticket, &self.secret, &party.id, now_ms)
                    .map_err(|e| CoordinatorError::forbidden(e.to_string()))?;
                let assignment = tx
                    .assignment(ticket.assignment)?
                    .ok_or_else(|| CoordinatorError::forbidden("the ticket's assignment does not exist"))?;
                if assignment.provider != party.id || assignment.state != idlegrid_store::AssignmentRowState::Active {
                    return Err(CoordinatorError::forbidden("the ticket's assignment is not active on this engine"));
                }
                let task = tx
                    .task_by_key(assignment.task)?
                    .ok_or_else(|| CoordinatorError::forbidden("the ticket's task no longer exists"))?;
                let uses = task.executable == *hash
                    || task.data.values().any(|h| h == hash)
                    || task.checkpoint.as_ref() == Some(hash);
                if uses { Ok(size) } else { Err(CoordinatorError::forbidden("the ticket does not cover this element")) }
            }
            Role::Operator => Err(CoordinatorError::forbidden("operators do not download elements")),
        }
    }

    /// The jobs of a client, for the HTTP API.
    pub fn jobs_of(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
    ) -> Result<Vec<idlegrid_protocol::messages::JobInfo>, CoordinatorError> {
        if party.role != Role::Client {
            return Err(CoordinatorError::forbidden("only clients have jobs"));
        }
        Ok(tx.jobs_of_client(&party.id)?.iter().map(session::job_info).collect())
    }

    /// One job of a client, for the HTTP API.
    pub fn job_of(
        &self,
        tx: &mut dyn Tx,
        party: &Party,
        job: idlegrid_types::JobId,
    ) -> Result<idlegrid_protocol::messages::JobInfo, CoordinatorError> {
        match tx.job(job)? {
            Some(row) if row.client == party.id => Ok(session::job_info(&row)),
            _ => Err(CoordinatorError::unknown_job(format!("job {job} does not exist (or belongs to another client)"))),
        }
    }

    fn ticket(&self, holder: &PartyId, assignment: idlegrid_types::AssignmentId, now_ms: u64) -> String {
        Ticket { holder: holder.clone(), assignment, expires_unix_ms: now_ms + self.config.ticket_ttl_ms }
            .issue(&self.secret)
    }
}

#[cfg(test)]
mod benchmark_tests;
#[cfg(test)]
mod cluster_tests;
#[cfg(test)]
mod market_tests;
#[cfg(test)]
mod requests_tests;
#[cfg(test)]
mod tests;
