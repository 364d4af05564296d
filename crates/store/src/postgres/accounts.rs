//! Money and what it pays for: the ledger, the journal of work, notices and client settings, in PostgreSQL (see `crate::accounts`).

use super::*;

impl AccountsTx for PgTx<'_> {
    fn ledger(&mut self) -> &mut dyn LedgerStore {
        self
    }

    fn upsert_work_record(&mut self, record: &idlegrid_ledger::WorkRecord) -> StoreResult<()> {
        self.execute(
            "INSERT INTO work_records (id, job, launched_ms, body) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET job = EXCLUDED.job, launched_ms = EXCLUDED.launched_ms, body = EXCLUDED.body",
            &[&int(record.id), &&record.job.as_uuid().as_bytes()[..], &int(record.launched_ms), &json(record, "a work record")?],
        )?;
        Ok(())
    }

    fn work_record(&mut self, id: u64) -> StoreResult<Option<idlegrid_ledger::WorkRecord>> {
        self.query_opt("SELECT body FROM work_records WHERE id = $1", &[&int(id)])?
            .map(|row| get_json(&row, 0, "work_records.body"))
            .transpose()
    }

    fn unbilled_work_records(
        &mut self,
        launched_before_ms: u64,
        limit: u32,
    ) -> StoreResult<Vec<idlegrid_ledger::WorkRecord>> {
        self.collect(
            "SELECT body FROM work_records WHERE NOT billed AND launched_ms < $1 ORDER BY launched_ms, id LIMIT $2",
            &[&int(launched_before_ms), &i64::from(limit)],
            |row| get_json(row, 0, "work_records.body"),
        )
    }

    fn mark_work_records_billed(&mut self, ids: &[u64]) -> StoreResult<()> {
        let ids: Vec<i64> = ids.iter().map(|id| int(*id)).collect();
        self.execute("UPDATE work_records SET billed = TRUE WHERE id = ANY($1)", &[&ids])?;
        Ok(())
    }

    fn work_records_of_job(&mut self, job: JobId) -> StoreResult<Vec<idlegrid_ledger::WorkRecord>> {
        self.collect(
            "SELECT body FROM work_records WHERE job = $1 ORDER BY id",
            &[&&job.as_uuid().as_bytes()[..]],
            |row| get_json(row, 0, "work_records.body"),
        )
    }

    fn unbilled_records_of_job(&mut self, job: JobId) -> StoreResult<u64> {
        let row = self.query_one(
            "SELECT COUNT(*) FROM work_records WHERE job = $1 AND NOT billed",
            &[&&job.as_uuid().as_bytes()[..]],
        )?;
        get_u64(&row, 0, "COUNT(work_records)")
    }

    fn push_notice(&mut self, client: &PartyId, channel: &str, body: &str, now_ms: u64) -> StoreResult<i64> {
        let row = self.query_one(
            "INSERT INTO notices (client, channel, body, next_try_ms) VALUES ($1, $2, $3, $4) RETURNING id",
            &[&&client.as_bytes()[..], &channel, &body, &int(now_ms)],
        )?;
        col(&row, 0, "notices.id")
    }

    fn due_notices(&mut self, now_ms: u64, limit: u32) -> StoreResult<Vec<NoticeRow>> {
        self.collect(
            "SELECT id, client, channel, body, attempts, next_try_ms FROM notices
             WHERE NOT delivered AND next_try_ms <= $1 ORDER BY next_try_ms, id LIMIT $2",
            &[&int(now_ms), &i64::from(limit)],
            |row| {
                Ok(NoticeRow {
                    id: col(row, 0, "notices.id")?,
                    client: get_party_id(row, 1, "notices.client")?,
                    channel: col(row, 2, "notices.channel")?,
                    body: col(row, 3, "notices.body")?,
                    attempts: get_u32(row, 4, "notices.attempts")?,
                    next_try_ms: get_u64(row, 5, "notices.next_try_ms")?,
                })
            },
        )
    }

    fn notice_attempted(&mut self, id: i64, delivered: bool, next_try_ms: u64, error: Option<&str>) -> StoreResult<()> {
        self.execute(
            "UPDATE notices SET attempts = attempts + 1, delivered = $2, next_try_ms = $3, last_error = $4 WHERE id = $1",
            &[&id, &delivered, &int(next_try_ms), &error],
        )?;
        Ok(())
    }

    fn client_settings(&mut self, client: &PartyId) -> StoreResult<Option<String>> {
        self.query_opt("SELECT body FROM client_settings WHERE client = $1", &[&&client.as_bytes()[..]])?
            .map(|row| col(&row, 0, "client_settings.body"))
            .transpose()
    }

    fn set_client_settings(&mut self, client: &PartyId, body: &str) -> StoreResult<()> {
        self.execute(
            "INSERT INTO client_settings (client, body) VALUES ($1, $2) ON CONFLICT (client) DO UPDATE SET body = EXCLUDED.body",
            &[&&client.as_bytes()[..], &body],
        )?;
        Ok(())
    }
}

/// The ledger's state in PostgreSQL, as in SQLite: accounts keep their four sums in columns for
/// the balance check; everything else is the ledger's own JSON.
impl LedgerStore for PgTx<'_> {
    fn account(&mut self, id: &AccountId) -> Result<Option<Account>, LedgerError> {
        let row = self
            .query_opt("SELECT body FROM ledger_accounts WHERE id = $1", &[&id.to_string()])
            .map_err(LedgerError::storage)?;
        row.map(|row| ledger_json(&row, "ledger_accounts.body")).transpose()
    }

    fn put_account(&mut self, account: &Account) -> Result<(), LedgerError> {
        let body = json(account, "an account").map_err(LedgerError::storage)?;
        self.execute(
            "INSERT INTO ledger_accounts (id, debits_posted, credits_posted, debits_pending, credits_pending, body)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET debits_posted = EXCLUDED.debits_posted, credits_posted = EXCLUDED.credits_posted,
                                            debits_pending = EXCLUDED.debits_pending,
                                            credits_pending = EXCLUDED.credits_pending, body = EXCLUDED.body",
            &[
                &account.id.to_string(),
                &account.debits_posted.as_i64(),
                &account.credits_posted.as_i64(),
                &account.debits_pending.as_i64(),
                &account.credits_pending.as_i64(),
                &body,
            ],
        )
        .map_err(LedgerError::storage)?;
        Ok(())
    }

    fn accounts(&mut self) -> Result<Vec<Account>, LedgerError> {
        let rows = self.query("SELECT body FROM ledger_accounts ORDER BY id", &[]).map_err(LedgerError::storage)?;
        rows.iter().map(|row| ledger_json(row, "ledger_accounts.body")).collect()
    }

    fn next_transfer_id(&mut self) -> Result<TransferId, LedgerError> {
        let row =
            self.query_one("SELECT COALESCE(MAX(id), 0) FROM ledger_transfers", &[]).map_err(LedgerError::storage)?;
        let max = get_u64(&row, 0, "MAX(ledger_transfers.id)").map_err(LedgerError::storage)?;
        Ok(TransferId(max + 1))
    }

    fn insert_transfer(&mut self, transfer: &Transfer) -> Result<(), LedgerError> {
        let body = json(transfer, "a transfer").map_err(LedgerError::storage)?;
        self.execute(
            "INSERT INTO ledger_transfers (id, key, debit, credit, created_ms, body) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &int(transfer.id.0),
                &transfer.key().as_str(),
                &transfer.debit.to_string(),
                &transfer.credit.to_string(),
                &int(transfer.created_ms),
                &body,
            ],
        )
        .map_err(LedgerError::storage)?;
        Ok(())
    }

    fn transfer(&mut self, id: TransferId) -> Result<Option<Transfer>, LedgerError> {
        let row = self
            .query_opt("SELECT body FROM ledger_transfers WHERE id = $1", &[&int(id.0)])
            .map_err(LedgerError::storage)?;
        row.map(|row| ledger_json(&row, "ledger_transfers.body")).transpose()
    }

    fn transfer_by_key(&mut self, key: &IdempotencyKey) -> Result<Option<Transfer>, LedgerError> {
        let row = self
            .query_opt("SELECT body FROM ledger_transfers WHERE key = $1", &[&key.as_str()])
            .map_err(LedgerError::storage)?;
        row.map(|row| ledger_json(&row, "ledger_transfers.body")).transpose()
    }

    fn transfers_of_account(
        &mut self,
        account: &AccountId,
        created_from_ms: u64,
        created_to_ms: u64,
    ) -> Result<Vec<Transfer>, LedgerError> {
        let rows = self
            .query(
                "SELECT body FROM ledger_transfers WHERE (debit = $1 OR credit = $1) AND created_ms >= $2 AND created_ms < $3 ORDER BY id",
                &[&account.to_string(), &int(created_from_ms), &int(created_to_ms)],
            )
            .map_err(LedgerError::storage)?;
        rows.iter().map(|row| ledger_json(row, "ledger_transfers.body")).collect()
    }

    fn reservation(&mut self, id: TransferId) -> Result<Option<Reservation>, LedgerError> {
        let row = self
            .query_opt("SELECT body FROM ledger_reservations WHERE id = $1", &[&int(id.0)])
            .map_err(LedgerError::storage)?;
        row.map(|row| ledger_json(&row, "ledger_reservations.body")).transpose()
    }

    fn put_reservation(&mut self, reservation: &Reservation) -> Result<(), LedgerError> {
        let body = json(reservation, "a reservation").map_err(LedgerError::storage)?;
        self.execute(
            "INSERT INTO ledger_reservations (id, body) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET body = EXCLUDED.body",
            &[&int(reservation.id.0), &body],
        )
        .map_err(LedgerError::storage)?;
        Ok(())
    }

    fn next_request_id(&mut self) -> Result<u64, LedgerError> {
        self.next_money_request_id()
    }

    fn insert_request(&mut self, request: &MoneyRequest) -> Result<(), LedgerError> {
        self.write_money_request(request, false)
    }

    fn put_request(&mut self, request: &MoneyRequest) -> Result<(), LedgerError> {
        self.write_money_request(request, true)
    }

    fn request(&mut self, id: u64) -> Result<Option<MoneyRequest>, LedgerError> {
        self.money_request(id)
    }

    fn request_by_reference(
        &mut self,
        account: &AccountId,
        kind: RequestKind,
        reference: &str,
    ) -> Result<Option<MoneyRequest>, LedgerError> {
        self.money_request_by_reference(account, kind, reference)
    }

    fn requests(&mut self, filter: &RequestFilter) -> Result<Vec<MoneyRequest>, LedgerError> {
        self.money_requests(filter)
    }

    fn totals(&mut self) -> Result<LedgerTotals, LedgerError> {
        // SUM of BIGINT is NUMERIC in PostgreSQL; the cast back fails on overflow, as SQLite's
        // integer SUM does.
        let row = self
            .query_one(
                "SELECT COUNT(*), COALESCE(SUM(debits_posted), 0)::BIGINT, COALESCE(SUM(credits_posted), 0)::BIGINT,
                        COALESCE(SUM(debits_pending), 0)::BIGINT, COALESCE(SUM(credits_pending), 0)::BIGINT
                 FROM ledger_accounts",
                &[],
            )
            .map_err(LedgerError::storage)?;
        let sum = |i: usize, what: &str| col::<i64>(&row, i, what).map(Micros::new).map_err(LedgerError::storage);
        Ok(LedgerTotals {
            accounts: get_u64(&row, 0, "COUNT(ledger_accounts)").map_err(LedgerError::storage)?,
            debits_posted: sum(1, "SUM(ledger_accounts.debits_posted)")?,
            credits_posted: sum(2, "SUM(ledger_accounts.credits_posted)")?,
            debits_pending: sum(3, "SUM(ledger_accounts.debits_pending)")?,
            credits_pending: sum(4, "SUM(ledger_accounts.credits_pending)")?,
        })
    }
}
