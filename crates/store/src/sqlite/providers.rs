//! Providers: their state, load and profile, and what the server remembers of their results, in SQLite (see `crate::providers`).

use super::*;

const PROVIDER_COLUMNS: &str = "id, session, state, slots, capacity, assigned, last_contact_ms";

fn provider_row(row: &Row) -> rusqlite::Result<ProviderRow> {
    let session: Option<Vec<u8>> = row.get(1)?;
    let state: String = row.get(2)?;
    Ok(ProviderRow {
        id: get_party_id(row, 0)?,
        session: session
            .map(|b| uuid::Uuid::from_slice(&b).map_err(|_| corrupt("provider session id")))
            .transpose()?
            .map(|u| u.to_string().parse().expect("a uuid prints as a valid session id")),
        state: node_state(&state)?,
        slots: row.get(3)?,
        capacity: row.get(4)?,
        assigned: row.get(5)?,
        last_contact_ms: uint(row.get(6)?)?,
    })
}

impl ProvidersTx for SqliteTx<'_> {
    fn upsert_provider(
        &mut self,
        id: &PartyId,
        state: NodeState,
        slots: u32,
        capacity: u32,
        now_ms: u64,
    ) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO providers (id, state, slots, capacity, last_contact_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET state = ?2, slots = ?3, capacity = ?4, last_contact_ms = ?5",
            )?
            .execute(params![&id.as_bytes()[..], node_state_str(state), slots, capacity, int(now_ms)])?;
        Ok(())
    }

    fn set_provider_profile(&mut self, id: &PartyId, profile_json: &str) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE providers SET profile = ?2 WHERE id = ?1")?
            .execute(params![&id.as_bytes()[..], profile_json])?;
        Ok(())
    }

    fn provider_profile(&mut self, id: &PartyId) -> StoreResult<Option<String>> {
        Ok(self
            .tx
            .prepare_cached("SELECT profile FROM providers WHERE id = ?1")?
            .query_row([&id.as_bytes()[..]], |row| row.get::<_, Option<String>>(0))
            .optional()?
            .flatten())
    }

    fn set_provider_session(&mut self, id: &PartyId, session: Option<SessionId>) -> StoreResult<()> {
        let session = session.map(|s| s.as_uuid().as_bytes().to_vec());
        let n = self
            .tx
            .prepare_cached("UPDATE providers SET session = ?2 WHERE id = ?1")?
            .execute(params![&id.as_bytes()[..], session])?;
        if n == 0 {
            self.tx
                .prepare_cached(
                    "INSERT INTO providers (id, session, state, slots, capacity, last_contact_ms) VALUES (?1, ?2, 'paused', 0, 0, 0)",
                )?
                .execute(params![&id.as_bytes()[..], session])?;
        }
        Ok(())
    }

    fn touch_provider(&mut self, id: &PartyId, now_ms: u64) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE providers SET last_contact_ms = MAX(last_contact_ms, ?2) WHERE id = ?1")?
            .execute(params![&id.as_bytes()[..], int(now_ms)])?;
        Ok(())
    }

    fn provider(&mut self, id: &PartyId) -> StoreResult<Option<ProviderRow>> {
        Ok(self
            .tx
            .prepare_cached(&format!("SELECT {PROVIDER_COLUMNS} FROM providers WHERE id = ?1"))?
            .query_row([&id.as_bytes()[..]], provider_row)
            .optional()?)
    }

    fn providers_heard_since(&mut self, contact_since_ms: u64, limit: u32) -> StoreResult<Vec<ProviderRow>> {
        self.collect(
            &format!("SELECT {PROVIDER_COLUMNS} FROM providers WHERE last_contact_ms >= ?1 ORDER BY id LIMIT ?2"),
            params![int(contact_since_ms), limit],
            provider_row,
        )
    }

    fn providers_with_room(&mut self, contact_since_ms: u64) -> StoreResult<Vec<ProviderRoom>> {
        self.collect(
            "SELECT id, session, capacity - assigned FROM providers
             WHERE state = 'active' AND session IS NOT NULL AND capacity > assigned AND last_contact_ms >= ?1
             ORDER BY id",
            params![int(contact_since_ms)],
            |row| Ok(ProviderRoom { id: get_party_id(row, 0)?, session: get_session_id(row, 1)?, room: row.get(2)? }),
        )
    }

    fn provider_record(&mut self, provider: &PartyId) -> StoreResult<Option<String>> {
        Ok(self
            .tx
            .prepare_cached("SELECT record FROM provider_records WHERE provider = ?1")?
            .query_row([&provider.as_bytes()[..]], |r| r.get(0))
            .optional()?)
    }

    fn set_provider_record(&mut self, provider: &PartyId, record: &str, quarantined: bool) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO provider_records (provider, record, quarantined) VALUES (?1, ?2, ?3)
                 ON CONFLICT (provider) DO UPDATE SET record = ?2, quarantined = ?3",
            )?
            .execute(params![&provider.as_bytes()[..], record, quarantined])?;
        Ok(())
    }

    fn quarantined_providers(&mut self) -> StoreResult<Vec<PartyId>> {
        self.collect("SELECT provider FROM provider_records WHERE quarantined = 1 ORDER BY provider", [], |row| {
            get_party_id(row, 0)
        })
    }
}
