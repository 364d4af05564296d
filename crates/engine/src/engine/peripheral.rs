//! A peripheral use the server passed on: run the owner's handler for its kind
//! (`market_peripheral`) and answer with the output or why there is none.

use std::sync::Arc;

use idlegrid_protocol::messages::ProviderToServer;
use idlegrid_types::Untrusted;

use super::Inner;

impl Inner {
    /// Serve use `number` of `contract` with the handler of `kind`; the answer goes to the server.
    pub(super) async fn serve_peripheral(self: Arc<Self>, contract: u64, number: u64, kind: String, input: Vec<u8>) {
        let outcome = match self.config.owner.peripherals.get(&kind) {
            Some(handler) => {
                let work = self.config.data_dir.join("peripherals").join(format!("{contract}-{number}"));
                crate::market_peripheral::serve(handler, &work, &input).await
            }
            None => Err(format!("this engine has no handler for peripherals of kind {}", Untrusted(&kind))),
        };
        match &outcome {
            Ok(output) => tracing::info!(contract, number, bytes = output.len(), "peripheral use served"),
            Err(reason) => tracing::warn!(contract, number, %reason, "peripheral use not served"),
        }
        let (output, error) = match outcome {
            Ok(output) => (output, None),
            Err(reason) => (Vec::new(), Some(reason)),
        };
        self.send(ProviderToServer::PeripheralDone { contract, number, output, error }, None);
    }
}
