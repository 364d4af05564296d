//! The server's own warnings and errors, filed in its log server (P4.9) beside those of
//! clients and engines, under the server's own identity with the operator's role.

use idlegrid_protocol::wire::{LogBatch, LogLine};
use idlegrid_store::Tx;
use idlegrid_types::Role;

use crate::{Coordinator, CoordinatorError, Party};

impl Coordinator {
    /// The server as a party of its own log server.
    pub fn own_party(&self) -> Party {
        Party { id: self.signer.id().clone(), role: Role::Operator }
    }

    /// File lines the server logged; bounded like any party's.
    pub fn file_own_logs(&self, tx: &mut dyn Tx, lines: Vec<LogLine>, now_ms: u64) -> Result<usize, CoordinatorError> {
        self.store_logs(tx, &self.own_party(), LogBatch { lines }, now_ms)
    }
}
