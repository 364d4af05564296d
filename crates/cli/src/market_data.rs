//! `idlegrid market storage|file|relay ...`: the market's data contracts from the command
//! line, and how `market contracts` shows what each carried out.

use std::path::PathBuf;

use clap::Subcommand;
use idlegrid_client::Market;
use idlegrid_protocol::market_data::DataExecution;
use idlegrid_types::PartyId;

use crate::market::print_contract;

#[derive(Subcommand, Clone)]
pub enum StorageCommand {
    /// As the buyer of storage, encrypt FILE with a key derived from your own and hand it over
    /// to the seller's engine, which keeps it and proves it does until the contract ends.
    Put { contract: u64, file: PathBuf },
    /// As the buyer of storage, fetch the blob back while the contract is active, decrypted.
    Get {
        contract: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Clone)]
pub enum FileCommand {
    /// As the seller of a file, attach it: it must be the file the contract names (its sha256
    /// and size_bytes).
    Attach { contract: u64, file: PathBuf },
    /// As the buyer of a file, download it once the contract is paid (both signed), check it,
    /// and confirm delivery.
    Get {
        contract: u64,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand, Clone)]
pub enum RelayCommand {
    /// As the buyer of internet access, fetch one of your elements (its SHA-256) through the
    /// seller's relay into OUT; the bytes received are reported and settle the contract.
    Get {
        contract: u64,
        element: String,
        #[arg(long)]
        out: PathBuf,
    },
}

pub async fn run_relay(market: &Market<'_>, command: RelayCommand) -> anyhow::Result<()> {
    match command {
        RelayCommand::Get { contract, element, out } => {
            let hash = element.parse().map_err(|_| anyhow::anyhow!("the element must be a hex SHA-256"))?;
            let bytes = market.relay_get(contract, &hash, &out).await?;
            println!("contract {contract}: {bytes} bytes received through the relay into {}", out.display());
        }
    }
    Ok(())
}

pub async fn run_storage(market: &Market<'_>, me: &PartyId, command: StorageCommand) -> anyhow::Result<()> {
    match command {
        StorageCommand::Put { contract, file } => print_contract(&market.storage_put(contract, &file).await?, me),
        StorageCommand::Get { contract, out } => {
            let size = market.storage_get(contract, &out).await?;
            println!("contract {contract}: {size} bytes fetched back into {}", out.display());
        }
    }
    Ok(())
}

pub async fn run_file(market: &Market<'_>, me: &PartyId, command: FileCommand) -> anyhow::Result<()> {
    match command {
        FileCommand::Attach { contract, file } => print_contract(&market.file_attach(contract, &file).await?, me),
        FileCommand::Get { contract, out } => {
            let info = market.file_get(contract, &out).await?;
            println!("contract {contract}: file saved to {}", out.display());
            print_contract(&info, me);
        }
    }
    Ok(())
}

/// One line on what a data contract carried out.
pub fn print_data(data: &DataExecution) {
    match data {
        DataExecution::Storage { element, size, stored, passed, failed, proven_until_ms } => {
            let blob = element.as_ref().map_or("none".to_string(), |hash| format!("{hash} ({size} bytes)"));
            let kept = if *stored { "kept by the seller's engine" } else { "not yet kept" };
            println!(
                "  storage blob {blob}, {kept}: proofs passed {passed}, failed {failed}, proven until {proven_until_ms} ms"
            );
        }
        DataExecution::File { sha256, size_bytes, attached, downloaded } => {
            let attached = if *attached { "attached" } else { "not attached yet" };
            let downloaded = if *downloaded { "delivered to the buyer" } else { "not delivered yet" };
            println!("  file {sha256} ({size_bytes} bytes), {attached}, {downloaded}");
        }
        DataExecution::Bandwidth { bytes_contracted, seller_bytes, buyer_bytes, delivered_bytes } => println!(
            "  bytes served {delivered_bytes} of {bytes_contracted} (seller counted {seller_bytes}, buyer {buyer_bytes})"
        ),
    }
}
