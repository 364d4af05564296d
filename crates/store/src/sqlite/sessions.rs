//! Parties, their sessions with the outboxes of messages waiting for them, and revocations, in SQLite (see `crate::sessions`).

use super::*;

impl SessionsTx for SqliteTx<'_> {
    fn insert_party(&mut self, party: &PartyRow) -> StoreResult<bool> {
        let n = self
            .tx
            .prepare_cached(
                "INSERT INTO parties (id, role, public_key, name, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![
                &party.id.as_bytes()[..],
                party.role.as_str(),
                &party.public_key[..],
                party.name,
                int(party.created_ms)
            ])?;
        Ok(n == 1)
    }

    fn party(&mut self, id: &PartyId) -> StoreResult<Option<PartyRow>> {
        Ok(self
            .tx
            .prepare_cached("SELECT id, role, public_key, name, created_ms FROM parties WHERE id = ?1")?
            .query_row([&id.as_bytes()[..]], |row| {
                let role: String = row.get(1)?;
                let key: Vec<u8> = row.get(2)?;
                Ok(PartyRow {
                    id: get_party_id(row, 0)?,
                    role: role.parse::<Role>().map_err(|_| corrupt("role"))?,
                    public_key: key.try_into().map_err(|_| corrupt("public key"))?,
                    name: row.get(3)?,
                    created_ms: uint(row.get(4)?)?,
                })
            })
            .optional()?)
    }

    fn revoke_party(&mut self, r: &RevocationRow) -> StoreResult<bool> {
        let n = self
            .tx
            .prepare_cached("INSERT INTO revocations (party, reason, revoked_ms) VALUES (?1, ?2, ?3) ON CONFLICT (party) DO NOTHING")?
            .execute(params![&r.party.as_bytes()[..], r.reason, int(r.revoked_ms)])?;
        Ok(n == 1)
    }

    fn revocation(&mut self, party: &PartyId) -> StoreResult<Option<RevocationRow>> {
        Ok(self
            .tx
            .prepare_cached("SELECT party, reason, revoked_ms FROM revocations WHERE party = ?1")?
            .query_row([&party.as_bytes()[..]], |row| {
                Ok(RevocationRow { party: get_party_id(row, 0)?, reason: row.get(1)?, revoked_ms: uint(row.get(2)?)? })
            })
            .optional()?)
    }

    fn revocations(&mut self) -> StoreResult<Vec<RevocationRow>> {
        let mut statement =
            self.tx.prepare_cached("SELECT party, reason, revoked_ms FROM revocations ORDER BY revoked_ms, party")?;
        let rows = statement.query_map([], |row| {
            Ok(RevocationRow { party: get_party_id(row, 0)?, reason: row.get(1)?, revoked_ms: uint(row.get(2)?)? })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    fn insert_session(&mut self, party: &PartyId, s: &SessionRow) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO sessions (id, party, inbound_acked, outbound_head, outbound_acked, last_seen_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                &s.id.as_uuid().as_bytes()[..],
                &party.as_bytes()[..],
                int(s.inbound_acked),
                int(s.outbound_head),
                int(s.outbound_acked),
                int(s.last_seen_ms)
            ])?;
        Ok(())
    }

    fn session(&mut self, id: SessionId) -> StoreResult<Option<OwnedSession>> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT party, inbound_acked, outbound_head, outbound_acked, last_seen_ms FROM sessions WHERE id = ?1",
            )?
            .query_row([&id.as_uuid().as_bytes()[..]], |row| {
                Ok(OwnedSession {
                    party: get_party_id(row, 0)?,
                    session: SessionRow {
                        id,
                        inbound_acked: uint(row.get(1)?)?,
                        outbound_head: uint(row.get(2)?)?,
                        outbound_acked: uint(row.get(3)?)?,
                        last_seen_ms: uint(row.get(4)?)?,
                    },
                })
            })
            .optional()?)
    }

    fn set_session_inbound(&mut self, id: SessionId, inbound_acked: u64, now_ms: u64) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE sessions SET inbound_acked = ?2, last_seen_ms = ?3 WHERE id = ?1")?
            .execute(params![&id.as_uuid().as_bytes()[..], int(inbound_acked), int(now_ms)])?;
        Ok(())
    }

    fn touch_session(&mut self, id: SessionId, now_ms: u64) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE sessions SET last_seen_ms = ?2 WHERE id = ?1")?
            .execute(params![&id.as_uuid().as_bytes()[..], int(now_ms)])?;
        Ok(())
    }

    fn delete_session(&mut self, id: SessionId) -> StoreResult<()> {
        let key = &id.as_uuid().as_bytes()[..];
        self.tx.prepare_cached("DELETE FROM outbox WHERE session = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM attachments WHERE session = ?1")?.execute([key])?;
        self.tx.prepare_cached("DELETE FROM sessions WHERE id = ?1")?.execute([key])?;
        self.tx.prepare_cached("UPDATE providers SET session = NULL WHERE session = ?1")?.execute([key])?;
        // Narrowed attachments keep the session as text (see `crate::watches`).
        let text = id.to_string();
        self.tx.prepare_cached("DELETE FROM watches WHERE session = ?1")?.execute([&text])?;
        self.tx.prepare_cached("DELETE FROM watch_marks WHERE session = ?1")?.execute([&text])?;
        Ok(())
    }

    fn sessions_idle_since(&mut self, before_ms: u64, limit: u32) -> StoreResult<Vec<SessionId>> {
        self.collect(
            "SELECT id FROM sessions WHERE last_seen_ms < ?1 LIMIT ?2",
            params![int(before_ms), limit],
            |row| get_session_id(row, 0),
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
        let seq: i64 = self
            .tx
            .prepare_cached(
                "UPDATE sessions SET outbound_head = outbound_head + 1 WHERE id = ?1 RETURNING outbound_head",
            )?
            .query_row([key], |r| r.get(0))
            .optional()?
            .ok_or_else(|| StoreError::Conflict(format!("session {session} does not exist")))?;
        self.tx
            .prepare_cached("INSERT INTO outbox (session, seq, reply_to, body, result_id) VALUES (?1, ?2, ?3, ?4, ?5)")?
            .execute(params![key, seq, reply_to.map(int), body, result])?;
        Ok(uint(seq)?)
    }

    fn outbox_after(&mut self, session: SessionId, after: u64, limit: u32) -> StoreResult<Vec<OutboxRow>> {
        self.collect(
            "SELECT seq, reply_to, body FROM outbox WHERE session = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            params![&session.as_uuid().as_bytes()[..], int(after), limit],
            |row| {
                Ok(OutboxRow {
                    seq: uint(row.get(0)?)?,
                    reply_to: row.get::<_, Option<i64>>(1)?.map(uint).transpose()?,
                    body: row.get(2)?,
                })
            },
        )
    }

    fn ack_outbox(&mut self, session: SessionId, upto: u64) -> StoreResult<Vec<i64>> {
        let key = &session.as_uuid().as_bytes()[..];
        let results = self.collect(
            "DELETE FROM outbox WHERE session = ?1 AND seq <= ?2 RETURNING result_id",
            params![key, int(upto)],
            |row| row.get::<_, Option<i64>>(0),
        )?;
        self.tx
            .prepare_cached(
                "UPDATE sessions SET outbound_acked = MAX(outbound_acked, MIN(?2, outbound_head)) WHERE id = ?1",
            )?
            .execute(params![key, int(upto)])?;
        Ok(results.into_iter().flatten().collect())
    }
}
