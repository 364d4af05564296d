//! Concession strategies of automatic negotiators (D5), after Faratin, Sierra and Jennings
//! (1998), "Negotiation decision functions for autonomous agents":
//!
//! - **Time-dependent**: at time `t` in [0, 1] (the larger of the share of rounds used and the
//!   share of time to the deadline used), the agent has conceded `t^(1/beta)` of the way from
//!   its opening price to its reservation. `beta < 1` is *Boulware* (firm until late), `beta =
//!   1` linear, `beta > 1` *Conceder* (gives way early).
//! - **Tit-for-tat** (relative): the agent concedes as much as the other side conceded in its
//!   last move, but at least `min_step` of its own range, so that two tit-for-tat agents still
//!   move towards each other.
//!
//! An agent never proposes beyond its reservation and accepts a proposal only when it is at
//! least as good as what it would propose next (the "AC-next" rule) or, when it may no longer
//! counter, when it is within its reservation. Hence an agreement between two agents always
//! lies between both reservation values.

use idlegrid_ledger::Micros;
use serde::{Deserialize, Serialize};

use super::Role;

/// How an automatic negotiator concedes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Strategy {
    /// Concedes `t^(1/beta)` of its range by time `t`.
    TimeDependent { beta: f64 },
    /// Mirrors the other side's last concession, at least `min_step` (a fraction) of its range.
    TitForTat { min_step: f64 },
}

impl Strategy {
    pub const BOULWARE: Strategy = Strategy::TimeDependent { beta: 0.2 };
    pub const LINEAR: Strategy = Strategy::TimeDependent { beta: 1.0 };
    pub const CONCEDER: Strategy = Strategy::TimeDependent { beta: 5.0 };
    pub const TIT_FOR_TAT: Strategy = Strategy::TitForTat { min_step: 0.05 };

    /// A short name for tables.
    pub fn label(&self) -> String {
        match *self {
            Strategy::TimeDependent { beta } if beta < 1.0 => format!("boulware({beta})"),
            Strategy::TimeDependent { beta } if beta > 1.0 => format!("conceder({beta})"),
            Strategy::TimeDependent { .. } => "linear".into(),
            Strategy::TitForTat { min_step } => format!("tit-for-tat({min_step})"),
        }
    }

    pub fn is_valid(&self) -> bool {
        match *self {
            Strategy::TimeDependent { beta } => beta.is_finite() && (0.01..=100.0).contains(&beta),
            Strategy::TitForTat { min_step } => min_step.is_finite() && (0.001..=1.0).contains(&min_step),
        }
    }
}

/// An automatic negotiator: the price it opens with, the worst price it accepts, how it moves.
/// The reservation is private: it is stored with the negotiation, never shown to the other side.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub opening: Micros,
    pub reservation: Micros,
    pub strategy: Strategy,
}

/// Where a negotiation stands, as an agent sees it when it is its turn.
pub(crate) struct Moment<'a> {
    pub role: Role,
    /// Fraction of rounds or time used, 0 to 1.
    pub time: f64,
    /// The agent's own proposals so far, oldest first.
    pub mine: &'a [Micros],
    /// The other side's proposals so far, oldest first.
    pub theirs: &'a [Micros],
}

impl Agent {
    /// The opening must not be worse for the agent than its reservation: a seller opens at or
    /// above it, a buyer at or below it.
    pub fn is_valid(&self, role: Role) -> bool {
        let ordered = match role {
            Role::Seller => self.opening >= self.reservation,
            Role::Buyer => self.opening <= self.reservation,
        };
        ordered && !self.opening.is_negative() && !self.reservation.is_negative() && self.strategy.is_valid()
    }

    /// The price this agent proposes now.
    pub(crate) fn next_price(&self, moment: &Moment) -> Micros {
        let range = (self.opening.as_i64() as i128 - self.reservation.as_i64() as i128).abs();
        let conceded = match self.strategy {
            Strategy::TimeDependent { beta } => {
                let t = moment.time.clamp(0.0, 1.0);
                (t.powf(1.0 / beta) * range as f64).round() as i128
            }
            Strategy::TitForTat { .. } if moment.mine.is_empty() => 0,
            Strategy::TitForTat { min_step } => {
                let already =
                    moment.mine.last().map_or(0, |last| (last.as_i64() as i128 - self.opening.as_i64() as i128).abs());
                let mirrored = match moment.theirs {
                    [.., before, last] => (last.as_i64() as i128 - before.as_i64() as i128).abs(),
                    _ => 0,
                };
                let floor = (min_step * range as f64).round() as i128;
                already + mirrored.max(floor)
            }
        };
        let conceded = conceded.clamp(0, range);
        let price = match moment.role {
            Role::Seller => self.opening.as_i64() as i128 - conceded,
            Role::Buyer => self.opening.as_i64() as i128 + conceded,
        };
        Micros::new(price as i64)
    }

    /// Whether the agent accepts `price` from the other side, knowing what it would propose
    /// next (`None` when it may no longer counter).
    pub(crate) fn accepts(&self, role: Role, price: Micros, next: Option<Micros>) -> bool {
        let within = match role {
            Role::Seller => price >= self.reservation,
            Role::Buyer => price <= self.reservation,
        };
        let as_good_as_next = match (role, next) {
            (_, None) => true,
            (Role::Seller, Some(next)) => price >= next,
            (Role::Buyer, Some(next)) => price <= next,
        };
        within && as_good_as_next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moment<'a>(role: Role, time: f64, mine: &'a [Micros], theirs: &'a [Micros]) -> Moment<'a> {
        Moment { role, time, mine, theirs }
    }

    #[test]
    fn time_dependent_agents_concede_by_their_curve() {
        let seller = |beta| Agent {
            opening: Micros::new(200),
            reservation: Micros::new(100),
            strategy: Strategy::TimeDependent { beta },
        };
        let at = |beta, t| seller(beta).next_price(&moment(Role::Seller, t, &[], &[])).as_i64();
        assert_eq!((at(1.0, 0.0), at(1.0, 0.5), at(1.0, 1.0)), (200, 150, 100));
        assert!(at(0.2, 0.5) > 195, "Boulware holds firm: {}", at(0.2, 0.5));
        assert!(at(5.0, 0.5) < 115, "Conceder gives way early: {}", at(5.0, 0.5));
        let buyer = Agent { opening: Micros::new(50), reservation: Micros::new(150), strategy: Strategy::LINEAR };
        assert_eq!(buyer.next_price(&moment(Role::Buyer, 0.5, &[], &[])).as_i64(), 100);
        assert_eq!(buyer.next_price(&moment(Role::Buyer, 7.0, &[], &[])).as_i64(), 150, "never past the reservation");
    }

    #[test]
    fn tit_for_tat_mirrors_the_last_concession_with_a_floor() {
        let seller = Agent {
            opening: Micros::new(1000),
            reservation: Micros::new(0),
            strategy: Strategy::TitForTat { min_step: 0.01 },
        };
        let mine = [Micros::new(1000)];
        let theirs = [Micros::new(100), Micros::new(300)];
        assert_eq!(seller.next_price(&moment(Role::Seller, 0.1, &mine, &theirs)).as_i64(), 800);
        let stubborn = [Micros::new(100), Micros::new(100)];
        assert_eq!(seller.next_price(&moment(Role::Seller, 0.1, &mine, &stubborn)).as_i64(), 990);
    }

    #[test]
    fn acceptance_needs_the_reservation_and_a_price_as_good_as_the_next_move() {
        let seller = Agent { opening: Micros::new(200), reservation: Micros::new(100), strategy: Strategy::LINEAR };
        assert!(seller.accepts(Role::Seller, Micros::new(160), Some(Micros::new(150))));
        assert!(!seller.accepts(Role::Seller, Micros::new(140), Some(Micros::new(150))));
        assert!(seller.accepts(Role::Seller, Micros::new(100), None));
        assert!(!seller.accepts(Role::Seller, Micros::new(99), None));
        assert!(seller.is_valid(Role::Seller) && !seller.is_valid(Role::Buyer));
        assert!(!Agent { strategy: Strategy::TimeDependent { beta: f64::NAN }, ..seller }.is_valid(Role::Seller));
    }
}
