//! The market's tables in PostgreSQL, as in SQLite (see `crate::market`): parties as their
//! hexadecimal IDs, documents as text, integers as BIGINT, figures as DOUBLE PRECISION.

use idlegrid_types::PartyId;
use postgres::Row;

use super::{PgTx, col, corrupt, get_u32, get_u64, int};
use crate::StoreResult;
use crate::market::*;

pub(super) const MIGRATION: &str = r#"
CREATE TABLE market_offers (
    id BIGINT PRIMARY KEY, owner TEXT NOT NULL, category TEXT NOT NULL, state TEXT NOT NULL,
    quantity DOUBLE PRECISION NOT NULL, value_micros BIGINT NOT NULL, price_micros BIGINT NOT NULL,
    private_share DOUBLE PRECISION NOT NULL, measured TEXT NOT NULL, declared TEXT NOT NULL,
    created_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL, seq BIGINT NOT NULL UNIQUE, body TEXT NOT NULL);
CREATE INDEX market_offers_owner ON market_offers(owner, id);
CREATE TABLE market_requests (
    id BIGINT PRIMARY KEY, requester TEXT NOT NULL, category TEXT NOT NULL, state TEXT NOT NULL,
    created_ms BIGINT NOT NULL, body TEXT NOT NULL);
CREATE INDEX market_requests_requester ON market_requests(requester, id);
CREATE TABLE market_negotiations (
    id BIGINT PRIMARY KEY, offer BIGINT NOT NULL, seller TEXT NOT NULL, buyer TEXT NOT NULL, state TEXT NOT NULL,
    rounds BIGINT NOT NULL, awaiting TEXT, deadline_ms BIGINT NOT NULL, created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL, contract BIGINT, body TEXT NOT NULL);
CREATE INDEX market_negotiations_seller ON market_negotiations(seller, id);
CREATE INDEX market_negotiations_buyer ON market_negotiations(buyer, id);
CREATE INDEX market_negotiations_due ON market_negotiations(deadline_ms) WHERE state = 'open';
CREATE TABLE market_contracts (
    id BIGINT PRIMARY KEY, offer BIGINT, negotiation BIGINT, seller TEXT NOT NULL, buyer TEXT NOT NULL,
    state TEXT NOT NULL, price_micros BIGINT NOT NULL, commission_micros BIGINT NOT NULL,
    created_ms BIGINT NOT NULL, signed_ms BIGINT, terms TEXT NOT NULL, seller_signature TEXT,
    buyer_signature TEXT);
CREATE INDEX market_contracts_seller ON market_contracts(seller, id);
CREATE INDEX market_contracts_buyer ON market_contracts(buyer, id);
"#;

/// Contracts' executions (a later migration: the contracts existed before).
pub(super) const EXECUTION_MIGRATION: &str = r#"
CREATE TABLE market_executions (
    contract BIGINT PRIMARY KEY, state TEXT NOT NULL, ends_ms BIGINT NOT NULL, updated_ms BIGINT NOT NULL,
    body TEXT NOT NULL);
CREATE INDEX market_executions_due ON market_executions(state, ends_ms);
"#;

fn party(row: &Row, i: usize, what: &str) -> StoreResult<PartyId> {
    let text: String = col(row, i, what)?;
    text.parse().map_err(|e| corrupt(what, e))
}

fn opt_party(row: &Row, i: usize, what: &str) -> StoreResult<Option<PartyId>> {
    let text: Option<String> = col(row, i, what)?;
    text.map(|t| t.parse().map_err(|e| corrupt(what, e))).transpose()
}

fn opt_u64(row: &Row, i: usize, what: &str) -> StoreResult<Option<u64>> {
    let value: Option<i64> = col(row, i, what)?;
    value.map(|v| u64::try_from(v).map_err(|_| corrupt(what, format!("{v} is negative")))).transpose()
}

const OFFER_COLUMNS: &str = "id, owner, category, state, quantity, value_micros, price_micros, private_share, measured,
     declared, created_ms, updated_ms, seq, body";

fn offer_row(row: &Row) -> StoreResult<OfferRow> {
    Ok(OfferRow {
        id: get_u64(row, 0, "market_offers.id")?,
        owner: party(row, 1, "market_offers.owner")?,
        category: col(row, 2, "market_offers.category")?,
        state: col(row, 3, "market_offers.state")?,
        quantity: col(row, 4, "market_offers.quantity")?,
        value_micros: col(row, 5, "market_offers.value_micros")?,
        price_micros: col(row, 6, "market_offers.price_micros")?,
        private_share: col(row, 7, "market_offers.private_share")?,
        measured: split_names(&col::<String>(row, 8, "market_offers.measured")?),
        declared: split_names(&col::<String>(row, 9, "market_offers.declared")?),
        created_ms: get_u64(row, 10, "market_offers.created_ms")?,
        updated_ms: get_u64(row, 11, "market_offers.updated_ms")?,
        seq: get_u64(row, 12, "market_offers.seq")?,
        body: col(row, 13, "market_offers.body")?,
    })
}

const REQUEST_COLUMNS: &str = "id, requester, category, state, created_ms, body";

fn request_row(row: &Row) -> StoreResult<RequestRow> {
    Ok(RequestRow {
        id: get_u64(row, 0, "market_requests.id")?,
        requester: party(row, 1, "market_requests.requester")?,
        category: col(row, 2, "market_requests.category")?,
        state: col(row, 3, "market_requests.state")?,
        created_ms: get_u64(row, 4, "market_requests.created_ms")?,
        body: col(row, 5, "market_requests.body")?,
    })
}

const NEGOTIATION_COLUMNS: &str =
    "id, offer, seller, buyer, state, rounds, awaiting, deadline_ms, created_ms, updated_ms, contract, body";

fn negotiation_row(row: &Row) -> StoreResult<NegotiationRow> {
    Ok(NegotiationRow {
        id: get_u64(row, 0, "market_negotiations.id")?,
        offer: get_u64(row, 1, "market_negotiations.offer")?,
        seller: party(row, 2, "market_negotiations.seller")?,
        buyer: party(row, 3, "market_negotiations.buyer")?,
        state: col(row, 4, "market_negotiations.state")?,
        rounds: get_u32(row, 5, "market_negotiations.rounds")?,
        awaiting: opt_party(row, 6, "market_negotiations.awaiting")?,
        deadline_ms: get_u64(row, 7, "market_negotiations.deadline_ms")?,
        created_ms: get_u64(row, 8, "market_negotiations.created_ms")?,
        updated_ms: get_u64(row, 9, "market_negotiations.updated_ms")?,
        contract: opt_u64(row, 10, "market_negotiations.contract")?,
        body: col(row, 11, "market_negotiations.body")?,
    })
}

const CONTRACT_COLUMNS: &str = "id, offer, negotiation, seller, buyer, state, price_micros, commission_micros,
     created_ms, signed_ms, terms, seller_signature, buyer_signature";

fn contract_row(row: &Row) -> StoreResult<ContractRow> {
    Ok(ContractRow {
        id: get_u64(row, 0, "market_contracts.id")?,
        offer: opt_u64(row, 1, "market_contracts.offer")?,
        negotiation: opt_u64(row, 2, "market_contracts.negotiation")?,
        seller: party(row, 3, "market_contracts.seller")?,
        buyer: party(row, 4, "market_contracts.buyer")?,
        state: col(row, 5, "market_contracts.state")?,
        price_micros: col(row, 6, "market_contracts.price_micros")?,
        commission_micros: col(row, 7, "market_contracts.commission_micros")?,
        created_ms: get_u64(row, 8, "market_contracts.created_ms")?,
        signed_ms: opt_u64(row, 9, "market_contracts.signed_ms")?,
        terms: col(row, 10, "market_contracts.terms")?,
        seller_signature: col(row, 11, "market_contracts.seller_signature")?,
        buyer_signature: col(row, 12, "market_contracts.buyer_signature")?,
    })
}

impl PgTx<'_> {
    fn market_exists(&mut self, table: MarketTable, id: u64) -> StoreResult<bool> {
        let sql = format!("SELECT 1 FROM {} WHERE id = $1", table.name());
        Ok(self.query_opt(&sql, &[&int(id)])?.is_some())
    }

    fn next_offer_seq(&mut self) -> StoreResult<u64> {
        let row = self.query_one("SELECT COALESCE(MAX(seq), 0) FROM market_offers", &[])?;
        Ok(get_u64(&row, 0, "MAX(market_offers.seq)")? + 1)
    }
}

impl MarketTx for PgTx<'_> {
    fn next_id(&mut self, table: MarketTable) -> StoreResult<u64> {
        let row = self.query_one(&format!("SELECT COALESCE(MAX(id), 0) FROM {}", table.name()), &[])?;
        Ok(get_u64(&row, 0, "MAX(id)")? + 1)
    }

    fn insert_offer(&mut self, o: &OfferRow) -> StoreResult<u64> {
        if self.market_exists(MarketTable::Offers, o.id)? {
            return Err(id_in_use("offer", o.id));
        }
        let seq = self.next_offer_seq()?;
        self.execute(
            &format!(
                "INSERT INTO market_offers ({OFFER_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
            ),
            &[
                &int(o.id),
                &o.owner.to_string(),
                &o.category,
                &o.state,
                &o.quantity,
                &o.value_micros,
                &o.price_micros,
                &o.private_share,
                &join_names(&o.measured),
                &join_names(&o.declared),
                &int(o.created_ms),
                &int(o.updated_ms),
                &int(seq),
                &o.body,
            ],
        )?;
        Ok(seq)
    }

    fn update_offer(&mut self, o: &OfferRow) -> StoreResult<u64> {
        let seq = self.next_offer_seq()?;
        let changed = self.execute(
            "UPDATE market_offers SET owner = $2, category = $3, state = $4, quantity = $5, value_micros = $6,
             price_micros = $7, private_share = $8, measured = $9, declared = $10, created_ms = $11,
             updated_ms = $12, seq = $13, body = $14 WHERE id = $1",
            &[
                &int(o.id),
                &o.owner.to_string(),
                &o.category,
                &o.state,
                &o.quantity,
                &o.value_micros,
                &o.price_micros,
                &o.private_share,
                &join_names(&o.measured),
                &join_names(&o.declared),
                &int(o.created_ms),
                &int(o.updated_ms),
                &int(seq),
                &o.body,
            ],
        )?;
        if changed != 1 {
            return Err(not_inserted("offer", o.id));
        }
        Ok(seq)
    }

    fn offer(&mut self, id: u64) -> StoreResult<Option<OfferRow>> {
        let sql = format!("SELECT {OFFER_COLUMNS} FROM market_offers WHERE id = $1");
        self.query_opt(&sql, &[&int(id)])?.as_ref().map(offer_row).transpose()
    }

    fn offers_of(&mut self, owner: &PartyId, limit: u32) -> StoreResult<Vec<OfferRow>> {
        let sql = format!("SELECT {OFFER_COLUMNS} FROM market_offers WHERE owner = $1 ORDER BY id LIMIT $2");
        self.collect(&sql, &[&owner.to_string(), &i64::from(limit)], offer_row)
    }

    fn open_offers_of(&mut self, owner: &PartyId) -> StoreResult<u64> {
        let row = self.query_one(
            "SELECT COUNT(*) FROM market_offers WHERE owner = $1 AND state = 'open'",
            &[&owner.to_string()],
        )?;
        get_u64(&row, 0, "COUNT(market_offers)")
    }

    fn open_requests_of(&mut self, requester: &PartyId) -> StoreResult<u64> {
        let row = self.query_one(
            "SELECT COUNT(*) FROM market_requests WHERE requester = $1 AND state = 'open'",
            &[&requester.to_string()],
        )?;
        get_u64(&row, 0, "COUNT(market_requests)")
    }

    fn offers_changed_since(&mut self, seq: u64, limit: u32) -> StoreResult<Vec<OfferRow>> {
        let sql = format!("SELECT {OFFER_COLUMNS} FROM market_offers WHERE seq > $1 ORDER BY seq LIMIT $2");
        self.collect(&sql, &[&int(seq), &i64::from(limit)], offer_row)
    }

    fn insert_request(&mut self, r: &RequestRow) -> StoreResult<()> {
        if self.market_exists(MarketTable::Requests, r.id)? {
            return Err(id_in_use("request", r.id));
        }
        self.execute(
            &format!("INSERT INTO market_requests ({REQUEST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
            &[&int(r.id), &r.requester.to_string(), &r.category, &r.state, &int(r.created_ms), &r.body],
        )?;
        Ok(())
    }

    fn update_request(&mut self, r: &RequestRow) -> StoreResult<()> {
        let changed = self.execute(
            "UPDATE market_requests SET requester = $2, category = $3, state = $4, created_ms = $5, body = $6
             WHERE id = $1",
            &[&int(r.id), &r.requester.to_string(), &r.category, &r.state, &int(r.created_ms), &r.body],
        )?;
        if changed != 1 {
            return Err(not_inserted("request", r.id));
        }
        Ok(())
    }

    fn request(&mut self, id: u64) -> StoreResult<Option<RequestRow>> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM market_requests WHERE id = $1");
        self.query_opt(&sql, &[&int(id)])?.as_ref().map(request_row).transpose()
    }

    fn requests_of(&mut self, requester: &PartyId, limit: u32) -> StoreResult<Vec<RequestRow>> {
        let sql = format!("SELECT {REQUEST_COLUMNS} FROM market_requests WHERE requester = $1 ORDER BY id LIMIT $2");
        self.collect(&sql, &[&requester.to_string(), &i64::from(limit)], request_row)
    }

    fn insert_negotiation(&mut self, n: &NegotiationRow) -> StoreResult<()> {
        if self.market_exists(MarketTable::Negotiations, n.id)? {
            return Err(id_in_use("negotiation", n.id));
        }
        self.execute(
            &format!(
                "INSERT INTO market_negotiations ({NEGOTIATION_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ),
            &[
                &int(n.id),
                &int(n.offer),
                &n.seller.to_string(),
                &n.buyer.to_string(),
                &n.state,
                &i64::from(n.rounds),
                &n.awaiting.as_ref().map(PartyId::to_string),
                &int(n.deadline_ms),
                &int(n.created_ms),
                &int(n.updated_ms),
                &n.contract.map(int),
                &n.body,
            ],
        )?;
        Ok(())
    }

    fn update_negotiation(&mut self, n: &NegotiationRow) -> StoreResult<()> {
        let changed = self.execute(
            "UPDATE market_negotiations SET offer = $2, seller = $3, buyer = $4, state = $5, rounds = $6,
             awaiting = $7, deadline_ms = $8, created_ms = $9, updated_ms = $10, contract = $11, body = $12
             WHERE id = $1",
            &[
                &int(n.id),
                &int(n.offer),
                &n.seller.to_string(),
                &n.buyer.to_string(),
                &n.state,
                &i64::from(n.rounds),
                &n.awaiting.as_ref().map(PartyId::to_string),
                &int(n.deadline_ms),
                &int(n.created_ms),
                &int(n.updated_ms),
                &n.contract.map(int),
                &n.body,
            ],
        )?;
        if changed != 1 {
            return Err(not_inserted("negotiation", n.id));
        }
        Ok(())
    }

    fn negotiation(&mut self, id: u64) -> StoreResult<Option<NegotiationRow>> {
        let sql = format!("SELECT {NEGOTIATION_COLUMNS} FROM market_negotiations WHERE id = $1");
        self.query_opt(&sql, &[&int(id)])?.as_ref().map(negotiation_row).transpose()
    }

    fn negotiations_of(&mut self, party: &PartyId, limit: u32) -> StoreResult<Vec<NegotiationRow>> {
        let sql = format!(
            "SELECT {NEGOTIATION_COLUMNS} FROM market_negotiations WHERE seller = $1 OR buyer = $1 ORDER BY id LIMIT $2"
        );
        self.collect(&sql, &[&party.to_string(), &i64::from(limit)], negotiation_row)
    }

    fn open_negotiations_due(&mut self, deadline_ms: u64, limit: u32) -> StoreResult<Vec<NegotiationRow>> {
        let sql = format!(
            "SELECT {NEGOTIATION_COLUMNS} FROM market_negotiations WHERE state = 'open' AND deadline_ms <= $1
             ORDER BY deadline_ms, id LIMIT $2"
        );
        self.collect(&sql, &[&int(deadline_ms), &i64::from(limit)], negotiation_row)
    }

    fn insert_contract(&mut self, c: &ContractRow) -> StoreResult<()> {
        if self.market_exists(MarketTable::Contracts, c.id)? {
            return Err(id_in_use("contract", c.id));
        }
        self.execute(
            &format!(
                "INSERT INTO market_contracts ({CONTRACT_COLUMNS})
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
            ),
            &[
                &int(c.id),
                &c.offer.map(int),
                &c.negotiation.map(int),
                &c.seller.to_string(),
                &c.buyer.to_string(),
                &c.state,
                &c.price_micros,
                &c.commission_micros,
                &int(c.created_ms),
                &c.signed_ms.map(int),
                &c.terms,
                &c.seller_signature,
                &c.buyer_signature,
            ],
        )?;
        Ok(())
    }

    fn update_contract(&mut self, c: &ContractRow) -> StoreResult<()> {
        let changed = self.execute(
            "UPDATE market_contracts SET offer = $2, negotiation = $3, seller = $4, buyer = $5, state = $6,
             price_micros = $7, commission_micros = $8, created_ms = $9, signed_ms = $10, terms = $11,
             seller_signature = $12, buyer_signature = $13 WHERE id = $1",
            &[
                &int(c.id),
                &c.offer.map(int),
                &c.negotiation.map(int),
                &c.seller.to_string(),
                &c.buyer.to_string(),
                &c.state,
                &c.price_micros,
                &c.commission_micros,
                &int(c.created_ms),
                &c.signed_ms.map(int),
                &c.terms,
                &c.seller_signature,
                &c.buyer_signature,
            ],
        )?;
        if changed != 1 {
            return Err(not_inserted("contract", c.id));
        }
        Ok(())
    }

    fn contract(&mut self, id: u64) -> StoreResult<Option<ContractRow>> {
        let sql = format!("SELECT {CONTRACT_COLUMNS} FROM market_contracts WHERE id = $1");
        self.query_opt(&sql, &[&int(id)])?.as_ref().map(contract_row).transpose()
    }

    fn contracts_of(&mut self, party: &PartyId, limit: u32) -> StoreResult<Vec<ContractRow>> {
        let sql = format!(
            "SELECT {CONTRACT_COLUMNS} FROM market_contracts WHERE seller = $1 OR buyer = $1 ORDER BY id LIMIT $2"
        );
        self.collect(&sql, &[&party.to_string(), &i64::from(limit)], contract_row)
    }

    fn put_execution(&mut self, e: &ExecutionRow) -> StoreResult<()> {
        self.execute(
            "INSERT INTO market_executions (contract, state, ends_ms, updated_ms, body) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (contract) DO UPDATE SET state = $2, ends_ms = $3, updated_ms = $4, body = $5",
            &[&int(e.contract), &e.state, &int(e.ends_ms), &int(e.updated_ms), &e.body],
        )?;
        Ok(())
    }

    fn execution(&mut self, contract: u64) -> StoreResult<Option<ExecutionRow>> {
        let sql = format!("SELECT {EXECUTION_COLUMNS} FROM market_executions WHERE contract = $1");
        self.query_opt(&sql, &[&int(contract)])?.as_ref().map(execution_row).transpose()
    }

    fn executions_due(&mut self, now_ms: u64, limit: u32) -> StoreResult<Vec<ExecutionRow>> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM market_executions
             WHERE (state = 'active' AND ends_ms <= $1) OR state IN ('delivered', 'failed') ORDER BY contract LIMIT $2"
        );
        self.collect(&sql, &[&int(now_ms), &i64::from(limit)], execution_row)
    }

    fn executions_in_state(&mut self, state: &str, after_contract: u64, limit: u32) -> StoreResult<Vec<ExecutionRow>> {
        let sql = format!(
            "SELECT {EXECUTION_COLUMNS} FROM market_executions WHERE state = $1 AND contract > $2 ORDER BY contract LIMIT $3"
        );
        self.collect(&sql, &[&state, &int(after_contract), &i64::from(limit)], execution_row)
    }
}

const EXECUTION_COLUMNS: &str = "contract, state, ends_ms, updated_ms, body";

fn execution_row(row: &Row) -> StoreResult<ExecutionRow> {
    Ok(ExecutionRow {
        contract: get_u64(row, 0, "market_executions.contract")?,
        state: col(row, 1, "market_executions.state")?,
        ends_ms: get_u64(row, 2, "market_executions.ends_ms")?,
        updated_ms: get_u64(row, 3, "market_executions.updated_ms")?,
        body: col(row, 4, "market_executions.body")?,
    })
}
