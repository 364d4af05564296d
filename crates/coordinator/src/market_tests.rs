//! The market driven through the coordinator: offers valued with measured figures marked,
//! ranked search that follows the offers table, automatic and in-person negotiations, contracts
//! signed by both parties' keys, and every refusal leaving the store as it was.

use idlegrid_ledger::Micros;
use idlegrid_market::negotiation::{FailureReason, Role as Side, Status, Strategy};
use idlegrid_market::{Expr, Provenance};
use idlegrid_protocol::auth::Identity;
use idlegrid_protocol::market::*;
use idlegrid_protocol::messages::NodeState;
use idlegrid_protocol::wire::RegisterRequest;
use idlegrid_store::Store;
use idlegrid_types::*;

use crate::market::Answer;
use crate::tests::World;
use crate::*;

pub(crate) struct Trader {
    pub(crate) party: Party,
    pub(crate) identity: Identity,
}

pub(crate) fn join(world: &mut World, role: Role) -> Trader {
    let identity = Identity::generate();
    let request = RegisterRequest { role, public_key: identity.public_key_hex(), name: "t".into(), csr: None };
    let (c, now) = (&world.coordinator, world.now);
    let response = world.store.write(|tx| c.register(tx, &request, now)).unwrap();
    Trader { party: Party { id: response.id, role }, identity }
}

pub(crate) fn call<R>(
    world: &World,
    work: impl FnOnce(&Coordinator, &mut dyn idlegrid_store::Tx, &mut Effects, u64) -> Result<R, CoordinatorError>,
) -> Result<R, CoordinatorError> {
    let (c, now) = (&world.coordinator, world.now);
    let mut fx = Effects::default();
    world.store.write(|tx| work(c, tx, &mut fx, now))
}

fn offer_body(json: &str) -> OfferBody {
    serde_json::from_str(json).unwrap()
}

pub(crate) fn memory_offer(price: i64, negotiation: &str) -> OfferBody {
    offer_body(&format!(
        r#"{{"resource": {{"category": "memory", "attributes": {{"memory_mb": 4096, "read_ns": 80, "write_ns": 90,
            "duration_s": 3600}}}}, "listing": {{"price": {price}}}, "negotiation": {negotiation}}}"#
    ))
}

pub(crate) fn offer(world: &World, who: &Trader, body: &OfferBody) -> Result<OfferInfo, CoordinatorError> {
    call(world, |c, tx, fx, now| c.market_offer(tx, &who.party, body, None, now, fx))
}

fn memory_request() -> RequestBody {
    serde_json::from_str(r#"{"category": "memory"}"#).unwrap()
}

pub(crate) fn negotiate(
    world: &World,
    buyer: &Trader,
    offer: u64,
    terms: BuyerTerms,
) -> Result<NegotiationInfo, CoordinatorError> {
    let body = NegotiateBody { offer, buyer: terms, rounds_max: Some(10), deadline_secs: None };
    call(world, |c, tx, fx, now| c.market_negotiate(tx, &buyer.party, &body, now, fx))
}

pub(crate) fn automatic(opening: i64, reservation: i64) -> BuyerTerms {
    BuyerTerms::Automatic { opening: Micros::new(opening), reservation: Micros::new(reservation), strategy: None }
}

pub(crate) fn sign(
    world: &World,
    who: &Trader,
    contract: u64,
    key: &Identity,
) -> Result<ContractInfo, CoordinatorError> {
    let info = call(world, |c, tx, _, _| c.market_contract(tx, &who.party, contract)).unwrap();
    let signature = key.sign_bytes(&info.terms.signing_bytes());
    call(world, |c, tx, fx, now| c.market_sign(tx, &who.party, contract, &signature, now, fx))
}

/// Every market row, to compare before and after a refusal.
fn snapshot(world: &World, parties: &[&Trader]) -> String {
    let mut out = String::new();
    for who in parties {
        let offers = call(world, |c, tx, _, _| c.market_offers_of(tx, &who.party)).unwrap();
        let negotiations = call(world, |c, tx, _, _| c.market_negotiations_of(tx, &who.party)).unwrap();
        let contracts = call(world, |c, tx, _, _| c.market_contracts_of(tx, &who.party)).unwrap();
        let requests = call(world, |c, tx, _, _| c.market_requests_of(tx, &who.party)).unwrap();
        out.push_str(&format!("{offers:?}\n{negotiations:?}\n{contracts:?}\n{requests:?}\n"));
    }
    out
}

#[test]
fn offers_of_every_category_are_valued_with_measured_figures_marked() {
    let mut world = World::new();
    let engine = join(&mut world, Role::Provider);
    // The engine's benchmark measured 3 GFLOPS per slot.
    world
        .store
        .write(|tx| -> Result<(), CoordinatorError> {
            tx.upsert_provider(&engine.party.id, NodeState::Active, 2, 2, 1)?;
            let mut profile = ProviderProfile::default();
            let mut average = idlegrid_scheduler::profile::BenchmarkAverage::default();
            average.record(3.0, 1000.0).unwrap();
            profile.cpu_gflops = Some(average);
            tx.set_provider_profile(&engine.party.id, &serde_json::to_string(&profile).unwrap())?;
            Ok(())
        })
        .unwrap();
    let declarations = [
        r#"{"category": "computing", "attributes": {"mflops": 99999, "cores": 2, "duration_s": 3600}}"#,
        r#"{"category": "memory", "attributes": {"memory_mb": 8192, "read_ns": 80, "write_ns": 90, "duration_s": 3600}}"#,
        r#"{"category": "storage", "attributes": {"capacity_mb": 100000, "access_ms": 5, "read_mb_s": 500, "write_mb_s": 400, "duration_s": 86400}}"#,
        r#"{"category": "peripherals", "attributes": {"kind": "printer", "count": 1, "speed": 20, "duration_s": 3600}}"#,
        r#"{"category": "files", "attributes": {"target_user": "researchers", "objective": "folding", "function": "dataset", "environment": "linux", "size_bytes": 1000, "sha256": "abababababababababababababababababababababababababababababababab", "asking_price": 2}}"#,
        r#"{"category": "internet_access", "attributes": {"speed_mbit_s": 100, "availability": 0.99, "duration_s": 3600}}"#,
        r#"{"category": "money", "attributes": {"kind": "cash", "amount": 25}}"#,
    ];
    for (declaration, category) in declarations.iter().zip(idlegrid_market::Category::ALL) {
        let body = offer_body(&format!(r#"{{"resource": {declaration}}}"#));
        let info = offer(&world, &engine, &body).unwrap();
        assert_eq!(info.category, category.name());
        assert_eq!(info.state, "open");
        assert!(info.valuation.credits >= Micros::ZERO);
        assert!(!info.declared.is_empty() || !info.measured.is_empty());
        if category == idlegrid_market::Category::Computing {
            // 3 GFLOPS x 2 cores, measured, beats the declared 99,999 MFLOPS.
            assert_eq!(info.measured, vec!["mflops"]);
            assert_eq!(info.quantity, 6000.0);
            let mflops = info.valuation.figures.iter().find(|f| f.attribute == "mflops").unwrap();
            assert_eq!((mflops.value, mflops.provenance), (6000.0, Provenance::Measured));
            assert!(info.declared.contains(&"cores".to_string()));
        } else {
            assert!(info.measured.is_empty(), "{category}");
            assert!(info.valuation.figures.iter().all(|f| f.provenance == Provenance::Declared));
        }
    }
    let listed = call(&world, |c, tx, _, _| c.market_offers_of(tx, &engine.party)).unwrap();
    assert_eq!(listed.len(), 7);
    // A client's figures are its own declarations.
    let client = join(&mut world, Role::Client);
    let body = offer_body(&format!(r#"{{"resource": {}}}"#, declarations[0]));
    assert!(offer(&world, &client, &body).unwrap().measured.is_empty());
}

#[test]
fn a_request_finds_ranked_candidates_and_the_private_share_is_never_offered() {
    let mut world = World::new();
    let seller = join(&mut world, Role::Provider);
    let other = join(&mut world, Role::Provider);
    let buyer = join(&mut world, Role::Client);
    let private = offer_body(
        r#"{"resource": {"category": "memory", "private_share": 0.75,
            "attributes": {"memory_mb": 8192, "read_ns": 80, "write_ns": 90, "duration_s": 3600}}}"#,
    );
    let small = offer(&world, &seller, &private).unwrap();
    assert_eq!((small.quantity, small.private_share), (2048.0, 0.75), "only the offerable quarter is listed");
    let big = offer(&world, &other, &memory_offer(9_000, r#"{"mode": "person"}"#)).unwrap();
    // Asking for more than the offerable part is refused.
    let greedy = offer_body(
        r#"{"resource": {"category": "memory", "private_share": 0.75,
            "attributes": {"memory_mb": 8192, "read_ns": 80, "write_ns": 90, "duration_s": 3600}},
            "listing": {"quantity": 4096}}"#,
    );
    let error = offer(&world, &seller, &greedy).unwrap_err();
    assert!(error.report.message.contains("listing.quantity") && error.report.message.contains("offerable"), "{error}");

    let mut request = memory_request();
    request.rank = Some(Expr::parse("other.memory_mb").unwrap());
    let reply = call(&world, |c, tx, fx, now| c.market_search(tx, &buyer.party, &request, true, now, fx)).unwrap();
    let ids: Vec<u64> = reply.page.candidates.iter().map(|c| c.offer.0).collect();
    assert_eq!(ids, vec![big.id, small.id], "ranked by memory, largest first");
    assert!(reply.page.candidates.iter().all(|c| c.quantity <= 4096.0));
    let kept = reply.request.unwrap();
    // The index follows the table: a withdrawn offer is no candidate any more.
    call(&world, |c, tx, _, now| c.market_withdraw(tx, &other.party, big.id, now)).unwrap();
    let again = call(&world, |c, tx, fx, now| c.market_search_again(tx, &buyer.party, kept, now, fx)).unwrap();
    assert_eq!(again.page.candidates.iter().map(|c| c.offer.0).collect::<Vec<_>>(), vec![small.id]);
    // A requirement over the offers filters them.
    let mut strict = memory_request();
    strict.requirements = Some(Expr::parse("other.memory_mb >= 4096").unwrap());
    let none = call(&world, |c, tx, fx, now| c.market_search(tx, &buyer.party, &strict, false, now, fx)).unwrap();
    assert!(none.page.candidates.is_empty());
    // A fresh coordinator rebuilds the index from the store.
    let rebuilt = world.store.write(|tx| Coordinator::new(CoordinatorConfig::default(), tx)).unwrap();
    assert_eq!(rebuilt.market_offers_indexed(), 1);
}

#[test]
fn an_automatic_negotiation_ends_in_a_contract_signed_by_both_keys() {
    let mut world = World::new();
    let seller = join(&mut world, Role::Provider);
    let buyer = join(&mut world, Role::Client);
    let listed =
        offer(&world, &seller, &memory_offer(10_000, r#"{"mode": "automatic", "reservation": 6000}"#)).unwrap();
    let negotiation = negotiate(&world, &buyer, listed.id, automatic(2_000, 8_000)).unwrap();
    let Status::Agreed { price, .. } = negotiation.view.status else { panic!("{negotiation:?}") };
    assert!(price >= Micros::new(6_000) && price <= Micros::new(8_000), "between both reservations: {price}");
    assert!(negotiation.view.proposals.len() >= 2);
    let contract = negotiation.contract.unwrap();
    let offers = call(&world, |c, tx, _, _| c.market_offers_of(tx, &seller.party)).unwrap();
    assert_eq!(offers[0].state, "agreed", "the offer left the market with the agreement");
    let search = call(&world, |c, tx, fx, now| c.market_search(tx, &buyer.party, &memory_request(), false, now, fx));
    assert!(search.unwrap().page.candidates.is_empty());

    // A signature made with another key is refused and changes nothing.
    let stranger = Identity::generate();
    let before = snapshot(&world, &[&seller, &buyer]);
    let error = sign(&world, &buyer, contract, &stranger).unwrap_err();
    assert_eq!(error.kind, ErrorKind::Invalid);
    assert!(error.report.message.contains("buyer's signature does not match"), "{error}");
    assert_eq!(snapshot(&world, &[&seller, &buyer]), before);

    let half = sign(&world, &buyer, contract, &buyer.identity).unwrap();
    assert_eq!(half.state, "awaiting_signatures");
    assert_eq!(sign(&world, &buyer, contract, &buyer.identity).unwrap(), half, "the same signature again is harmless");
    let signed = sign(&world, &seller, contract, &seller.identity).unwrap();
    assert_eq!(signed.state, "signed");
    assert_eq!(signed.terms.price, price);
    assert_eq!(signed.terms.commission, Micros::new((price.as_i64() as f64 * 0.02).round() as i64));
    idlegrid_market::SignedContract {
        contract: signed.terms.clone(),
        seller_signature: signed.seller_signature.clone().unwrap(),
        buyer_signature: signed.buyer_signature.clone().unwrap(),
    }
    .verify()
    .unwrap();
    let offers = call(&world, |c, tx, _, _| c.market_offers_of(tx, &seller.party)).unwrap();
    assert_eq!(offers[0].state, "contracted");
    assert_eq!(call(&world, |c, tx, _, _| c.market_contracts_of(tx, &seller.party)).unwrap(), vec![signed]);
}

#[test]
fn an_automatic_negotiation_without_overlap_fails_and_the_offer_stays() {
    let mut world = World::new();
    let seller = join(&mut world, Role::Provider);
    let buyer = join(&mut world, Role::Client);
    let listed =
        offer(&world, &seller, &memory_offer(10_000, r#"{"mode": "automatic", "reservation": 9000}"#)).unwrap();
    let terms = BuyerTerms::Automatic {
        opening: Micros::new(1_000),
        reservation: Micros::new(5_000),
        strategy: Some(Strategy::BOULWARE),
    };
    let negotiation = negotiate(&world, &buyer, listed.id, terms).unwrap();
    assert!(
        matches!(
            negotiation.view.status,
            Status::Failed { reason: FailureReason::RoundsExhausted | FailureReason::Rejected { .. }, .. }
        ),
        "{negotiation:?}"
    );
    assert!(negotiation.view.proposals.len() <= 10, "within its bound");
    assert_eq!(negotiation.contract, None);
    let offers = call(&world, |c, tx, _, _| c.market_offers_of(tx, &seller.party)).unwrap();
    assert_eq!(offers[0].state, "open");
    assert!(call(&world, |c, tx, _, _| c.market_contracts_of(tx, &buyer.party)).unwrap().is_empty());
}

#[test]
fn a_person_accepts_or_counters_and_a_closed_negotiation_refuses_counters() {
    let mut world = World::new();
    let seller = join(&mut world, Role::Provider);
    let buyer = join(&mut world, Role::Client);
    let first = offer(&world, &seller, &memory_offer(10_000, r#"{"mode": "person"}"#)).unwrap();
    let second = offer(&world, &seller, &memory_offer(12_000, r#"{"mode": "person"}"#)).unwrap();

    // The buyer proposes in person; the proposal waits for the seller.
    let open = negotiate(&world, &buyer, first.id, BuyerTerms::Person { price: Micros::new(7_000) }).unwrap();
    assert_eq!(open.view.status, Status::Open);
    assert_eq!(open.awaiting.as_ref(), Some(&seller.party.id));
    let id = open.view.id.0;
    // The buyer cannot answer its own proposal.
    let error = call(&world, |c, tx, fx, now| c.market_answer(tx, &buyer.party, id, Answer::Accept, now, fx));
    assert_eq!(error.unwrap_err().kind, ErrorKind::Conflict);
    let accepted =
        call(&world, |c, tx, fx, now| c.market_answer(tx, &seller.party, id, Answer::Accept, now, fx)).unwrap();
    assert_eq!(accepted.view.status, Status::Agreed { price: Micros::new(7_000), at_ms: world.now });
    assert!(accepted.contract.is_some());
    assert_eq!(accepted.awaiting, None);

    // A counter on the closed negotiation is refused and changes nothing.
    let before = snapshot(&world, &[&seller, &buyer]);
    let error =
        call(&world, |c, tx, fx, now| c.market_answer(tx, &buyer.party, id, Answer::Counter(Micros::new(1)), now, fx))
            .unwrap_err();
    assert_eq!(error.kind, ErrorKind::Conflict);
    assert!(error.report.message.contains("closed"), "{error}");
    assert_eq!(snapshot(&world, &[&seller, &buyer]), before);

    // Against an automatic buyer, the seller counters and the buyer's agent answers at once.
    let other = negotiate(&world, &buyer, second.id, automatic(5_000, 11_000)).unwrap();
    assert_eq!(other.awaiting.as_ref(), Some(&seller.party.id));
    let other_id = other.view.id.0;
    let countered = call(&world, |c, tx, fx, now| {
        c.market_answer(tx, &seller.party, other_id, Answer::Counter(Micros::new(10_500)), now, fx)
    })
    .unwrap();
    assert!(countered.view.proposals.iter().any(|p| p.by == Side::Seller && p.price == Micros::new(10_500)));
    assert_eq!(countered.view.proposals.len(), 3, "buyer's opening, seller's counter, buyer's agent's answer");
}

#[test]
fn bad_input_is_refused_with_the_field_named_and_nothing_stored() {
    let mut world = World::new();
    let seller = join(&mut world, Role::Provider);
    let buyer = join(&mut world, Role::Client);
    let before = snapshot(&world, &[&seller, &buyer]);
    let refusals = [
        (r#"{"resource": {"category": "gold", "attributes": {}}}"#, "unknown category 'gold'"),
        (
            r#"{"resource": {"category": "memory", "attributes": {"memory_mb": -5, "read_ns": 80, "write_ns": 90, "duration_s": 3600}}}"#,
            "memory.memory_mb is -5: it must not be negative",
        ),
        (
            r#"{"resource": {"category": "memory", "attributes": {"memory_mb": "NaN", "read_ns": 80, "write_ns": 90, "duration_s": 3600}}}"#,
            "expected a number",
        ),
        (
            r#"{"resource": {"category": "memory", "private_share": 1, "attributes": {"memory_mb": 5, "read_ns": 80, "write_ns": 90, "duration_s": 3600}}}"#,
            "a private share is never offered",
        ),
        (
            r#"{"resource": {"category": "memory", "attributes": {"memory_mb": 5, "read_ns": 80, "write_ns": 90, "duration_s": 3600}}, "listing": {"quantity": -1}}"#,
            "listing.quantity",
        ),
    ];
    for (json, expected) in refusals {
        let error = offer(&world, &seller, &offer_body(json)).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Invalid, "{json}");
        assert!(error.report.message.contains(expected), "{json}: {error}");
    }
    let mut request = memory_request();
    request.category = "gold".into();
    let error = call(&world, |c, tx, fx, now| c.market_search(tx, &buyer.party, &request, true, now, fx)).unwrap_err();
    assert!(error.report.message.contains("unknown category 'gold'"), "{error}");
    let mut request = memory_request();
    request.quantity_min = Some(-1.0);
    let error = call(&world, |c, tx, fx, now| c.market_search(tx, &buyer.party, &request, true, now, fx)).unwrap_err();
    assert!(error.report.message.contains("quantity_min"), "{error}");
    // A malformed expression is refused where the body is read, with its column.
    let error = serde_json::from_str::<RequestBody>(r#"{"category": "memory", "requirements": "other.memory_mb >= "}"#)
        .unwrap_err()
        .to_string();
    assert!(error.contains("column"), "{error}");
    let oversized =
        format!(r#"{{"category": "memory", "requirements": "{}"}}"#, "other.memory_mb > 1 && ".repeat(400) + "true");
    assert!(serde_json::from_str::<RequestBody>(&oversized).is_err());
    assert_eq!(snapshot(&world, &[&seller, &buyer]), before, "nothing was stored");
}

#[test]
fn an_owner_updates_or_withdraws_only_its_open_offers() {
    let mut world = World::new();
    let seller = join(&mut world, Role::Provider);
    let other = join(&mut world, Role::Client);
    let listed = offer(&world, &seller, &memory_offer(10_000, r#"{"mode": "person"}"#)).unwrap();
    let bigger = offer_body(
        r#"{"resource": {"category": "memory", "attributes": {"memory_mb": 8192, "read_ns": 80, "write_ns": 90,
            "duration_s": 3600}}}"#,
    );
    let updated = call(&world, |c, tx, fx, now| c.market_offer(tx, &seller.party, &bigger, Some(listed.id), now, fx));
    let updated = updated.unwrap();
    assert_eq!((updated.id, updated.quantity, updated.negotiation.as_str()), (listed.id, 8192.0, "automatic"));
    assert!(updated.valuation.credits > listed.valuation.credits);
    let search = call(&world, |c, tx, fx, now| c.market_search(tx, &other.party, &memory_request(), false, now, fx));
    assert_eq!(search.unwrap().page.candidates[0].quantity, 8192.0, "the index follows the update");
    // Not while a negotiation over it is under way.
    let negotiating = NegotiateBody {
        offer: listed.id,
        buyer: BuyerTerms::Person { price: Micros::new(1) },
        rounds_max: None,
        deadline_secs: None,
    };
    let buyer = join(&mut world, Role::Client);
    let open = call(&world, |c, tx, fx, now| c.market_negotiate(tx, &buyer.party, &negotiating, now, fx)).unwrap();
    let error = call(&world, |c, tx, fx, now| c.market_offer(tx, &seller.party, &bigger, Some(listed.id), now, fx));
    assert!(error.unwrap_err().report.message.contains("being negotiated"));
    call(&world, |c, tx, fx, now| c.market_answer(tx, &buyer.party, open.view.id.0, Answer::Reject, now, fx)).unwrap();
    // Another party's offer is not found; a withdrawn one cannot be updated or withdrawn again.
    let error = call(&world, |c, tx, fx, now| c.market_offer(tx, &other.party, &bigger, Some(listed.id), now, fx));
    assert_eq!(error.unwrap_err().kind, ErrorKind::NotFound);
    call(&world, |c, tx, _, now| c.market_withdraw(tx, &seller.party, listed.id, now)).unwrap();
    let error = call(&world, |c, tx, fx, now| c.market_offer(tx, &seller.party, &bigger, Some(listed.id), now, fx));
    assert_eq!(error.unwrap_err().kind, ErrorKind::Conflict);
    let error = call(&world, |c, tx, _, now| c.market_withdraw(tx, &seller.party, listed.id, now));
    assert_eq!(error.unwrap_err().kind, ErrorKind::Conflict);
    let search = call(&world, |c, tx, fx, now| c.market_search(tx, &other.party, &memory_request(), false, now, fx));
    assert!(search.unwrap().page.candidates.is_empty());
}

#[test]
fn a_party_has_a_bounded_number_of_open_offers() {
    let mut config = CoordinatorConfig::default();
    config.market.open_offers_per_party_max = 2;
    let mut world = World::with(config);
    let seller = join(&mut world, Role::Provider);
    let first = offer(&world, &seller, &memory_offer(10, r#"{"mode": "person"}"#)).unwrap();
    offer(&world, &seller, &memory_offer(10, r#"{"mode": "person"}"#)).unwrap();
    let error = offer(&world, &seller, &memory_offer(10, r#"{"mode": "person"}"#)).unwrap_err();
    assert_eq!(error.kind, ErrorKind::Conflict);
    assert!(error.report.message.contains("2 open offers"), "{error}");
    // Updating one is no new offer; withdrawing one makes room.
    call(&world, |c, tx, fx, now| {
        c.market_offer(tx, &seller.party, &memory_offer(20, r#"{"mode": "person"}"#), Some(first.id), now, fx)
    })
    .unwrap();
    call(&world, |c, tx, _, now| c.market_withdraw(tx, &seller.party, first.id, now)).unwrap();
    offer(&world, &seller, &memory_offer(10, r#"{"mode": "person"}"#)).unwrap();
}

#[test]
fn maintenance_closes_a_negotiation_past_its_deadline() {
    let mut world = World::new();
    let seller = join(&mut world, Role::Provider);
    let buyer = join(&mut world, Role::Client);
    let listed = offer(&world, &seller, &memory_offer(10_000, r#"{"mode": "person"}"#)).unwrap();
    let body = NegotiateBody {
        offer: listed.id,
        buyer: BuyerTerms::Person { price: Micros::new(5_000) },
        rounds_max: None,
        deadline_secs: Some(60),
    };
    let open = call(&world, |c, tx, fx, now| c.market_negotiate(tx, &buyer.party, &body, now, fx)).unwrap();
    let id = open.view.id.0;
    assert_eq!(world.maintain().negotiations_closed, 0, "not due yet");
    world.now += 60_000;
    // Past the deadline an answer is refused, and maintenance closes the negotiation.
    let late = call(&world, |c, tx, fx, now| c.market_answer(tx, &seller.party, id, Answer::Accept, now, fx));
    assert_eq!(late.unwrap_err().kind, ErrorKind::Conflict);
    assert_eq!(world.maintain().negotiations_closed, 1);
    let closed = call(&world, |c, tx, _, _| c.market_negotiation(tx, &buyer.party, id)).unwrap();
    assert!(matches!(closed.view.status, Status::Failed { reason: FailureReason::DeadlinePassed, .. }), "{closed:?}");
    assert_eq!(closed.awaiting, None);
    assert_eq!(world.maintain().negotiations_closed, 0, "closed once");
    // The offer is still on the market.
    let offers = call(&world, |c, tx, _, _| c.market_offers_of(tx, &seller.party)).unwrap();
    assert_eq!(offers[0].state, "open");
}

#[test]
fn parties_are_notified_of_proposals_agreements_and_signed_contracts() {
    let mut world = World::new();
    let seller = join(&mut world, Role::Provider);
    let buyer = join(&mut world, Role::Client);
    let settings = crate::money::NoticeSettings {
        webhook_url: Some("https://example.org/hook".into()),
        webhook_secret: None,
        email: None,
    };
    call(&world, |c, tx, _, _| c.set_notices(tx, &seller.party.id, settings)).unwrap();
    let notices = |world: &World| -> Vec<crate::money::Notice> {
        world
            .store
            .write(|tx| tx.due_notices(u64::MAX, 100))
            .unwrap()
            .iter()
            .filter(|row| row.client == seller.party.id)
            .map(|row| serde_json::from_str(&row.body).unwrap())
            .collect()
    };
    let listed = offer(&world, &seller, &memory_offer(10_000, r#"{"mode": "person"}"#)).unwrap();
    let open = negotiate(&world, &buyer, listed.id, BuyerTerms::Person { price: Micros::new(7_000) }).unwrap();
    let sent = notices(&world);
    assert_eq!(sent.iter().map(|n| n.kind.as_str()).collect::<Vec<_>>(), vec!["market_awaiting"]);
    assert!(sent[0].subject().contains("waits for your answer (last proposal 0.007000)"), "{}", sent[0].subject());
    assert_eq!(sent[0].job, None);
    let id = open.view.id.0;
    let agreed =
        call(&world, |c, tx, fx, now| c.market_answer(tx, &seller.party, id, Answer::Accept, now, fx)).unwrap();
    let contract = agreed.contract.unwrap();
    sign(&world, &buyer, contract, &buyer.identity).unwrap();
    sign(&world, &seller, contract, &seller.identity).unwrap();
    let kinds: Vec<String> = notices(&world).into_iter().map(|n| n.kind).collect();
    assert_eq!(
        kinds,
        vec!["market_awaiting", "market_agreed", "market_signed", "market_started"],
        "the buyer chose no channel; the seller hears the contract start"
    );
    // The contract fails and is settled: the seller hears both.
    call(&world, |c, tx, _, now| c.market_fail(tx, &buyer.party, contract, "not delivered", now)).unwrap();
    call(&world, |c, tx, _, now| c.market_settle(tx, &seller.party, contract, now)).unwrap();
    let kinds: Vec<String> = notices(&world).into_iter().map(|n| n.kind).collect();
    assert_eq!(kinds[4..], ["market_failed", "market_settled"]);
}
