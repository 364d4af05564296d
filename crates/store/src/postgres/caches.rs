//! Engines' cache contents in PostgreSQL, as in SQLite (see `crate::caches`).

use idlegrid_types::{ElementHash, PartyId};

use super::{PgTx, get_hash, get_party_id, int};
use crate::StoreResult;
use crate::caches::CacheTx;

pub(super) const MIGRATION: &str = r#"
CREATE TABLE engine_caches (
    provider BYTEA NOT NULL, element BYTEA NOT NULL, reported_ms BIGINT NOT NULL, PRIMARY KEY (provider, element));
CREATE INDEX engine_caches_element ON engine_caches(element);
"#;

impl CacheTx for PgTx<'_> {
    fn set_cache_contents(&mut self, provider: &PartyId, elements: &[ElementHash], now_ms: u64) -> StoreResult<()> {
        let provider = &provider.as_bytes()[..];
        self.execute("DELETE FROM engine_caches WHERE provider = $1", &[&provider])?;
        for element in elements {
            self.execute(
                "INSERT INTO engine_caches (provider, element, reported_ms) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                &[&provider, &&element.as_bytes()[..], &int(now_ms)],
            )?;
        }
        Ok(())
    }

    fn cache_contents(&mut self, provider: &PartyId) -> StoreResult<Vec<ElementHash>> {
        let rows = self.query(
            "SELECT element FROM engine_caches WHERE provider = $1 ORDER BY element",
            &[&&provider.as_bytes()[..]],
        )?;
        rows.iter().map(|row| get_hash(row, 0, "engine_caches.element")).collect()
    }

    fn cache_holders(&mut self, elements: &[ElementHash]) -> StoreResult<Vec<(PartyId, ElementHash)>> {
        let keys: Vec<&[u8]> = elements.iter().map(|e| &e.as_bytes()[..]).collect();
        let rows = self.query("SELECT provider, element FROM engine_caches WHERE element = ANY($1)", &[&keys])?;
        let mut holders = rows
            .iter()
            .map(|row| {
                Ok((get_party_id(row, 0, "engine_caches.provider")?, get_hash(row, 1, "engine_caches.element")?))
            })
            .collect::<StoreResult<Vec<_>>>()?;
        holders.sort();
        holders.dedup();
        Ok(holders)
    }
}
