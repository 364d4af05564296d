//! Engines' cache contents in SQLite (see `crate::caches`).

use idlegrid_types::{ElementHash, PartyId};
use rusqlite::params;

use super::{SqliteTx, get_hash, get_party_id, int};
use crate::StoreResult;
use crate::caches::CacheTx;

pub(super) const MIGRATION: &str = r#"
CREATE TABLE engine_caches (
    provider BLOB NOT NULL, element BLOB NOT NULL, reported_ms INTEGER NOT NULL, PRIMARY KEY (provider, element));
CREATE INDEX engine_caches_element ON engine_caches(element);
"#;

impl CacheTx for SqliteTx<'_> {
    fn set_cache_contents(&mut self, provider: &PartyId, elements: &[ElementHash], now_ms: u64) -> StoreResult<()> {
        let provider = &provider.as_bytes()[..];
        self.tx.prepare_cached("DELETE FROM engine_caches WHERE provider = ?1")?.execute([provider])?;
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO engine_caches (provider, element, reported_ms) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
        )?;
        for element in elements {
            insert.execute(params![provider, &element.as_bytes()[..], int(now_ms)])?;
        }
        Ok(())
    }

    fn cache_contents(&mut self, provider: &PartyId) -> StoreResult<Vec<ElementHash>> {
        let mut statement =
            self.tx.prepare_cached("SELECT element FROM engine_caches WHERE provider = ?1 ORDER BY element")?;
        let rows = statement.query_map([&provider.as_bytes()[..]], |row| get_hash(row, 0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn cache_holders(&mut self, elements: &[ElementHash]) -> StoreResult<Vec<(PartyId, ElementHash)>> {
        let mut statement = self.tx.prepare_cached("SELECT provider, element FROM engine_caches WHERE element = ?1")?;
        let mut holders = Vec::new();
        for element in elements {
            let rows =
                statement.query_map([&element.as_bytes()[..]], |row| Ok((get_party_id(row, 0)?, get_hash(row, 1)?)))?;
            for row in rows {
                holders.push(row?);
            }
        }
        holders.sort();
        holders.dedup();
        Ok(holders)
    }
}
