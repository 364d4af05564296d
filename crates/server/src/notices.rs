//! Delivery of notices (P4.12): webhooks (HTTP POST signed with HMAC-SHA256 over the body, in
//! the header `x-idlegrid-signature: sha256=<hex>`) and e-mail over SMTP. Failed deliveries
//! are retried with back-off by the coordinator's bookkeeping.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use idlegrid_coordinator::money::Notice;
use idlegrid_coordinator::webhooks::{self, NetRange};
use sha2::Sha256;

use crate::{AppState, now_ms};

/// Where e-mail goes out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    pub from: String,
}

/// The signature header value for a webhook body.
pub fn webhook_signature(secret: &str, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(body.as_bytes());
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Resolves webhook hosts and keeps only the addresses webhooks may reach, so the address
/// connected to is the address checked (a name that resolves to a private address now, or
/// only at delivery, is refused all the same).
struct PermittedAddresses {
    allow: Arc<Vec<NetRange>>,
}

impl reqwest::dns::Resolve for PermittedAddresses {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<std::net::SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let (permitted, refused): (Vec<_>, Vec<_>) =
                resolved.into_iter().partition(|addr| webhooks::permitted(addr.ip(), &allow));
            if permitted.is_empty() {
                let refused = refused.first().map(|addr| webhooks::refusal(addr.ip()));
                let reason = refused.unwrap_or_else(|| format!("{host} resolves to no address"));
                return Err(format!("{host}: {reason}").into());
            }
            let addrs: reqwest::dns::Addrs = Box::new(permitted.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client of webhooks: names resolved through [`PermittedAddresses`], no proxy (it
/// would resolve the name itself), no redirects (a redirect could lead anywhere).
pub(crate) fn webhook_client(allow: Vec<NetRange>) -> reqwest::Client {
    reqwest::Client::builder()
        .dns_resolver(PermittedAddresses { allow: Arc::new(allow) })
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("the webhook client builds")
}

async fn deliver_webhook(http: &reqwest::Client, allow: &[NetRange], id: i64, notice: &Notice) -> Result<(), String> {
    let url = notice.webhook_url.as_deref().ok_or("no webhook URL")?;
    // An address in the URL is connected to without resolution: check it here. The check at
    // registration may have been under other ranges.
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("webhook {url}: {e}"))?;
    let literal = match parsed.host() {
        Some(url::Host::Ipv4(v4)) => Some(std::net::IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(std::net::IpAddr::V6(v6)),
        _ => None,
    };
    if let Some(ip) = literal
        && !webhooks::permitted(ip, allow)
    {
        return Err(format!("webhook {url}: {}", webhooks::refusal(ip)));
    }
    let body = notice.public_json();
    let mut request = http
        .post(url)
        .timeout(Duration::from_secs(10))
        .header("content-type", "application/json")
        .header("x-idlegrid-notice", id.to_string());
    if let Some(secret) = &notice.webhook_secret {
        request = request.header("x-idlegrid-signature", webhook_signature(secret, &body));
    }
    let response = request.body(body).send().await.map_err(|e| format!("webhook {url}: {}", chain(&e)))?;
    if response.status().is_success() { Ok(()) } else { Err(format!("webhook {url} answered {}", response.status())) }
}

/// An error with its causes (reqwest keeps a resolver's refusal as a cause).
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn deliver_email(smtp: Option<&SmtpConfig>, notice: &Notice) -> Result<(), String> {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
    let smtp = smtp.ok_or("the server has no SMTP server configured (--smtp)")?;
    let to = notice.email.as_deref().ok_or("no e-mail address")?;
    let message = Message::builder()
        .from(smtp.from.parse().map_err(|e| format!("sender {}: {e}", smtp.from))?)
        .to(to.parse().map_err(|e| format!("recipient {to}: {e}"))?)
        .subject(notice.subject())
        .body(notice.text())
        .map_err(|e| e.to_string())?;
    let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
        .port(smtp.port)
        .timeout(Some(Duration::from_secs(10)))
        .build();
    transport.send(message).await.map(|_| ()).map_err(|e| format!("SMTP {}:{}: {e}", smtp.host, smtp.port))
}

/// Deliver what is due, forever.
pub async fn deliver(state: Arc<AppState>, smtp: Option<SmtpConfig>, interval: Duration) {
    let allow = state.coordinator.config().webhook_allow.clone();
    let http = webhook_client(allow.clone());
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = now_ms();
        let due = match state.run(move |c, tx, _| c.due_notices(tx, now)).await {
            Ok(due) => due,
            Err(error) => {
                tracing::warn!(%error, "cannot read notices");
                continue;
            }
        };
        for (id, channel, notice, attempts) in due {
            let outcome = match channel.as_str() {
                "webhook" => deliver_webhook(&http, &allow, id, &notice).await,
                "email" => deliver_email(smtp.as_ref(), &notice).await,
                other => Err(format!("unknown channel {other}")),
            };
            if let Err(error) = &outcome {
                tracing::info!(notice = id, %error, "notice not delivered yet");
            }
            let now = now_ms();
            if let Err(error) =
                state.run(move |c, tx, _| c.notice_attempted(tx, id, attempts, outcome.clone(), now)).await
            {
                tracing::warn!(%error, "cannot record a notice delivery");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::dns::Resolve;

    #[tokio::test]
    async fn names_resolve_to_permitted_addresses_only() {
        let strict = PermittedAddresses { allow: Arc::new(Vec::new()) };
        let error = strict.resolve("localhost".parse().unwrap()).await.err().expect("refused").to_string();
        assert!(error.contains("--webhook-allow"), "{error}");
        let allowing =
            PermittedAddresses { allow: Arc::new(vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]) };
        let addrs: Vec<_> = allowing.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    /// The check is on the address connected to: a name is no way around it.
    #[tokio::test]
    async fn a_webhook_client_connects_to_refused_addresses_by_no_name() {
        idlegrid_pki::install_default_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let url = format!("http://localhost:{port}/hook");
        let error = webhook_client(Vec::new()).post(&url).send().await.expect_err("refused");
        assert!(chain(&error).contains("--webhook-allow"), "{}", chain(&error));
        let allowed = webhook_client(vec!["127.0.0.0/8".parse().unwrap()]).post(&url).send().await.unwrap();
        assert!(allowed.status().is_success());
    }
}
