//! Requirements and rank between jobs and engines (D4, X6), in the market's expression language.
//!
//! An engine's owner may write a requirement over the jobs it runs (in the engine's settings,
//! sent to the server with its profile): `job.client in ["alice"]`, `job.pay_per_hour >= 2`,
//! `task.memory_mb <= 512`. A job may write a requirement over engines (`engine.memory_mb >=
//! 1024`) and a rank (`engine.gflops`). A task goes only to an engine where both requirements
//! hold, and among those to the engines its job ranks highest.
//!
//! Attributes a requirement or rank reads:
//! - of a job (`job.NAME` or `task.NAME`, one set): `client` (the client's name), `client_id`,
//!   `name`, `priority`, `paying`, `memory_mb` and `cpu_seconds` (its task limits), and
//!   `pay_per_hour`: what one of its tasks pays the engine per hour, the baseline price per
//!   GFLOP-hour times the engine's rated speed (0 for a job that pays nothing).
//! - of an engine (`engine.NAME`): `name`, `id`, `os`, `arch`, `cores`, `memory_mb`, `disk_mb`,
//!   `gflops` (measured, or the default rating until measured), `engine_version`.
//!
//! The decisions here are pure: the coordinator reads the attributes and expressions, asks
//! [`demand`] for what each task may use, and [`explain`] for why a job waits.

use idlegrid_market::expr::{AttributeMap, Attributes, Explanation, JOB_SCOPES, PROVIDER_SCOPES, Value};
use idlegrid_market::{Expr, ParseError};
use serde::{Deserialize, Serialize};

use crate::ReplicaDemand;

/// Parse an engine's requirement over jobs (`job.`, `task.` and `engine.` names).
pub fn parse_engine_requirement(source: &str) -> Result<Expr, ParseError> {
    Expr::parse_scoped(source, PROVIDER_SCOPES)
}

/// Parse a job's requirement or rank over engines (`engine.`, `job.` and `task.` names).
pub fn parse_job_expression(source: &str) -> Result<Expr, ParseError> {
    Expr::parse_scoped(source, JOB_SCOPES)
}

/// An engine as requirements see it.
#[derive(Debug, Clone, Default)]
pub struct EngineTerms {
    /// How the engine is named in explanations.
    pub label: String,
    pub attributes: AttributeMap,
    /// Rated speed of one slot, for `job.pay_per_hour`.
    pub gflops: f64,
    pub requirement: Option<Expr>,
}

/// A job as requirements see it.
#[derive(Debug, Clone, Default)]
pub struct JobTerms {
    pub attributes: AttributeMap,
    pub paying: bool,
    pub requirement: Option<Expr>,
    pub rank: Option<Expr>,
}

/// The job's attributes seen from one engine: its own, plus what it pays there.
struct JobSeen<'a> {
    job: &'a JobTerms,
    pay_per_hour: f64,
}

impl Attributes for JobSeen<'_> {
    fn attribute(&self, name: &str) -> Option<Value> {
        if name == "pay_per_hour" {
            return Some(Value::Number(self.pay_per_hour));
        }
        self.job.attributes.attribute(name)
    }
}

fn seen<'a>(job: &'a JobTerms, engine: &EngineTerms, price_per_gflop_hour: f64) -> JobSeen<'a> {
    let pay = if job.paying { price_per_gflop_hour * engine.gflops } else { 0.0 };
    JobSeen { job, pay_per_hour: if pay.is_finite() && pay > 0.0 { pay } else { 0.0 } }
}

/// Whether both requirements hold between a job and an engine.
pub fn fits(job: &JobTerms, engine: &EngineTerms, price_per_gflop_hour: f64) -> bool {
    refusal(job, engine, price_per_gflop_hour).is_none()
}

/// Which side refuses, and the clauses that do not hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    /// The engine's requirement over jobs is not met by this job.
    Engine { requirement: String, explanation: Explanation },
    /// The job's requirement over engines is not met by this engine.
    Job { requirement: String, explanation: Explanation },
}

/// Why a job may not go to an engine, or `None` when it may (the engine's requirement is
/// tested first).
pub fn refusal(job: &JobTerms, engine: &EngineTerms, price_per_gflop_hour: f64) -> Option<Refusal> {
    let job_seen = seen(job, engine, price_per_gflop_hour);
    if let Some(requirement) = &engine.requirement
        && !requirement.holds(&engine.attributes, &job_seen)
    {
        return Some(Refusal::Engine {
            requirement: requirement.source().to_string(),
            explanation: requirement.explain(&engine.attributes, &job_seen),
        });
    }
    if let Some(requirement) = &job.requirement
        && !requirement.holds(&job_seen, &engine.attributes)
    {
        return Some(Refusal::Job {
            requirement: requirement.source().to_string(),
            explanation: requirement.explain(&job_seen, &engine.attributes),
        });
    }
    None
}

/// The job's rank of an engine (0 without a rank, or when the rank is not a number).
pub fn rank(job: &JobTerms, engine: &EngineTerms, price_per_gflop_hour: f64) -> f64 {
    match &job.rank {
        Some(rank) => {
            let value = rank.rank(&seen(job, engine, price_per_gflop_hour), &engine.attributes);
            if value.is_finite() { value } else { 0.0 }
        }
        None => 0.0,
    }
}

/// What a task of `job` asks of a scheduling pass over `engines`: `wanted` placements, none on
/// an engine of `excluded` or one where a requirement fails, and the job's rank of each engine
/// when it has a rank.
pub fn demand(
    job: &JobTerms,
    engines: &[EngineTerms],
    wanted: u32,
    mut excluded: Vec<usize>,
    price_per_gflop_hour: f64,
) -> ReplicaDemand {
    let anyone_requires = job.requirement.is_some() || engines.iter().any(|e| e.requirement.is_some());
    if anyone_requires {
        for (index, engine) in engines.iter().enumerate() {
            if !excluded.contains(&index) && !fits(job, engine, price_per_gflop_hour) {
                excluded.push(index);
            }
        }
    }
    let rank =
        job.rank.as_ref().map(|_| engines.iter().map(|engine| rank(job, engine, price_per_gflop_hour)).collect());
    ReplicaDemand { wanted, excluded, rank }
}

/// One requirement that keeps engines from a job, and how many.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TermsReport {
    /// What it says, with the clauses that fail for the first engine it rules out.
    pub requirement: String,
    pub ruled_out: u64,
}

/// Why engines are kept from a job by requirements: one line per distinct requirement that
/// fails, engines' requirements named with the first engine they keep, most ruled out first.
pub fn explain(job: &JobTerms, engines: &[EngineTerms], price_per_gflop_hour: f64) -> Vec<TermsReport> {
    let mut reports: Vec<(String, String, u64)> = Vec::new();
    for engine in engines {
        let Some(refusal) = refusal(job, engine, price_per_gflop_hour) else { continue };
        let (key, text) = match refusal {
            Refusal::Engine { requirement, explanation } => (
                format!("engine:{requirement}"),
                format!("engine {}'s requirement `{requirement}`: {explanation}", engine.label),
            ),
            Refusal::Job { requirement, explanation } => (
                format!("job:{requirement}"),
                format!("the job's requirement `{requirement}`: {explanation} (on engine {})", engine.label),
            ),
        };
        match reports.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, _, count)) => *count += 1,
            None => reports.push((key, text, 1)),
        }
    }
    reports.sort_by_key(|report| std::cmp::Reverse(report.2));
    reports.into_iter().map(|(_, requirement, ruled_out)| TermsReport { requirement, ruled_out }).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::place_replicas;

    fn engine(label: &str, memory_mb: f64, gflops: f64, requirement: Option<&str>) -> EngineTerms {
        EngineTerms {
            label: label.into(),
            attributes: AttributeMap::new().with("name", label).with("memory_mb", memory_mb).with("gflops", gflops),
            gflops,
            requirement: requirement.map(|r| parse_engine_requirement(r).unwrap()),
        }
    }

    fn job(client: &str, memory_mb: f64, requirement: Option<&str>, rank: Option<&str>) -> JobTerms {
        JobTerms {
            attributes: AttributeMap::new().with("client", client).with("memory_mb", memory_mb),
            paying: true,
            requirement: requirement.map(|r| parse_job_expression(r).unwrap()),
            rank: rank.map(|r| parse_job_expression(r).unwrap()),
        }
    }

    #[test]
    fn an_engine_requirement_keeps_other_clients_jobs_away() {
        let engines = [
            engine("a", 1024.0, 1.0, Some(r#"job.client in ["alice"]"#)),
            engine("b", 1024.0, 1.0, Some("task.memory_mb <= 512")),
        ];
        let bob = job("bob", 256.0, None, None);
        assert!(!fits(&bob, &engines[0], 0.25));
        assert!(fits(&bob, &engines[1], 0.25));
        let demand = demand(&bob, &engines, 1, Vec::new(), 0.25);
        assert_eq!(demand.excluded, vec![0]);
        assert_eq!(place_replicas(&[4, 1], &[demand]), vec![(0, 1)], "the roomier engine refuses bob");
        let reports = explain(&bob, &engines, 0.25);
        assert_eq!(reports.len(), 1);
        assert_eq!(reports[0].ruled_out, 1);
        assert!(reports[0].requirement.contains(r#"engine a's requirement `job.client in ["alice"]`"#), "{reports:?}");
        assert!(reports[0].requirement.contains(r#"job.client = "bob""#), "{reports:?}");
    }

    #[test]
    fn pay_per_hour_is_the_engine_rating_priced_and_nothing_for_unpaid_work() {
        let picky = engine("a", 1024.0, 8.0, Some("job.pay_per_hour >= 1.5"));
        let mut work = job("alice", 64.0, None, None);
        assert!(fits(&work, &picky, 0.25), "8 GFLOPS at 0.25 pays 2 per hour");
        assert!(!fits(&work, &picky, 0.1));
        work.paying = false;
        assert!(!fits(&work, &picky, 0.25));
    }

    #[test]
    fn the_job_requirement_and_rank_choose_among_engines() {
        let engines =
            [engine("small", 512.0, 1.0, None), engine("fast", 4096.0, 9.0, None), engine("mid", 2048.0, 3.0, None)];
        let work = job("alice", 64.0, Some("engine.memory_mb >= 1024"), Some("engine.gflops"));
        let demand = demand(&work, &engines, 2, Vec::new(), 0.25);
        assert_eq!(demand.excluded, vec![0]);
        assert_eq!(demand.rank, Some(vec![1.0, 9.0, 3.0]));
        // The small engine has the most room but fails the requirement; the fast one ranks first.
        assert_eq!(place_replicas(&[9, 1, 5], &[demand.clone(), demand]), vec![(0, 1), (0, 2), (1, 2)]);
        let reports = explain(&work, &engines, 0.25);
        assert_eq!(reports[0].ruled_out, 1);
        assert!(reports[0].requirement.starts_with("the job's requirement `engine.memory_mb >= 1024`"), "{reports:?}");
    }

    proptest! {
        #[test]
        fn no_placement_ever_breaks_a_requirement(
            limits in proptest::collection::vec(0u32..4, 1..8),
            rooms in proptest::collection::vec(0u32..4, 8),
            jobs in proptest::collection::vec((0u32..4, 1u32..3, any::<bool>()), 0..12),
        ) {
            let engines: Vec<EngineTerms> = limits.iter().enumerate().map(|(i, limit)| {
                engine(&i.to_string(), 1024.0, (i + 1) as f64, (*limit > 0).then(|| format!("task.memory_mb <= {}", limit * 100)).as_deref())
            }).collect();
            let demands: Vec<ReplicaDemand> = jobs.iter().map(|(memory, wanted, ranked)| {
                let terms = job("c", (*memory * 100 + 50) as f64, None, ranked.then_some("engine.gflops"));
                demand(&terms, &engines, *wanted, Vec::new(), 0.25)
            }).collect();
            let jobs: Vec<JobTerms> = jobs.iter().map(|(memory, _, _)| job("c", (*memory * 100 + 50) as f64, None, None)).collect();
            let plan = place_replicas(&rooms[..engines.len()], &demands);
            for (d, e) in plan {
                prop_assert!(fits(&jobs[d], &engines[e], 0.25));
            }
        }
    }
}
