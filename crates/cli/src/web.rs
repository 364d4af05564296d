//! `idlegrid web login`: a one-time link that signs this user in to the server's web manager,
//! asked for with a signed request as the client (default), the provider of an engine
//! (`--engine-data`) or the operator (`--operator`).

use std::path::Path;
use std::time::Duration;

use clap::Subcommand;
use idlegrid_client::Transport;
use idlegrid_protocol::auth::Identity;
use idlegrid_server::web::LoginLink;
use idlegrid_types::Role;
use reqwest::Method;

#[derive(Subcommand)]
pub enum WebCommand {
    /// Print a link that signs you in to the web manager: open it in a browser, once, within
    /// five minutes.
    Login {
        /// Sign in as the provider of the engine with this data folder.
        #[arg(long, conflicts_with = "operator")]
        engine_data: Option<std::path::PathBuf>,
        /// Sign in as the operator (the key `idlegrid ops id` names).
        #[arg(long)]
        operator: bool,
    },
}

/// Who signs the request: its identity, role and name.
fn signer(home: &Path, engine_data: Option<&Path>, operator: bool) -> anyhow::Result<(Identity, Role)> {
    Ok(match (engine_data, operator) {
        (Some(dir), _) => (Identity::load_or_create(&dir.join("identity.key"))?, Role::Provider),
        (None, true) => (crate::ops::operator_identity(home)?, Role::Operator),
        (None, false) => (Identity::load_or_create(&home.join("client.key"))?, Role::Client),
    })
}

pub async fn run(server: idlegrid_client::Endpoint, home: &Path, command: WebCommand) -> anyhow::Result<()> {
    let WebCommand::Login { engine_data, operator } = command;
    let (identity, role) = signer(home, engine_data.as_deref(), operator)?;
    let transport = Transport::new(&server, identity)?;
    // Registering is harmless when done before, and over TLS it yields the certificate.
    let name = std::env::var("USER").unwrap_or_else(|_| role.as_str().to_string());
    transport.register(role, &name).await.map_err(|e| anyhow::anyhow!("cannot register with the server: {e}"))?;
    let link: LoginLink = transport
        .call::<(), _>(Method::POST, "/v1/web/login", None, Duration::from_secs(30))
        .await
        .map_err(|e| anyhow::anyhow!("the server gave no sign-in link: {e}"))?;
    println!("{}", link.url);
    let seconds = link.expires_unix_ms.saturating_sub(now_ms()) / 1000;
    eprintln!("open it in a browser within {seconds} s; it works once");
    Ok(())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
