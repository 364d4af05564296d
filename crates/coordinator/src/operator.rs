//! What operators do through the API: revoke a party (P4.1) and list revocations.

use idlegrid_store::{RevocationRow, Tx};
use idlegrid_types::{PartyId, Role};

use crate::{Coordinator, CoordinatorError, Effects, Party};

/// The longest reason kept with a revocation.
const REASON_BYTES_MAX: usize = 500;

impl Coordinator {
    /// Revoke `target`: every later request it signs is refused (whatever certificate it
    /// shows), it cannot register again with the same key, and an engine's tasks go to other
    /// engines at once, its unfinished work unpaid. Returns whether this call revoked it (false
    /// if it was revoked already: a retry changes nothing).
    pub fn revoke(
        &self,
        tx: &mut dyn Tx,
        operator: &Party,
        target: &PartyId,
        reason: &str,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<bool, CoordinatorError> {
        require_operator(operator)?;
        if reason.trim().is_empty() || reason.len() > REASON_BYTES_MAX {
            return Err(CoordinatorError::bad_request(format!("reason must be 1 to {REASON_BYTES_MAX} bytes")));
        }
        if *target == operator.id {
            return Err(CoordinatorError::bad_request("an operator cannot revoke itself"));
        }
        let party = tx.party(target)?.ok_or_else(|| CoordinatorError::not_found(format!("no party {target}")))?;
        let revocation = RevocationRow { party: target.clone(), reason: reason.trim().to_string(), revoked_ms: now_ms };
        if !tx.revoke_party(&revocation)? {
            return Ok(false);
        }
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).remove(target);
        tracing::warn!(party = %target, role = party.role.as_str(), by = %operator.id, reason, "party revoked");
        if party.role == Role::Provider {
            tx.set_provider_session(target, None)?;
            for assignment in tx.active_assignments_of_provider(target)? {
                self.reclaim(tx, &assignment, "engine revoked", now_ms, fx)?;
            }
        }
        Ok(true)
    }

    pub fn revocations(&self, tx: &mut dyn Tx, operator: &Party) -> Result<Vec<RevocationRow>, CoordinatorError> {
        require_operator(operator)?;
        Ok(tx.revocations()?)
    }
}

fn require_operator(party: &Party) -> Result<(), CoordinatorError> {
    if party.role == Role::Operator { Ok(()) } else { Err(CoordinatorError::forbidden("only operators may do this")) }
}
