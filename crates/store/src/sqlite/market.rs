//! The market's tables in SQLite (see `crate::market`). Parties are kept as their hexadecimal
//! IDs, the same text in both backends.

use idlegrid_types::PartyId;
use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteTx, corrupt, int, uint};
use crate::StoreResult;
use crate::market::*;

pub(super) const MIGRATION: &str = r#"
CREATE TABLE market_offers (
    id INTEGER PRIMARY KEY, owner TEXT NOT NULL, category TEXT NOT NULL, state TEXT NOT NULL,
    quantity REAL NOT NULL, value_micros INTEGER NOT NULL, price_micros INTEGER NOT NULL,
    private_share REAL NOT NULL, measured TEXT NOT NULL, declared TEXT NOT NULL,
    created_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL, seq INTEGER NOT NULL UNIQUE, body TEXT NOT NULL);
CREATE INDEX market_offers_owner ON market_offers(owner, id);
CREATE TABLE market_requests (
    id INTEGER PRIMARY KEY, requester TEXT NOT NULL, category TEXT NOT NULL, state TEXT NOT NULL,
    created_ms INTEGER NOT NULL, body TEXT NOT NULL);
CREATE INDEX market_requests_requester ON market_requests(requester, id);
CREATE TABLE market_negotiations (
    id INTEGER PRIMARY KEY, offer INTEGER NOT NULL, seller TEXT NOT NULL, buyer TEXT NOT NULL, state TEXT NOT NULL,
    rounds INTEGER NOT NULL, awaiting TEXT, deadline_ms INTEGER NOT NULL, created_ms INTEGER NOT NULL,
    updated_ms INTEGER NOT NULL, contract INTEGER, body TEXT NOT NULL);
CREATE INDEX market_negotiations_seller ON market_negotiations(seller, id);
CREATE INDEX market_negotiations_buyer ON market_negotiations(buyer, id);
CREATE INDEX market_negotiations_due ON market_negotiations(deadline_ms) WHERE state = 'open';
CREATE TABLE market_contracts (
    id INTEGER PRIMARY KEY, offer INTEGER, negotiation INTEGER, seller TEXT NOT NULL, buyer TEXT NOT NULL,
    state TEXT NOT NULL, price_micros INTEGER NOT NULL, commission_micros INTEGER NOT NULL,
    created_ms INTEGER NOT NULL, signed_ms INTEGER, terms TEXT NOT NULL, seller_signature TEXT,
    buyer_signature TEXT);
CREATE INDEX market_contracts_seller ON market_contracts(seller, id);
CREATE INDEX market_contracts_buyer ON market_contracts(buyer, id);
"#;

/// Contracts' executions (a later migration: the contracts existed before).
pub(super) const EXECUTION_MIGRATION: &str = r#"
CREATE TABLE market_executions (
    contract INTEGER PRIMARY KEY, state TEXT NOT NULL, ends_ms INTEGER NOT NULL, updated_ms INTEGER NOT NULL,
    body TEXT NOT NULL);
CREATE INDEX market_executions_due ON market_executions(state, ends_ms);
"#;

fn party(row: &Row, i: usize) -> rusqlite::Result<PartyId> {
    let text: String = row.get(i)?;
    text.parse().map_err(|_| corrupt("party id"))
}

fn opt_party(row: &Row, i: usize) -> rusqlite::Result<Option<PartyId>> {
    let text: Option<String> = row.get(i)?;
    text.map(|t| t.parse().map_err(|_| corrupt("party id"))).transpose()
}

fn opt_uint(row: &Row, i: usize) -> rusqlite::Result<Option<u64>> {
    row.get::<_, Option<i64>>(i)?.map(uint).transpose()
}

const OFFER_COLUMNS: &str = "id, owner, category, state, quantity, value_micros, price_micros, private_share, measured,
     declared, created_ms, updated_ms, seq, body";

fn offer_row(row: &Row) -> rusqlite::Result<OfferRow> {
    Ok(OfferRow {
        id: uint(row.get(0)?)?,
        owner: party(row, 1)?,
        category: row.get(2)?,
        state: row.get(3)?,
        quantity: row.get(4)?,
        value_micros: row.get(5)?,
        price_micros: row.get(6)?,
        private_share: row.get(7)?,
        measured: split_names(&row.get::<_, String>(8)?),
        declared: split_names(&row.get::<_, String>(9)?),
        created_ms: uint(row.get(10)?)?,
        updated_ms: uint(row.get(11)?)?,
        seq: uint(row.get(12)?)?,
        body: row.get(13)?,
    })
}

const REQUEST_COLUMNS: &str = "id, requester, category, state, created_ms, body";

fn request_row(row: &Row) -> rusqlite::Result<RequestRow> {
    Ok(RequestRow {
        id: uint(row.get(0)?)?,
        requester: party(row, 1)?,
        category: row.get(2)?,
        state: row.get(3)?,
        created_ms: uint(row.get(4)?)?,
        body: row.get(5)?,
    })
}

const NEGOTIATION_COLUMNS: &str =
    "id, offer, seller, buyer, state, rounds, awaiting, deadline_ms, created_ms, updated_ms, contract, body";

fn negotiation_row(row: &Row) -> rusqlite::Result<NegotiationRow> {
    Ok(NegotiationRow {
        id: uint(row.get(0)?)?,
        offer: uint(row.get(1)?)?,
        seller: party(row, 2)?,
        buyer: party(row, 3)?,
        state: row.get(4)?,
        rounds: u32::try_from(row.get::<_, i64>(5)?).map_err(|_| corrupt("rounds"))?,
        awaiting: opt_party(row, 6)?,
        deadline_ms: uint(row.get(7)?)?,
        created_ms: uint(row.get(8)?)?,
        updated_ms: uint(row.get(9)?)?,
        contract: opt_uint(row, 10)?,
        body: row.get(11)?,
    })
}

const CONTRACT_COLUMNS: &str = "id, offer, negotiation, seller, buyer, state, price_micros, commission_micros,
     created_ms, signed_ms, terms, seller_signature, buyer_signature";

fn contract_row(row: &Row) -> rusqlite::Result<ContractRow> {
    Ok(ContractRow {
        id: uint(row.get(0)?)?,
        offer: opt_uint(row, 1)?,
        negotiation: opt_uint(row, 2)?,
        seller: party(row, 3)?,
        buyer: party(row, 4)?,
        state: row.get(5)?,
        price_micros: row.get(6)?,
        commission_micros: row.get(7)?,
        created_ms: uint(row.get(8)?)?,
        signed_ms: opt_uint(row, 9)?,
        terms: row.get(10)?,
        seller_signature: row.get(11)?,
        buyer_signature: row.get(12)?,
    })
}

impl SqliteTx<'_> {
    fn exists(&self, table: MarketTable, id: u64) -> StoreResult<bool> {
        let sql = format!("SELECT 1 FROM {} WHERE id = ?1", table.name());
        Ok(self.tx.prepare_cached(&sql)?.query_row([int(id)], |_| Ok(())).optional()?.is_some())
    }

    fn next_seq(&self) -> StoreResult<u64> {
        let max: i64 =
            self.tx.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM market_offers")?.query_row([], |r| r.get(0))?;
        Ok(uint(max)? + 1)
    }

    fn one<T>(&self, sql: &str, id: u64, f: impl FnOnce(&Row) -> rusqlite::Result<T>) -> StoreResult<Option<T>> {
        Ok(self.tx.prepare_cached(sql)?.query_row([int(id)], f).optional()?)
    }
}

impl MarketTx for SqliteTx<'_> {
    fn next_id(&mut self, table: MarketTable) -> StoreResult<u64> {
        let sql = format!("SELECT COALESCE(MAX(id), 0) FROM {}", table.name());
        let max: i64 = self.tx.prepare_cached(&sql)?.query_row([], |r| r.get(0))?;
        Ok(uint(max)? + 1)
    }

    fn insert_offer(&mut self, o: &OfferRow) -> StoreResult<u64> {
        if self.exists(MarketTable::Offers, o.id)? {
            return Err(id_in_use("offer", o.id));
        }
        let seq = self.next_seq()?;
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO market_offers ({OFFER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            ))?
            .execute(params![
                int(o.id),
                o.owner.to_string(),
                o.category,
                o.state,
                o.quantity,
                o.value_micros,
                o.price_micros,
                o.private_share,
                join_names(&o.measured),
                join_names(&o.declared),
                int(o.created_ms),
                int(o.updated_ms),
                int(seq),
                o.body
            ])?;
        Ok(seq)
    }

    fn update_offer(&mut self, o: &OfferRow) -> StoreResult<u64> {
        let seq = self.next_seq()?;
        let changed = self
            .tx
            .prepare_cached(
                "UPDATE market_offers SET owner = ?2, category = ?3, state = ?4, quantity = ?5, value_micros = ?6,
                 price_micros = ?7, private_share = ?8, measured = ?9, declared = ?10, created_ms = ?11,
                 updated_ms = ?12, seq = ?13, body = ?14 WHERE id = ?1",
            )?
            .execute(params![
                int(o.id),
                o.owner.to_string(),
                o.category,
                o.state,
                o.quantity,
                o.value_micros,
                o.price_micros,
                o.private_share,
                join_names(&o.measured),
                join_names(&o.declared),
                int(o.created_ms),
                int(o.updated_ms),
                int(seq),
                o.body
            ])?;
        if changed != 1 {
            return Err(not_inserted("offer", o.id));
        }
        Ok(seq)
    }

    fn offer(&mut self, id: u64) -> StoreResult<Option<OfferRow>> {
        self.one(&format!("SELECT {OFFER_COLUMNS} FROM market_offers WHERE id = ?1"), id, offer_row)
    }

    fn offers_of(&mut self, owner: &PartyId, limit: u32) -> StoreResult<Vec<OfferRow>> {
        let sql = format!("SELECT {OFFER_COLUMNS} FROM market_offers WHERE owner = ?1 ORDER BY id LIMIT ?2");
        self.collect(&sql, params![owner.to_string(), limit], offer_row)
    }

    fn open_offers_of(&mut self, owner: &PartyId) -> StoreResult<u64> {
        let count: i64 = self
            .tx
            .prepare_cached("SELECT COUNT(*) FROM market_offers WHERE owner = ?1 AND state = 'open'")?
            .query_row([owner.to_string()], |r| r.get(0))?;
        Ok(uint(count)?)
    }

    fn open_requests_of(&mut self, requester: &PartyId) -> StoreResult<u64> {
        let count: i64 = self
            .tx
            .prepare_cached("SELECT COUNT(*) FROM market_requests WHERE requester = ?1 AND state = 'open'")?
            .query_row([requester.to_string()], |r| r.get(0))?;
        Ok(uint(count)?)
    }

    fn offers_changed_since(&mut self, seq: u64, limit: u32) -> StoreResult<Vec<OfferRow>> {
        let sql = format!("SELECT {OFFER_COLUMNS} FROM market_offers WHERE seq > ?1 ORDER BY seq LIMIT ?2");
        self.collect(&sql, params![int(seq), limit], offer_row)
    }

    fn insert_request(&mut self, r: &RequestRow) -> StoreResult<()> {
        if self.exists(MarketTable::Requests, r.id)? {
            return Err(id_in_use("request", r.id));
        }
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO market_requests ({REQUEST_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))?
            .execute(params![int(r.id), r.requester.to_string(), r.category, r.state, int(r.created_ms), r.body])?;
        Ok(())
    }

    fn update_request(&mut self, r: &RequestRow) -> StoreResult<()> {
        let changed = self
            .tx
            .prepare_cached(
                "UPDATE market_requests SET requester = ?2, category = ?3, state = ?4, created_ms = ?5, body = ?6
                 WHERE id = ?1",
            )?
            .execute(params![int(r.id), r.requester.to_string(), r.category, r.state, int(r.created_ms), r.body])?;
        if changed != 1 {
            return Err(not_inserted("request", r.id));
        }
        Ok(())
    }

    fn request(&mut self, id: u64) -> StoreResult<Option<RequestRow>> {
        self.one(&format!("SELECT {REQUEST_COLUMNS} FROM market_requests WHERE id = ?1"), id, request_row)
    }

    fn requests_of(&mut self, requester: &PartyId, limit: u32) -> StoreResult<Vec<RequestRow>> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM market_requests WHERE requester = ?1 ORDER BY id LIMIT ?2");
        self.collect(&sql, params![requester.to_string(), limit], request_row)
    }

    fn insert_negotiation(&mut self, n: &NegotiationRow) -> StoreResult<()> {
        if self.exists(MarketTable::Negotiations, n.id)? {
            return Err(id_in_use("negotiation", n.id));
        }
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO market_negotiations ({NEGOTIATION_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))?
            .execute(params![
                int(n.id),
                int(n.offer),
                n.seller.to_string(),
                n.buyer.to_string(),
                n.state,
                n.rounds,
                n.awaiting.as_ref().map(PartyId::to_string),
                int(n.deadline_ms),
                int(n.created_ms),
                int(n.updated_ms),
                n.contract.map(int),
                n.body
            ])?;
        Ok(())
    }

    fn update_negotiation(&mut self, n: &NegotiationRow) -> StoreResult<()> {
        let changed = self
            .tx
            .prepare_cached(
                "UPDATE market_negotiations SET offer = ?2, seller = ?3, buyer = ?4, state = ?5, rounds = ?6,
                 awaiting = ?7, deadline_ms = ?8, created_ms = ?9, updated_ms = ?10, contract = ?11, body = ?12
                 WHERE id = ?1",
            )?
            .execute(params![
                int(n.id),
                int(n.offer),
                n.seller.to_string(),
                n.buyer.to_string(),
                n.state,
                n.rounds,
                n.awaiting.as_ref().map(PartyId::to_string),
                int(n.deadline_ms),
                int(n.created_ms),
                int(n.updated_ms),
                n.contract.map(int),
                n.body
            ])?;
        if changed != 1 {
            return Err(not_inserted("negotiation", n.id));
        }
        Ok(())
    }

    fn negotiation(&mut self, id: u64) -> StoreResult<Option<NegotiationRow>> {
        self.one(&format!("SELECT {NEGOTIATION_COLUMNS} FROM market_negotiations WHERE id = ?1"), id, negotiation_row)
    }

    fn negotiations_of(&mut self, party: &PartyId, limit: u32) -> StoreResult<Vec<NegotiationRow>> {
        let sql = format!(
            "SELECT {NEGOTIATION_COLUMNS} FROM market_negotiations WHERE seller = ?1 OR buyer = ?1 ORDER BY id LIMIT ?2"
        );
        self.collect(&sql, params![party.to_string(), limit], negotiation_row)
    }

    fn open_negotiations_due(&mut self, deadline_ms: u64, limit: u32) -> StoreResult<Vec<NegotiationRow>> {
        let sql = format!(
            "SELECT {NEGOTIATION_COLUMNS} FROM market_negotiations WHERE state = 'open' AND deadline_ms <= ?1
             ORDER BY deadline_ms, id LIMIT ?2"
        );
        self.collect(&sql, params![int(deadline_ms), limit], negotiation_row)
    }

    fn insert_contract(&mut self, c: &ContractRow) -> StoreResult<()> {
        if self.exists(MarketTable::Contracts, c.id)? {
            return Err(id_in_use("contract", c.id));
        }
        self.tx
            .prepare_cached(&format!(
                "INSERT INTO market_contracts ({CONTRACT_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
            ))?
            .execute(params![
                int(c.id),
                c.offer.map(int),
                c.negotiation.map(int),
                c.seller.to_string(),
                c.buyer.to_string(),
                c.state,
                c.price_micros,
                c.commission_micros,
                int(c.created_ms),
                c.signed_ms.map(int),
                c.terms,
                c.seller_signature,
                c.buyer_signature
            ])?;
        Ok(())
    }

    fn update_contract(&mut self, c: &ContractRow) -> StoreResult<()> {
        let changed = self
            .tx
            .prepare_cached(
                "UPDATE market_contracts SET offer = ?2, negotiation = ?3, seller = ?4, buyer = ?5, state = ?6,
                 price_micros = ?7, commission_micros = ?8, created_ms = ?9, signed_ms = ?10, terms = ?11,
                 seller_signature = ?12, buyer_signature = ?13 WHERE id = ?1",
            )?
            .execute(params![
                int(c.id),
                c.offer.map(int),
                c.negotiation.map(int),
                c.seller.to_string(),
                c.buyer.to_string(),
                c.state,
                c.price_micros,
                c.commission_micros,
                int(c.created_ms),
                c.signed_ms.map(int),
                c.terms,
                c.seller_signature,
                c.buyer_signature
            ])?;
        if changed != 1 {
            return Err(not_inserted("contract", c.id));
        }
        Ok(())
    }

    fn contract(&mut self, id: u64) -> StoreResult<Option<ContractRow>> {
        self.one(&format!("SELECT {CONTRACT_COLUMNS} FROM market_contracts WHERE id = ?1"), id, contract_row)
    }

    fn contracts_of(&mut self, party: &PartyId, limit: u32) -> StoreResult<Vec<ContractRow>> {
        let sql = format!(
            "SELECT {CONTRACT_COLUMNS} FROM market_contracts WHERE seller = ?1 OR buyer = ?1 ORDER BY id LIMIT ?2"
        );
        self.collect(&sql, params![party.to_string(), limit], contract_row)
    }

    fn put_execution(&mut self, e: &ExecutionRow) -> StoreResult<()> {
        self.tx
            .prepare_cached(
                "INSERT INTO market_executions (contract, state, ends_ms, updated_ms, body) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(contract) DO UPDATE SET state = ?2, ends_ms = ?3, updated_ms = ?4, body = ?5",
            )?
            .execute(params![int(e.contract), e.state, int(e.ends_ms), int(e.updated_ms), e.body])?;
        Ok(())
    }

    fn execution(&mut self, contract: u64) -> StoreResult<Option<ExecutionRow>> {
        self.one(
            &format!("SELECT {EXECUTION_COLUMNS} FROM market_executions WHERE contract = ?1"),
            contract,
            execution_row,
        )
    }

    fn executions_due(&mut self, now_ms: u64, limit: u32) -> StoreResult<Vec<ExecutionRow>> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM market_executions
             WHERE (state = 'active' AND ends_ms <= ?1) OR state IN ('delivered', 'failed') ORDER BY contract LIMIT ?2"
        );
        self.collect(&sql, params![int(now_ms), limit], execution_row)
    }

    fn executions_in_state(&mut self, state: &str, after_contract: u64, limit: u32) -> StoreResult<Vec<ExecutionRow>> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM market_executions WHERE state = ?1 AND contract > ?2 ORDER BY contract LIMIT ?3"
        );
        self.collect(&sql, params![state, int(after_contract), limit], execution_row)
    }
}

const EXECUTION_COLUMNS: &str = "contract, state, ends_ms, updated_ms, body";

fn execution_row(row: &Row) -> rusqlite::Result<ExecutionRow> {
    Ok(ExecutionRow {
        contract: uint(row.get(0)?)?,
        state: row.get(1)?,
        ends_ms: uint(row.get(2)?)?,
        updated_ms: uint(row.get(3)?)?,
        body: row.get(4)?,
    })
}
