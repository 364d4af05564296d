//! What client software a party runs (`ClientProfile`, sent by the client library when its
//! session starts): kept in the metadata per party, with when it was said, and shown on the
//! party's account page in the web manager.

use idlegrid_protocol::ErrorCode;
use idlegrid_store::{StoreError, Tx};
use idlegrid_types::PartyId;
use serde::{Deserialize, Serialize};

use crate::Coordinator;
use crate::error::{Reject, report};

/// Longest name or version kept (characters).
pub const PROFILE_TEXT_MAX: usize = 200;

/// A client's software, as it said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientProfileInfo {
    pub name: String,
    pub software_version: String,
    pub reported_ms: u64,
}

fn key(party: &PartyId) -> String {
    format!("client_profile:{party}")
}

/// A name or version: at most [`PROFILE_TEXT_MAX`] characters, no control characters.
pub fn check_profile_text(what: &str, text: &str) -> Result<(), String> {
    if text.chars().count() > PROFILE_TEXT_MAX {
        return Err(format!("{what} is longer than {PROFILE_TEXT_MAX} characters"));
    }
    if text.chars().any(char::is_control) {
        return Err(format!("{what} holds control characters"));
    }
    Ok(())
}

impl Coordinator {
    pub(crate) fn client_profile_reported(
        &self,
        tx: &mut dyn Tx,
        party: &PartyId,
        name: String,
        software_version: String,
        now_ms: u64,
    ) -> Result<(), Reject> {
        for (what, text) in [("name", &name), ("software_version", &software_version)] {
            check_profile_text(what, text).map_err(|e| report(ErrorCode::BadRequest, format!("ClientProfile: {e}")))?;
        }
        let info = ClientProfileInfo { name, software_version, reported_ms: now_ms };
        tx.set_meta(&key(party), &serde_json::to_vec(&info).expect("profiles serialize"))?;
        Ok(())
    }

    /// The client software `party` last said it runs.
    pub fn client_profile(&self, tx: &mut dyn Tx, party: &PartyId) -> Result<Option<ClientProfileInfo>, StoreError> {
        tx.meta(&key(party))?
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt(format!("client profile: {e}")))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use idlegrid_protocol::messages::{ClientToServer, ServerToClient};
    use idlegrid_types::Role;

    use super::*;
    use crate::tests::World;
    use idlegrid_store::Store;

    #[test]
    fn profile_text_is_bounded_and_printable() {
        assert!(check_profile_text("name", "idlegrid-client").is_ok());
        assert!(check_profile_text("name", "").is_ok());
        assert!(check_profile_text("name", &"x".repeat(PROFILE_TEXT_MAX)).is_ok());
        assert!(check_profile_text("name", &"x".repeat(PROFILE_TEXT_MAX + 1)).unwrap_err().contains("longer"));
        assert!(check_profile_text("software_version", "1.0\n").unwrap_err().contains("control"));
    }

    #[test]
    fn a_clients_profile_is_kept_and_a_bad_one_refused() {
        let mut world = World::new();
        let mut client = world.join(Role::Client);
        let profile =
            ClientToServer::ClientProfile { name: "analysis".into(), software_version: "idlegrid-client 1.2".into() };
        world.client_send(&mut client, vec![profile]);
        let id = client.party.id.clone();
        let c = &world.coordinator;
        let kept = world.store.write(|tx| c.client_profile(tx, &id)).unwrap();
        let kept = kept.expect("the profile is kept");
        assert_eq!((kept.name.as_str(), kept.software_version.as_str()), ("analysis", "idlegrid-client 1.2"));
        assert_eq!(kept.reported_ms, world.now);

        let bad = ClientToServer::ClientProfile { name: "a\u{1b}[2J".into(), software_version: "1".into() };
        world.client_send(&mut client, vec![bad]);
        let errors: Vec<String> = world
            .poll::<ServerToClient>(&mut client)
            .into_iter()
            .filter_map(|(_, m)| match m {
                ServerToClient::Error(report) => Some(report.message),
                _ => None,
            })
            .collect();
        assert!(errors.iter().any(|e| e.contains("name holds control characters")), "{errors:?}");
        let c = &world.coordinator;
        let still = world.store.write(|tx| c.client_profile(tx, &id)).unwrap().unwrap();
        assert_eq!(still.name, "analysis", "a refused profile changes nothing");
    }
}
