//! The server's preemption flags: whether waiting tasks of a higher priority take engines from
//! running ones, and the bounds that keep it fair (P5.6).

use idlegrid_scheduler::preempt::PreemptionPolicy;
use idlegrid_server::ServerConfig;

/// On or off.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Switch {
    On,
    Off,
}

/// Preemption flags of `idlegrid server`.
#[derive(clap::Args, Debug, Clone)]
pub struct PreemptionArgs {
    /// When no engine has room, a waiting task of a higher priority has a running task of a
    /// lower one stopped: it checkpoints, is queued again and resumes later from its checkpoint.
    #[arg(long, value_enum, default_value_t = Switch::Off)]
    pub preemption: Switch,
    /// A waiting task preempts only tasks at least this much lower in priority.
    #[arg(long, default_value_t = PreemptionPolicy::default().priority_gap_min)]
    pub preemption_gap: i64,
    /// A task is preempted at most this many times; then it runs to its end.
    #[arg(long, default_value_t = PreemptionPolicy::default().per_task_max)]
    pub preemptions_per_task_max: u32,
    /// Priority a waiting task gains per minute it waits (so low priorities are not starved).
    #[arg(long, default_value_t = PreemptionPolicy::default().aging_per_minute)]
    pub preemption_aging: f64,
}

impl PreemptionArgs {
    pub fn apply(&self, config: &mut ServerConfig) -> anyhow::Result<()> {
        let policy = PreemptionPolicy {
            enabled: self.preemption == Switch::On,
            priority_gap_min: self.preemption_gap,
            per_task_max: self.preemptions_per_task_max,
            aging_per_minute: self.preemption_aging,
        };
        policy.validate().map_err(anyhow::Error::msg)?;
        config.coordinator.preemption = policy;
        Ok(())
    }
}
