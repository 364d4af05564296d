//! `idlegrid ops`: what a platform operator does from the command line. The operator's key
//! lives in the CLI home (`operator.key`); the server must be started with `--operator <id>`
//! naming it before it may register as one.

use std::path::Path;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use idlegrid_client::Transport;
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::wire::{RevocationInfo, RevokeReply, RevokeRequest};
use idlegrid_types::{PartyId, Role};
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
}

pub fn operator_identity(home: &Path) -> anyhow::Result<Identity> {
    Identity::load_or_create(&home.join("operator.key")).with_context(|| format!("cannot load the operator key in {}", home.display()))
}

pub async fn run(server: idlegrid_client::Endpoint, home: &Path, command: OpsCommand) -> anyhow::Result<()> {
    let identity = operator_identity(home)?;
    if let OpsCommand::Id = command {
        println!("{}", identity.id());
        return Ok(());
    }
    let transport = Transport::new(&server, identity)?;
    transport.register(Role::Operator, "operator").await.map_err(|e| anyhow::anyhow!("cannot register as an operator: {e}"))?;
    let timeout = Duration::from_secs(30);
    match command {
        OpsCommand::Id => unreachable!("answered above"),
        OpsCommand::Revoke { party, reason } => {
            let reply: RevokeReply =
                transport.call(Method::POST, "/v1/ops/revoke", Some(&RevokeRequest { party: party.clone(), reason }), timeout).await?;
            if reply.revoked_now {
                println!("revoked {party}");
            } else {
                println!("{party} was revoked already");
            }
        }
        OpsCommand::Revocations => {
            let list: Vec<RevocationInfo> = transport.call::<(), _>(Method::GET, "/v1/ops/revocations", None, timeout).await?;
            if list.is_empty() {
                println!("no revoked parties");
            }
            for revocation in list {
                println!("{}  revoked at {} ms  {}", revocation.party, revocation.revoked_ms, revocation.reason);
            }
        }
    }
    Ok(())
}
