//! `idlegrid ops`: what a platform operator does from the command line. The operator's key
//! lives in the CLI home (`operator.key`); the server must be started with `--operator <id>`
//! naming it before it may register as one.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use idlegrid_client::{MoneyDesk, Transport};
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::ops::{EngineConfigBody, EngineConfigReply, RetentionAction, RetentionReply, RetentionRequest};
use idlegrid_protocol::wire::{DisplayBody, DisplayReply, InstanceStatus, RevocationInfo, RevokeReply, RevokeRequest};
use idlegrid_types::{PartyId, Role, Untrusted};
use reqwest::Method;

#[derive(Subcommand)]
pub enum OpsCommand {
    /// Print this operator's ID (give it to `idlegrid server --operator`).
    Id,
    /// Revoke a party: its certificate and key are no longer honoured, an engine's tasks go
    /// to other engines.
    Revoke {
        party: PartyId,
        #[arg(long)]
        reason: String,
    },
    /// List revoked parties.
    Revocations,
    /// Publish a notice shown on every engine's status page (replaces the previous one).
    Publish {
        /// A short title.
        #[arg(long)]
        title: String,
        /// The text under it.
        #[arg(long, default_value = "")]
        body: String,
        /// A link to read more (http or https).
        #[arg(long)]
        url: Option<String>,
    },
    /// Archive the results nobody fetched, or purge their jobs and data (their clients get a
    /// `purged` notice), now instead of at the server's retention settings.
    Retention {
        /// Compress unfetched results (they can still be retrieved).
        #[arg(long, conflicts_with = "purge_now", required_unless_present = "purge_now")]
        archive_now: bool,
        /// Delete jobs whose results nobody fetched, with their data.
        #[arg(long)]
        purge_now: bool,
        /// Only jobs completed at least this many seconds ago (default: every completed job).
        #[arg(long, value_name = "SECS", default_value_t = 0)]
        older_than: u64,
    },
    /// Change every engine's server-controlled settings (sent to connected engines now, to the
    /// others when they next connect): `--set prefetch=8`, `--set status_interval_ms=500`; an
    /// empty value (`--set prefetch=`) goes back to each engine's own.
    EngineConfig {
        #[arg(long = "set", value_name = "KEY=VALUE", required = true)]
        settings: Vec<String>,
    },
    /// Error and warning lines that engines and clients sent, newest first.
    Logs {
        /// Only from this component (e.g. an engine module path, or "client").
        #[arg(long)]
        component: Option<String>,
        /// Only from this party (an engine's or client's ID).
        #[arg(long)]
        party: Option<String>,
        /// Only about this job.
        #[arg(long)]
        job: Option<String>,
        /// Only this level: error, warn or info.
        #[arg(long)]
        level: Option<String>,
        /// Only lines received in the last N seconds.
        #[arg(long)]
        since_secs: Option<u64>,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Deposit and payout requests of every party (pending ones unless --state says).
    Requests {
        /// pending, approved, rejected or all.
        #[arg(long, default_value = "pending")]
        state: String,
        #[arg(long, default_value_t = 100)]
        limit: u32,
    },
    /// Approve a request: a deposit is credited (once the payment arrived), a payout is paid.
    /// Approving again moves nothing.
    Approve {
        request: u64,
        /// The payment's own reference, kept with the decision.
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Reject a request: nothing moves; a payout's reserved amount is released.
    Reject {
        request: u64,
        #[arg(long)]
        reason: String,
    },
    /// Credit a client's or provider's account with money received (amount in currency units).
    Credit {
        party: PartyId,
        amount: String,
        /// The payment's reference: the same reference again credits nothing more.
        #[arg(long)]
        reference: String,
        #[arg(long, default_value = "")]
        note: String,
    },
    /// Health of every server instance, side by side (name-value pairs of each).
    Status {
        /// Another instance to ask besides --server (repeatable).
        #[arg(long = "instance")]
        instances: Vec<String>,
    },
}

pub fn operator_identity(home: &Path) -> anyhow::Result<Identity> {
    Identity::load_or_create(&home.join("operator.key"))
        .with_context(|| format!("cannot load the operator key in {}", home.display()))
}

pub async fn run(
    server: idlegrid_client::Endpoint,
    endpoint_of: impl Fn(&str) -> anyhow::Result<idlegrid_client::Endpoint>,
    home: &Path,
    command: OpsCommand,
) -> anyhow::Result<()> {
    let identity = operator_identity(home)?;
    if let OpsCommand::Status { instances } = command {
        let mut endpoints = vec![server];
        for url in &instances {
            endpoints.push(endpoint_of(url)?);
        }
        return status(endpoints, identity).await;
    }
    let transport = Transport::new(&server, identity)?;
    transport
        .register(Role::Operator, "operator")
        .await
        .map_err(|e| anyhow::anyhow!("cannot register as an operator: {e}"))?;
    let timeout = OPS_TIMEOUT;
    match command {
        OpsCommand::Id => println!("{}", transport.identity().id()),
        OpsCommand::Status { .. } => unreachable!("answered above"),
        OpsCommand::Logs { component, party, job, level, since_secs, limit } => {
            show_logs(
                &transport,
                [("component", component), ("party", party), ("job", job), ("level", level)],
                since_secs,
                limit,
            )
            .await?
        }
        OpsCommand::Revoke { party, reason } => {
            let reply: RevokeReply = transport
                .call(Method::POST, "/v1/ops/revoke", Some(&RevokeRequest { party: party.clone(), reason }), timeout)
                .await?;
            if reply.revoked_now {
                println!("revoked {party}");
            } else {
                println!("{party} was revoked already");
            }
        }
        OpsCommand::Retention { archive_now, purge_now: _, older_than } => {
            retention_now(&transport, archive_now, older_than).await?
        }
        OpsCommand::EngineConfig { settings } => set_engine_config(&transport, settings).await?,
        OpsCommand::Publish { title, body, url } => {
            let reply: DisplayReply = transport
                .call(Method::POST, "/v1/ops/display", Some(&DisplayBody { title, body, url }), timeout)
                .await?;
            println!(
                "published: sent to {} connected engines now, the others get it when they next connect",
                reply.engines_told
            );
        }
        OpsCommand::Requests { state, limit } => {
            let requests = MoneyDesk::new(&transport).requests(crate::account::parse_state(&state)?, limit).await?;
            if requests.is_empty() {
                println!("no requests");
            }
            for request in &requests {
                print!("{}  ", Untrusted(&request.account));
                crate::account::print_request(request);
            }
        }
        OpsCommand::Approve { request, note } => {
            crate::account::print_request(&MoneyDesk::new(&transport).approve(request, &note).await?);
        }
        OpsCommand::Reject { request, reason } => {
            crate::account::print_request(&MoneyDesk::new(&transport).reject(request, &reason).await?);
        }
        OpsCommand::Credit { party, amount, reference, note } => {
            let amount = crate::account::parse_amount(&amount)?;
            let credited = MoneyDesk::new(&transport).credit(&party, amount, &reference, &note).await?;
            crate::account::print_request(&credited);
        }
        OpsCommand::Revocations => {
            let list: Vec<RevocationInfo> =
                transport.call::<(), _>(Method::GET, "/v1/ops/revocations", None, timeout).await?;
            if list.is_empty() {
                println!("no revoked parties");
            }
            for revocation in list {
                println!(
                    "{}  revoked at {} ms  {}",
                    revocation.party,
                    revocation.revoked_ms,
                    Untrusted(&revocation.reason)
                );
            }
        }
    }
    Ok(())
}

const OPS_TIMEOUT: Duration = Duration::from_secs(30);

/// `ops logs`: the collected log lines that match, oldest first.
async fn show_logs(
    transport: &Transport,
    filters: [(&str, Option<String>); 4],
    since_secs: Option<u64>,
    limit: u32,
) -> anyhow::Result<()> {
    let mut query = vec![format!("limit={limit}")];
    for (name, value) in filters {
        if let Some(value) = value {
            query.push(format!("{name}={}", url_encode(&value)));
        }
    }
    if let Some(secs) = since_secs {
        let now =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_millis() as u64;
        query.push(format!("since_ms={}", now.saturating_sub(secs * 1000)));
    }
    let path = format!("/v1/ops/logs?{}", query.join("&"));
    let entries: Vec<idlegrid_protocol::wire::LogEntry> =
        transport.call::<(), _>(Method::GET, &path, None, OPS_TIMEOUT).await?;
    if entries.is_empty() {
        println!("no log lines");
    }
    for entry in entries {
        let job = entry.job.map(|j| format!(" job {j}")).unwrap_or_default();
        // Engines and clients wrote these lines: shown with control characters escaped.
        println!(
            "{} {:<5} {} {} ({}){job}: {}",
            entry.received_ms,
            Untrusted(&entry.level),
            Untrusted(&entry.component),
            &entry.party.to_string()[..12.min(entry.party.to_string().len())],
            entry.role.as_str(),
            Untrusted(&entry.message)
        );
    }
    Ok(())
}

/// `ops retention`: archive or purge now rather than on the server's schedule.
async fn retention_now(transport: &Transport, archive_now: bool, older_than: u64) -> anyhow::Result<()> {
    let action = if archive_now { RetentionAction::Archive } else { RetentionAction::Purge };
    let request = RetentionRequest { action, older_than_secs: older_than };
    let reply: RetentionReply = transport.call(Method::POST, "/v1/ops/retention", Some(&request), OPS_TIMEOUT).await?;
    match action {
        RetentionAction::Archive => println!("archived {} results of {} jobs", reply.results, reply.jobs),
        RetentionAction::Purge => println!("purged {} jobs; their clients were notified", reply.jobs),
    }
    Ok(())
}

/// `ops engine-config --set KEY=VALUE ...`: settings pushed to every engine.
async fn set_engine_config(transport: &Transport, settings: Vec<String>) -> anyhow::Result<()> {
    let mut body = EngineConfigBody { settings: Default::default() };
    for setting in settings {
        let (key, value) =
            setting.split_once('=').with_context(|| format!("--set {setting:?}: write KEY=VALUE, e.g. prefetch=8"))?;
        body.settings.insert(key.trim().to_string(), value.trim().to_string());
    }
    let reply: EngineConfigReply =
        transport.call(Method::POST, "/v1/ops/engine-config", Some(&body), OPS_TIMEOUT).await?;
    let shown: Vec<String> = reply.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "engines' settings: {}; sent to {} connected engines now, the others get them when they next connect",
        if shown.is_empty() { "each engine's own".to_string() } else { shown.join(", ") },
        reply.engines_told
    );
    Ok(())
}

/// Ask every instance at once; an instance that does not answer is shown as down, not an error.
async fn status(endpoints: Vec<idlegrid_client::Endpoint>, identity: Identity) -> anyhow::Result<()> {
    let asks = endpoints.into_iter().map(|endpoint| {
        let identity = identity.clone();
        async move {
            let url = endpoint.url().to_string();
            let answer = async {
                let transport = Transport::new(&endpoint, identity)?;
                transport.register(Role::Operator, "operator").await?;
                transport.call::<(), InstanceStatus>(Method::GET, "/v1/ops/status", None, Duration::from_secs(10)).await
            }
            .await;
            (url, answer)
        }
    });
    let answers = futures::future::join_all(asks).await;
    let mut names: Vec<String> = Vec::new();
    for (_, answer) in &answers {
        if let Ok(status) = answer {
            for name in status.values.keys() {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
    }
    names.sort();
    print!("{:<32}", "");
    for (url, _) in &answers {
        print!(" {url:>24}");
    }
    println!();
    let row = |label: &str, cell: &dyn Fn(&InstanceStatus) -> String| {
        print!("{label:<32}");
        for (_, answer) in &answers {
            let text = match answer {
                Ok(status) => cell(status),
                Err(_) => "DOWN".to_string(),
            };
            print!(" {text:>24}");
        }
        println!();
    };
    row("store", &|s| s.store.clone());
    row("version", &|s| s.version.clone());
    for name in &names {
        row(name, &|s| s.values.get(name).map(|v| format_value(*v)).unwrap_or_else(|| "-".into()));
    }
    for (url, answer) in &answers {
        match answer {
            Err(error) => println!("{url}: {error}"),
            Ok(status) => {
                for error in &status.errors {
                    println!("{url}: {error}");
                }
            }
        }
    }
    Ok(())
}

fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 { format!("{value:.0}") } else { format!("{value:.3}") }
}

fn url_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
