//! The pages of a party's own account and of a provider's engine: balance and statement,
//! the engine's state, measured speed, availability by hour of the week and earnings.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use idlegrid_coordinator::{Coordinator, CoordinatorError, Party};
use idlegrid_store::Tx;

use super::{html, pages, read, signed_in};
use crate::{AppState, now_ms};

fn whole_statement(
    c: &Coordinator,
    tx: &mut dyn Tx,
    party: &Party,
) -> Result<idlegrid_ledger::Statement, CoordinatorError> {
    c.statement(
        tx,
        party,
        idlegrid_coordinator::money::StatementQuery {
            from_ms: 0,
            to_ms: u64::MAX / 2,
            period: Some(idlegrid_coordinator::money::StatementPeriodName::Day),
        },
    )
}

pub(super) async fn account_page(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let found = read(&state, &session, |c, tx, _, party, _| {
        Ok((c.account_info(tx, &party.id)?, whole_statement(c, tx, party)?, c.client_profile(tx, &party.id)?))
    })
    .await;
    match found {
        Ok((account, statement, profile)) => {
            html(StatusCode::OK, pages::account(&session, &account, &statement, profile.as_ref()))
        }
        Err(page) => page,
    }
}

/// What an engine's page shows.
pub struct EngineView {
    pub profile: Option<idlegrid_coordinator::ProviderProfile>,
    /// The engine's state as the server knows it, its slots and when it was last heard from.
    pub node: Option<(String, u32, u64)>,
    pub running: usize,
    pub account: idlegrid_protocol::messages::AccountInfo,
    pub statement: idlegrid_ledger::Statement,
}

pub(super) async fn engine_page(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let found = read(&state, &session, |c, tx, _, party, _| {
        Ok(EngineView {
            profile: c.provider_profile(tx, &party.id)?,
            node: tx
                .provider(&party.id)?
                .map(|row| (format!("{:?}", row.state).to_lowercase(), row.slots, row.last_contact_ms)),
            running: tx.active_assignments_of_provider(&party.id)?.len(),
            account: c.account_info(tx, &party.id)?,
            statement: whole_statement(c, tx, party)?,
        })
    })
    .await;
    match found {
        Ok(view) => html(StatusCode::OK, pages::engine(&session, &view, now_ms())),
        Err(page) => page,
    }
}
