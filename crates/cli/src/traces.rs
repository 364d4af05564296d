//! Traces for this process (see `idlegrid_telemetry`): the `--otlp-endpoint` flag, the layer
//! that exports spans when it or the standard `OTEL_EXPORTER_OTLP_*` variables are set, and the
//! final flush when the command ends.

use std::sync::{Mutex, OnceLock};

use idlegrid_telemetry::Telemetry;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The `--otlp-endpoint` flag, set once in `main`.
static ENDPOINT: OnceLock<Option<String>> = OnceLock::new();
/// The exporter, kept until `finish` flushes it.
static EXPORTER: Mutex<Option<Telemetry>> = Mutex::new(None);

pub fn set_endpoint(flag: Option<String>) {
    let _ = ENDPOINT.set(flag);
}

/// The exporting layer for this process's `service` (`None` when traces are not configured, or
/// the exporter cannot be set up: then a warning says why and the command goes on untraced).
pub fn layer<S>(service: &str) -> Option<Box<dyn Layer<S> + Send + Sync + 'static>>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span> + Send + Sync + 'static,
{
    let flag = ENDPOINT.get().and_then(|f| f.as_deref());
    match idlegrid_telemetry::layer(service, flag) {
        Ok(Some((layer, telemetry))) => {
            *EXPORTER.lock().unwrap_or_else(|p| p.into_inner()) = Some(telemetry);
            Some(layer)
        }
        Ok(None) => None,
        Err(error) => {
            eprintln!("warning: traces are not exported: {error:#}");
            None
        }
    }
}

/// Export the spans still batched (at the end of the command).
pub fn finish() {
    let exporter = EXPORTER.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
}
