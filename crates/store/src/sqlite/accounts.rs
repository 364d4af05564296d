//! Money and what it pays for: the ledger, the journal of work, notices and client settings, in SQLite (see `crate::accounts`).

use super::*;

impl AccountsTx for SqliteTx<'_> {
    fn ledger(&mut self) -> &mut dyn idlegrid_ledger::LedgerStore {
        self
    }

    fn upsert_work_record(&mut self, record: &idlegrid_ledger::WorkRecord) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO work_records (id, job, launched_ms, body) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (id) DO UPDATE SET job = ?2, launched_ms = ?3, body = ?4",
            )?
            .execute(params![
                int(record.id),
                &record.job.as_uuid().as_bytes()[..],
                int(record.launched_ms),
                json(record)
            ])?;
        Ok(())
    }

    fn work_record(&mut self, id: u64) -> StoreResult<Option<idlegrid_ledger::WorkRecord>> {
        Ok(self
            .tx
            .prepare_cached("SELECT body FROM work_records WHERE id = ?1")?
            .query_row([int(id)], |row| get_json(row, 0))
            .optional()?)
    }

    fn unbilled_work_records(
        &mut self,
        launched_before_ms: u64,
        limit: u32,
    ) -> StoreResult<Vec<idlegrid_ledger::WorkRecord>> {
        self.collect(
            "SELECT body FROM work_records WHERE billed = 0 AND launched_ms < ?1 ORDER BY launched_ms, id LIMIT ?2",
            params![int(launched_before_ms), limit],
            |row| get_json(row, 0),
        )
    }

    fn mark_work_records_billed(&mut self, ids: &[u64]) -> StoreResult<()> {
        let mut stmt = self.tx.prepare_cached("UPDATE work_records SET billed = 1 WHERE id = ?1")?;
        for id in ids {
            stmt.execute([int(*id)])?;
        }
        Ok(())
    }

    fn work_records_of_job(&mut self, job: JobId) -> StoreResult<Vec<idlegrid_ledger::WorkRecord>> {
        self.collect(
            "SELECT body FROM work_records WHERE job = ?1 ORDER BY id",
            [&job.as_uuid().as_bytes()[..]],
            |row| get_json(row, 0),
        )
    }

    fn unbilled_records_of_job(&mut self, job: JobId) -> StoreResult<u64> {
        Ok(uint(
            self.tx
                .prepare_cached("SELECT COUNT(*) FROM work_records WHERE job = ?1 AND billed = 0")?
                .query_row([&job.as_uuid().as_bytes()[..]], |r| r.get(0))?,
        )?)
    }

    fn push_notice(&mut self, client: &PartyId, channel: &str, body: &str, now_ms: u64) -> StoreResult<i64> {
        Ok(self
            .tx
            .prepare_cached(
                "INSERT INTO notices (client, channel, body, next_try_ms) VALUES (?1, ?2, ?3, ?4) RETURNING id",
            )?
            .query_row(params![&client.as_bytes()[..], channel, body, int(now_ms)], |r| r.get(0))?)
    }

    fn due_notices(&mut self, now_ms: u64, limit: u32) -> StoreResult<Vec<NoticeRow>> {
        self.collect(
            "SELECT id, client, channel, body, attempts, next_try_ms FROM notices
             WHERE delivered = 0 AND next_try_ms <= ?1 ORDER BY next_try_ms, id LIMIT ?2",
            params![int(now_ms), limit],
            |row| {
                Ok(NoticeRow {
                    id: row.get(0)?,
                    client: get_party_id(row, 1)?,
                    channel: row.get(2)?,
                    body: row.get(3)?,
                    attempts: row.get(4)?,
                    next_try_ms: uint(row.get(5)?)?,
                })
            },
        )
    }

    fn notice_attempted(&mut self, id: i64, delivered: bool, next_try_ms: u64, error: Option<&str>) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE notices SET attempts = attempts + 1, delivered = ?2, next_try_ms = ?3, last_error = ?4 WHERE id = ?1")?
            .execute(params![id, delivered, int(next_try_ms), error])?;
        Ok(())
    }

    fn client_settings(&mut self, client: &PartyId) -> StoreResult<Option<String>> {
        Ok(self
            .tx
            .prepare_cached("SELECT body FROM client_settings WHERE client = ?1")?
            .query_row([&client.as_bytes()[..]], |r| r.get(0))
            .optional()?)
    }

    fn set_client_settings(&mut self, client: &PartyId, body: &str) -> StoreResult<()> {
        self.tx
            .prepare_cached("INSERT INTO client_settings (client, body) VALUES (?1, ?2) ON CONFLICT (client) DO UPDATE SET body = ?2")?
            .execute(params![&client.as_bytes()[..], body])?;
        Ok(())
    }
}

/// The ledger's state in SQLite. Accounts keep their four sums in columns for the balance
/// check; everything else is the ledger's own JSON.
impl idlegrid_ledger::LedgerStore for SqliteTx<'_> {
    fn account(
        &mut self,
        id: &idlegrid_ledger::AccountId,
    ) -> Result<Option<idlegrid_ledger::Account>, idlegrid_ledger::LedgerError> {
        let body: Option<String> = self
            .tx
            .prepare_cached("SELECT body FROM ledger_accounts WHERE id = ?1")
            .and_then(|mut s| s.query_row([id.to_string()], |r| r.get(0)).optional())
            .map_err(ledger_error)?;
        body.map(|b| ledger_json(&b)).transpose()
    }

    fn put_account(&mut self, account: &idlegrid_ledger::Account) -> Result<(), idlegrid_ledger::LedgerError> {
        self.tx
            .prepare_cached(
                "INSERT INTO ledger_accounts (id, debits_posted, credits_posted, debits_pending, credits_pending, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO UPDATE SET debits_posted = ?2, credits_posted = ?3, debits_pending = ?4,
                                                credits_pending = ?5, body = ?6",
            )
            .and_then(|mut s| {
                s.execute(params![
                    account.id.to_string(),
                    account.debits_posted.as_i64(),
                    account.credits_posted.as_i64(),
                    account.debits_pending.as_i64(),
                    account.credits_pending.as_i64(),
                    json(account)
                ])
            })
            .map_err(ledger_error)?;
        Ok(())
    }

    fn accounts(&mut self) -> Result<Vec<idlegrid_ledger::Account>, idlegrid_ledger::LedgerError> {
        let bodies: Vec<String> = self
            .collect("SELECT body FROM ledger_accounts ORDER BY id", [], |r| r.get(0))
            .map_err(idlegrid_ledger::LedgerError::storage)?;
        bodies.iter().map(|b| ledger_json(b)).collect()
    }

    fn next_transfer_id(&mut self) -> Result<idlegrid_ledger::TransferId, idlegrid_ledger::LedgerError> {
        let max: i64 = self
            .tx
            .prepare_cached("SELECT COALESCE(MAX(id), 0) FROM ledger_transfers")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .map_err(ledger_error)?;
        Ok(idlegrid_ledger::TransferId(uint(max).map_err(ledger_error)? + 1))
    }

    fn insert_transfer(&mut self, transfer: &idlegrid_ledger::Transfer) -> Result<(), idlegrid_ledger::LedgerError> {
        self.tx
            .prepare_cached("INSERT INTO ledger_transfers (id, key, debit, credit, created_ms, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
            .and_then(|mut s| {
                s.execute(params![
                    int(transfer.id.0),
                    transfer.key().to_string(),
                    transfer.debit.to_string(),
                    transfer.credit.to_string(),
                    int(transfer.created_ms),
                    json(transfer)
                ])
            })
            .map_err(ledger_error)?;
        Ok(())
    }

    fn transfer(
        &mut self,
        id: idlegrid_ledger::TransferId,
    ) -> Result<Option<idlegrid_ledger::Transfer>, idlegrid_ledger::LedgerError> {
        let body: Option<String> = self
            .tx
            .prepare_cached("SELECT body FROM ledger_transfers WHERE id = ?1")
            .and_then(|mut s| s.query_row([int(id.0)], |r| r.get(0)).optional())
            .map_err(ledger_error)?;
        body.map(|b| ledger_json(&b)).transpose()
    }

    fn transfer_by_key(
        &mut self,
        key: &idlegrid_ledger::IdempotencyKey,
    ) -> Result<Option<idlegrid_ledger::Transfer>, idlegrid_ledger::LedgerError> {
        let body: Option<String> = self
            .tx
            .prepare_cached("SELECT body FROM ledger_transfers WHERE key = ?1")
            .and_then(|mut s| s.query_row([key.to_string()], |r| r.get(0)).optional())
            .map_err(ledger_error)?;
        body.map(|b| ledger_json(&b)).transpose()
    }

    fn transfers_of_account(
        &mut self,
        account: &idlegrid_ledger::AccountId,
        created_from_ms: u64,
        created_to_ms: u64,
    ) -> Result<Vec<idlegrid_ledger::Transfer>, idlegrid_ledger::LedgerError> {
        let bodies: Vec<String> = self
            .collect(
                "SELECT body FROM ledger_transfers WHERE (debit = ?1 OR credit = ?1) AND created_ms >= ?2 AND created_ms < ?3 ORDER BY id",
                params![account.to_string(), int(created_from_ms), int(created_to_ms)],
                |r| r.get(0),
            )
            .map_err(idlegrid_ledger::LedgerError::storage)?;
        bodies.iter().map(|b| ledger_json(b)).collect()
    }

    fn reservation(
        &mut self,
        id: idlegrid_ledger::TransferId,
    ) -> Result<Option<idlegrid_ledger::Reservation>, idlegrid_ledger::LedgerError> {
        let body: Option<String> = self
            .tx
            .prepare_cached("SELECT body FROM ledger_reservations WHERE id = ?1")
            .and_then(|mut s| s.query_row([int(id.0)], |r| r.get(0)).optional())
            .map_err(ledger_error)?;
        body.map(|b| ledger_json(&b)).transpose()
    }

    fn put_reservation(
        &mut self,
        reservation: &idlegrid_ledger::Reservation,
    ) -> Result<(), idlegrid_ledger::LedgerError> {
        self.tx
            .prepare_cached(
                "INSERT INTO ledger_reservations (id, body) VALUES (?1, ?2) ON CONFLICT (id) DO UPDATE SET body = ?2",
            )
            .and_then(|mut s| s.execute(params![int(reservation.id.0), json(reservation)]))
            .map_err(ledger_error)?;
        Ok(())
    }

    fn next_request_id(&mut self) -> Result<u64, idlegrid_ledger::LedgerError> {
        self.next_money_request_id()
    }

    fn insert_request(&mut self, request: &idlegrid_ledger::MoneyRequest) -> Result<(), idlegrid_ledger::LedgerError> {
        self.write_money_request(request, false)
    }

    fn put_request(&mut self, request: &idlegrid_ledger::MoneyRequest) -> Result<(), idlegrid_ledger::LedgerError> {
        self.write_money_request(request, true)
    }

    fn request(&mut self, id: u64) -> Result<Option<idlegrid_ledger::MoneyRequest>, idlegrid_ledger::LedgerError> {
        self.money_request(id)
    }

    fn request_by_reference(
        &mut self,
        account: &idlegrid_ledger::AccountId,
        kind: idlegrid_ledger::RequestKind,
        reference: &str,
    ) -> Result<Option<idlegrid_ledger::MoneyRequest>, idlegrid_ledger::LedgerError> {
        self.money_request_by_reference(account, kind, reference)
    }

    fn requests(
        &mut self,
        filter: &idlegrid_ledger::RequestFilter,
    ) -> Result<Vec<idlegrid_ledger::MoneyRequest>, idlegrid_ledger::LedgerError> {
        self.money_requests(filter)
    }

    fn totals(&mut self) -> Result<idlegrid_ledger::LedgerTotals, idlegrid_ledger::LedgerError> {
        let (accounts, dp, cp, dq, cq): (i64, i64, i64, i64, i64) = self
            .tx
            .prepare_cached(
                "SELECT COUNT(*), COALESCE(SUM(debits_posted), 0), COALESCE(SUM(credits_posted), 0),
                        COALESCE(SUM(debits_pending), 0), COALESCE(SUM(credits_pending), 0) FROM ledger_accounts",
            )
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))))
            .map_err(ledger_error)?;
        use idlegrid_ledger::Micros;
        Ok(idlegrid_ledger::LedgerTotals {
            accounts: uint(accounts).map_err(ledger_error)?,
            debits_posted: Micros::new(dp),
            credits_posted: Micros::new(cp),
            debits_pending: Micros::new(dq),
            credits_pending: Micros::new(cq),
        })
    }
}
