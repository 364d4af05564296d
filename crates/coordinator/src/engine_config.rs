//! Engines' server-controlled settings (P8.6 `GetConfig`/`Config`): the operator sets them for
//! every engine; they are kept in the metadata, pushed at once to the engines heard from
//! recently, and sent to every other engine in answer to the `GetConfig` it sends when its
//! session starts. Only settings an engine knows may be set, within its bounds.

use std::collections::BTreeMap;

use idlegrid_protocol::messages::ServerToProvider;
use idlegrid_protocol::ops::{EngineConfigBody, EngineConfigReply};
use idlegrid_protocol::wire::limits;
use idlegrid_store::{StoreError, Tx};
use idlegrid_types::Role;

use crate::session::push;
use crate::{Coordinator, CoordinatorError, Effects, Party};

const ENGINE_CONFIG_KEY: &str = "engine_config";
/// Engines told at once at most (the others ask when they next connect).
const ENGINES_TOLD_MAX: u32 = 10_000;

/// Whether an operator may set `key` to `value` for every engine (an empty value removes it).
pub fn check_engine_setting(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty() {
        return match key {
            "prefetch" | "status_interval_ms" => Ok(()),
            other => Err(format!("'{other}' is not a setting of engines (prefetch, status_interval_ms)")),
        };
    }
    match key {
        "prefetch" => match value.parse::<u32>() {
            Ok(v) if v <= 4096 => Ok(()),
            _ => Err(format!("prefetch = {value:?} is not a number up to 4096")),
        },
        "status_interval_ms" => match value.parse::<u64>() {
            Ok(v) if (50..=3_600_000).contains(&v) => Ok(()),
            _ => Err(format!("status_interval_ms = {value:?} is not between 50 and 3600000")),
        },
        other => Err(format!("'{other}' is not a setting of engines (prefetch, status_interval_ms)")),
    }
}

/// `stored` with `changes` applied: set, or removed by an empty value.
pub fn merge_settings(
    mut stored: BTreeMap<String, String>,
    changes: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    for (key, value) in changes {
        if value.is_empty() {
            stored.remove(key);
        } else {
            stored.insert(key.clone(), value.clone());
        }
    }
    stored
}

impl Coordinator {
    /// What an engine is told in `Config`: the server's own figures and the operator's settings.
    pub(crate) fn engine_config(&self, tx: &mut dyn Tx) -> Result<BTreeMap<String, String>, StoreError> {
        let mut settings: BTreeMap<String, String> = [
            ("poll_wait_ms_max".to_string(), limits::POLL_WAIT_MS_MAX.to_string()),
            ("silence_ms_max".to_string(), self.config.provider_silence_ms_max.to_string()),
            ("capacity_max".to_string(), self.config.engine_capacity_max.to_string()),
        ]
        .into_iter()
        .collect();
        settings.extend(operator_settings(tx)?);
        Ok(settings)
    }

    /// The operator changes engines' settings: kept, and pushed to the engines heard from within
    /// the silence limit.
    pub fn set_engine_config(
        &self,
        tx: &mut dyn Tx,
        operator: &Party,
        body: &EngineConfigBody,
        now_ms: u64,
        fx: &mut Effects,
    ) -> Result<EngineConfigReply, CoordinatorError> {
        if operator.role != Role::Operator {
            return Err(CoordinatorError::forbidden("only operators may change engines' settings"));
        }
        for (key, value) in &body.settings {
            check_engine_setting(key, value).map_err(CoordinatorError::bad_request)?;
        }
        let settings = merge_settings(operator_settings(tx)?, &body.settings);
        tx.set_meta(ENGINE_CONFIG_KEY, &serde_json::to_vec(&settings).expect("settings serialize"))?;
        let message = ServerToProvider::Config { settings: self.engine_config(tx)? };
        let since = now_ms.saturating_sub(self.config.provider_silence_ms_max);
        let mut engines_told = 0;
        for provider in tx.providers_heard_since(since, ENGINES_TOLD_MAX)? {
            if let Some(session) = provider.session {
                push(tx, fx, session, None, &message, None)?;
                engines_told += 1;
            }
        }
        tracing::info!(engines = engines_told, ?settings, "engines' settings changed");
        Ok(EngineConfigReply { settings, engines_told })
    }
}

fn operator_settings(tx: &mut dyn Tx) -> Result<BTreeMap<String, String>, StoreError> {
    match tx.meta(ENGINE_CONFIG_KEY)? {
        None => Ok(BTreeMap::new()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("the operator's settings for engines: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_settings_within_bounds_are_accepted() {
        assert!(check_engine_setting("prefetch", "0").is_ok());
        assert!(check_engine_setting("prefetch", "4096").is_ok());
        assert!(check_engine_setting("prefetch", "4097").unwrap_err().contains("up to 4096"));
        assert!(check_engine_setting("prefetch", "-1").is_err());
        assert!(check_engine_setting("status_interval_ms", "50").is_ok());
        assert!(check_engine_setting("status_interval_ms", "49").is_err());
        assert!(check_engine_setting("status_interval_ms", "3600001").is_err());
        assert!(check_engine_setting("silence_ms_max", "5").unwrap_err().contains("not a setting"));
        assert!(check_engine_setting("prefetch", "").is_ok());
        assert!(check_engine_setting("color", "").is_err());
    }

    #[test]
    fn changes_set_and_empty_values_remove() {
        let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let stored = map(&[("prefetch", "2"), ("status_interval_ms", "500")]);
        let merged = merge_settings(stored, &map(&[("prefetch", "8"), ("status_interval_ms", "")]));
        assert_eq!(merged, map(&[("prefetch", "8")]));
        assert_eq!(merge_settings(BTreeMap::new(), &BTreeMap::new()), BTreeMap::new());
    }

    #[test]
    fn engines_get_the_operators_settings_now_and_when_they_ask() {
        use idlegrid_protocol::messages::{NodeState, ProviderToServer};

        use crate::tests::World;
        use idlegrid_store::Store;

        let mut world = World::new();
        let mut engine = world.join(Role::Provider);
        let ready = ProviderToServer::NodeStatus { state: NodeState::Active, slots: 1, queue_capacity: 4 };
        world.engine_send(&mut engine, vec![ready]);
        world.poll::<ServerToProvider>(&mut engine);
        let configs = |world: &mut World, engine: &mut crate::tests::Peer| -> Vec<BTreeMap<String, String>> {
            world
                .poll::<ServerToProvider>(engine)
                .into_iter()
                .filter_map(|(_, m)| match m {
                    ServerToProvider::Config { settings } => Some(settings),
                    _ => None,
                })
                .collect()
        };
        let (c, now) = (&world.coordinator, world.now);
        let operator = Party { id: idlegrid_types::PartyId::from_public_key(&[0xee; 32]), role: Role::Operator };
        let client = Party { role: Role::Client, ..operator.clone() };
        let body = EngineConfigBody { settings: [("prefetch".to_string(), "7".to_string())].into_iter().collect() };
        let mut fx = Effects::default();
        let refused = world.store.write(|tx| -> Result<_, CoordinatorError> {
            Ok(c.set_engine_config(tx, &client, &body, now, &mut fx).is_err())
        });
        assert!(refused.unwrap(), "only operators");
        let reply = world.store.write(|tx| c.set_engine_config(tx, &operator, &body, now, &mut fx)).unwrap();
        assert_eq!(reply.engines_told, 1);
        let pushed = configs(&mut world, &mut engine);
        assert_eq!(pushed.len(), 1);
        assert_eq!(pushed[0].get("prefetch").map(String::as_str), Some("7"));
        assert!(pushed[0].contains_key("silence_ms_max"));

        let bad = EngineConfigBody { settings: [("prefetch".to_string(), "lots".to_string())].into_iter().collect() };
        let c = &world.coordinator;
        let error = world.store.write(|tx| c.set_engine_config(tx, &operator, &bad, now, &mut fx)).unwrap_err();
        assert!(error.to_string().contains("prefetch"), "{error}");

        world.engine_send(&mut engine, vec![ProviderToServer::GetConfig]);
        let answered = configs(&mut world, &mut engine);
        assert_eq!(answered.len(), 1);
        assert_eq!(answered[0].get("prefetch").map(String::as_str), Some("7"));
    }
}
