//! Delivery of notices (P4.12): webhooks (HTTP POST signed with HMAC-SHA256 over the body, in
//! the header `x-idlegrid-signature: sha256=<hex>`) and e-mail over SMTP. Failed deliveries
//! are retried with back-off by the coordinator's bookkeeping.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use idlegrid_coordinator::money::Notice;
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

async fn deliver_webhook(http: &reqwest::Client, id: i64, notice: &Notice) -> Result<(), String> {
    let url = notice.webhook_url.as_deref().ok_or("no webhook URL")?;
    let body = notice.public_json();
    let mut request = http
        .post(url)
        .timeout(Duration::from_secs(10))
        .header("content-type", "application/json")
        .header("x-idlegrid-notice", id.to_string());
    if let Some(secret) = &notice.webhook_secret {
        request = request.header("x-idlegrid-signature", webhook_signature(secret, &body));
    }
    let response = request.body(body).send().await.map_err(|e| format!("webhook {url}: {e}"))?;
    if response.status().is_success() { Ok(()) } else { Err(format!("webhook {url} answered {}", response.status())) }
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
    let http = reqwest::Client::new();
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
                "webhook" => deliver_webhook(&http, id, &notice).await,
                "email" => deliver_email(smtp.as_ref(), &notice).await,
                other => Err(format!("unknown channel {other}")),
            };
            if let Err(error) = &outcome {
                tracing::info!(notice = id, %error, "notice not delivered yet");
            }
            let now = now_ms();
            if let Err(error) = state.run(move |c, tx, _| c.notice_attempted(tx, id, attempts, outcome, now)).await {
                tracing::warn!(%error, "cannot record a notice delivery");
            }
        }
    }
}
