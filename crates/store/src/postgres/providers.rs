//! Providers: their state, load and profile, and what the server remembers of their results, in PostgreSQL (see `crate::providers`).

use super::*;

const PROVIDER_COLUMNS: &str = "id, session, state, slots, capacity, assigned, last_contact_ms";

fn provider_row(row: &Row) -> StoreResult<ProviderRow> {
    let session: Option<&[u8]> = col(row, 1, "providers.session")?;
    Ok(ProviderRow {
        id: get_party_id(row, 0, "providers.id")?,
        session: session.map(|b| session_id(b, "providers.session")).transpose()?,
        state: node_state(col(row, 2, "providers.state")?, "providers.state")?,
        slots: get_u32(row, 3, "providers.slots")?,
        capacity: get_u32(row, 4, "providers.capacity")?,
        assigned: get_u32(row, 5, "providers.assigned")?,
        last_contact_ms: get_u64(row, 6, "providers.last_contact_ms")?,
    })
}

impl ProvidersTx for PgTx<'_> {
    fn upsert_provider(
        &mut self,
        id: &PartyId,
        state: NodeState,
        slots: u32,
        capacity: u32,
        now_ms: u64,
    ) -> StoreResult<()> {
        self.execute(
            "INSERT INTO providers (id, state, slots, capacity, last_contact_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO UPDATE SET state = EXCLUDED.state, slots = EXCLUDED.slots, capacity = EXCLUDED.capacity,
                                            last_contact_ms = EXCLUDED.last_contact_ms",
            &[&&id.as_bytes()[..], &node_state_str(state), &i64::from(slots), &i64::from(capacity), &int(now_ms)],
        )?;
        Ok(())
    }

    fn set_provider_profile(&mut self, id: &PartyId, profile_json: &str) -> StoreResult<()> {
        self.execute("UPDATE providers SET profile = $2 WHERE id = $1", &[&&id.as_bytes()[..], &profile_json])?;
        Ok(())
    }

    fn provider_profile(&mut self, id: &PartyId) -> StoreResult<Option<String>> {
        match self.query_opt("SELECT profile FROM providers WHERE id = $1", &[&&id.as_bytes()[..]])? {
            Some(row) => Ok(row
                .try_get::<_, Option<String>>(0)
                .map_err(|e| StoreError::Corrupt(format!("providers.profile: {e}")))?),
            None => Ok(None),
        }
    }

    fn set_provider_session(&mut self, id: &PartyId, session: Option<SessionId>) -> StoreResult<()> {
        let session = session.map(|s| s.as_uuid().as_bytes().to_vec());
        let n = self.execute("UPDATE providers SET session = $2 WHERE id = $1", &[&&id.as_bytes()[..], &session])?;
        if n == 0 {
            self.execute(
                "INSERT INTO providers (id, session, state, slots, capacity, last_contact_ms) VALUES ($1, $2, 'paused', 0, 0, 0)",
                &[&&id.as_bytes()[..], &session],
            )?;
        }
        Ok(())
    }

    fn touch_provider(&mut self, id: &PartyId, now_ms: u64) -> StoreResult<()> {
        self.execute(
            "UPDATE providers SET last_contact_ms = GREATEST(last_contact_ms, $2) WHERE id = $1",
            &[&&id.as_bytes()[..], &int(now_ms)],
        )?;
        Ok(())
    }

    fn provider(&mut self, id: &PartyId) -> StoreResult<Option<ProviderRow>> {
        let sql = format!("SELECT {PROVIDER_COLUMNS} FROM providers WHERE id = $1");
        let Some(row) = self.query_opt(&sql, &[&&id.as_bytes()[..]])? else {
            return Ok(None);
        };
        provider_row(&row).map(Some)
    }

    fn providers_heard_since(&mut self, contact_since_ms: u64, limit: u32) -> StoreResult<Vec<ProviderRow>> {
        let sql = format!("SELECT {PROVIDER_COLUMNS} FROM providers WHERE last_contact_ms >= $1 ORDER BY id LIMIT $2");
        self.collect(&sql, &[&int(contact_since_ms), &i64::from(limit)], provider_row)
    }

    fn providers_with_room(&mut self, contact_since_ms: u64) -> StoreResult<Vec<ProviderRoom>> {
        self.collect(
            "SELECT id, session, capacity - assigned FROM providers
             WHERE state = 'active' AND session IS NOT NULL AND capacity > assigned AND last_contact_ms >= $1
             ORDER BY id",
            &[&int(contact_since_ms)],
            |row| {
                Ok(ProviderRoom {
                    id: get_party_id(row, 0, "providers.id")?,
                    session: get_session_id(row, 1, "providers.session")?,
                    room: get_u32(row, 2, "providers.capacity - assigned")?,
                })
            },
        )
    }

    fn provider_record(&mut self, provider: &PartyId) -> StoreResult<Option<String>> {
        self.query_opt("SELECT record FROM provider_records WHERE provider = $1", &[&&provider.as_bytes()[..]])?
            .map(|row| col(&row, 0, "provider_records.record"))
            .transpose()
    }

    fn set_provider_record(&mut self, provider: &PartyId, record: &str, quarantined: bool) -> StoreResult<()> {
        self.execute(
            "INSERT INTO provider_records (provider, record, quarantined) VALUES ($1, $2, $3)
             ON CONFLICT (provider) DO UPDATE SET record = EXCLUDED.record, quarantined = EXCLUDED.quarantined",
            &[&&provider.as_bytes()[..], &record, &quarantined],
        )?;
        Ok(())
    }

    fn quarantined_providers(&mut self) -> StoreResult<Vec<PartyId>> {
        self.collect("SELECT provider FROM provider_records WHERE quarantined ORDER BY provider", &[], |row| {
            get_party_id(row, 0, "provider_records.provider")
        })
    }
}
