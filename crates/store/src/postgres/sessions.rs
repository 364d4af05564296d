//! Parties, their sessions with the outboxes of messages waiting for them, and revocations, in PostgreSQL (see `crate::sessions`).

use super::*;

impl SessionsTx for PgTx<'_> {
    fn insert_party(&mut self, party: &PartyRow) -> StoreResult<bool> {
        let n = self.execute(
            "INSERT INTO parties (id, role, public_key, name, created_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO NOTHING",
            &[
                &&party.id.as_bytes()[..],
                &party.role.as_str(),
                &&party.public_key[..],
                &party.name,
                &int(party.created_ms),
            ],
        )?;
        Ok(n == 1)
    }

    fn party(&mut self, id: &PartyId) -> StoreResult<Option<PartyRow>> {
        let Some(row) = self.query_opt(
            "SELECT id, role, public_key, name, created_ms FROM parties WHERE id = $1",
            &[&&id.as_bytes()[..]],
        )?
        else {
            return Ok(None);
        };
        let role: &str = col(&row, 1, "parties.role")?;
        let key: &[u8] = col(&row, 2, "parties.public_key")?;
        Ok(Some(PartyRow {
            id: get_party_id(&row, 0, "parties.id")?,
            role: role.parse::<Role>().map_err(|e| corrupt("parties.role", e))?,
            public_key: key
                .try_into()
                .map_err(|_| corrupt("parties.public_key", format!("{} bytes, expected 32", key.len())))?,
            name: col(&row, 3, "parties.name")?,
            created_ms: get_u64(&row, 4, "parties.created_ms")?,
        }))
    }

    fn announce_wakes(&mut self, sessions: &[SessionId]) -> StoreResult<()> {
        // Delivered at commit, and not at all on rollback: exactly the wake-ups that are true.
        // A payload holds at most 8000 bytes: 100 IDs of 37 bytes each fit.
        for chunk in sessions.chunks(100) {
            let payload = chunk.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(",");
            let channel = self.wake_channel.clone();
            self.query("SELECT pg_notify($1, $2)", &[&channel, &payload])?;
        }
        Ok(())
    }

    fn revoke_party(&mut self, r: &RevocationRow) -> StoreResult<bool> {
        let n = self.execute(
            "INSERT INTO revocations (party, reason, revoked_ms) VALUES ($1, $2, $3) ON CONFLICT (party) DO NOTHING",
            &[&&r.party.as_bytes()[..], &r.reason, &int(r.revoked_ms)],
        )?;
        Ok(n == 1)
    }

    fn revocation(&mut self, party: &PartyId) -> StoreResult<Option<RevocationRow>> {
        let row = self.query_opt(
            "SELECT party, reason, revoked_ms FROM revocations WHERE party = $1",
            &[&&party.as_bytes()[..]],
        )?;
        row.map(|row| revocation_row(&row)).transpose()
    }

    fn revocations(&mut self) -> StoreResult<Vec<RevocationRow>> {
        let rows = self.query("SELECT party, reason, revoked_ms FROM revocations ORDER BY revoked_ms, party", &[])?;
        rows.iter().map(revocation_row).collect()
    }

    fn insert_session(&mut self, party: &PartyId, s: &SessionRow) -> StoreResult<()> {
        self.execute(
            "INSERT INTO sessions (id, party, inbound_acked, outbound_head, outbound_acked, last_seen_ms)
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &&s.id.as_uuid().as_bytes()[..],
                &&party.as_bytes()[..],
                &int(s.inbound_acked),
                &int(s.outbound_head),
                &int(s.outbound_acked),
                &int(s.last_seen_ms),
            ],
        )?;
        Ok(())
    }

    fn session(&mut self, id: SessionId) -> StoreResult<Option<OwnedSession>> {
        let Some(row) = self.query_opt(
            "SELECT party, inbound_acked, outbound_head, outbound_acked, last_seen_ms FROM sessions WHERE id = $1",
            &[&&id.as_uuid().as_bytes()[..]],
        )?
        else {
            return Ok(None);
        };
        Ok(Some(OwnedSession {
            party: get_party_id(&row, 0, "sessions.party")?,
            session: SessionRow {
                id,
                inbound_acked: get_u64(&row, 1, "sessions.inbound_acked")?,
                outbound_head: get_u64(&row, 2, "sessions.outbound_head")?,
                outbound_acked: get_u64(&row, 3, "sessions.outbound_acked")?,
                last_seen_ms: get_u64(&row, 4, "sessions.last_seen_ms")?,
            },
        }))
    }

    fn set_session_inbound(&mut self, id: SessionId, inbound_acked: u64, now_ms: u64) -> StoreResult<()> {
        self.execute(
            "UPDATE sessions SET inbound_acked = $2, last_seen_ms = $3 WHERE id = $1",
            &[&&id.as_uuid().as_bytes()[..], &int(inbound_acked), &int(now_ms)],
        )?;
        Ok(())
    }

    fn touch_session(&mut self, id: SessionId, now_ms: u64) -> StoreResult<()> {
        self.execute(
            "UPDATE sessions SET last_seen_ms = $2 WHERE id = $1",
            &[&&id.as_uuid().as_bytes()[..], &int(now_ms)],
        )?;
        Ok(())
    }

    fn delete_session(&mut self, id: SessionId) -> StoreResult<()> {
        let key = &id.as_uuid().as_bytes()[..];
        self.execute("DELETE FROM outbox WHERE session = $1", &[&key])?;
        self.execute("DELETE FROM attachments WHERE session = $1", &[&key])?;
        self.execute("DELETE FROM sessions WHERE id = $1", &[&key])?;
        self.execute("UPDATE providers SET session = NULL WHERE session = $1", &[&key])?;
        // Narrowed attachments keep the session as text (see `crate::watches`).
        let text = id.to_string();
        self.execute("DELETE FROM watches WHERE session = $1", &[&text])?;
        self.execute("DELETE FROM watch_marks WHERE session = $1", &[&text])?;
        Ok(())
    }

    fn sessions_idle_since(&mut self, before_ms: u64, limit: u32) -> StoreResult<Vec<SessionId>> {
        self.collect(
            "SELECT id FROM sessions WHERE last_seen_ms < $1 LIMIT $2",
            &[&int(before_ms), &i64::from(limit)],
            |row| get_session_id(row, 0, "sessions.id"),
        )
    }

    fn push_outbox(
        &mut self,
        session: SessionId,
        reply_to: Option<u64>,
        body: &str,
        result: Option<i64>,
    ) -> StoreResult<u64> {
        let key = &session.as_uuid().as_bytes()[..];
        let row = self
            .query_opt(
                "UPDATE sessions SET outbound_head = outbound_head + 1 WHERE id = $1 RETURNING outbound_head",
                &[&key],
            )?
            .ok_or_else(|| StoreError::Conflict(format!("session {session} does not exist")))?;
        let seq: i64 = col(&row, 0, "sessions.outbound_head")?;
        self.execute(
            "INSERT INTO outbox (session, seq, reply_to, body, result_id) VALUES ($1, $2, $3, $4, $5)",
            &[&key, &seq, &reply_to.map(int), &body, &result],
        )?;
        u64::try_from(seq).map_err(|_| corrupt("sessions.outbound_head", format!("{seq} is negative")))
    }

    fn outbox_after(&mut self, session: SessionId, after: u64, limit: u32) -> StoreResult<Vec<OutboxRow>> {
        self.collect(
            "SELECT seq, reply_to, body FROM outbox WHERE session = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            &[&&session.as_uuid().as_bytes()[..], &int(after), &i64::from(limit)],
            |row| {
                let reply_to: Option<i64> = col(row, 1, "outbox.reply_to")?;
                Ok(OutboxRow {
                    seq: get_u64(row, 0, "outbox.seq")?,
                    reply_to: reply_to
                        .map(|r| u64::try_from(r).map_err(|_| corrupt("outbox.reply_to", format!("{r} is negative"))))
                        .transpose()?,
                    body: col(row, 2, "outbox.body")?,
                })
            },
        )
    }

    fn ack_outbox(&mut self, session: SessionId, upto: u64) -> StoreResult<Vec<i64>> {
        let key = &session.as_uuid().as_bytes()[..];
        let results = self.collect(
            "DELETE FROM outbox WHERE session = $1 AND seq <= $2 RETURNING result_id",
            &[&key, &int(upto)],
            |row| col::<Option<i64>>(row, 0, "outbox.result_id"),
        )?;
        self.execute(
            "UPDATE sessions SET outbound_acked = GREATEST(outbound_acked, LEAST($2, outbound_head)) WHERE id = $1",
            &[&key, &int(upto)],
        )?;
        Ok(results.into_iter().flatten().collect())
    }
}
