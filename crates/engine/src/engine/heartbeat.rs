//! Heartbeats: an engine that holds no task has nothing to report, so it says `Heartbeat` now
//! and then (well within the server's silence limit, `ServerControlled::heartbeat_interval`),
//! and the server records the contact.

use std::sync::Arc;

use idlegrid_protocol::messages::ProviderToServer;

use super::{Inner, lock};

impl Inner {
    pub(super) async fn heartbeat_loop(self: Arc<Self>) {
        loop {
            let interval = lock(&self.controlled).heartbeat_interval();
            tokio::select! {
                _ = self.stop.cancelled() => return,
                _ = tokio::time::sleep(interval) => {}
            }
            if self.core().held().is_empty() {
                self.send(ProviderToServer::Heartbeat, None);
            }
        }
    }
}
