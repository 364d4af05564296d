//! The bartering market through the HTTP API, as the party registered on a [`Transport`]:
//! offers (valued by the server, measured and declared figures marked), requests and ranked
//! search, negotiations (automatic, or a person's accept, reject and counter), and contracts,
//! which [`Market::sign`] signs with the party's own key over the contract's canonical bytes.

use std::time::Duration;

use idlegrid_ledger::Micros;
use idlegrid_protocol::market::core::contract::SignedContract;
use idlegrid_protocol::market::core::negotiation::Role;
use idlegrid_protocol::market::{
    ContractInfo, CounterBody, DrawBody, DrawInfo, FailBody, MeterBody, NegotiateBody, NegotiationInfo, OfferBody,
    OfferInfo, PeripheralUseBody, PeripheralUseInfo, RegisterBody, RequestBody, RequestInfo, SearchReply, SignBody,
};
use reqwest::Method;

use crate::{ClientError, Transport};

#[path = "market_data.rs"]
mod data;
pub use data::{open_blob, seal_blob};

/// How long one request may take (an automatic negotiation runs to its end in one).
const TIMEOUT: Duration = Duration::from_secs(60);

pub struct Market<'a> {
    transport: &'a Transport,
}

impl<'a> Market<'a> {
    pub fn new(transport: &'a Transport) -> Market<'a> {
        Market { transport }
    }

    /// Register an offer; the answer is its valuation.
    pub async fn offer(&self, body: &OfferBody) -> Result<OfferInfo, ClientError> {
        self.transport.call(Method::POST, "/v1/market/offers", Some(body), TIMEOUT).await
    }

    /// Replace one of this party's open offers.
    pub async fn update_offer(&self, id: u64, body: &OfferBody) -> Result<OfferInfo, ClientError> {
        self.transport.call(Method::POST, &format!("/v1/market/offers/{id}"), Some(body), TIMEOUT).await
    }

    pub async fn withdraw(&self, id: u64) -> Result<OfferInfo, ClientError> {
        self.transport.call::<(), _>(Method::POST, &format!("/v1/market/offers/{id}/withdraw"), None, TIMEOUT).await
    }

    /// This party's offers, every state.
    pub async fn offers(&self) -> Result<Vec<OfferInfo>, ClientError> {
        self.transport.call::<(), _>(Method::GET, "/v1/market/offers", None, TIMEOUT).await
    }

    /// Keep a request; the answer carries its number and ranked candidates.
    pub async fn request(&self, body: &RequestBody) -> Result<SearchReply, ClientError> {
        self.transport.call(Method::POST, "/v1/market/requests", Some(body), TIMEOUT).await
    }

    pub async fn requests(&self) -> Result<Vec<RequestInfo>, ClientError> {
        self.transport.call::<(), _>(Method::GET, "/v1/market/requests", None, TIMEOUT).await
    }

    /// Withdraw one of this party's kept requests.
    pub async fn withdraw_request(&self, id: u64) -> Result<RequestInfo, ClientError> {
        let path = format!("/v1/market/requests/{id}/withdraw");
        self.transport.call::<(), _>(Method::POST, &path, None, TIMEOUT).await
    }

    /// Ranked candidates without keeping the request.
    pub async fn search(&self, body: &RequestBody) -> Result<SearchReply, ClientError> {
        self.transport.call(Method::POST, "/v1/market/search", Some(body), TIMEOUT).await
    }

    /// Ranked candidates for a kept request, now.
    pub async fn search_request(&self, id: u64) -> Result<SearchReply, ClientError> {
        let path = format!("/v1/market/requests/{id}/search");
        self.transport.call::<(), _>(Method::GET, &path, None, TIMEOUT).await
    }

    /// Negotiate over an offer as its buyer.
    pub async fn negotiate(&self, body: &NegotiateBody) -> Result<NegotiationInfo, ClientError> {
        self.transport.call(Method::POST, "/v1/market/negotiations", Some(body), TIMEOUT).await
    }

    pub async fn negotiations(&self) -> Result<Vec<NegotiationInfo>, ClientError> {
        self.transport.call::<(), _>(Method::GET, "/v1/market/negotiations", None, TIMEOUT).await
    }

    pub async fn negotiation(&self, id: u64) -> Result<NegotiationInfo, ClientError> {
        let path = format!("/v1/market/negotiations/{id}");
        self.transport.call::<(), _>(Method::GET, &path, None, TIMEOUT).await
    }

    /// Accept the other side's last proposal.
    pub async fn accept(&self, id: u64) -> Result<NegotiationInfo, ClientError> {
        let path = format!("/v1/market/negotiations/{id}/accept");
        self.transport.call::<(), _>(Method::POST, &path, None, TIMEOUT).await
    }

    pub async fn reject(&self, id: u64) -> Result<NegotiationInfo, ClientError> {
        let path = format!("/v1/market/negotiations/{id}/reject");
        self.transport.call::<(), _>(Method::POST, &path, None, TIMEOUT).await
    }

    pub async fn counter(&self, id: u64, price: Micros) -> Result<NegotiationInfo, ClientError> {
        let path = format!("/v1/market/negotiations/{id}/counter");
        self.transport.call(Method::POST, &path, Some(&CounterBody { price }), TIMEOUT).await
    }

    pub async fn contracts(&self) -> Result<Vec<ContractInfo>, ClientError> {
        self.transport.call::<(), _>(Method::GET, "/v1/market/contracts", None, TIMEOUT).await
    }

    pub async fn contract(&self, id: u64) -> Result<ContractInfo, ClientError> {
        let path = format!("/v1/market/contracts/{id}");
        self.transport.call::<(), _>(Method::GET, &path, None, TIMEOUT).await
    }

    /// Sign a contract with this party's key: its terms are fetched, checked to name this party
    /// and its key, and their canonical bytes signed.
    pub async fn sign(&self, id: u64) -> Result<ContractInfo, ClientError> {
        let info = self.contract(id).await?;
        let me = self.transport.identity();
        let role = if info.terms.seller.party == *me.id() {
            Role::Seller
        } else if info.terms.buyer.party == *me.id() {
            Role::Buyer
        } else {
            return Err(ClientError::Protocol(format!("contract {id} does not name this party")));
        };
        let side = match role {
            Role::Seller => &info.terms.seller,
            Role::Buyer => &info.terms.buyer,
        };
        if side.public_key.0 != me.public_key() {
            return Err(ClientError::Protocol(format!("contract {id} names another key for this party")));
        }
        self.sign_with(id, &me.sign_bytes(&info.terms.signing_bytes())).await
    }

    /// Send a signature made elsewhere (hex Ed25519 over the contract's signing bytes).
    pub async fn sign_with(&self, id: u64, signature: &str) -> Result<ContractInfo, ClientError> {
        let path = format!("/v1/market/contracts/{id}/sign");
        let body = SignBody { signature: signature.to_string() };
        self.transport.call(Method::POST, &path, Some(&body), TIMEOUT).await
    }

    /// As the seller, report a metering record of a contract (numbered from 1; sending the
    /// same record again changes nothing).
    pub async fn meter(&self, id: u64, record: &MeterBody) -> Result<ContractInfo, ClientError> {
        let path = format!("/v1/market/contracts/{id}/meter");
        self.transport.call(Method::POST, &path, Some(record), TIMEOUT).await
    }

    /// As the buyer, confirm a contract delivered in full.
    pub async fn confirm(&self, id: u64) -> Result<ContractInfo, ClientError> {
        let path = format!("/v1/market/contracts/{id}/confirm");
        self.transport.call::<(), _>(Method::POST, &path, None, TIMEOUT).await
    }

    /// Report a contract not delivered: it fails now and is settled pro rata.
    pub async fn fail(&self, id: u64, reason: &str) -> Result<ContractInfo, ClientError> {
        let path = format!("/v1/market/contracts/{id}/fail");
        self.transport.call(Method::POST, &path, Some(&FailBody { reason: reason.to_string() }), TIMEOUT).await
    }

    /// Settle a delivered or failed contract now (the server also does it on its own).
    pub async fn settle(&self, id: u64) -> Result<ContractInfo, ClientError> {
        let path = format!("/v1/market/contracts/{id}/settle");
        self.transport.call::<(), _>(Method::POST, &path, None, TIMEOUT).await
    }

    /// Register a contract both parties signed directly: it starts at once, without commission.
    pub async fn register(&self, contract: &SignedContract) -> Result<ContractInfo, ClientError> {
        let body = RegisterBody { contract: contract.clone() };
        self.transport.call(Method::POST, "/v1/market/contracts/register", Some(&body), TIMEOUT).await
    }

    /// As a provider, sell one of its computing offers to the platform for credits: the
    /// contract comes back signed by the platform; sign it with [`Market::sign`] to start it.
    pub async fn sell_to_platform(&self, offer: u64) -> Result<ContractInfo, ClientError> {
        let path = format!("/v1/market/offers/{offer}/platform");
        self.transport.call::<(), _>(Method::POST, &path, None, TIMEOUT).await
    }

    /// As a seller of sweepstakes entries, draw `winners` among the entries sold, paying each
    /// winner `prize` credits from this party's account.
    pub async fn draw(&self, winners: u32, prize: Micros) -> Result<DrawInfo, ClientError> {
        self.transport.call(Method::POST, "/v1/market/draws", Some(&DrawBody { winners, prize }), TIMEOUT).await
    }

    /// As the buyer, use the peripheral of contract `id` with `input`: the use, numbered,
    /// waiting for the seller's engine.
    pub async fn peripheral_use(&self, id: u64, input: Vec<u8>) -> Result<PeripheralUseInfo, ClientError> {
        let path = format!("/v1/market/contracts/{id}/peripheral");
        self.transport.call(Method::POST, &path, Some(&PeripheralUseBody { input }), TIMEOUT).await
    }

    /// A peripheral use of contract `id` and its outcome.
    pub async fn peripheral_result(&self, id: u64, number: u64) -> Result<PeripheralUseInfo, ClientError> {
        let path = format!("/v1/market/contracts/{id}/peripheral/{number}");
        self.transport.call::<(), _>(Method::GET, &path, None, TIMEOUT).await
    }
}
