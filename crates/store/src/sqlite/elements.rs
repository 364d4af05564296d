//! Stored elements (content-addressed bytes), who was granted them, and which jobs refer to them, in SQLite (see `crate::elements`).

use super::*;

/// Tasks' checkpoints are references the collection of unreferenced elements looks up.
pub(super) const CHECKPOINT_MIGRATION: &str = r#"
CREATE INDEX tasks_checkpoint ON tasks(checkpoint) WHERE checkpoint IS NOT NULL;
"#;

impl ElementsTx for SqliteTx<'_> {
    fn insert_element(&mut self, hash: &ElementHash, size: u64, now_ms: u64) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO elements (hash, size, created_ms) VALUES (?1, ?2, ?3) ON CONFLICT (hash) DO NOTHING",
            )?
            .execute(params![&hash.as_bytes()[..], int(size), int(now_ms)])?;
        Ok(())
    }

    fn element_size(&mut self, hash: &ElementHash) -> StoreResult<Option<u64>> {
        Ok(self
            .tx
            .prepare_cached("SELECT size FROM elements WHERE hash = ?1")?
            .query_row([&hash.as_bytes()[..]], |r| r.get::<_, i64>(0))
            .optional()?
            .map(uint)
            .transpose()?)
    }

    fn grant_element(
        &mut self,
        owner: &PartyId,
        hash: &ElementHash,
        kind: ElementKind,
        name: &str,
        now_ms: u64,
    ) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO element_grants (owner, hash, kind, name, created_ms) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (owner, hash) DO UPDATE SET kind = ?3, name = CASE WHEN ?4 = '' THEN name ELSE ?4 END",
            )?
            .execute(params![&owner.as_bytes()[..], &hash.as_bytes()[..], kind.as_str(), name, int(now_ms)])?;
        Ok(())
    }

    fn element_grant(&mut self, owner: &PartyId, hash: &ElementHash) -> StoreResult<Option<ElementGrant>> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT g.kind, g.name, e.size FROM element_grants g JOIN elements e ON e.hash = g.hash
                 WHERE g.owner = ?1 AND g.hash = ?2",
            )?
            .query_row([&owner.as_bytes()[..], &hash.as_bytes()[..]], |row| {
                let kind: String = row.get(0)?;
                Ok(ElementGrant {
                    kind: kind.parse().map_err(|_| corrupt("element kind"))?,
                    name: row.get(1)?,
                    size: uint(row.get(2)?)?,
                })
            })
            .optional()?)
    }

    fn revoke_element(&mut self, owner: &PartyId, hash: &ElementHash) -> StoreResult<bool> {
        let n = self
            .tx
            .prepare_cached("DELETE FROM element_grants WHERE owner = ?1 AND hash = ?2")?
            .execute([&owner.as_bytes()[..], &hash.as_bytes()[..]])?;
        Ok(n > 0)
    }

    fn add_job_elements(&mut self, job: JobId, hashes: &[ElementHash]) -> StoreResult<()> {
        let mut stmt =
            self.tx.prepare_cached("INSERT INTO job_elements (job, hash) VALUES (?1, ?2) ON CONFLICT DO NOTHING")?;
        for hash in hashes {
            stmt.execute([&job.as_uuid().as_bytes()[..], &hash.as_bytes()[..]])?;
        }
        Ok(())
    }

    fn unreferenced_elements(&mut self, created_before_ms: u64, limit: u32) -> StoreResult<Vec<ElementHash>> {
        self.collect(
            "SELECT e.hash FROM elements e
             WHERE e.created_ms < ?1
               AND NOT EXISTS (SELECT 1 FROM element_grants g WHERE g.hash = e.hash)
               AND NOT EXISTS (SELECT 1 FROM job_elements j WHERE j.hash = e.hash)
               AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.checkpoint = e.hash)
             LIMIT ?2",
            params![int(created_before_ms), limit],
            |row| get_hash(row, 0),
        )
    }

    fn element_usage(&mut self, owner: &PartyId) -> StoreResult<ElementUsage> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT COALESCE(SUM(e.size), 0), COUNT(*) FROM element_grants g JOIN elements e ON e.hash = g.hash
                 WHERE g.owner = ?1",
            )?
            .query_row([&owner.as_bytes()[..]], |row| {
                Ok(ElementUsage { bytes: uint(row.get(0)?)?, elements: uint(row.get(1)?)? })
            })?)
    }

    fn element_visible_to_client(&mut self, client: &PartyId, hash: &ElementHash) -> StoreResult<bool> {
        Ok(self
            .tx
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM element_grants WHERE owner = ?1 AND hash = ?2)
                     OR EXISTS (SELECT 1 FROM job_elements je JOIN jobs j ON j.id = je.job
                                WHERE je.hash = ?2 AND j.client = ?1)
                     OR EXISTS (SELECT 1 FROM tasks t JOIN jobs j ON j.id = t.job
                                WHERE t.checkpoint = ?2 AND j.client = ?1)",
            )?
            .query_row([&client.as_bytes()[..], &hash.as_bytes()[..]], |r| r.get(0))?)
    }

    fn delete_element(&mut self, hash: &ElementHash) -> StoreResult<()> {
        self.tx.prepare_cached("DELETE FROM elements WHERE hash = ?1")?.execute([&hash.as_bytes()[..]])?;
        Ok(())
    }

    fn release_element(&mut self, hash: &ElementHash, now_ms: u64) -> StoreResult<()> {
        self.tx
            .prepare_cached("UPDATE elements SET created_ms = MAX(created_ms, ?2) WHERE hash = ?1")?
            .execute(params![&hash.as_bytes()[..], int(now_ms)])?;
        Ok(())
    }
}
