//! Stored elements (content-addressed bytes), who was granted them, and which jobs refer to them, in PostgreSQL (see `crate::elements`).

use super::*;

/// Tasks' checkpoints are references the collection of unreferenced elements looks up.
pub(super) const CHECKPOINT_MIGRATION: &str = r#"
CREATE INDEX tasks_checkpoint ON tasks(checkpoint) WHERE checkpoint IS NOT NULL;
"#;

impl ElementsTx for PgTx<'_> {
    fn insert_element(&mut self, hash: &ElementHash, size: u64, now_ms: u64) -> StoreResult<()> {
        self.execute(
            "INSERT INTO elements (hash, size, created_ms) VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING",
            &[&&hash.as_bytes()[..], &int(size), &int(now_ms)],
        )?;
        Ok(())
    }

    fn element_size(&mut self, hash: &ElementHash) -> StoreResult<Option<u64>> {
        self.query_opt("SELECT size FROM elements WHERE hash = $1", &[&&hash.as_bytes()[..]])?
            .map(|row| get_u64(&row, 0, "elements.size"))
            .transpose()
    }

    fn grant_element(
        &mut self,
        owner: &PartyId,
        hash: &ElementHash,
        kind: ElementKind,
        name: &str,
        now_ms: u64,
    ) -> StoreResult<()> {
        self.execute(
            "INSERT INTO element_grants (owner, hash, kind, name, created_ms) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (owner, hash) DO UPDATE SET kind = EXCLUDED.kind,
                 name = CASE WHEN EXCLUDED.name = '' THEN element_grants.name ELSE EXCLUDED.name END",
            &[&&owner.as_bytes()[..], &&hash.as_bytes()[..], &kind.as_str(), &name, &int(now_ms)],
        )?;
        Ok(())
    }

    fn element_grant(&mut self, owner: &PartyId, hash: &ElementHash) -> StoreResult<Option<ElementGrant>> {
        let Some(row) = self.query_opt(
            "SELECT g.kind, g.name, e.size FROM element_grants g JOIN elements e ON e.hash = g.hash
             WHERE g.owner = $1 AND g.hash = $2",
            &[&&owner.as_bytes()[..], &&hash.as_bytes()[..]],
        )?
        else {
            return Ok(None);
        };
        let kind: &str = col(&row, 0, "element_grants.kind")?;
        Ok(Some(ElementGrant {
            kind: kind.parse().map_err(|e| corrupt("element_grants.kind", e))?,
            name: col(&row, 1, "element_grants.name")?,
            size: get_u64(&row, 2, "elements.size")?,
        }))
    }

    fn revoke_element(&mut self, owner: &PartyId, hash: &ElementHash) -> StoreResult<bool> {
        let n = self.execute(
            "DELETE FROM element_grants WHERE owner = $1 AND hash = $2",
            &[&&owner.as_bytes()[..], &&hash.as_bytes()[..]],
        )?;
        Ok(n > 0)
    }

    fn add_job_elements(&mut self, job: JobId, hashes: &[ElementHash]) -> StoreResult<()> {
        let hashes: Vec<&[u8]> = hashes.iter().map(|h| &h.as_bytes()[..]).collect();
        self.execute(
            "INSERT INTO job_elements (job, hash) SELECT $1, h FROM UNNEST($2::BYTEA[]) AS h ON CONFLICT DO NOTHING",
            &[&&job.as_uuid().as_bytes()[..], &hashes],
        )?;
        Ok(())
    }

    fn unreferenced_elements(&mut self, created_before_ms: u64, limit: u32) -> StoreResult<Vec<ElementHash>> {
        self.collect(
            "SELECT e.hash FROM elements e
             WHERE e.created_ms < $1
               AND NOT EXISTS (SELECT 1 FROM element_grants g WHERE g.hash = e.hash)
               AND NOT EXISTS (SELECT 1 FROM job_elements j WHERE j.hash = e.hash)
               AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.checkpoint = e.hash)
             LIMIT $2",
            &[&int(created_before_ms), &i64::from(limit)],
            |row| get_hash(row, 0, "elements.hash"),
        )
    }

    fn element_usage(&mut self, owner: &PartyId) -> StoreResult<ElementUsage> {
        let row = self.query_one(
            "SELECT COALESCE(SUM(e.size), 0)::BIGINT, COUNT(*) FROM element_grants g JOIN elements e ON e.hash = g.hash
             WHERE g.owner = $1",
            &[&&owner.as_bytes()[..]],
        )?;
        Ok(ElementUsage {
            bytes: get_u64(&row, 0, "SUM(elements.size)")?,
            elements: get_u64(&row, 1, "COUNT(element_grants)")?,
        })
    }

    fn element_visible_to_client(&mut self, client: &PartyId, hash: &ElementHash) -> StoreResult<bool> {
        let row = self.query_one(
            "SELECT EXISTS (SELECT 1 FROM element_grants WHERE owner = $1 AND hash = $2)
                 OR EXISTS (SELECT 1 FROM job_elements je JOIN jobs j ON j.id = je.job
                            WHERE je.hash = $2 AND j.client = $1)
                 OR EXISTS (SELECT 1 FROM tasks t JOIN jobs j ON j.id = t.job
                            WHERE t.checkpoint = $2 AND j.client = $1)",
            &[&&client.as_bytes()[..], &&hash.as_bytes()[..]],
        )?;
        col(&row, 0, "EXISTS(element_grants)")
    }

    fn delete_element(&mut self, hash: &ElementHash) -> StoreResult<()> {
        self.execute("DELETE FROM elements WHERE hash = $1", &[&&hash.as_bytes()[..]])?;
        Ok(())
    }

    fn release_element(&mut self, hash: &ElementHash, now_ms: u64) -> StoreResult<()> {
        self.execute(
            "UPDATE elements SET created_ms = GREATEST(created_ms, $2) WHERE hash = $1",
            &[&&hash.as_bytes()[..], &int(now_ms)],
        )?;
        Ok(())
    }
}
