//! Negotiation (D5; the seed's "automatic negotiation algorithm or negotiation algorithm with
//! human intervention", FIG.-9D): alternating offers on a price, in the manner of Rubinstein's
//! bargaining game, between a seller (who gives the offered resource) and a buyer (who pays).
//!
//! Each side is either an automatic [`Agent`] (opening price, private reservation price,
//! concession [`Strategy`]) or a **person**, whose proposals wait for them to accept, reject or
//! counter. The state is a plain serializable value, stored by the server; every change is a
//! pure function `Negotiation::step(event, now_ms) -> (Negotiation, effects)`: the server loads
//! the state, steps it, stores the new state and turns the effects into notices, all in one
//! transaction.
//!
//! **Ending.** A negotiation has at most `rounds_max` proposals and a deadline. After the last
//! allowed proposal the other side may only accept or reject; an automatic side then accepts
//! what lies within its reservation and fails the negotiation otherwise. An event at or after
//! the deadline is refused (`Expired`) and `Event::Tick` closes the negotiation as failed, so
//! every negotiation ends, in agreement or failure, within its bound. A closed negotiation
//! refuses every event with [`NegotiationError::Closed`].

mod strategy;

use idlegrid_ledger::Micros;
use idlegrid_types::PartyId;
use serde::{Deserialize, Serialize};

use crate::offer::OfferId;
use strategy::Moment;
pub use strategy::{Agent, Strategy};

/// Most proposals a negotiation may have.
pub const ROUNDS_MAX: u32 = 1000;

/// A negotiation's identity, given by the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NegotiationId(pub u64);

/// The two sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Seller,
    Buyer,
}

impl Role {
    pub fn other(self) -> Role {
        match self {
            Role::Seller => Role::Buyer,
            Role::Buyer => Role::Seller,
        }
    }
}

/// Who speaks for a side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Negotiator {
    Automatic(Agent),
    Person,
}

/// One proposal: a price offered by one side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Proposal {
    pub by: Role,
    pub price: Micros,
    pub at_ms: u64,
}

/// Why a negotiation failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FailureReason {
    Rejected { by: Role },
    RoundsExhausted,
    DeadlinePassed,
}

/// Where a negotiation stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Status {
    Open,
    Agreed { price: Micros, at_ms: u64 },
    Failed { reason: FailureReason, at_ms: u64 },
}

/// What starts a negotiation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Setup {
    pub id: NegotiationId,
    pub offer: OfferId,
    pub seller: PartyId,
    pub buyer: PartyId,
    pub seller_negotiator: Negotiator,
    pub buyer_negotiator: Negotiator,
    /// Which side proposes first.
    pub opener: Role,
    pub rounds_max: u32,
    pub deadline_ms: u64,
}

/// A negotiation: its setup, its proposals and its status. Stored as it is; send
/// [`Negotiation::view`] to parties, which leaves out the agents' reservation prices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Negotiation {
    pub setup: Setup,
    pub started_ms: u64,
    pub proposals: Vec<Proposal>,
    pub status: Status,
}

/// What a party sends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// Propose a price (the first proposal, or a counter-offer to the last one).
    Counter { by: PartyId, price: Micros },
    /// Accept the other side's last proposal.
    Accept { by: PartyId },
    /// End the negotiation without agreement.
    Reject { by: PartyId },
    /// Let automatic sides move and close the negotiation if its deadline passed (the
    /// server's maintenance pass sends it).
    Tick,
}

/// What the server must do after a step: notify, wait for a person, record the outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Effect {
    Proposed {
        by: Role,
        price: Micros,
    },
    /// A person must accept, reject or counter.
    AwaitingOwner {
        party: PartyId,
        role: Role,
    },
    /// Make the contract at this price (both parties are notified).
    Agreed {
        price: Micros,
    },
    Failed {
        reason: FailureReason,
    },
}

/// Why an event is refused. The negotiation is unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NegotiationError {
    #[error("this negotiation is closed ({0}): start a new one")]
    Closed(String),
    #[error("the deadline of this negotiation has passed: it is closed as failed")]
    Expired,
    #[error("{0} is not a party to this negotiation")]
    NotAParty(PartyId),
    #[error("it is the {0:?}'s turn: wait for the other side's proposal")]
    NotYourTurn(Role),
    #[error("the {0:?}'s side is negotiated automatically: it does not take events from a person")]
    Automatic(Role),
    #[error("there is no proposal from the other side to accept")]
    NothingToAccept,
    #[error("the last round has been played: accept or reject the last proposal")]
    NoRoundsLeft,
    #[error("price must not be negative")]
    NegativePrice,
    #[error("{0}")]
    InvalidSetup(String),
}

/// A negotiation as a party sees it: everything but the agents' reservations and strategies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NegotiationView {
    pub id: NegotiationId,
    pub offer: OfferId,
    pub seller: PartyId,
    pub buyer: PartyId,
    pub rounds_max: u32,
    pub deadline_ms: u64,
    pub proposals: Vec<Proposal>,
    pub status: Status,
    /// Whose move it is, while open.
    pub turn: Option<Role>,
}

impl Negotiation {
    /// Open a negotiation; an automatic opener proposes at once, and two automatic sides
    /// negotiate to the end in this call.
    pub fn start(setup: Setup, now_ms: u64) -> Result<(Negotiation, Vec<Effect>), NegotiationError> {
        let invalid = |reason: &str| Err(NegotiationError::InvalidSetup(reason.to_string()));
        if setup.rounds_max == 0 || setup.rounds_max > ROUNDS_MAX {
            return invalid("rounds_max must be from 1 to 1000");
        }
        if setup.deadline_ms <= now_ms {
            return invalid("deadline_ms must be in the future");
        }
        if setup.seller == setup.buyer {
            return invalid("a party cannot negotiate with itself");
        }
        for role in [Role::Seller, Role::Buyer] {
            let negotiator = match role {
                Role::Seller => &setup.seller_negotiator,
                Role::Buyer => &setup.buyer_negotiator,
            };
            if let Negotiator::Automatic(agent) = negotiator
                && !agent.is_valid(role)
            {
                return invalid(&format!(
                    "the {role:?}'s agent is invalid: prices not negative, a seller opening at or above its reservation, a buyer at or below, strategy in bounds"
                ));
            }
        }
        let negotiation = Negotiation { setup, started_ms: now_ms, proposals: Vec::new(), status: Status::Open };
        Ok(negotiation.drive(now_ms, Vec::new()))
    }

    /// Apply one event at `now_ms` (see the module's description).
    pub fn step(&self, event: &Event, now_ms: u64) -> Result<(Negotiation, Vec<Effect>), NegotiationError> {
        if self.status != Status::Open {
            return Err(NegotiationError::Closed(self.status_label()));
        }
        if now_ms >= self.setup.deadline_ms {
            if *event == Event::Tick {
                let mut closed = self.clone();
                let reason = FailureReason::DeadlinePassed;
                closed.status = Status::Failed { reason, at_ms: now_ms };
                return Ok((closed, vec![Effect::Failed { reason }]));
            }
            return Err(NegotiationError::Expired);
        }
        let mut next = self.clone();
        let mut effects = Vec::new();
        match event {
            Event::Tick => {}
            Event::Counter { by, price } => {
                let role = self.person(by)?;
                if self.turn() != role {
                    return Err(NegotiationError::NotYourTurn(self.turn()));
                }
                if price.is_negative() {
                    return Err(NegotiationError::NegativePrice);
                }
                if self.rounds_left() == 0 {
                    return Err(NegotiationError::NoRoundsLeft);
                }
                next.proposals.push(Proposal { by: role, price: *price, at_ms: now_ms });
                effects.push(Effect::Proposed { by: role, price: *price });
            }
            Event::Accept { by } => {
                let role = self.person(by)?;
                let last = self.proposals.last().ok_or(NegotiationError::NothingToAccept)?;
                if last.by == role {
                    return Err(NegotiationError::NotYourTurn(self.turn()));
                }
                next.status = Status::Agreed { price: last.price, at_ms: now_ms };
                effects.push(Effect::Agreed { price: last.price });
                return Ok((next, effects));
            }
            Event::Reject { by } => {
                let role = self.person(by)?;
                let reason = FailureReason::Rejected { by: role };
                next.status = Status::Failed { reason, at_ms: now_ms };
                return Ok((next, vec![Effect::Failed { reason }]));
            }
        }
        Ok(next.drive(now_ms, effects))
    }

    /// Whose move it is: the side that did not make the last proposal (the opener first).
    pub fn turn(&self) -> Role {
        self.proposals.last().map_or(self.setup.opener, |last| last.by.other())
    }

    /// Proposals still allowed.
    pub fn rounds_left(&self) -> u32 {
        self.setup.rounds_max.saturating_sub(self.proposals.len() as u32)
    }

    pub fn is_closed(&self) -> bool {
        self.status != Status::Open
    }

    /// The party on `role`'s side.
    pub fn party(&self, role: Role) -> &PartyId {
        match role {
            Role::Seller => &self.setup.seller,
            Role::Buyer => &self.setup.buyer,
        }
    }

    /// What parties may see.
    pub fn view(&self) -> NegotiationView {
        NegotiationView {
            id: self.setup.id,
            offer: self.setup.offer,
            seller: self.setup.seller.clone(),
            buyer: self.setup.buyer.clone(),
            rounds_max: self.setup.rounds_max,
            deadline_ms: self.setup.deadline_ms,
            proposals: self.proposals.clone(),
            status: self.status.clone(),
            turn: (!self.is_closed()).then(|| self.turn()),
        }
    }

    fn negotiator(&self, role: Role) -> &Negotiator {
        match role {
            Role::Seller => &self.setup.seller_negotiator,
            Role::Buyer => &self.setup.buyer_negotiator,
        }
    }

    /// The role of `party`, which must be negotiating in person.
    fn person(&self, party: &PartyId) -> Result<Role, NegotiationError> {
        let role = if *party == self.setup.seller {
            Role::Seller
        } else if *party == self.setup.buyer {
            Role::Buyer
        } else {
            return Err(NegotiationError::NotAParty(party.clone()));
        };
        match self.negotiator(role) {
            Negotiator::Person => Ok(role),
            Negotiator::Automatic(_) => Err(NegotiationError::Automatic(role)),
        }
    }

    fn status_label(&self) -> String {
        match &self.status {
            Status::Open => "open".into(),
            Status::Agreed { price, .. } => format!("agreed at {price}"),
            Status::Failed { reason, .. } => format!("failed: {reason:?}"),
        }
    }

    /// Let automatic sides move until the negotiation closes or a person must act. Each
    /// iteration adds a proposal or closes, so the loop runs at most `rounds_max + 1` times.
    fn drive(mut self, now_ms: u64, mut effects: Vec<Effect>) -> (Negotiation, Vec<Effect>) {
        while self.status == Status::Open {
            let role = self.turn();
            let agent = match self.negotiator(role) {
                Negotiator::Automatic(agent) => *agent,
                Negotiator::Person => {
                    effects.push(Effect::AwaitingOwner { party: self.party(role).clone(), role });
                    break;
                }
            };
            let mine: Vec<Micros> = self.proposals.iter().filter(|p| p.by == role).map(|p| p.price).collect();
            let theirs: Vec<Micros> = self.proposals.iter().filter(|p| p.by != role).map(|p| p.price).collect();
            let moment = Moment { role, time: self.time(now_ms), mine: &mine, theirs: &theirs };
            let next = (self.rounds_left() > 0).then(|| agent.next_price(&moment));
            if let Some(&price) = theirs.last()
                && agent.accepts(role, price, next)
            {
                self.status = Status::Agreed { price, at_ms: now_ms };
                effects.push(Effect::Agreed { price });
                break;
            }
            match next {
                Some(price) => {
                    self.proposals.push(Proposal { by: role, price, at_ms: now_ms });
                    effects.push(Effect::Proposed { by: role, price });
                }
                None => {
                    let reason = FailureReason::RoundsExhausted;
                    self.status = Status::Failed { reason, at_ms: now_ms };
                    effects.push(Effect::Failed { reason });
                }
            }
        }
        (self, effects)
    }

    /// The negotiation's progress, 0 to 1: the larger of the share of rounds and the share of
    /// time to the deadline used.
    fn time(&self, now_ms: u64) -> f64 {
        let rounds = if self.setup.rounds_max <= 1 {
            1.0
        } else {
            self.proposals.len() as f64 / (self.setup.rounds_max - 1) as f64
        };
        let span = self.setup.deadline_ms.saturating_sub(self.started_ms).max(1);
        let elapsed = now_ms.saturating_sub(self.started_ms) as f64 / span as f64;
        rounds.max(elapsed).clamp(0.0, 1.0)
    }
}

#[cfg(test)]
mod tests;
