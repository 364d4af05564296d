//! Reading what requirements and ranks need for a scheduling pass or an explanation: each
//! engine's requirement over jobs (from its profile) and attributes (its party, its profile),
//! and each job's requirement, rank and attributes. The decisions are `idlegrid_scheduler::terms`.

use idlegrid_market::expr::AttributeMap;
use idlegrid_scheduler::terms::{EngineTerms, JobTerms, parse_engine_requirement, parse_job_expression};
use idlegrid_store::{JobRow, StoreError, Tx};
use idlegrid_types::PartyId;

use crate::Coordinator;

/// Bytes in the megabyte that memory attributes count in.
const MB: u64 = 1 << 20;

impl Coordinator {
    /// What a task of any job pays an engine per hour and GFLOPS of its rating.
    pub(crate) fn price_per_gflop_hour(&self) -> f64 {
        self.config.pricing.baseline_price_per_gflop_hour
    }

    /// An engine's attributes and requirement. A stored requirement that no longer parses
    /// (checked when reported, so only after a change of the language) keeps every job away,
    /// as the owner asked for some restriction.
    pub(crate) fn engine_terms(&self, tx: &mut dyn Tx, id: &PartyId) -> Result<EngineTerms, StoreError> {
        let profile = self.provider_profile(tx, id)?.unwrap_or_default();
        let name = tx.party(id)?.map(|party| party.name).unwrap_or_default();
        let gflops = profile.measured_gflops().unwrap_or(self.config.engine_power_gflops_default);
        let mut attributes = AttributeMap::new()
            .with("name", if name.is_empty() { id.to_string() } else { name.clone() }.as_str())
            .with("id", id.to_string().as_str())
            .with("gflops", gflops);
        if let Some(os) = &profile.os {
            attributes.insert("os", os.as_str());
        }
        if let Some(arch) = &profile.arch {
            attributes.insert("arch", arch.as_str());
        }
        if let Some(cores) = profile.cores {
            attributes.insert("cores", cores as f64);
        }
        if let Some(memory) = profile.memory_bytes {
            attributes.insert("memory_mb", (memory / MB) as f64);
        }
        if let Some(disk) = profile.disk_bytes {
            attributes.insert("disk_mb", (disk / MB) as f64);
        }
        if let Some(version) = &profile.engine_version {
            attributes.insert("engine_version", version.as_str());
        }
        // Computing sold on the market reserves the engine for its buyers.
        let source = self.market_engine_requirement(tx, id, profile.job_requirement.as_deref())?;
        let requirement = source.as_deref().map(|source| {
            parse_engine_requirement(source).unwrap_or_else(|_| parse_engine_requirement("false").expect("parses"))
        });
        let label = if name.is_empty() { id.to_string() } else { format!("{name} ({id})") };
        Ok(EngineTerms { label, attributes, gflops, requirement })
    }

    /// A job's attributes, requirement and rank (checked when the job was created; one that no
    /// longer parses keeps the job waiting, with `job explain` saying so).
    pub(crate) fn job_terms(&self, tx: &mut dyn Tx, job: &JobRow) -> Result<JobTerms, StoreError> {
        let properties = &job.properties;
        let client = tx.party(&job.client)?.map(|party| party.name).unwrap_or_default();
        let paying = properties.scheduling_hints.get("paying").map(|v| v.trim().to_ascii_lowercase())
            != Some("false".to_string());
        let attributes = AttributeMap::new()
            .with("client", client.as_str())
            .with("client_id", job.client.to_string().as_str())
            .with("name", properties.name.as_str())
            .with("priority", properties.priority as f64)
            .with("paying", paying)
            .with("memory_mb", (properties.task_limits.memory_bytes_max / MB) as f64)
            .with("cpu_seconds", properties.task_limits.cpu_seconds_max as f64);
        let parse = |source: &Option<String>| {
            source.as_deref().map(|source| {
                parse_job_expression(source).unwrap_or_else(|_| parse_job_expression("false").expect("parses"))
            })
        };
        // A job checked by replicas places its quorum's members on engines fit to be its nodes.
        let requirement = match &properties.cluster {
            Some(cluster) if crate::assurance::is_assured(job) => {
                idlegrid_scheduler::cluster_quorum::combined(properties.requirement.as_deref(), Some(cluster))
            }
            _ => properties.requirement.clone(),
        };
        Ok(JobTerms { attributes, paying, requirement: parse(&requirement), rank: parse(&properties.rank) })
    }
}
