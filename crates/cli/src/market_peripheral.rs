//! `idlegrid market peripheral use`: the buyer of a peripheral sends an input file to the
//! seller's engine, whose handler makes the output, and waits for it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Subcommand;
use idlegrid_client::Market;
use idlegrid_protocol::market::PERIPHERAL_BYTES_MAX;
use idlegrid_types::Untrusted;

#[derive(Subcommand, Clone)]
pub enum PeripheralCommand {
    /// As a contract's buyer, use the peripheral bought: the input file goes to the seller's
    /// engine, and its handler's output is written to --out.
    Use {
        contract: u64,
        /// The input for the handler (at most 64 KiB).
        #[arg(long)]
        input: PathBuf,
        /// Where the output is written.
        #[arg(long)]
        out: PathBuf,
        /// How long to wait for the seller's engine, in seconds.
        #[arg(long, default_value_t = 300)]
        wait_secs: u64,
    },
}

/// Carry out a peripheral command.
pub async fn run(market: &Market<'_>, command: PeripheralCommand) -> anyhow::Result<()> {
    let PeripheralCommand::Use { contract, input, out, wait_secs } = command;
    let bytes = std::fs::read(&input).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", input.display()))?;
    anyhow::ensure!(
        bytes.len() <= PERIPHERAL_BYTES_MAX,
        "{} is {} bytes: a peripheral use takes at most {PERIPHERAL_BYTES_MAX}",
        input.display(),
        bytes.len()
    );
    let sent = market.peripheral_use(contract, bytes).await?;
    println!("use {} of contract {contract} ({}) sent to the seller's engine", sent.number, Untrusted(&sent.kind));
    let deadline = Instant::now() + Duration::from_secs(wait_secs);
    loop {
        let info = market.peripheral_result(contract, sent.number).await?;
        match info.state.as_str() {
            "done" => {
                std::fs::write(&out, &info.output)
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
                println!("done: {} bytes written to {}", info.output.len(), out.display());
                return Ok(());
            }
            "failed" => {
                let reason = info.error.unwrap_or_default();
                anyhow::bail!("the seller's engine could not serve use {}: {}", sent.number, Untrusted(&reason));
            }
            _ if Instant::now() >= deadline => anyhow::bail!(
                "use {} still waits for the seller's engine after {wait_secs} s; read it later with the same contract",
                sent.number
            ),
            _ => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}
