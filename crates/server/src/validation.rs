//! Jobs' validators (P6.1): when two results of a task may differ slightly, the job names a
//! validator element, and the coordinator asks for a comparison instead of comparing bytes.
//! The server runs the validator here, outside any transaction, and records the verdict with
//! `Coordinator::record_comparison`.
//!
//! A validator is a task like any other (WASI preview 1 and the runtime API, the same sandbox
//! as on engines): it reads the data elements `first` and `second` and returns a result that
//! starts with `equivalent` or `different`. Anything else, a trap, running out of CPU time or
//! memory, or another answer, is `Comparison::Failed`, which never counts as agreement: a
//! broken validator can leave a task inconclusive, never make it accept a result.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use idlegrid_assurance::Comparison;
use idlegrid_coordinator::assurance::PendingComparison;
use idlegrid_protocol::Payload;
use idlegrid_sandbox::{
    NoEvents, Sandbox, SandboxConfig, TaskControl, TaskElement, TaskInput, TaskLimits, TaskOutcome,
};
use idlegrid_types::ElementHash;

use crate::AppState;

/// Most memory a validator may use, whatever the job's task limits say.
pub const VALIDATOR_MEMORY_BYTES_MAX: u64 = 256 << 20;

/// The server's sandbox for validators, started on first use.
pub(crate) struct Validators {
    sandbox: std::sync::OnceLock<Result<Sandbox, String>>,
    cpu_time_max: Duration,
}

impl Validators {
    pub(crate) fn new(cpu_time_max: Duration) -> Validators {
        Validators { sandbox: std::sync::OnceLock::new(), cpu_time_max }
    }

    fn sandbox(&self) -> Result<&Sandbox, String> {
        self.sandbox
            .get_or_init(|| Sandbox::new(SandboxConfig::default()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Run `validator` on two results; a verdict, whatever goes wrong.
    pub(crate) fn compare(
        &self,
        validator: &[u8],
        first: Vec<u8>,
        second: Vec<u8>,
        memory_bytes_max: u64,
    ) -> Comparison {
        let sandbox = match self.sandbox() {
            Ok(sandbox) => sandbox,
            Err(error) => {
                tracing::error!(%error, "cannot start the sandbox for validators");
                return Comparison::Failed;
            }
        };
        let compiled = match sandbox.compile(validator) {
            Ok(compiled) => compiled,
            Err(error) => {
                tracing::info!(%error, "a job's validator does not compile");
                return Comparison::Failed;
            }
        };
        let limits = TaskLimits {
            memory_bytes_max: memory_bytes_max.clamp(1 << 20, VALIDATOR_MEMORY_BYTES_MAX),
            cpu_time_max: self.cpu_time_max,
            result_bytes_max: 1024,
            ..TaskLimits::default()
        };
        let elements: BTreeMap<String, TaskElement> = [
            ("first".to_string(), TaskElement::Memory(first.into())),
            ("second".to_string(), TaskElement::Memory(second.into())),
        ]
        .into();
        let run = sandbox.run(
            &compiled,
            TaskInput { params: Vec::new(), elements, checkpoint: None },
            &limits,
            &TaskControl::new(),
            Box::new(NoEvents),
        );
        verdict(&run.outcome)
    }
}

/// What a validator's outcome says about the two results.
pub(crate) fn verdict(outcome: &TaskOutcome) -> Comparison {
    match outcome {
        TaskOutcome::Succeeded(answer) if answer.starts_with(b"equivalent") => Comparison::Equivalent,
        TaskOutcome::Succeeded(answer) if answer.starts_with(b"different") => Comparison::Different,
        _ => Comparison::Failed,
    }
}

async fn bytes_of(state: &AppState, payload: &Payload) -> anyhow::Result<Vec<u8>> {
    match payload {
        Payload::Inline(bytes) => Ok(bytes.clone()),
        Payload::Element(element) => element_bytes(state, &element.hash).await,
    }
}

async fn element_bytes(state: &AppState, hash: &ElementHash) -> anyhow::Result<Vec<u8>> {
    let stream = state.elements.download(hash).await?;
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await?;
    Ok(chunks.concat())
}

/// Run the comparisons a transaction asked for, one after the other, and record each verdict.
pub(crate) fn spawn(state: &Arc<AppState>, comparisons: Vec<PendingComparison>) {
    let state = state.clone();
    tokio::spawn(async move {
        for comparison in comparisons {
            let outcome = match run_one(&state, &comparison).await {
                Ok(outcome) => outcome,
                Err(error) => {
                    // The bytes are gone (the job was removed meanwhile) or unreadable now.
                    tracing::warn!(task = comparison.task, %error, "cannot run a validator; the comparison counts as failed");
                    Comparison::Failed
                }
            };
            let (task, first, second) = (comparison.task, comparison.first.0, comparison.second.0);
            let recorded = state
                .run(move |coordinator, tx, fx| {
                    let more = coordinator.record_comparison(tx, task, first, second, outcome, crate::now_ms())?;
                    fx.merge(more);
                    Ok(())
                })
                .await;
            if let Err(error) = recorded {
                tracing::warn!(task, %error, "cannot record a validator's verdict");
            }
        }
    });
}

async fn run_one(state: &Arc<AppState>, comparison: &PendingComparison) -> anyhow::Result<Comparison> {
    let validator = element_bytes(state, &comparison.validator).await?;
    let first = bytes_of(state, &comparison.first.1).await?;
    let second = bytes_of(state, &comparison.second.1).await?;
    let memory = comparison.memory_bytes_max;
    let worker = state.clone();
    Ok(tokio::task::spawn_blocking(move || worker.validators.compare(&validator, first, second, memory)).await?)
}
