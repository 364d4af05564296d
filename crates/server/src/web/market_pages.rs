//! The market page's HTML: a party's offers, requests, negotiations and contracts, with the
//! forms that change them, and a search's candidates. Pure: data in, markup out.

use idlegrid_protocol::market::core::negotiation::Status;
use idlegrid_protocol::market::{NegotiationInfo, SearchReply};
use maud::{Markup, html};

use super::WebSession;
use super::market::MarketView;
use super::pages::{action, csrf, layout, utc};

/// What the offer form holds at first: a complete example to edit.
const OFFER_EXAMPLE: &str = r#"{"resource": {"category": "memory", "attributes": {"memory_mb": 4096, "read_ns": 80, "write_ns": 90, "duration_s": 3600}}, "listing": {"price": 2000000}, "negotiation": {"mode": "person"}}"#;

fn status_text(status: &Status) -> String {
    match status {
        Status::Open => "open".into(),
        Status::Agreed { price, .. } => format!("agreed at {price}"),
        Status::Failed { reason, .. } => format!("failed ({reason:?})").to_lowercase(),
    }
}

fn negotiation_row(session: &WebSession, n: &NegotiationInfo) -> Markup {
    let id = n.view.id.0;
    let mine = n.awaiting.as_ref() == Some(&session.party.id);
    let last = n.view.proposals.last().map(|p| p.price.to_string()).unwrap_or_default();
    let side = if n.view.seller == session.party.id { "seller" } else { "buyer" };
    let to = format!("/web/market/negotiations/{id}");
    html! {
        tr id={ "negotiation-" (id) } {
            td.n { (id) }
            td.n { (n.view.offer.0) }
            td { (side) }
            td.n { (n.view.proposals.len()) " / " (n.view.rounds_max) }
            td.n { (last) }
            td { (status_text(&n.view.status)) @if let Some(c) = n.contract { " → contract " (c) } }
            td {
                @if mine {
                    (action(session, &format!("{to}/accept"), "Accept", &format!("accept-{id}")))
                    (action(session, &format!("{to}/reject"), "Reject", &format!("reject-{id}")))
                    form.inline method="post" action={ (to) "/counter" } {
                        (csrf(session))
                        input type="text" name="price" size="8" placeholder="price";
                        button type="submit" id={ "counter-" (id) } { "Counter" }
                    }
                } @else if n.awaiting.is_some() {
                    "waiting for the other side"
                }
            }
        }
    }
}

fn search_form(session: &WebSession) -> Markup {
    html! {
        form #search method="post" action="/web/market/search" {
            (csrf(session))
            select name="category" {
                @for c in ["computing", "memory", "storage", "peripherals", "files", "internet_access", "money"] {
                    option value=(c) { (c) }
                }
            }
            input type="text" name="quantity_min" size="6" placeholder="quantity from";
            input type="text" name="quantity_max" size="6" placeholder="to";
            input type="text" name="price_max" size="8" placeholder="price at most";
            input type="text" name="requirements" size="30" placeholder="requirements (other.memory_mb >= 1024)";
            input type="text" name="rank" size="16" placeholder="rank";
            label { input type="checkbox" name="keep"; " keep as a request" }
            button type="submit" id="search-submit" { "Search" }
        }
    }
}

fn candidates(session: &WebSession, reply: &SearchReply) -> Markup {
    html! {
        h2 { "Candidates" }
        @if let Some(request) = reply.request { p { "Kept as request " (request) "." } }
        @if reply.page.candidates.is_empty() {
            p #no-candidates { "No offer matches (" (reply.page.scanned) " looked at)." }
        } @else {
            table #candidates {
                thead { tr { th.n { "Offer" } th { "Owner" } th.n { "Quantity" } th.n { "Value" } th.n { "Price" } th.n { "Rank" } th { "" } } }
                tbody {
                    @for c in &reply.page.candidates {
                        tr {
                            td.n { (c.offer.0) }
                            td { code { (c.owner.to_string()) } }
                            td.n { (format!("{:.2}", c.quantity)) }
                            td.n { (c.value.to_string()) }
                            td.n { (c.price.to_string()) }
                            td.n { (c.rank.map(|r| format!("{r:.2}")).unwrap_or_default()) }
                            td {
                                form.inline method="post" action={ "/web/market/offers/" (c.offer.0) "/negotiate" } {
                                    (csrf(session))
                                    input type="text" name="price" size="8" placeholder="your price";
                                    button type="submit" id={ "negotiate-" (c.offer.0) } { "Propose" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn offers_and_requests(session: &WebSession, view: &MarketView) -> Markup {
    html! {
        h2 { "Your offers" }
        @if view.offers.is_empty() { p { "None." } } @else {
            table #offers {
                thead { tr { th.n { "Offer" } th { "Category" } th { "State" } th.n { "Quantity" } th.n { "Price" } th { "Negotiates" } th { "" } } }
                tbody {
                    @for o in &view.offers {
                        tr id={ "offer-" (o.id) } {
                            td.n { (o.id) }
                            td { (o.category) }
                            td.state { (o.state) }
                            td.n { (format!("{:.2} {}", o.quantity, o.unit)) }
                            td.n { (o.price.to_string()) }
                            td { (o.negotiation) }
                            td { @if o.state == "open" {
                                (action(session, &format!("/web/market/offers/{}/withdraw", o.id), "Withdraw", &format!("withdraw-offer-{}", o.id)))
                            } }
                        }
                    }
                }
            }
        }
        details {
            summary { "Publish an offer" }
            form #offer method="post" action="/web/market/offers" {
                (csrf(session))
                textarea name="offer" rows="4" cols="100" { (OFFER_EXAMPLE) }
                br;
                button type="submit" id="publish" { "Publish" }
            }
        }
        h2 { "Your requests" }
        @if view.requests.is_empty() { p { "None." } } @else {
            table #requests {
                thead { tr { th.n { "Request" } th { "Category" } th { "State" } th { "Asked" } th { "" } } }
                tbody {
                    @for r in &view.requests {
                        tr id={ "request-" (r.id) } {
                            td.n { (r.id) }
                            td { (r.request.category) }
                            td.state { (r.state) }
                            td { (utc(r.created_ms)) }
                            td { @if r.state == "open" {
                                (action(session, &format!("/web/market/requests/{}/withdraw", r.id), "Withdraw", &format!("withdraw-request-{}", r.id)))
                            } }
                        }
                    }
                }
            }
        }
    }
}

pub fn market(session: &WebSession, view: &MarketView, reply: Option<&SearchReply>) -> Markup {
    layout(
        Some(session),
        "Market",
        html! {
            h2 { "Search" }
            (search_form(session))
            @if let Some(reply) = reply { (candidates(session, reply)) }
            (offers_and_requests(session, view))
            h2 { "Negotiations" }
            @if view.negotiations.is_empty() { p { "None." } } @else {
                table #negotiations {
                    thead { tr { th.n { "Negotiation" } th.n { "Offer" } th { "You are" } th.n { "Proposals" }
                        th.n { "Last price" } th { "State" } th { "Your answer" } } }
                    tbody { @for n in &view.negotiations { (negotiation_row(session, n)) } }
                }
            }
            h2 { "Contracts" }
            @if view.contracts.is_empty() { p { "None." } } @else {
                table #contracts {
                    thead { tr { th.n { "Contract" } th { "State" } th { "Mode" } th.n { "Price" } th { "Starts" } th.n { "Hours" } th { "Signed" } } }
                    tbody {
                        @for c in &view.contracts {
                            tr id={ "contract-" (c.id) } {
                                td.n { (c.id) }
                                td.state { (c.state) }
                                td { (format!("{:?}", c.terms.mode)) }
                                td.n { (c.terms.price.to_string()) }
                                td { (utc(c.terms.starts_ms)) }
                                td.n { (format!("{:.1}", c.terms.duration_ms as f64 / 3_600_000.0)) }
                                td { (c.signed_ms.map(utc).unwrap_or_else(|| "not yet: sign with `idlegrid market sign`".into())) }
                            }
                        }
                    }
                }
            }
        },
    )
}
