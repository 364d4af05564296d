//! `idlegrid account`: money as a client or as a provider (P7.6, P7.7).

use std::path::Path;
use std::time::Duration;

use clap::Subcommand;
use idlegrid_client::Transport;
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::AccountInfo;
use reqwest::Method;

#[derive(Subcommand, Clone)]
pub enum AccountCommand {
    /// Balance, what may still be spent, the limit.
    Show,
    /// Charges by job (client) or earnings by engine (provider), by period.
    Statement {
        /// Start and end, in milliseconds since the epoch (default: all).
        #[arg(long)]
        from_ms: Option<u64>,
        #[arg(long)]
        to_ms: Option<u64>,
        /// day, month or whole.
        #[arg(long, default_value = "month")]
        period: String,
        /// CSV instead of a table.
        #[arg(long)]
        csv: bool,
    },
    /// Record a payment into the client's account (amount in currency units).
    Deposit {
        amount: f64,
        /// A unique reference of the payment: a retried deposit counts once.
        #[arg(long)]
        reference: String,
    },
    /// Where job notices go.
    Notices {
        /// URL that receives each notice as a JSON POST.
        #[arg(long)]
        webhook: Option<String>,
        /// Secret for the HMAC-SHA256 signature of webhook bodies.
        #[arg(long)]
        secret: Option<String>,
        /// Address that receives each notice by e-mail (needs a server started with --smtp).
        #[arg(long)]
        email: Option<String>,
    },
    /// As a provider: make earnings spendable by a client account (barter).
    Barter {
        /// The client's id.
        #[arg(long)]
        to: String,
        amount: f64,
        #[arg(long)]
        reference: String,
    },
}

fn units(micros: i64) -> String {
    format!("{:.6}", micros as f64 / 1e6)
}

fn print_account(info: &AccountInfo) {
    println!("account {}", info.account);
    println!("  balance   {}", units(info.balance_micros));
    println!("  available {}", units(info.available_micros));
    match info.overdraft_max_micros {
        Some(limit) => println!("  may owe up to {}", units(limit)),
        None => println!("  no limit"),
    }
    if info.over_limit {
        println!("  OVER ITS LIMIT: jobs are held until a deposit brings it current");
    }
}

fn micros(amount: f64) -> anyhow::Result<i64> {
    anyhow::ensure!(amount.is_finite() && amount > 0.0, "the amount must be a positive number");
    Ok((amount * 1e6).round() as i64)
}

pub async fn run(
    server: idlegrid_client::Endpoint,
    home: &Path,
    engine_data: Option<&Path>,
    command: AccountCommand,
    give_up: Duration,
) -> anyhow::Result<()> {
    // A provider acts with its engine's identity; a client with its own.
    let identity = match engine_data {
        Some(dir) => Identity::load_or_create(&dir.join("identity.key"))?,
        None => Identity::load_or_create(&home.join("client.key"))?,
    };
    let transport = Transport::new(&server, identity.clone())?;
    let role = if engine_data.is_some() { idlegrid_types::Role::Provider } else { idlegrid_types::Role::Client };
    // Registering is harmless when done before, and over TLS it yields the certificate.
    let name = std::env::var("USER").unwrap_or_else(|_| "client".into());
    transport.register(role, &name).await.map_err(|e| anyhow::anyhow!("cannot register with the server: {e}"))?;
    let timeout = Duration::from_secs(30).max(give_up);
    match command {
        AccountCommand::Show => {
            let info: AccountInfo = transport.call::<(), _>(Method::GET, "/v1/account", None, timeout).await?;
            print_account(&info);
        }
        AccountCommand::Statement { from_ms, to_ms, period, csv } => {
            let mut path = format!("/v1/account/statement?period={period}");
            if let Some(from) = from_ms {
                path.push_str(&format!("&from_ms={from}"));
            }
            if let Some(to) = to_ms {
                path.push_str(&format!("&to_ms={to}"));
            }
            if csv {
                path.push_str("&format=csv");
                let text = transport.call_text(Method::GET, &path, timeout).await?;
                print!("{text}");
            } else {
                let statement: idlegrid_ledger::Statement =
                    transport.call::<(), _>(Method::GET, &path, None, timeout).await?;
                println!(
                    "{:<22} {:<22} {:<40} {:<14} {:>9} {:>14}",
                    "period start", "period end", "job/engine", "purpose", "transfers", "amount"
                );
                for row in &statement.rows {
                    println!(
                        "{:<22} {:<22} {:<40} {:<14} {:>9} {:>14}",
                        idlegrid_ledger::format_utc(row.period.start_ms),
                        idlegrid_ledger::format_utc(row.period.end_ms),
                        row.subject,
                        format!("{:?}", row.purpose),
                        row.transfers,
                        row.amount
                    );
                }
                println!("debits {}  credits {}", statement.debits, statement.credits);
            }
        }
        AccountCommand::Deposit { amount, reference } => {
            let client = crate::jobs::connect(server.clone(), home, give_up).await?;
            let info = client.deposit(micros(amount)?, &reference).await?;
            print_account(&info);
            let _ = client.close().await;
        }
        AccountCommand::Notices { webhook, secret, email } => {
            let client = crate::jobs::connect(server.clone(), home, give_up).await?;
            client.set_notices(webhook, secret, email).await?;
            println!("notice settings saved");
            let _ = client.close().await;
        }
        AccountCommand::Barter { to, amount, reference } => {
            anyhow::ensure!(
                engine_data.is_some(),
                "barter moves a provider's earnings: pass --engine-data with the engine's data folder"
            );
            let body = serde_json::json!({ "to": to, "amount_micros": micros(amount)?, "reference": reference });
            let info: AccountInfo = transport.call(Method::POST, "/v1/account/barter", Some(&body), timeout).await?;
            print_account(&info);
        }
    }
    Ok(())
}
