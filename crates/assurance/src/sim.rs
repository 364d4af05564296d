//! A deterministic saboteur simulation: a population of providers of which a fraction `f` are
//! saboteurs, tasks validated under each policy by the real state machine, spot-check planner,
//! records and quarantine of this crate; only the providers are simulated.
//!
//! - Saboteurs collude, the hard case for voting: when one lies, it returns the same wrong
//!   answer as every other saboteur for that task. Each lies on each real task and each test
//!   task independently with probability `s` (they cannot tell a test from a real task).
//! - Honest providers return the right answer (or, with `honest_error_rate`, a random wrong one
//!   that agrees with nothing).
//! - Tasks are processed one after another; every replica is placed on a provider drawn
//!   uniformly from those in good standing and not already holding a replica of the task. Before
//!   each placement the planner may turn the provider's assignment into a test task instead.
//! - A provider that fails a test task is quarantined; with `saboteurs_rejoin` (the default,
//!   since a key pair costs nothing) it comes back at once under a new identity with an empty
//!   record, so the fraction of saboteurs stays `f`.
//! - The error rate is that of results at the moment they are accepted (what a client receives).
//!   "Flagged later" counts the wrong accepted results that one of their agreeing providers'
//!   later quarantine puts on the re-verification list.
//! - Cost is counted in executions: replicas launched plus test tasks, per task.
//! - One seeded `Xoshiro256StarStar` per row; every policy of a given (f, s) starts from the
//!   same seed. Same configuration, same report, on every platform.

use std::collections::{HashMap, HashSet};
use std::fmt;

use idlegrid_types::{AssignmentId, ElementHash, PartyId};
use serde::{Deserialize, Serialize};

use crate::error::{check_closed, check_open};
use crate::{
    Action, AssuranceError, ByteEquality, CredibilityModel, DecisionContext, JudgementKind, NextAssignment,
    ProviderRecord, ProviderRecords, QuarantineRule, ResultDigest, SpotCheckConsequence, SpotCheckPolicy,
    TaskAssurance, ValidationPolicy, judge_spot_check,
};
use idlegrid_random::{RandomSource, SplitMix64, Xoshiro256StarStar};

/// A policy in the report, with the spot checks that run alongside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyUnderTest {
    pub name: String,
    pub policy: ValidationPolicy,
    pub spot_checks: SpotCheckPolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimConfig {
    pub seed: u64,
    pub providers: u32,
    /// Tasks per row of the report.
    pub tasks: u64,
    pub saboteur_fractions: Vec<f64>,
    pub sabotage_rates: Vec<f64>,
    pub policies: Vec<PolicyUnderTest>,
    /// The credibility model's `f`; `None`: each row's true fraction (Sarmenta assumes a known
    /// upper bound).
    pub assumed_saboteur_fraction: Option<f64>,
    pub honest_error_rate: f64,
    pub saboteurs_rejoin: bool,
    pub quarantine: QuarantineRule,
    /// The credibility policy sizes its launches with the median credibility of the
    /// providers in good standing, recomputed this often (in tasks).
    pub typical_credibility_every: u64,
}

impl Default for SimConfig {
    fn default() -> SimConfig {
        SimConfig {
            seed: 1,
            providers: 500,
            tasks: 1_000_000,
            saboteur_fractions: vec![0.1, 0.2, 0.3],
            sabotage_rates: vec![0.1, 1.0],
            policies: SimConfig::standard_policies(),
            assumed_saboteur_fraction: None,
            honest_error_rate: 0.0,
            saboteurs_rejoin: true,
            quarantine: QuarantineRule::default(),
            typical_credibility_every: 1000,
        }
    }
}

impl SimConfig {
    /// The four standard policies: quorum 2, quorum 3, adaptive replication (BOINC-style, no test
    /// tasks), and credibility-based voting to 0.9999 with spot checks.
    pub fn standard_policies() -> Vec<PolicyUnderTest> {
        vec![
            PolicyUnderTest {
                name: "quorum 2".into(),
                policy: ValidationPolicy::quorum(2),
                spot_checks: SpotCheckPolicy::off(),
            },
            PolicyUnderTest {
                name: "quorum 3".into(),
                policy: ValidationPolicy::quorum(3),
                spot_checks: SpotCheckPolicy::off(),
            },
            PolicyUnderTest {
                name: "adaptive".into(),
                policy: ValidationPolicy::adaptive(),
                spot_checks: SpotCheckPolicy::off(),
            },
            PolicyUnderTest {
                name: "credibility 0.9999".into(),
                policy: ValidationPolicy::credibility(0.9999),
                spot_checks: SpotCheckPolicy::default(),
            },
        ]
    }

    pub fn validate(&self) -> Result<(), AssuranceError> {
        if self.providers < 2 {
            return Err(AssuranceError::parameter("providers", self.providers, "must be at least 2"));
        }
        if self.tasks == 0 {
            return Err(AssuranceError::parameter("tasks", self.tasks, "must be at least 1"));
        }
        for &f in &self.saboteur_fractions {
            check_closed("saboteur_fractions", f, 0.0, 0.95, "each must be a fraction in [0, 0.95]")?;
        }
        for &s in &self.sabotage_rates {
            check_closed("sabotage_rates", s, 0.0, 1.0, "each must be a probability in [0, 1]")?;
        }
        if let Some(f) = self.assumed_saboteur_fraction {
            check_open("assumed_saboteur_fraction", f, 0.0, 1.0, "must be a fraction in (0, 1)")?;
        }
        check_closed("honest_error_rate", self.honest_error_rate, 0.0, 1.0, "must be a probability in [0, 1]")?;
        for policy in &self.policies {
            policy.policy.validate()?;
            policy.spot_checks.validate()?;
        }
        if self.typical_credibility_every == 0 {
            return Err(AssuranceError::parameter("typical_credibility_every", 0, "must be at least 1"));
        }
        Ok(())
    }
}

/// One row: one policy at one (f, s).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimRow {
    pub policy: String,
    pub saboteur_fraction: f64,
    pub sabotage_rate: f64,
    pub tasks: u64,
    pub accepted: u64,
    pub inconclusive: u64,
    /// Accepted results that were wrong when accepted.
    pub wrong: u64,
    pub replicas: u64,
    pub spot_checks: u64,
    pub quarantined: u64,
    /// Wrong accepted results put on a re-verification list by a later quarantine.
    pub wrong_flagged_later: u64,
}

impl SimRow {
    pub fn error_rate(&self) -> f64 {
        if self.accepted == 0 { 0.0 } else { self.wrong as f64 / self.accepted as f64 }
    }

    /// One-sided 95 % upper confidence bound of the error rate (Poisson approximation).
    pub fn error_rate_upper_95(&self) -> f64 {
        if self.accepted == 0 { 1.0 } else { (poisson_upper_95(self.wrong) / self.accepted as f64).min(1.0) }
    }

    pub fn replicas_per_task(&self) -> f64 {
        self.replicas as f64 / self.tasks as f64
    }

    pub fn spot_checks_per_task(&self) -> f64 {
        self.spot_checks as f64 / self.tasks as f64
    }

    /// Executions per task: the redundancy cost.
    pub fn cost_per_task(&self) -> f64 {
        (self.replicas + self.spot_checks) as f64 / self.tasks as f64
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    pub config: SimConfig,
    pub rows: Vec<SimRow>,
}

/// Run every row of the configuration.
pub fn simulate(config: &SimConfig) -> Result<SimReport, AssuranceError> {
    simulate_with_progress(config, &mut |_| {})
}

/// Run every row, calling `progress` after each.
pub fn simulate_with_progress(
    config: &SimConfig,
    progress: &mut dyn FnMut(&SimRow),
) -> Result<SimReport, AssuranceError> {
    config.validate()?;
    let mut rows = Vec::new();
    for (f_index, &f) in config.saboteur_fractions.iter().enumerate() {
        for (s_index, &s) in config.sabotage_rates.iter().enumerate() {
            let mut seeder = SplitMix64::new(config.seed ^ ((f_index as u64) << 32) ^ ((s_index as u64) << 48));
            let row_seed = seeder.next_u64();
            for policy in &config.policies {
                let row = World::new(config, policy, f, s, row_seed)?.run()?;
                progress(&row);
                rows.push(row);
            }
        }
    }
    Ok(SimReport { config: config.clone(), rows })
}

/// Records of the identities in good standing, found by identity.
struct Population {
    identities: Vec<PartyId>,
    records: Vec<ProviderRecord>,
    saboteur: Vec<bool>,
    slot_of: HashMap<PartyId, usize>,
    /// Slots in good standing (all of them when saboteurs rejoin).
    active: Vec<usize>,
    /// Accepted results each identity supported: the re-verification list on quarantine.
    supported: Vec<u64>,
    /// Wrong accepted results each identity supported (task numbers).
    supported_wrong: Vec<Vec<u64>>,
    next_identity: u64,
}

impl ProviderRecords for Population {
    fn record(&self, provider: &PartyId) -> Option<&ProviderRecord> {
        self.slot_of.get(provider).map(|&slot| &self.records[slot])
    }
}

impl Population {
    fn new_identity(&mut self) -> PartyId {
        self.next_identity += 1;
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&self.next_identity.to_le_bytes());
        PartyId::from_public_key(&key)
    }
}

struct World<'a> {
    config: &'a SimConfig,
    policy: &'a PolicyUnderTest,
    s: f64,
    model: CredibilityModel,
    random: Xoshiro256StarStar,
    population: Population,
    flagged: HashSet<u64>,
    row: SimRow,
}

impl<'a> World<'a> {
    fn new(
        config: &'a SimConfig,
        policy: &'a PolicyUnderTest,
        f: f64,
        s: f64,
        seed: u64,
    ) -> Result<World<'a>, AssuranceError> {
        let model = CredibilityModel::new(config.assumed_saboteur_fraction.unwrap_or(f.clamp(0.001, 0.95)))?;
        let providers = config.providers as usize;
        let saboteurs = (f * providers as f64).round() as usize;
        let mut population = Population {
            identities: Vec::with_capacity(providers),
            records: vec![ProviderRecord::default(); providers],
            saboteur: (0..providers).map(|slot| slot < saboteurs).collect(),
            slot_of: HashMap::with_capacity(providers),
            active: (0..providers).collect(),
            supported: vec![0; providers],
            supported_wrong: vec![Vec::new(); providers],
            next_identity: 0,
        };
        for slot in 0..providers {
            let identity = population.new_identity();
            population.slot_of.insert(identity.clone(), slot);
            population.identities.push(identity);
        }
        let row = SimRow {
            policy: policy.name.clone(),
            saboteur_fraction: f,
            sabotage_rate: s,
            tasks: config.tasks,
            accepted: 0,
            inconclusive: 0,
            wrong: 0,
            replicas: 0,
            spot_checks: 0,
            quarantined: 0,
            wrong_flagged_later: 0,
        };
        Ok(World {
            config,
            policy,
            s,
            model,
            random: Xoshiro256StarStar::from_seed(seed),
            population,
            flagged: HashSet::new(),
            row,
        })
    }

    fn run(mut self) -> Result<SimRow, AssuranceError> {
        let mut typical = None;
        let mut next_assignment = 0u64;
        for task_number in 0..self.config.tasks {
            if task_number % self.config.typical_credibility_every == 0 {
                typical = self.median_credibility();
            }
            let mut task = TaskAssurance::new(self.policy.policy)?;
            let mut holders: Vec<usize> = Vec::new();
            loop {
                let decision = {
                    let mut context = DecisionContext {
                        records: &self.population,
                        model: &self.model,
                        comparator: &mut ByteEquality,
                        random: &mut self.random,
                        typical_credibility: typical,
                    };
                    task.decide(&mut context)?
                };
                let truth = Self::digest(task_number, 0, 0);
                match decision.action {
                    Action::Launch { replicas } => {
                        let mut placed = 0;
                        for _ in 0..replicas {
                            let Some(slot) = self.place(&holders)? else { break };
                            holders.push(slot);
                            next_assignment += 1;
                            let assignment = AssignmentId(next_assignment);
                            task.replica_launched(assignment, self.population.identities[slot].clone())?;
                            let result = self.answer(slot, task_number);
                            task.replica_result(assignment, result)?;
                            self.row.replicas += 1;
                            placed += 1;
                        }
                        if placed == 0 {
                            // Too few providers in good standing to place another replica.
                            self.row.inconclusive += 1;
                            break;
                        }
                    }
                    Action::Accept(acceptance) => {
                        let wrong = acceptance.canonical.digest != truth;
                        self.row.accepted += 1;
                        self.row.wrong += u64::from(wrong);
                        for judgement in &decision.judgements {
                            if let Some(&slot) = self.population.slot_of.get(&judgement.provider) {
                                self.population.records[slot].apply_judgement(judgement.kind, judgement.previous);
                                if matches!(judgement.kind, JudgementKind::Agreed | JudgementKind::Unchecked) {
                                    self.population.supported[slot] += 1;
                                    if wrong {
                                        self.population.supported_wrong[slot].push(task_number);
                                    }
                                }
                            }
                        }
                        break;
                    }
                    Action::Inconclusive(_) => {
                        self.row.inconclusive += 1;
                        break;
                    }
                    // Results arrive at once and comparisons are byte equality: never waiting.
                    Action::Wait | Action::Compare { .. } | Action::Settled => {
                        self.row.inconclusive += 1;
                        break;
                    }
                }
            }
        }
        Ok(self.row)
    }

    /// Digest of an answer to task `task`: the truth (kind 0), the saboteurs' common lie
    /// (kind 1), or a random error (kind 2).
    fn digest(task: u64, kind: u8, noise: u64) -> ResultDigest {
        let mut bytes = [0u8; 32];
        bytes[..8].copy_from_slice(&task.to_le_bytes());
        bytes[8] = kind;
        bytes[9..17].copy_from_slice(&noise.to_le_bytes());
        ElementHash::from_bytes(bytes)
    }

    fn answer(&mut self, slot: usize, task: u64) -> ResultDigest {
        if self.population.saboteur[slot] {
            if self.random.chance(self.s) { Self::digest(task, 1, 0) } else { Self::digest(task, 0, 0) }
        } else if self.config.honest_error_rate > 0.0 && self.random.chance(self.config.honest_error_rate) {
            let noise = self.random.next_u64();
            Self::digest(task, 2, noise)
        } else {
            Self::digest(task, 0, 0)
        }
    }

    /// A provider for the next replica: drawn uniformly among those in good standing that hold
    /// no replica of the task; the planner may give it a test task first, and then the draw
    /// starts over. `None` when nobody is left.
    fn place(&mut self, holders: &[usize]) -> Result<Option<usize>, AssuranceError> {
        loop {
            if self.population.active.len() <= holders.len() {
                return Ok(None);
            }
            let slot = self.population.active[self.random.below(self.population.active.len() as u64) as usize];
            if holders.contains(&slot) {
                continue;
            }
            let identity = &self.population.identities[slot];
            match self.policy.spot_checks.next_assignment(&self.population.records[slot], identity, &mut self.random)? {
                NextAssignment::RealTask => return Ok(Some(slot)),
                NextAssignment::SpotCheck => self.spot_check(slot),
            }
        }
    }

    fn spot_check(&mut self, slot: usize) {
        self.row.spot_checks += 1;
        // A test task is a task like any other: a fresh number, never a real task's.
        let known = Self::digest(u64::MAX, 0, 0);
        let answer = self.answer(slot, u64::MAX);
        let outcome = judge_spot_check(&known, &answer);
        if self.population.records[slot].apply_spot_check(outcome, &self.config.quarantine)
            == SpotCheckConsequence::Quarantined
        {
            self.quarantine(slot);
        }
    }

    fn quarantine(&mut self, slot: usize) {
        self.row.quarantined += 1;
        for task in std::mem::take(&mut self.population.supported_wrong[slot]) {
            if self.flagged.insert(task) {
                self.row.wrong_flagged_later += 1;
            }
        }
        self.population.supported[slot] = 0;
        let old = self.population.identities[slot].clone();
        self.population.slot_of.remove(&old);
        if self.config.saboteurs_rejoin && self.population.saboteur[slot] {
            let identity = self.population.new_identity();
            self.population.slot_of.insert(identity.clone(), slot);
            self.population.identities[slot] = identity;
            self.population.records[slot] = ProviderRecord::default();
        } else if let Some(position) = self.population.active.iter().position(|&s| s == slot) {
            self.population.active.swap_remove(position);
        }
    }

    /// Median credibility of the providers in good standing.
    fn median_credibility(&self) -> Option<f64> {
        let mut credibilities: Vec<f64> = self
            .population
            .active
            .iter()
            .map(|&slot| self.model.provider_credibility(&self.population.records[slot]))
            .collect();
        if credibilities.is_empty() {
            return None;
        }
        credibilities.sort_by(f64::total_cmp);
        Some(credibilities[credibilities.len() / 2].clamp(1e-9, 1.0 - 1e-12))
    }
}

/// The one-sided 95 % upper bound of a Poisson mean after observing `k` events: the `lambda`
/// with `P(X <= k; lambda) = 0.05` (2.996 for k = 0), by bisection; the normal approximation
/// beyond 200 events.
pub fn poisson_upper_95(k: u64) -> f64 {
    if k > 200 {
        let k = k as f64;
        return k + 1.645 * k.sqrt() + 1.4;
    }
    let cdf = |lambda: f64| {
        let mut term = (-lambda).exp();
        let mut sum = term;
        for i in 1..=k {
            term *= lambda / i as f64;
            sum += term;
        }
        sum
    };
    let (mut low, mut high) = (k as f64, k as f64 + 10.0 * (k as f64).sqrt() + 10.0);
    for _ in 0..100 {
        let middle = 0.5 * (low + high);
        if cdf(middle) > 0.05 { low = middle } else { high = middle }
    }
    0.5 * (low + high)
}

/// m-first majority voting (accept the first answer to get `m` votes) against colluding
/// saboteurs: each vote is bad with probability `p_bad = f s`. Returns the probability that the
/// bad answer wins and the expected number of votes.
pub fn m_first_voting(p_bad: f64, m: u32) -> (f64, f64) {
    let m = m.max(1) as usize;
    // probability[good][bad] of reaching that count before either side reaches m.
    let mut probability = vec![vec![0.0f64; m + 1]; m + 1];
    probability[0][0] = 1.0;
    let (mut error, mut votes) = (0.0, 0.0);
    for total in 0..(2 * m - 1) {
        for good in 0..=total.min(m - 1) {
            let bad = total - good;
            if bad >= m {
                continue;
            }
            let p = probability[good][bad];
            if p == 0.0 {
                continue;
            }
            let (good_vote, bad_vote) = (p * (1.0 - p_bad), p * p_bad);
            if good + 1 == m {
                votes += good_vote * (total + 1) as f64;
            } else {
                probability[good + 1][bad] += good_vote;
            }
            if bad + 1 == m {
                error += bad_vote;
                votes += bad_vote * (total + 1) as f64;
            } else {
                probability[good][bad + 1] += bad_vote;
            }
        }
    }
    (error, votes)
}

impl fmt::Display for SimReport {
    fn fmt(&self, out: &mut fmt::Formatter<'_>) -> fmt::Result {
        let config = &self.config;
        writeln!(
            out,
            "Saboteur simulation: {} providers, {} tasks per row, seed {}. Saboteurs collude (every lie is the same wrong answer) and lie on each task and \
             test task with probability s; a quarantined saboteur {}; honest error rate {}; credibility model f = {}.",
            config.providers,
            config.tasks,
            config.seed,
            if config.saboteurs_rejoin { "comes back at once under a new identity" } else { "leaves for good" },
            config.honest_error_rate,
            config.assumed_saboteur_fraction.map_or("the row's f".to_string(), |f| f.to_string()),
        )?;
        for policy in &config.policies {
            let checks = &policy.spot_checks;
            if checks.rate > 0.0 || checks.new_provider_rate > 0.0 {
                writeln!(
                    out,
                    "`{}`: {:?}; spot checks at rate {} ({} until {} passed).",
                    policy.name, policy.policy, checks.rate, checks.new_provider_rate, checks.new_provider_checks
                )?;
            } else {
                writeln!(out, "`{}`: {:?}; no spot checks.", policy.name, policy.policy)?;
            }
        }
        writeln!(out)?;
        writeln!(
            out,
            "| policy | f | s | error rate | 95 % upper bound | wrong / accepted | inconclusive | replicas per task | test tasks per task | cost per task | quarantined | wrong, flagged later |"
        )?;
        writeln!(out, "|---|---|---|---|---|---|---|---|---|---|---|---|")?;
        for row in &self.rows {
            writeln!(
                out,
                "| {} | {} | {} | {:.2e} | {:.2e} | {} / {} | {} | {:.3} | {:.3} | {:.3} | {} | {} |",
                row.policy,
                row.saboteur_fraction,
                row.sabotage_rate,
                row.error_rate(),
                row.error_rate_upper_95(),
                row.wrong,
                row.accepted,
                row.inconclusive,
                row.replicas_per_task(),
                row.spot_checks_per_task(),
                row.cost_per_task(),
                row.quarantined,
                row.wrong_flagged_later,
            )?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "m-first majority voting (no spot checks) needed for an error rate of 1e-4, computed exactly (each vote bad with probability f s):"
        )?;
        for &f in &config.saboteur_fractions {
            for &s in &config.sabotage_rates {
                let p_bad = f * s;
                if p_bad <= 0.0 || p_bad >= 0.5 {
                    continue;
                }
                if let Some((m, (error, votes))) =
                    (1..=400).map(|m| (m, m_first_voting(p_bad, m))).find(|(_, (error, _))| *error <= 1e-4)
                {
                    writeln!(
                        out,
                        "- f = {f}, s = {s}: m = {m} agreeing votes, error {error:.2e}, {votes:.2} executions per task."
                    )?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poisson_bounds_match_tables() {
        // Exact one-sided 95 % bounds: 2.996 for 0 events, 4.744 for 1, 6.296 for 2.
        assert!((poisson_upper_95(0) - 2.9957).abs() < 1e-3);
        assert!((poisson_upper_95(1) - 4.7439).abs() < 1e-3);
        assert!((poisson_upper_95(2) - 6.2958).abs() < 1e-3);
        assert!(poisson_upper_95(1000) > 1050.0);
    }

    #[test]
    fn m_first_voting_by_hand() {
        // m = 2, p = 0.2: bad wins by BB, BGB, GBB: 0.04 + 2 * 0.032 = 0.104; votes:
        // 2 (GG or BB: 0.68) or 3 (otherwise: 0.32): 2.32.
        let (error, votes) = m_first_voting(0.2, 2);
        assert!((error - 0.104).abs() < 1e-12, "{error}");
        assert!((votes - 2.32).abs() < 1e-12, "{votes}");
        let (error, votes) = m_first_voting(0.2, 1);
        assert!((error - 0.2).abs() < 1e-12 && (votes - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bad_configurations_are_refused() {
        let bad = [
            SimConfig { providers: 1, ..SimConfig::default() },
            SimConfig { tasks: 0, ..SimConfig::default() },
            SimConfig { saboteur_fractions: vec![f64::NAN], ..SimConfig::default() },
            SimConfig { sabotage_rates: vec![1.5], ..SimConfig::default() },
            SimConfig { honest_error_rate: -0.1, ..SimConfig::default() },
            SimConfig { assumed_saboteur_fraction: Some(0.0), ..SimConfig::default() },
            SimConfig { typical_credibility_every: 0, ..SimConfig::default() },
        ];
        for config in bad {
            assert!(simulate(&config).is_err(), "{config:?}");
        }
    }

    #[test]
    fn honest_errors_and_saboteurs_that_leave_for_good() {
        let config = SimConfig {
            providers: 20,
            tasks: 3000,
            saboteur_fractions: vec![0.3],
            sabotage_rates: vec![0.5],
            honest_error_rate: 0.05,
            saboteurs_rejoin: false,
            ..SimConfig::default()
        };
        let report = simulate(&config).unwrap();
        for row in &report.rows {
            assert_eq!(row.accepted + row.inconclusive, row.tasks, "{row:?}");
        }
        // Spot checks catch the honest but faulty providers too; the population shrinks until
        // no replica can be placed, and the remaining tasks are inconclusive rather than stuck.
        let credibility = &report.rows[3];
        assert!(credibility.quarantined > 0 && credibility.quarantined <= 20, "{credibility:?}");
    }

    #[test]
    fn a_small_run_is_sane() {
        let config = SimConfig {
            providers: 50,
            tasks: 2000,
            saboteur_fractions: vec![0.2],
            sabotage_rates: vec![1.0],
            ..SimConfig::default()
        };
        let report = simulate(&config).unwrap();
        assert_eq!(report.rows.len(), 4);
        for row in &report.rows {
            assert_eq!(row.accepted + row.inconclusive, row.tasks, "{row:?}");
            assert!(row.replicas >= row.tasks, "{row:?}");
        }
        let quorum_2 = &report.rows[0];
        let credibility = &report.rows[3];
        // Colluding saboteurs that always lie beat quorum 2 often (about f^2 + ...), and never
        // the credibility policy at this size.
        assert!(quorum_2.wrong > 20, "{quorum_2:?}");
        // Quorum 2 is 2-first voting: the error rate and cost match the exact computation
        // (0.104 and 2.32 executions; the standard error over 2000 tasks is 0.007).
        let (error, votes) = m_first_voting(0.2, 2);
        assert!((quorum_2.error_rate() - error).abs() < 0.03, "{quorum_2:?}");
        assert!((quorum_2.replicas_per_task() - votes).abs() < 0.06, "{quorum_2:?}");
        assert!(credibility.error_rate() < quorum_2.error_rate() / 10.0, "{credibility:?}");
        assert!(credibility.quarantined > 0);
        let table = report.to_string();
        assert!(table.contains("| credibility 0.9999 | 0.2 | 1 |"), "{table}");
    }
}
