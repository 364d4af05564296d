//! A market simulation (D5, D6, D8): thousands of peers register resources of the seven
//! categories through the real [`register`] and [`plan_offer`], their offers go into the real
//! search [`Index`], buyers find the closest matched offer with [`Index::best_match`] and
//! negotiate with seeded automatic strategies through the real [`Negotiation`]. Sold offers
//! leave the index and their sellers list new ones (incremental updates).
//!
//! Reported per pair of strategies (seller x buyer) and in total: negotiations, the share that
//! could agree at all (buyer's reservation at least the seller's), the agreement rate, mean
//! rounds to agreement, the seller's share of the surplus `(price - seller reservation) /
//! (buyer reservation - seller reservation)`, and the commission the platform earned on
//! peer-with-peer trades through the coordinator. Every negotiation must end: the report
//! counts any left open (always 0) and `idlegrid sim market` fails if one is.

use std::collections::BTreeMap;
use std::fmt;

use idlegrid_ledger::Micros;
use idlegrid_types::PartyId;
use serde::{Deserialize, Serialize};

use crate::contract::BarterMode;
use crate::expr::{AttributeMap, Expr, Value};
use crate::negotiation::{Agent, Negotiation, NegotiationId, Negotiator, Role, Setup, Status, Strategy};
use crate::offer::{Listing, Offer, OfferId, Request, plan_offer};
use crate::registration::{Registration, register};
use crate::resource::{Measurements, ResourceDeclaration};
use crate::schema::{Category, MONEY_KINDS};
use crate::search::Index;
use crate::valuation::ValuationConfig;
use idlegrid_random::{RandomSource, Xoshiro256StarStar};

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    pub peers: u32,
    pub negotiations: u32,
    pub seed: u64,
    /// Most proposals per negotiation.
    pub rounds_max: u32,
    /// The platform's commission on peer-with-peer trades through it, as a fraction of price.
    pub commission_rate: f64,
    /// The strategies peers are given (each peer one, drawn from the seed).
    pub strategies: Vec<Strategy>,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            peers: 2000,
            negotiations: 20_000,
            seed: 1,
            rounds_max: 20,
            commission_rate: 0.05,
            strategies: vec![Strategy::BOULWARE, Strategy::LINEAR, Strategy::CONCEDER, Strategy::TIT_FOR_TAT],
        }
    }
}

/// A table of figures, printed as Markdown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl fmt::Display for Table {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "| {} |", self.columns.join(" | "))?;
        writeln!(f, "|{}|", self.columns.iter().map(|_| "---").collect::<Vec<_>>().join("|"))?;
        for row in &self.rows {
            writeln!(f, "| {} |", row.join(" | "))?;
        }
        Ok(())
    }
}

/// The simulation's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    pub table: Table,
    pub negotiations: u64,
    pub agreements: u64,
    /// Requests for which the search found no matching offer.
    pub unmatched: u64,
    /// Negotiations still open at the end (an error if not 0).
    pub left_open: u64,
    /// Agreements outside both reservations (an error if not 0).
    pub outside_reservations: u64,
    pub commission: Micros,
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.table)?;
        writeln!(
            f,
            "\n{} negotiations, {} agreements, {} requests without a match, {} left open, commission earned {}",
            self.negotiations, self.agreements, self.unmatched, self.left_open, self.commission
        )
    }
}

/// Why a simulation cannot run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SimError {
    #[error("{0}")]
    Invalid(String),
}

#[derive(Default, Clone)]
struct Tally {
    negotiations: u64,
    possible: u64,
    agreements: u64,
    rounds_to_agreement: u64,
    seller_share_sum: f64,
    shared_agreements: u64,
    commission: i64,
}

/// Run the simulation.
pub fn simulate(config: &SimConfig) -> Result<SimReport, SimError> {
    if config.peers < 2 || config.strategies.is_empty() || config.rounds_max == 0 || config.rounds_max > 1000 {
        return Err(SimError::Invalid("need at least 2 peers, a strategy, and rounds_max from 1 to 1000".into()));
    }
    if !(0.0..1.0).contains(&config.commission_rate) {
        return Err(SimError::Invalid("commission_rate must be in [0, 1)".into()));
    }
    let mut random = Xoshiro256StarStar::from_seed(config.seed);
    let valuation = ValuationConfig::default();
    let peers: Vec<PartyId> = (0..config.peers).map(peer).collect();
    let strategies: Vec<usize> =
        (0..config.peers).map(|_| random.below_unbiased(config.strategies.len() as u64) as usize).collect();
    let mut index = Index::new();
    let mut next_offer = 1u64;
    // Half of the peers sell, one offer each to begin with; the other half buy.
    let sellers = (config.peers / 2).max(1);
    for seller in 0..sellers {
        let offer = random_offer(OfferId(next_offer), &peers[seller as usize], &mut random, &valuation);
        next_offer += 1;
        index.insert(offer);
    }
    let seller_of: std::collections::HashMap<PartyId, usize> =
        peers.iter().take(sellers as usize).cloned().enumerate().map(|(n, p)| (p, n)).collect();
    let mut tallies: BTreeMap<(usize, usize), Tally> = BTreeMap::new();
    let mut report = SimReport {
        table: Table { columns: vec![], rows: vec![] },
        negotiations: 0,
        agreements: 0,
        unmatched: 0,
        left_open: 0,
        outside_reservations: 0,
        commission: Micros::ZERO,
    };
    for n in 0..config.negotiations {
        let buyer = sellers + random.below_unbiased((config.peers - sellers).max(1) as u64) as u32;
        let buyer = buyer.min(config.peers - 1) as usize;
        let request = random_request(&peers[buyer], &mut random);
        let Ok(Some(candidate)) = index.best_match(&request, 0) else {
            report.unmatched += 1;
            continue;
        };
        let Some(offer) = index.get(candidate.offer).cloned() else { continue };
        let seller = seller_of.get(&offer.owner).copied().unwrap_or(0);
        let key = (strategies[seller], strategies[buyer]);
        let outcome = negotiate(config, n, &offer, &request, key, &mut random);
        let tally = tallies.entry(key).or_default();
        tally.negotiations += 1;
        report.negotiations += 1;
        tally.possible += outcome.possible as u64;
        match outcome.status {
            Status::Agreed { price, .. } => {
                report.agreements += 1;
                tally.agreements += 1;
                tally.rounds_to_agreement += outcome.rounds;
                if price < outcome.seller_reservation || price > outcome.buyer_reservation {
                    report.outside_reservations += 1;
                }
                let surplus = outcome.buyer_reservation.as_i64() - outcome.seller_reservation.as_i64();
                if surplus > 0 {
                    tally.seller_share_sum +=
                        (price.as_i64() - outcome.seller_reservation.as_i64()) as f64 / surplus as f64;
                    tally.shared_agreements += 1;
                }
                if outcome.mode == BarterMode::PeerWithPeerCoordinated {
                    tally.commission += (price.as_i64() as f64 * config.commission_rate).round() as i64;
                }
                // Sold: the offer leaves the market and its seller lists another.
                index.remove(offer.id);
                index.insert(random_offer(OfferId(next_offer), &offer.owner, &mut random, &valuation));
                next_offer += 1;
            }
            Status::Failed { .. } => {}
            Status::Open => report.left_open += 1,
        }
    }
    report.commission = Micros::new(tallies.values().map(|t| t.commission).sum());
    report.table = table(config, &tallies);
    Ok(report)
}

fn peer(n: u32) -> PartyId {
    let mut key = [0u8; 32];
    key[..4].copy_from_slice(&n.to_le_bytes());
    PartyId::from_public_key(&key)
}

struct Outcome {
    status: Status,
    rounds: u64,
    possible: bool,
    seller_reservation: Micros,
    buyer_reservation: Micros,
    mode: BarterMode,
}

fn scaled(amount: Micros, factor: f64) -> Micros {
    Micros::new((amount.as_i64() as f64 * factor).round().max(0.0) as i64)
}

fn negotiate(
    config: &SimConfig,
    n: u32,
    offer: &Offer,
    request: &Request,
    (seller_strategy, buyer_strategy): (usize, usize),
    random: &mut dyn RandomSource,
) -> Outcome {
    let worth = offer.price.max(Micros::new(1));
    let seller_reservation = scaled(worth, 0.6 + 0.4 * random.next_f64());
    let seller_opening = scaled(worth, 1.0 + 0.5 * random.next_f64()).max(seller_reservation);
    let buyer_reservation = scaled(request.value_target.unwrap_or(worth), 0.7 + 0.6 * random.next_f64());
    let buyer_opening = scaled(buyer_reservation, 0.3 + 0.6 * random.next_f64());
    let mode = match random.below_unbiased(4) {
        0 => BarterMode::CoordinatorWithPeer,
        1 => BarterMode::PeerWithPeerDirect,
        _ => BarterMode::PeerWithPeerCoordinated,
    };
    let setup = Setup {
        id: NegotiationId(n as u64),
        offer: offer.id,
        seller: offer.owner.clone(),
        buyer: request.requester.clone(),
        seller_negotiator: Negotiator::Automatic(Agent {
            opening: seller_opening,
            reservation: seller_reservation,
            strategy: config.strategies[seller_strategy],
        }),
        buyer_negotiator: Negotiator::Automatic(Agent {
            opening: buyer_opening,
            reservation: buyer_reservation,
            strategy: config.strategies[buyer_strategy],
        }),
        opener: if random.below_unbiased(2) == 0 { Role::Buyer } else { Role::Seller },
        rounds_max: config.rounds_max,
        deadline_ms: 60_000,
    };
    let (status, rounds) = match Negotiation::start(setup, 0) {
        Ok((negotiation, _)) => (negotiation.status, negotiation.proposals.len() as u64),
        Err(_) => (Status::Open, 0),
    };
    Outcome {
        status,
        rounds,
        possible: buyer_reservation >= seller_reservation,
        seller_reservation,
        buyer_reservation,
        mode,
    }
}

/// A random resource of a random category, registered and listed whole: the sim's and the
/// benchmark's offers.
pub fn random_offer(id: OfferId, owner: &PartyId, random: &mut dyn RandomSource, config: &ValuationConfig) -> Offer {
    let category = Category::ALL[random.below_unbiased(7) as usize];
    let registration =
        Registration { resources: vec![random_declaration(category, random)], ..Registration::default() };
    let report =
        register(owner, &registration, &Measurements::new(), config).expect("generated declarations are valid");
    let requirements = (random.below_unbiased(10) < 3).then(|| Expr::parse("other.reputation >= 0.3").expect("valid"));
    let owner_attributes = AttributeMap::new().with("region", ["eu", "us", "asia"][random.below_unbiased(3) as usize]);
    let listing = Listing { requirements, ..Listing::default() };
    plan_offer(id, &report.entries[0], 0.0, &listing, &owner_attributes, config, 0).expect("a whole entry is offerable")
}

/// A declaration of `category` with random figures in realistic ranges.
pub fn random_declaration(category: Category, random: &mut dyn RandomSource) -> ResourceDeclaration {
    let mut uniform = |low: f64, high: f64| low + (high - low) * random.next_f64();
    let hours = uniform(0.5, 48.0).round() * 3600.0;
    let numbers: Vec<(&str, f64)> = match category {
        Category::Computing => vec![("mflops", uniform(500.0, 50_000.0)), ("duration_s", hours)],
        Category::Memory => vec![
            ("memory_mb", uniform(256.0, 65_536.0)),
            ("read_ns", uniform(50.0, 150.0)),
            ("write_ns", uniform(50.0, 150.0)),
            ("duration_s", hours),
        ],
        Category::Storage => vec![
            ("capacity_mb", uniform(1_000.0, 2_000_000.0)),
            ("access_ms", uniform(0.1, 15.0)),
            ("read_mb_s", uniform(50.0, 3000.0)),
            ("write_mb_s", uniform(50.0, 2000.0)),
            ("duration_s", hours),
        ],
        Category::Peripherals => {
            vec![("count", uniform(1.0, 4.0).floor()), ("speed", uniform(1.0, 60.0)), ("duration_s", hours)]
        }
        Category::Files => vec![("size_bytes", uniform(1e3, 1e10).floor()), ("asking_price", uniform(0.1, 50.0))],
        Category::InternetAccess => {
            vec![("speed_mbit_s", uniform(5.0, 1000.0)), ("availability", uniform(0.8, 1.0)), ("duration_s", hours)]
        }
        Category::Money => vec![("amount", uniform(1.0, 100.0))],
    };
    let mut attributes: BTreeMap<String, Value> =
        numbers.into_iter().map(|(name, value)| (name.to_string(), Value::Number(value))).collect();
    let mut text = |name: &str, value: &str| attributes.insert(name.to_string(), Value::Text(value.to_string()));
    match category {
        Category::Peripherals => {
            text("kind", ["printer", "scanner", "camera", "display"][random.below_unbiased(4) as usize]);
        }
        Category::Files => {
            for (name, value) in
                [("target_user", "anyone"), ("objective", "data"), ("function", "dataset"), ("environment", "any")]
            {
                text(name, value);
            }
            text("sha256", &format!("{:016x}", random.next_u64()).repeat(4));
        }
        Category::Money => {
            text("kind", MONEY_KINDS[random.below_unbiased(4) as usize]);
        }
        _ => {}
    }
    ResourceDeclaration { category: category.name().to_string(), attributes, private_share: 0.0 }
}

/// A request for a random category: the value the buyer gives drawn around typical offers, a
/// budget requirement half the time, and the buyer's reputation for offers' requirements.
pub fn random_request(requester: &PartyId, random: &mut dyn RandomSource) -> Request {
    let category = Category::ALL[random.below_unbiased(7) as usize];
    let target = Micros::new((1e3 * 10f64.powf(4.0 * random.next_f64())).round() as i64 * 10);
    let mut request = Request::new(requester.clone(), category);
    request.value_target = Some(target);
    request.attributes =
        AttributeMap::new().with("reputation", random.next_f64()).with("budget", target.to_f64_units() * 2.0);
    if random.below_unbiased(2) == 0 {
        request.requirements = Some(Expr::parse("other.price <= my.budget").expect("valid"));
    }
    request
}

fn table(config: &SimConfig, tallies: &BTreeMap<(usize, usize), Tally>) -> Table {
    let columns = [
        "seller",
        "buyer",
        "negotiations",
        "could agree",
        "agreed",
        "agreed of possible",
        "rounds to agree",
        "seller surplus share",
        "commission",
    ];
    let mut rows = Vec::new();
    let mut total = Tally::default();
    for (&(seller, buyer), tally) in tallies {
        rows.push(row(&config.strategies[seller].label(), &config.strategies[buyer].label(), tally));
        total.negotiations += tally.negotiations;
        total.possible += tally.possible;
        total.agreements += tally.agreements;
        total.rounds_to_agreement += tally.rounds_to_agreement;
        total.seller_share_sum += tally.seller_share_sum;
        total.shared_agreements += tally.shared_agreements;
        total.commission += tally.commission;
    }
    rows.push(row("all", "all", &total));
    Table { columns: columns.iter().map(|c| c.to_string()).collect(), rows }
}

fn row(seller: &str, buyer: &str, tally: &Tally) -> Vec<String> {
    let share = |part: u64, whole: u64| {
        if whole == 0 { "-".to_string() } else { format!("{:.1}%", 100.0 * part as f64 / whole as f64) }
    };
    vec![
        seller.to_string(),
        buyer.to_string(),
        tally.negotiations.to_string(),
        share(tally.possible, tally.negotiations),
        share(tally.agreements, tally.negotiations),
        share(tally.agreements, tally.possible),
        if tally.agreements == 0 {
            "-".into()
        } else {
            format!("{:.1}", tally.rounds_to_agreement as f64 / tally.agreements as f64)
        },
        if tally.shared_agreements == 0 {
            "-".into()
        } else {
            format!("{:.1}%", 100.0 * tally.seller_share_sum / tally.shared_agreements as f64)
        },
        Micros::new(tally.commission).to_string(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_simulation_ends_every_negotiation_and_is_reproducible() {
        let config = SimConfig { peers: 400, negotiations: 2000, ..SimConfig::default() };
        let report = simulate(&config).unwrap();
        assert_eq!(report.left_open, 0);
        assert_eq!(report.outside_reservations, 0);
        assert!(report.negotiations > 1000, "most requests find a match: {report}");
        assert!(report.agreements > 0 && report.agreements < report.negotiations, "{report}");
        assert!(report.commission.is_positive());
        assert_eq!(report.table.rows.len(), 17, "16 strategy pairs and the total");
        assert_eq!(simulate(&config).unwrap(), report, "the same seed, the same report");
        let other = simulate(&SimConfig { seed: 2, ..config }).unwrap();
        assert_ne!(other.table, report.table);
        let text = report.to_string();
        assert!(text.starts_with("| seller | buyer | negotiations |"), "{text}");
    }

    #[test]
    fn boulware_sellers_keep_more_of_the_surplus_than_conceders() {
        let config = SimConfig {
            peers: 400,
            negotiations: 3000,
            strategies: vec![Strategy::BOULWARE, Strategy::CONCEDER],
            ..SimConfig::default()
        };
        let report = simulate(&config).unwrap();
        let share = |seller: &str, buyer: &str| -> f64 {
            let row = report.table.rows.iter().find(|r| r[0].starts_with(seller) && r[1].starts_with(buyer)).unwrap();
            row[7].trim_end_matches('%').parse().unwrap()
        };
        assert!(share("boulware", "conceder") > share("conceder", "boulware"), "{report}");
    }

    #[test]
    fn bad_configurations_are_refused() {
        assert!(simulate(&SimConfig { peers: 1, ..SimConfig::default() }).is_err());
        assert!(simulate(&SimConfig { strategies: vec![], ..SimConfig::default() }).is_err());
        assert!(simulate(&SimConfig { commission_rate: 1.5, ..SimConfig::default() }).is_err());
    }
}
