//! The market in the web manager: a party's offers, requests, negotiations and contracts, with
//! forms to publish and withdraw offers, search (and keep the search as a request), withdraw
//! requests, and answer the negotiations waiting for this person (accept, reject, counter).
//! Every form goes through the same coordinator calls as the market API and carries the
//! session's CSRF token.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use idlegrid_coordinator::market::Answer;
use idlegrid_coordinator::{Coordinator, CoordinatorError, Party};
use idlegrid_ledger::Micros;
use idlegrid_protocol::market::{
    BuyerTerms, ContractInfo, NegotiateBody, NegotiationInfo, OfferBody, OfferInfo, RequestBody, RequestInfo,
    SearchReply,
};
use idlegrid_store::Tx;

use super::{checked_form, html, market_pages, problem, read, redirect, signed_in};
use crate::AppState;

/// What the market page shows of a party.
pub struct MarketView {
    pub offers: Vec<OfferInfo>,
    pub requests: Vec<RequestInfo>,
    pub negotiations: Vec<NegotiationInfo>,
    pub contracts: Vec<ContractInfo>,
}

fn market_view(c: &Coordinator, tx: &mut dyn Tx, party: &Party) -> Result<MarketView, CoordinatorError> {
    Ok(MarketView {
        offers: c.market_offers_of(tx, party)?,
        requests: c.market_requests_of(tx, party)?,
        negotiations: c.market_negotiations_of(tx, party)?,
        contracts: c.market_contracts_of(tx, party)?,
    })
}

pub(super) async fn market_page(
    State(state): State<Arc<AppState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    match read(&state, &session, |c, tx, _, party, _| market_view(c, tx, party)).await {
        Ok(view) => html(StatusCode::OK, market_pages::market(&session, &view, None)),
        Err(page) => page,
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> &'a str {
    fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.trim()).unwrap_or_default()
}

/// An offer from the form's JSON document (the market API's offer body).
pub fn offer_body(fields: &[(String, String)]) -> Result<OfferBody, String> {
    serde_json::from_str(field(fields, "offer")).map_err(|e| format!("the offer is not a valid offer document: {e}"))
}

/// A search from the form's fields; empty fields ask nothing.
pub fn search_body(fields: &[(String, String)]) -> Result<RequestBody, String> {
    let mut body = serde_json::Map::new();
    body.insert("category".into(), field(fields, "category").into());
    for name in ["quantity_min", "quantity_max"] {
        let text = field(fields, name);
        if !text.is_empty() {
            let number: f64 = text.parse().map_err(|_| format!("{name}: {text:?} is not a number"))?;
            body.insert(name.into(), number.into());
        }
    }
    let price = field(fields, "price_max");
    if !price.is_empty() {
        let micros: Micros = price.parse().map_err(|e| format!("price_max: {e}"))?;
        body.insert("price_max".into(), serde_json::to_value(micros).map_err(|e| e.to_string())?);
    }
    for name in ["requirements", "rank"] {
        let text = field(fields, name);
        if !text.is_empty() {
            body.insert(name.into(), text.into());
        }
    }
    serde_json::from_value(serde_json::Value::Object(body)).map_err(|e| format!("the search is not valid: {e}"))
}

/// A person's answer to a negotiation from its form.
pub fn answer_of(answer: &str, fields: &[(String, String)]) -> Result<Answer, String> {
    match answer {
        "accept" => Ok(Answer::Accept),
        "reject" => Ok(Answer::Reject),
        "counter" => field(fields, "price").parse().map(Answer::Counter).map_err(|e| format!("the price: {e}")),
        _ => Err("no such answer".into()),
    }
}

/// What a market form asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum MarketForm {
    Offer(Box<OfferBody>),
    Search {
        body: Box<RequestBody>,
        keep: bool,
    },
    WithdrawOffer(u64),
    WithdrawRequest(u64),
    /// Open a negotiation over an offer as a person, proposing a price.
    Negotiate {
        offer: u64,
        price: Micros,
    },
    Answer(u64, Answer),
}

/// The form of a path under /web/market and its fields, or what is wrong with it.
pub fn market_form(path: &[&str], fields: &[(String, String)]) -> Result<MarketForm, (StatusCode, String)> {
    let bad = |message: String| (StatusCode::BAD_REQUEST, message);
    let number =
        |text: &str| text.parse::<u64>().map_err(|_| (StatusCode::NOT_FOUND, format!("{text:?} is no number")));
    match path {
        ["offers"] => Ok(MarketForm::Offer(Box::new(offer_body(fields).map_err(bad)?))),
        ["search"] => {
            let keep = field(fields, "keep") == "on";
            Ok(MarketForm::Search { body: Box::new(search_body(fields).map_err(bad)?), keep })
        }
        ["offers", id, "withdraw"] => Ok(MarketForm::WithdrawOffer(number(id)?)),
        ["offers", id, "negotiate"] => {
            let price = field(fields, "price").parse().map_err(|e| bad(format!("the price: {e}")))?;
            Ok(MarketForm::Negotiate { offer: number(id)?, price })
        }
        ["requests", id, "withdraw"] => Ok(MarketForm::WithdrawRequest(number(id)?)),
        ["negotiations", id, answer] => Ok(MarketForm::Answer(number(id)?, answer_of(answer, fields).map_err(bad)?)),
        _ => Err((StatusCode::NOT_FOUND, "no such form".into())),
    }
}

/// Every form of the market page: the change is made, then the page is shown again (a search
/// shows its candidates on it).
pub(super) async fn market_post(
    State(state): State<Arc<AppState>>,
    Path(rest): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (_, session) = match signed_in(&state, &method, &uri, &headers).await {
        Ok(found) => found,
        Err(page) => return page,
    };
    let fields = match checked_form(&session, &headers, body).await {
        Ok(fields) => fields,
        Err(page) => return page,
    };
    let path: Vec<&str> = rest.split('/').collect();
    let form = match market_form(&path, &fields) {
        Ok(form) => form,
        Err((status, message)) => return problem(status, &message, Some(&session)),
    };
    let done = read(&state, &session, move |c, tx, fx, party, now| {
        let found: Option<SearchReply> = match &form {
            MarketForm::Offer(body) => c.market_offer(tx, party, body, None, now, fx).map(|_| None)?,
            MarketForm::Search { body, keep } => Some(c.market_search(tx, party, body, *keep, now, fx)?),
            MarketForm::WithdrawOffer(id) => c.market_withdraw(tx, party, *id, now).map(|_| None)?,
            MarketForm::WithdrawRequest(id) => c.market_withdraw_request(tx, party, *id).map(|_| None)?,
            MarketForm::Negotiate { offer, price } => {
                let body = NegotiateBody {
                    offer: *offer,
                    buyer: BuyerTerms::Person { price: *price },
                    rounds_max: None,
                    deadline_secs: None,
                };
                c.market_negotiate(tx, party, &body, now, fx).map(|_| None)?
            }
            MarketForm::Answer(id, answer) => c.market_answer(tx, party, *id, *answer, now, fx).map(|_| None)?,
        };
        Ok(match found {
            Some(reply) => Some((reply, market_view(c, tx, party)?)),
            None => None,
        })
    })
    .await;
    match done {
        Ok(Some((reply, view))) => html(StatusCode::OK, market_pages::market(&session, &view, Some(&reply))),
        Ok(None) => redirect("/web/market"),
        Err(page) => page,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_search_form_becomes_a_request_body_and_empty_fields_ask_nothing() {
        let body = search_body(&fields(&[
            ("category", "computing"),
            ("quantity_min", "2"),
            ("quantity_max", ""),
            ("price_max", "1.5"),
            ("requirements", "other.cores >= 2"),
        ]))
        .unwrap();
        assert_eq!(body.category, "computing");
        assert_eq!((body.quantity_min, body.quantity_max), (Some(2.0), None));
        assert_eq!(body.price_max, Some(Micros::new(1_500_000)));
        assert!(body.requirements.is_some() && body.rank.is_none());
        assert!(
            search_body(&fields(&[("category", "computing"), ("quantity_min", "two")])).unwrap_err().contains("number")
        );
        assert!(search_body(&fields(&[("category", "computing"), ("requirements", "((")])).is_err());
    }

    #[test]
    fn forms_are_named_by_their_path() {
        let none = fields(&[]);
        assert_eq!(market_form(&["offers", "7", "withdraw"], &none), Ok(MarketForm::WithdrawOffer(7)));
        assert_eq!(market_form(&["requests", "3", "withdraw"], &none), Ok(MarketForm::WithdrawRequest(3)));
        let negotiate = market_form(&["offers", "4", "negotiate"], &fields(&[("price", "2")]));
        assert_eq!(negotiate, Ok(MarketForm::Negotiate { offer: 4, price: Micros::new(2_000_000) }));
        assert_eq!(market_form(&["negotiations", "2", "accept"], &none), Ok(MarketForm::Answer(2, Answer::Accept)));
        let counter = market_form(&["negotiations", "2", "counter"], &fields(&[("price", "0.25")]));
        assert_eq!(counter, Ok(MarketForm::Answer(2, Answer::Counter(Micros::new(250_000)))));
        assert_eq!(market_form(&["negotiations", "x", "accept"], &none).unwrap_err().0, StatusCode::NOT_FOUND);
        assert_eq!(market_form(&["negotiations", "2", "shrug"], &none).unwrap_err().0, StatusCode::BAD_REQUEST);
        assert_eq!(market_form(&["offers"], &fields(&[("offer", "{")])).unwrap_err().0, StatusCode::BAD_REQUEST);
        assert_eq!(market_form(&["elsewhere"], &none).unwrap_err().0, StatusCode::NOT_FOUND);
    }
}
