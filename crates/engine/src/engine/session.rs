//! The engine's session with the server: registration (waited out while the server cannot be
//! reached), the server key it trusts, and the channel (opened again when the server lost it).

use std::sync::Arc;

use anyhow::Context;
use idlegrid_client::{Channel, ClientError, ProblemLog, Transport};
use idlegrid_protocol::ErrorCode;
use idlegrid_protocol::backoff::Backoff;
use idlegrid_protocol::wire::RegisterResponse;
use idlegrid_types::Role;

use super::{EngineChannel, Inner, lock};
use crate::EngineConfig;
use crate::disk::Disk;

/// Register with the server, backing off (exponentially, with a cap and jitter) while it cannot
/// be reached, is not an Idlegrid server, or is not the server this engine trusts: an engine
/// is a daemon, and the address or the server may be fixed while it waits. Each problem is said
/// once, with what to do, when it starts or changes, never at every try.
pub(super) async fn register(transport: &Transport, config: &EngineConfig) -> anyhow::Result<RegisterResponse> {
    let mut backoff = Backoff::new(config.channel.backoff_initial, config.channel.backoff_max);
    let mut problems = ProblemLog::default();
    loop {
        match transport.register(Role::Provider, &config.name).await {
            Ok(registered) => {
                if problems.recovered() {
                    tracing::info!(server = %config.server, "reached the server; registered");
                }
                return Ok(registered);
            }
            Err(error) if waited_out(&error) => {
                let delay = backoff.next_delay(rand::random::<f64>());
                if problems.is_news(&error) {
                    tracing::error!(
                        server = %config.server,
                        %error,
                        "cannot register with the server; the engine keeps trying (backing off up to {} s)",
                        config.channel.backoff_max.as_secs()
                    );
                }
                tokio::time::sleep(delay).await;
            }
            Err(error) => return Err(error).context("registration refused"),
        }
    }
}

/// Failures the engine waits out (at start, and when sending) instead of giving up.
pub(super) fn waited_out(error: &ClientError) -> bool {
    error.is_transient() || matches!(error, ClientError::NotAServer { .. } | ClientError::Untrusted(_))
}

/// The server key to trust: pinned by the owner, or kept from the first registration. A server
/// that presents another key is refused: it could hand out tasks it did not mean to.
pub(super) fn trusted_server_key(config: &EngineConfig, disk: &Disk, offered: &str) -> anyhow::Result<String> {
    let pinned = config.server_key.clone().or_else(|| disk.meta("server_key"));
    match pinned {
        Some(pinned) if !offered.is_empty() && pinned != offered => anyhow::bail!(
            "the server at {} signs tasks with key {offered}, but this engine trusts {pinned}: refusing to work for it \
             (if the server was replaced on purpose, start the engine with a fresh data folder or pass --server-key)",
            config.server
        ),
        Some(pinned) => {
            disk.set_meta("server_key", &pinned)?;
            Ok(pinned)
        }
        None if offered.is_empty() => {
            anyhow::bail!("the server did not give its signing key: it is too old for this engine")
        }
        None => {
            disk.set_meta("server_key", offered)?;
            Ok(offered.to_string())
        }
    }
}

pub(super) async fn open_channel(
    transport: &Transport,
    config: &EngineConfig,
    disk: &Disk,
) -> anyhow::Result<EngineChannel> {
    if let Some(session) = disk.session() {
        match Channel::open(transport.clone(), config.channel.clone(), Some(session)).await {
            Ok((channel, _)) => return Ok(channel),
            Err(error) if error.code() == Some(ErrorCode::UnknownSession) => {
                tracing::info!("the server no longer has this engine's session; opening a new one");
            }
            Err(error) => return Err(error.into()),
        }
    }
    let (channel, info) = Channel::open(transport.clone(), config.channel.clone(), None).await?;
    disk.set_session(info.session)?;
    Ok(channel)
}

impl Inner {
    /// Open a new session after the server lost ours; the server then re-sends our tasks.
    pub(super) async fn reconnect(self: &Arc<Self>) {
        let mut backoff = Backoff::new(self.config.channel.backoff_initial, self.config.channel.backoff_max);
        let mut problems = ProblemLog::default();
        loop {
            match Channel::open(self.transport.clone(), self.config.channel.clone(), None).await {
                Ok((channel, info)) => {
                    let _ = self.disk.set_session(info.session);
                    *self.channel.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(channel);
                    self.announce();
                    return;
                }
                Err(error) => {
                    if problems.is_news(&error) {
                        tracing::warn!(%error, "cannot open a session; retrying until the server answers");
                    }
                    {
                        let mut connectivity = lock(&self.connectivity);
                        connectivity.connected = false;
                        connectivity.last_error = Some(error.to_string());
                    }
                    tokio::select! {
                        _ = self.stop.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_delay(rand::random::<f64>())) => {}
                    }
                }
            }
        }
    }
}
