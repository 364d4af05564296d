//! Helpers of the market's end-to-end tests: parties driving the CLI, numbers read back from
//! its output, balances and contract terms read from the server's own database.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use idlegrid_ledger::AccountId;
use idlegrid_market::contract::Contract;
use idlegrid_store::{AnyStore, Store};

use crate::common::cli;

/// A server, a client home (the buyer) and a provider's data folder (the seller).
pub struct Trade {
    pub url: String,
    pub buyer: PathBuf,
    pub seller: PathBuf,
}

impl Trade {
    fn market(&self, as_seller: bool, args: &[&str]) -> (bool, String, String) {
        let mut all = vec!["market"];
        if as_seller {
            all.extend_from_slice(&["--engine-data", self.seller.to_str().unwrap()]);
        }
        all.extend_from_slice(args);
        cli(&self.buyer, &self.url, &all)
    }

    /// `idlegrid market ARGS` as the buyer; its output.
    pub fn buyer(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.market(false, args);
        assert!(ok, "market {args:?} as the buyer failed: {err}\n{out}");
        out
    }

    /// `idlegrid market --engine-data SELLER ARGS`; its output.
    pub fn seller(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.market(true, args);
        assert!(ok, "market {args:?} as the seller failed: {err}\n{out}");
        out
    }

    /// `idlegrid market ARGS` refused; its error output.
    pub fn refused(&self, as_seller: bool, args: &[&str]) -> String {
        let (ok, out, err) = self.market(as_seller, args);
        assert!(!ok, "market {args:?} should be refused:\n{out}");
        err
    }

    /// The seller offers `resource`, the buyer negotiates up to 10 credits, both sign: the
    /// contract's number.
    pub fn contract(&self, resource: &[&str], price: &str) -> String {
        let mut args = vec!["offer"];
        args.extend_from_slice(resource);
        args.extend_from_slice(&["--price", price]);
        let offer = number(&self.seller(&args), "offer");
        let out = self.buyer(&["negotiate", &offer, "--opening", "0.1", "--reservation", "10", "--sign"]);
        let contract = number(&out, "contract");
        let out = self.seller(&["contracts", &contract, "--sign"]);
        assert!(out.contains("execution active"), "{out}");
        contract
    }
}

/// A client's own `idlegrid market ARGS`; its output.
pub fn market(home: &Path, url: &str, args: &[&str]) -> String {
    let mut all = vec!["market"];
    all.extend_from_slice(args);
    let (ok, out, err) = cli(home, url, &all);
    assert!(ok, "market {args:?} failed: {err}\n{out}");
    out
}

/// The number after `word ` at the start of a line of `out`.
pub fn number(out: &str, word: &str) -> String {
    let prefix = format!("{word} ");
    out.lines()
        .find_map(|line| line.trim_start().strip_prefix(&prefix))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| panic!("no '{word} N' in:\n{out}"))
        .to_string()
}

/// The share a settlement paid, read from `settled N/D delivered`.
pub fn settled_share(out: &str) -> (u64, u64) {
    let rest = out
        .lines()
        .find_map(|line| line.trim_start().strip_prefix("settled "))
        .unwrap_or_else(|| panic!("not settled:\n{out}"));
    let share = rest.split_whitespace().next().unwrap();
    let (n, d) = share.split_once('/').unwrap();
    (n.parse().unwrap(), d.parse().unwrap())
}

/// The server's database, opened beside it.
pub fn store(database: &str, dir: &Path) -> AnyStore {
    AnyStore::open(database, &dir.join("server").join("state.db")).unwrap()
}

/// Balances of `accounts`, with the ledger checked balanced.
pub fn balances(store: &AnyStore, accounts: &[AccountId]) -> Vec<i64> {
    store
        .write(|tx| -> Result<Vec<i64>, idlegrid_store::StoreError> {
            idlegrid_ledger::check_balanced(tx.ledger()).expect("the ledger is balanced");
            Ok(accounts
                .iter()
                .map(|id| tx.ledger().account(id).unwrap().map_or(0, |a| a.balance_posted().unwrap().as_i64()))
                .collect())
        })
        .unwrap()
}

/// A contract's terms as the server keeps them.
pub fn terms(store: &AnyStore, id: &str) -> Contract {
    let id: u64 = id.parse().unwrap();
    let row = store.write(|tx| tx.market().contract(id)).unwrap().expect("the contract is stored");
    serde_json::from_str(&row.terms).unwrap()
}

/// The accounts of a contract's seller, buyer and the platform, in that order.
pub fn accounts(terms: &Contract) -> [AccountId; 3] {
    [AccountId::Party(terms.seller.party.clone()), AccountId::Party(terms.buyer.party.clone()), AccountId::Platform]
}

/// What each account gained between two readings.
pub fn gained(before: &[i64], after: &[i64]) -> Vec<i64> {
    before.iter().zip(after).map(|(b, a)| a - b).collect()
}

/// What settling `terms` for the share `n/d` moves: the seller's, buyer's and platform's
/// gains (the buyer pays what the seller and the platform earn; the rest of its escrow comes
/// back).
pub fn settlement_gains(terms: &Contract, (n, d): (u64, u64)) -> Vec<i64> {
    let plan = idlegrid_market::settlement::plan_settlement(terms, idlegrid_market::settlement::Fraction::new(n, d));
    let paid = |purpose: &str| plan.iter().filter(|t| t.key.ends_with(purpose)).map(|t| t.amount.as_i64()).sum();
    let (seller, platform): (i64, i64) = (paid(":seller"), paid(":platform"));
    vec![seller, -(seller + platform), platform]
}
