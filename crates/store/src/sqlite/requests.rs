//! Deposit and payout requests of the ledger in SQLite: the request as the ledger's JSON, with
//! the columns the queries select on; one reference per account and kind (a unique index).

use idlegrid_ledger::{AccountId, LedgerError, MoneyRequest, RequestFilter, RequestKind};
use rusqlite::{OptionalExtension, params};

use super::{SqliteTx, int, json, ledger_error, ledger_json, uint};

pub(super) const MIGRATION: &str = r#"
CREATE TABLE money_requests (
    id INTEGER PRIMARY KEY, account TEXT NOT NULL, kind TEXT NOT NULL, reference TEXT NOT NULL, state TEXT NOT NULL,
    created_ms INTEGER NOT NULL, body TEXT NOT NULL, UNIQUE (account, kind, reference));
CREATE INDEX money_requests_state ON money_requests(state, id);
CREATE INDEX money_requests_account ON money_requests(account, created_ms);
"#;

const MATCHING: &str = "SELECT body FROM money_requests
     WHERE (?1 IS NULL OR account = ?1) AND (?2 IS NULL OR state = ?2) AND created_ms >= ?3 AND created_ms < ?4
     ORDER BY id LIMIT ?5";

impl SqliteTx<'_> {
    pub(super) fn next_money_request_id(&mut self) -> Result<u64, LedgerError> {
        let max: i64 = self
            .tx
            .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM money_requests")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(ledger_error)?;
        Ok(uint(max).map_err(ledger_error)? + 1)
    }

    /// Insert, or with `replace` update the request of the same id.
    pub(super) fn write_money_request(&mut self, request: &MoneyRequest, replace: bool) -> Result<(), LedgerError> {
        let sql = if replace {
            "UPDATE money_requests SET account = ?2, kind = ?3, reference = ?4, state = ?5, created_ms = ?6, body = ?7
             WHERE id = ?1"
        } else {
            "INSERT INTO money_requests (id, account, kind, reference, state, created_ms, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        };
        let changed = self
            .tx
            .prepare_cached(sql)
            .and_then(|mut s| {
                s.execute(params![
                    int(request.id),
                    request.account.to_string(),
                    request.kind.as_str(),
                    request.reference,
                    request.state.as_str(),
                    int(request.created_ms),
                    json(request)
                ])
            })
            .map_err(ledger_error)?;
        if changed != 1 {
            return Err(LedgerError::storage(std::io::Error::other(format!(
                "request {} was never inserted",
                request.id
            ))));
        }
        Ok(())
    }

    pub(super) fn money_request(&mut self, id: u64) -> Result<Option<MoneyRequest>, LedgerError> {
        let body: Option<String> = self
            .tx
            .prepare_cached("SELECT body FROM money_requests WHERE id = ?1")
            .and_then(|mut s| s.query_row([int(id)], |r| r.get(0)).optional())
            .map_err(ledger_error)?;
        body.map(|b| ledger_json(&b)).transpose()
    }

    pub(super) fn money_request_by_reference(
        &mut self,
        account: &AccountId,
        kind: RequestKind,
        reference: &str,
    ) -> Result<Option<MoneyRequest>, LedgerError> {
        let body: Option<String> = self
            .tx
            .prepare_cached("SELECT body FROM money_requests WHERE account = ?1 AND kind = ?2 AND reference = ?3")
            .and_then(|mut s| {
                s.query_row(params![account.to_string(), kind.as_str(), reference], |r| r.get(0)).optional()
            })
            .map_err(ledger_error)?;
        body.map(|b| ledger_json(&b)).transpose()
    }

    pub(super) fn money_requests(&mut self, filter: &RequestFilter) -> Result<Vec<MoneyRequest>, LedgerError> {
        let account = filter.account.as_ref().map(AccountId::to_string);
        let state = filter.state.map(|s| s.as_str());
        let bodies: Vec<String> = self
            .collect(
                MATCHING,
                params![account, state, int(filter.created_from_ms), int(filter.created_to_ms), filter.limit],
                |r| r.get(0),
            )
            .map_err(LedgerError::storage)?;
        bodies.iter().map(|b| ledger_json(b)).collect()
    }
}
