//! The server's flags about tasks' data: how often engines upload running tasks'
//! checkpoints, when an engine whose owner came back hands its tasks over (migration), how
//! often engines are asked what they hold, and how
//! long results nobody fetched are kept (archived, then purged after a warning).

use idlegrid_server::ServerConfig;

/// Checkpoint and migration flags of `idlegrid server`.
#[derive(clap::Args, Debug, Clone)]
pub struct CheckpointArgs {
    /// Seconds between uploads of a running task's checkpoint to the server for jobs that
    /// name no period (a task of a vanished engine resumes from it elsewhere); 0: only jobs
    /// that ask (`checkpoint_upload_secs`) upload.
    #[arg(long, default_value_t = 300)]
    pub checkpoint_upload_secs: u64,
    /// The shortest upload period a job may ask for.
    #[arg(long, default_value_t = 10)]
    pub checkpoint_upload_secs_min: u64,
    /// When an engine's owner comes back and its availability history expects it busy for at
    /// least this many seconds, its running tasks are checkpointed and move to other engines;
    /// 0: they wait for their engine.
    #[arg(long, default_value_t = 1800)]
    pub migrate_after_busy_secs: u64,
    /// Seconds between two questions to an engine about the tasks it holds (its answer is
    /// reconciled with the server's records); 0: only after a silence or a disagreement.
    #[arg(long, default_value_t = idlegrid_coordinator::CoordinatorConfig::default().contents_audit_ms.unwrap_or(0) / 1000)]
    pub engine_audit_secs: u64,
}

impl CheckpointArgs {
    pub fn apply(&self, config: &mut ServerConfig) {
        let uploads = &mut config.coordinator.checkpoint_uploads;
        uploads.default_ms =
            (self.checkpoint_upload_secs > 0).then(|| self.checkpoint_upload_secs.saturating_mul(1000));
        uploads.min_ms = self.checkpoint_upload_secs_min.saturating_mul(1000);
        config.coordinator.migrate_after_busy_ms =
            (self.migrate_after_busy_secs > 0).then(|| self.migrate_after_busy_secs.saturating_mul(1000));
        config.coordinator.contents_audit_ms =
            (self.engine_audit_secs > 0).then(|| self.engine_audit_secs.saturating_mul(1000));
    }
}

/// Retention flags of `idlegrid server` (P4.11).
#[derive(clap::Args, Debug, Clone)]
pub struct RetentionArgs {
    /// Seconds after its job completed that results nobody fetched are archived (compressed;
    /// still retrievable).
    #[arg(long, default_value_t = idlegrid_coordinator::CoordinatorConfig::default().archive_after_ms / 1000)]
    pub archive_after_secs: u64,
    /// Seconds after its job completed that a job whose results were not all fetched is
    /// purged with its results and data.
    #[arg(long, default_value_t = idlegrid_coordinator::CoordinatorConfig::default().results_retention_ms / 1000)]
    pub results_retention_secs: u64,
    /// Seconds before the purge that the client is warned (by its notices).
    #[arg(long, default_value_t = idlegrid_coordinator::CoordinatorConfig::default().purge_warning_ms / 1000)]
    pub purge_warning_secs: u64,
}

impl RetentionArgs {
    pub fn apply(&self, config: &mut ServerConfig) -> anyhow::Result<()> {
        if self.archive_after_secs > self.results_retention_secs {
            anyhow::bail!("--archive-after-secs must not be longer than --results-retention-secs");
        }
        config.coordinator.archive_after_ms = self.archive_after_secs.saturating_mul(1000);
        config.coordinator.results_retention_ms = self.results_retention_secs.saturating_mul(1000);
        config.coordinator.purge_warning_ms = self.purge_warning_secs.saturating_mul(1000);
        Ok(())
    }
}
