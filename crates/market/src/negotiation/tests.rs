//! Negotiations between agents (always ending, agreements within both reservations) and with a
//! person in the loop (every transition and every refusal).

use proptest::prelude::*;
use proptest::strategy::Strategy as _;

use super::Strategy;
use super::*;

fn party(n: u8) -> PartyId {
    PartyId::from_public_key(&[n; 32])
}

fn agent(opening: i64, reservation: i64, strategy: Strategy) -> Negotiator {
    Negotiator::Automatic(Agent { opening: Micros::new(opening), reservation: Micros::new(reservation), strategy })
}

fn setup(seller: Negotiator, buyer: Negotiator) -> Setup {
    Setup {
        id: NegotiationId(1),
        offer: OfferId(7),
        seller: party(1),
        buyer: party(2),
        seller_negotiator: seller,
        buyer_negotiator: buyer,
        opener: Role::Buyer,
        rounds_max: 20,
        deadline_ms: 10_000,
    }
}

#[test]
fn two_agents_with_overlapping_reservations_agree_between_them() {
    let (negotiation, effects) =
        Negotiation::start(setup(agent(2000, 1000, Strategy::LINEAR), agent(500, 1500, Strategy::LINEAR)), 0).unwrap();
    let Status::Agreed { price, .. } = negotiation.status else { panic!("{:?}", negotiation.status) };
    assert!((1000..=1500).contains(&price.as_i64()), "{price}");
    assert_eq!(effects.last(), Some(&Effect::Agreed { price }));
    assert!(negotiation.proposals.len() <= 20);
    // Proposals alternate, the buyer first.
    for (n, proposal) in negotiation.proposals.iter().enumerate() {
        assert_eq!(proposal.by, if n % 2 == 0 { Role::Buyer } else { Role::Seller });
    }
}

#[test]
fn two_agents_without_overlap_fail_when_the_rounds_run_out() {
    let (negotiation, effects) =
        Negotiation::start(setup(agent(2000, 1600, Strategy::CONCEDER), agent(500, 1500, Strategy::CONCEDER)), 0)
            .unwrap();
    assert!(matches!(negotiation.status, Status::Failed { reason: FailureReason::RoundsExhausted, .. }));
    assert_eq!(negotiation.proposals.len(), 20);
    assert_eq!(effects.last(), Some(&Effect::Failed { reason: FailureReason::RoundsExhausted }));
    let error = negotiation.step(&Event::Tick, 1).unwrap_err();
    assert!(matches!(error, NegotiationError::Closed(_)));
}

#[test]
fn a_person_accepts_an_agents_proposal() {
    let seller = Negotiator::Person;
    let (negotiation, effects) =
        Negotiation::start(Setup { opener: Role::Buyer, ..setup(seller, agent(800, 1200, Strategy::LINEAR)) }, 0)
            .unwrap();
    assert_eq!(
        effects,
        vec![
            Effect::Proposed { by: Role::Buyer, price: Micros::new(800) },
            Effect::AwaitingOwner { party: party(1), role: Role::Seller }
        ]
    );
    assert_eq!(negotiation.view().turn, Some(Role::Seller));
    let (agreed, effects) = negotiation.step(&Event::Accept { by: party(1) }, 5).unwrap();
    assert_eq!(agreed.status, Status::Agreed { price: Micros::new(800), at_ms: 5 });
    assert_eq!(effects, vec![Effect::Agreed { price: Micros::new(800) }]);
    // Nothing more can happen to it.
    let counter = Event::Counter { by: party(1), price: Micros::new(900) };
    assert!(
        matches!(agreed.step(&counter, 6).unwrap_err(), NegotiationError::Closed(label) if label.contains("agreed"))
    );
}

#[test]
fn a_person_counters_and_the_agent_answers_in_the_same_step() {
    let (negotiation, _) =
        Negotiation::start(setup(Negotiator::Person, agent(800, 1200, Strategy::LINEAR)), 0).unwrap();
    let (countered, effects) =
        negotiation.step(&Event::Counter { by: party(1), price: Micros::new(1500) }, 10).unwrap();
    assert_eq!(effects[0], Effect::Proposed { by: Role::Seller, price: Micros::new(1500) });
    assert!(matches!(effects[1], Effect::Proposed { by: Role::Buyer, .. }), "{effects:?}");
    assert_eq!(effects[2], Effect::AwaitingOwner { party: party(1), role: Role::Seller });
    // A counter above the agent's next bid gets a new bid; one at or below it is accepted at once.
    let (higher, effects) = countered.step(&Event::Counter { by: party(1), price: Micros::new(900) }, 20).unwrap();
    assert!(
        matches!(effects[1], Effect::Proposed { by: Role::Buyer, price } if price < Micros::new(900)),
        "{effects:?}"
    );
    let (accepted, effects) = higher.step(&Event::Counter { by: party(1), price: Micros::new(850) }, 30).unwrap();
    assert_eq!(accepted.status, Status::Agreed { price: Micros::new(850), at_ms: 30 });
    assert_eq!(effects.last(), Some(&Effect::Agreed { price: Micros::new(850) }));
}

#[test]
fn refused_transitions_say_why_and_change_nothing() {
    let persons = setup(Negotiator::Person, Negotiator::Person);
    let (negotiation, effects) = Negotiation::start(persons.clone(), 0).unwrap();
    assert_eq!(effects, vec![Effect::AwaitingOwner { party: party(2), role: Role::Buyer }]);
    let bid = |price| Event::Counter { by: party(2), price: Micros::new(price) };
    assert_eq!(negotiation.step(&Event::Accept { by: party(2) }, 1).unwrap_err(), NegotiationError::NothingToAccept);
    assert_eq!(
        negotiation.step(&Event::Counter { by: party(1), price: Micros::new(5) }, 1).unwrap_err(),
        NegotiationError::NotYourTurn(Role::Buyer)
    );
    assert_eq!(
        negotiation.step(&Event::Reject { by: party(9) }, 1).unwrap_err(),
        NegotiationError::NotAParty(party(9))
    );
    assert_eq!(negotiation.step(&bid(-1), 1).unwrap_err(), NegotiationError::NegativePrice);
    assert_eq!(negotiation.step(&bid(100), 10_000).unwrap_err(), NegotiationError::Expired);
    let (expired, effects) = negotiation.step(&Event::Tick, 10_000).unwrap();
    assert_eq!(effects, vec![Effect::Failed { reason: FailureReason::DeadlinePassed }]);
    assert!(matches!(expired.step(&bid(100), 10_001).unwrap_err(), NegotiationError::Closed(_)));
    // The buyer's own last proposal is not its to accept; the seller may.
    let (bid_made, _) = negotiation.step(&bid(100), 1).unwrap();
    assert_eq!(
        bid_made.step(&Event::Accept { by: party(2) }, 2).unwrap_err(),
        NegotiationError::NotYourTurn(Role::Seller)
    );
    let (rejected, effects) = bid_made.step(&Event::Reject { by: party(1) }, 2).unwrap();
    assert_eq!(effects, vec![Effect::Failed { reason: FailureReason::Rejected { by: Role::Seller } }]);
    assert!(rejected.is_closed());
    // An automatic side takes no events from a person.
    let (auto, _) = Negotiation::start(setup(Negotiator::Person, agent(800, 1200, Strategy::LINEAR)), 0).unwrap();
    assert_eq!(auto.step(&bid(900), 1).unwrap_err(), NegotiationError::Automatic(Role::Buyer));
}

#[test]
fn the_last_round_leaves_only_accept_or_reject() {
    let persons = Setup { rounds_max: 2, ..setup(Negotiator::Person, Negotiator::Person) };
    let (negotiation, _) = Negotiation::start(persons, 0).unwrap();
    let (one, _) = negotiation.step(&Event::Counter { by: party(2), price: Micros::new(100) }, 1).unwrap();
    let (two, _) = one.step(&Event::Counter { by: party(1), price: Micros::new(300) }, 2).unwrap();
    assert_eq!(two.rounds_left(), 0);
    let error = two.step(&Event::Counter { by: party(2), price: Micros::new(200) }, 3).unwrap_err();
    assert_eq!(error, NegotiationError::NoRoundsLeft);
    let (agreed, _) = two.step(&Event::Accept { by: party(2) }, 3).unwrap();
    assert!(matches!(agreed.status, Status::Agreed { price, .. } if price == Micros::new(300)));
}

#[test]
fn bad_setups_are_refused_and_state_survives_storage() {
    for bad in [
        Setup { rounds_max: 0, ..setup(Negotiator::Person, Negotiator::Person) },
        Setup { deadline_ms: 0, ..setup(Negotiator::Person, Negotiator::Person) },
        Setup { buyer: party(1), ..setup(Negotiator::Person, Negotiator::Person) },
        setup(agent(100, 200, Strategy::LINEAR), Negotiator::Person),
        setup(Negotiator::Person, agent(300, 200, Strategy::LINEAR)),
    ] {
        assert!(matches!(Negotiation::start(bad, 0), Err(NegotiationError::InvalidSetup(_))));
    }
    let (negotiation, _) =
        Negotiation::start(setup(Negotiator::Person, agent(800, 1200, Strategy::TIT_FOR_TAT)), 0).unwrap();
    let json = serde_json::to_string(&negotiation).unwrap();
    let stored: Negotiation = serde_json::from_str(&json).unwrap();
    assert_eq!(stored, negotiation);
    let view = serde_json::to_string(&negotiation.view()).unwrap();
    assert!(!view.contains("reservation") && json.contains("reservation"), "{view}");
}

fn strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
    prop_oneof![
        (0.05f64..20.0).prop_map(|beta| Strategy::TimeDependent { beta }),
        (0.001f64..0.5).prop_map(|min_step| Strategy::TitForTat { min_step }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn agent_negotiations_end_within_their_bound_and_agree_only_between_reservations(
        seller_reservation in 0i64..1_000_000,
        seller_margin in 0i64..1_000_000,
        buyer_reservation in 0i64..1_000_000,
        buyer_margin in 0i64..1_000_000,
        seller_strategy in strategy(),
        buyer_strategy in strategy(),
        rounds_max in 1u32..60,
        seller_opens in any::<bool>(),
        started in 0u64..5000,
    ) {
        let seller = agent(seller_reservation + seller_margin, seller_reservation, seller_strategy);
        let buyer = agent((buyer_reservation - buyer_margin).max(0), buyer_reservation, buyer_strategy);
        let opener = if seller_opens { Role::Seller } else { Role::Buyer };
        let (negotiation, effects) =
            Negotiation::start(Setup { opener, rounds_max, ..setup(seller, buyer) }, started).unwrap();
        prop_assert!(negotiation.is_closed(), "two agents always finish: {:?}", negotiation.status);
        prop_assert!(negotiation.proposals.len() as u32 <= rounds_max);
        prop_assert!(effects.len() as u32 <= rounds_max + 1);
        match negotiation.status {
            Status::Agreed { price, .. } => {
                prop_assert!(price.as_i64() >= seller_reservation && price.as_i64() <= buyer_reservation,
                    "{} outside [{}, {}]", price, seller_reservation, buyer_reservation);
            }
            Status::Failed { reason, .. } => prop_assert_eq!(reason, FailureReason::RoundsExhausted),
            Status::Open => unreachable!(),
        }
        if seller_reservation > buyer_reservation {
            let failed = matches!(negotiation.status, Status::Failed { .. });
            prop_assert!(failed);
        }
    }

    #[test]
    fn person_negotiations_end_by_the_deadline_whatever_the_events(
        events in proptest::collection::vec((0u8..4, 0u8..3, 0i64..2000), 0..40),
    ) {
        let (mut negotiation, _) =
            Negotiation::start(setup(Negotiator::Person, agent(500, 1000, Strategy::LINEAR)), 0).unwrap();
        for (n, (kind, who, price)) in events.into_iter().enumerate() {
            let by = party(who);
            let event = match kind {
                0 => Event::Counter { by, price: Micros::new(price) },
                1 => Event::Accept { by },
                2 => Event::Reject { by },
                _ => Event::Tick,
            };
            if let Ok((next, _)) = negotiation.step(&event, n as u64 * 300) {
                prop_assert!(next.proposals.len() as u32 <= next.setup.rounds_max);
                negotiation = next;
            }
        }
        if !negotiation.is_closed() {
            let (closed, _) = negotiation.step(&Event::Tick, 10_000).unwrap();
            prop_assert!(closed.is_closed());
        }
    }
}
