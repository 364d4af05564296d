//! The market loop: storage this engine sold. The server's `MarketStore`, `MarketChallenge` and
//! `MarketRelease` are handled here one at a time, in the order they came, so that a challenge
//! is answered only once the blob before it is kept (see `crate::market_storage`).

use std::sync::Arc;

use idlegrid_protocol::messages::{ProviderToServer, ServerToProvider};
use tokio::sync::mpsc;

use super::{Inner, now_ms};
use crate::market_storage::{Kept, Shelf};

/// Largest blob the engine keeps in one contract.
const BLOB_BYTES_MAX: u64 = 1 << 30;

impl Inner {
    pub(super) async fn market_loop(self: Arc<Self>, mut messages: mpsc::UnboundedReceiver<ServerToProvider>) {
        let shelf = Shelf::new(&self.config.data_dir);
        let dropped = shelf.sweep(now_ms());
        if dropped > 0 {
            tracing::info!(dropped, "dropped the blobs of storage contracts that ended");
        }
        loop {
            let message = tokio::select! {
                _ = self.stop.cancelled() => return,
                message = messages.recv() => match message { Some(m) => m, None => return },
            };
            self.market_message(&shelf, message).await;
        }
    }

    async fn market_message(&self, shelf: &Shelf, message: ServerToProvider) {
        match message {
            ServerToProvider::MarketStore { contract, element, until_ms } => {
                let error = match shelf.kept(contract) {
                    Some(kept) if kept.element == element.hash.to_string() => None,
                    _ => self.market_fetch(shelf, contract, &element, until_ms).await.err(),
                };
                if let Some(error) = &error {
                    tracing::warn!(contract, %error, "cannot keep the blob of a storage contract");
                } else {
                    tracing::info!(contract, size = element.size, "keeping the blob of a storage contract");
                }
                self.send(ProviderToServer::MarketStored { contract, element: element.hash, error }, None);
            }
            ServerToProvider::MarketChallenge { contract, number, challenge } => {
                let answer = shelf.answer(contract, &challenge).unwrap_or_else(|error| {
                    tracing::warn!(contract, %error, "cannot answer a storage challenge");
                    String::new()
                });
                self.send(ProviderToServer::MarketProof { contract, number, answer }, None);
            }
            ServerToProvider::MarketRelease { contract } => {
                shelf.release(contract);
                tracing::info!(contract, "dropped the blob of a storage contract");
            }
            _ => {}
        }
    }

    async fn market_fetch(
        &self,
        shelf: &Shelf,
        contract: u64,
        element: &idlegrid_types::ElementRef,
        until_ms: u64,
    ) -> Result<(), String> {
        let bytes = self.transport.download_bytes(element, None, BLOB_BYTES_MAX).await.map_err(|e| e.to_string())?;
        let kept = Kept { contract, element: element.hash.to_string(), size: element.size, until_ms };
        shelf.keep(&kept, &bytes).map_err(|e| format!("cannot write the blob: {e}"))
    }
}
