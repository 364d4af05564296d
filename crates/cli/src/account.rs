//! `idlegrid account`: money as a client or as a provider (P7.6, P7.7).

use std::path::Path;
use std::time::Duration;

use clap::Subcommand;
use idlegrid_client::{Accounts, Transport};
use idlegrid_ledger::{AMOUNT_MICROS_MAX, Micros};
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::messages::{AccountInfo, MoneyRequestInfo, MoneyRequestKind, MoneyRequestState};
use idlegrid_types::Untrusted;
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
    /// As a client: ask to pay money in (amount in currency units, like 50 or 12.5). The
    /// request waits until the operator approves it once the payment arrives.
    Deposit {
        amount: String,
        /// The payment's reference (an invoice or transfer number): the same reference again is
        /// the same request.
        #[arg(long)]
        reference: String,
    },
    /// As a provider (--engine-data): ask to be paid earnings (amount in currency units). The
    /// amount is reserved at once and paid when the operator approves.
    Payout {
        amount: String,
        /// Your reference for this payout: the same reference again is the same request.
        #[arg(long)]
        reference: String,
    },
    /// Your deposit or payout requests and what became of them.
    Requests {
        /// pending, approved, rejected or all.
        #[arg(long, default_value = "all")]
        state: String,
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
        amount: String,
        #[arg(long)]
        reference: String,
    },
}

fn units(micros: i64) -> String {
    Micros::new(micros).to_string()
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

/// An amount in currency units, exactly (at most six decimals), within what one request may move.
pub fn parse_amount(text: &str) -> anyhow::Result<i64> {
    let amount: Micros = text.trim().parse().map_err(|e| anyhow::anyhow!("amount: {e}"))?;
    anyhow::ensure!(
        amount.is_positive() && amount.as_i64() <= AMOUNT_MICROS_MAX,
        "amount: {amount} must be more than 0 and at most {}",
        Micros::new(AMOUNT_MICROS_MAX)
    );
    Ok(amount.as_i64())
}

pub fn parse_state(text: &str) -> anyhow::Result<Option<MoneyRequestState>> {
    match text {
        "all" => Ok(None),
        "pending" => Ok(Some(MoneyRequestState::Pending)),
        "approved" => Ok(Some(MoneyRequestState::Approved)),
        "rejected" => Ok(Some(MoneyRequestState::Rejected)),
        other => anyhow::bail!("--state must be pending, approved, rejected or all, not '{}'", Untrusted(other)),
    }
}

fn state_name(state: MoneyRequestState) -> &'static str {
    match state {
        MoneyRequestState::Pending => "pending",
        MoneyRequestState::Approved => "approved",
        MoneyRequestState::Rejected => "rejected",
    }
}

/// One line per request: number, kind, amount, state, reference, and the decision.
pub fn print_request(request: &MoneyRequestInfo) {
    let kind = match request.kind {
        MoneyRequestKind::Deposit => "deposit",
        MoneyRequestKind::Payout => "payout",
    };
    let mut line = format!(
        "request {:<6} {kind:<8} {:>20} {:<9} {}  {}",
        request.id,
        units(request.amount_micros),
        state_name(request.state),
        Untrusted(&request.reference),
        idlegrid_ledger::format_utc(request.created_ms)
    );
    if let Some(by) = &request.decided_by {
        line.push_str(&format!("  by {}", Untrusted(by)));
    }
    if !request.note.is_empty() {
        line.push_str(&format!(": {}", Untrusted(&request.note)));
    }
    println!("{line}");
}

fn print_filed(request: &MoneyRequestInfo) {
    print_request(request);
    match (request.state, request.kind) {
        (MoneyRequestState::Pending, MoneyRequestKind::Deposit) => {
            println!("the deposit is credited once the operator confirms the payment")
        }
        (MoneyRequestState::Pending, MoneyRequestKind::Payout) => {
            println!("the amount is reserved and paid out once the operator approves")
        }
        _ => {}
    }
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
            let accounts = Accounts::new(&transport);
            print_account(&accounts.info().await?);
            let pending = accounts.requests(Some(MoneyRequestState::Pending)).await?;
            if !pending.is_empty() {
                println!("waiting for the operator:");
                pending.iter().for_each(print_request);
            }
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
                if !statement.requests.is_empty() {
                    println!("deposit and payout requests:");
                    for request in &statement.requests {
                        print_request(&idlegrid_coordinator::requests::request_info(request));
                    }
                }
            }
        }
        AccountCommand::Deposit { amount, reference } => {
            anyhow::ensure!(
                engine_data.is_none(),
                "deposits go into client accounts; a provider's account holds earnings: ask for a payout instead"
            );
            let amount = parse_amount(&amount)?;
            print_filed(&Accounts::new(&transport).request_deposit(amount, &reference).await?);
        }
        AccountCommand::Payout { amount, reference } => {
            anyhow::ensure!(
                engine_data.is_some(),
                "a payout pays out a provider's earnings: pass --engine-data with the engine's data folder"
            );
            let amount = parse_amount(&amount)?;
            print_filed(&Accounts::new(&transport).request_payout(amount, &reference).await?);
        }
        AccountCommand::Requests { state } => {
            let requests = Accounts::new(&transport).requests(parse_state(&state)?).await?;
            if requests.is_empty() {
                println!("no requests");
            }
            requests.iter().for_each(print_request);
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
            let body = serde_json::json!({ "to": to, "amount_micros": parse_amount(&amount)?, "reference": reference });
            let info: AccountInfo = transport.call(Method::POST, "/v1/account/barter", Some(&body), timeout).await?;
            print_account(&info);
        }
    }
    Ok(())
}
