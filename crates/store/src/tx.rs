//! The domain operations available inside a transaction: [`Tx`] is every domain's trait at
//! once, so that the coordinator holds one `&mut dyn Tx` and calls any of them. Each domain's
//! trait lives in a module of its own, implemented for SQLite and PostgreSQL side by side
//! (`sqlite/<domain>.rs`, `postgres/<domain>.rs`) and checked by `conformance/<domain>.rs`.

use crate::prelude::*;

/// Everything the coordinator may do to durable state, inside one transaction.
pub trait Tx: SessionsTx + SystemTx + ProvidersTx + ElementsTx + JobsTx + AccountsTx {
    /// The market's tables (offers, requests, negotiations, contracts), in this same transaction.
    fn market(&mut self) -> &mut dyn crate::market::MarketTx;
    /// The web manager's sessions and page queries, in this same transaction.
    fn web(&mut self) -> &mut dyn crate::web::WebTx;
    /// Attachments narrowed to one task or a pattern of interim statuses, in this same transaction.
    fn watches(&mut self) -> &mut dyn crate::watches::WatchTx;
    /// What each engine's element cache holds, in this same transaction.
    fn caches(&mut self) -> &mut dyn crate::caches::CacheTx;
    /// Where clients asked results to be delivered, and each delivery, in this same transaction.
    fn deliveries(&mut self) -> &mut dyn crate::deliveries::DeliveryTx;
}
