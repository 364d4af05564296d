//! Traces of a task's whole path in OpenTelemetry: the client that submits it, the server that
//! stores and schedules it, the engine that fetches, runs and reports it, the server that
//! records its result, and the client that receives it.
//!
//! Spans meant for traces are `tracing` spans with the target [`TARGET`]. Only the layer
//! [`layer`] makes, installed when an OTLP endpoint is configured (`--otlp-endpoint`, or the
//! standard `OTEL_EXPORTER_OTLP_ENDPOINT` / `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`), turns them
//! into OpenTelemetry spans and exports them over OTLP/HTTP (protobuf) in batches. Without it
//! nothing listens to that target: the spans are disabled at their call site, no context is
//! made, no header or field is sent.
//!
//! The context crosses processes as a W3C `traceparent` ([`TraceParent`]): in the header of a
//! traced HTTP request, and in the protocol's assignment and status messages.

use std::time::Duration;

use idlegrid_protocol::TraceParent;
use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState, TracerProvider};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

/// The `tracing` target of every span that belongs in a trace. Outside the `idlegrid` crates'
/// own targets, so that the terminal log's filter leaves these spans out.
pub const TARGET: &str = "otel::idlegrid";

/// Where traces go: the OTLP/HTTP URL that receives them (`.../v1/traces`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub traces_url: Option<String>,
}

/// Whether traces are exported, and where: the flag's endpoint (a base URL, `/v1/traces` is
/// added as for `OTEL_EXPORTER_OTLP_ENDPOINT`), else the standard variables (read by the
/// exporter itself); `None` when neither is set or `OTEL_SDK_DISABLED` is `true`. `env` looks up
/// a variable (pure, for tests).
pub fn configured(flag: Option<&str>, env: impl Fn(&str) -> Option<String>) -> Option<Export> {
    let set = |name: &str| env(name).filter(|value| !value.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|value| value.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    if let Some(base) = flag.map(str::trim).filter(|f| !f.is_empty()) {
        return Some(Export { traces_url: Some(format!("{}/v1/traces", base.trim_end_matches('/'))) });
    }
    if set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() || set("OTEL_EXPORTER_OTLP_ENDPOINT").is_some() {
        return Some(Export { traces_url: None });
    }
    None
}

/// The exporter's provider: ends (flushing what is still batched) when shut down or dropped.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Send every span still batched, waiting at most a few seconds for the receiver.
    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown_with_timeout(Duration::from_secs(5)) {
            eprintln!("warning: traces not all exported: {error}");
        }
    }
}

/// The layer that exports the spans of [`TARGET`] for `service` (the default service name,
/// unless `OTEL_SERVICE_NAME` names another), and its provider to keep until the end of the
/// process; `None` when traces are not configured.
#[allow(clippy::type_complexity)]
pub fn layer<S>(
    service: &str,
    flag: Option<&str>,
) -> anyhow::Result<Option<(Box<dyn Layer<S> + Send + Sync + 'static>, Telemetry)>>
where
    S: tracing::Subscriber + for<'span> LookupSpan<'span> + Send + Sync + 'static,
{
    let Some(export) = configured(flag, |name| std::env::var(name).ok()) else { return Ok(None) };
    let mut exporter =
        opentelemetry_otlp::SpanExporter::builder().with_http().with_protocol(opentelemetry_otlp::Protocol::HttpBinary);
    if let Some(url) = &export.traces_url {
        exporter = exporter.with_endpoint(url.clone());
    }
    let exporter =
        exporter.build().map_err(|error| anyhow::anyhow!("cannot set up the OTLP trace exporter: {error}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none_or(|name| name.is_empty()) {
        resource = resource.with_service_name(service.to_string());
    }
    let provider = SdkTracerProvider::builder().with_batch_exporter(exporter).with_resource(resource.build()).build();
    let tracer = provider.tracer("idlegrid");
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_filter(Targets::new().with_target(TARGET, tracing::Level::TRACE));
    Ok(Some((Box::new(layer), Telemetry { provider })))
}

/// The trace context of `span`, when it is part of an exported trace.
pub fn of(span: &tracing::Span) -> Option<TraceParent> {
    if span.is_disabled() {
        return None;
    }
    let context = span.context();
    let otel = context.span();
    let span_context = otel.span_context();
    if !span_context.is_valid() {
        return None;
    }
    TraceParent::from_parts(
        span_context.trace_id().to_bytes(),
        span_context.span_id().to_bytes(),
        span_context.trace_flags().to_u8(),
    )
}

/// The trace context of the current span, when it is part of an exported trace: what a traced
/// request's `traceparent` header says.
pub fn current() -> Option<TraceParent> {
    of(&tracing::Span::current())
}

/// Make `span` a child of the remote span `parent` names (no-op for a disabled span or none).
pub fn set_parent(span: &tracing::Span, parent: Option<&TraceParent>) {
    let Some(parent) = parent else { return };
    if span.is_disabled() {
        return;
    }
    let (Ok(trace_id), Ok(span_id)) = (TraceId::from_hex(parent.trace_id()), SpanId::from_hex(parent.span_id())) else {
        return;
    };
    let remote = SpanContext::new(trace_id, span_id, TraceFlags::new(parent.flags()), true, TraceState::default());
    let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn nothing_configured_exports_nothing() {
        assert_eq!(configured(None, env(&[])), None);
        assert_eq!(configured(Some("  "), env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "")])), None);
        assert_eq!(configured(None, env(&[("OTEL_SERVICE_NAME", "x")])), None);
    }

    #[test]
    fn the_flag_is_a_base_url_and_wins_over_the_environment() {
        let export = configured(Some("http://127.0.0.1:4318/"), env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://x")]));
        assert_eq!(export, Some(Export { traces_url: Some("http://127.0.0.1:4318/v1/traces".into()) }));
    }

    #[test]
    fn the_standard_variables_configure_it_and_sdk_disabled_turns_it_off() {
        let base = configured(None, env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]));
        assert_eq!(base, Some(Export { traces_url: None }));
        let traces = configured(None, env(&[("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4318/v1/traces")]));
        assert_eq!(traces, Some(Export { traces_url: None }));
        let disabled = env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), ("OTEL_SDK_DISABLED", "TRUE")]);
        assert_eq!(configured(Some("http://flag:4318"), disabled), None);
    }

    #[test]
    fn without_the_layer_spans_carry_no_context() {
        let span = tracing::info_span!(target: TARGET, "untraced");
        let _entered = span.enter();
        assert_eq!(current(), None);
        let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        set_parent(&span, Some(&parent));
        assert_eq!(of(&span), None);
    }

    #[test]
    fn with_the_layer_a_span_joins_its_remote_parent_and_names_itself() {
        use tracing_subscriber::layer::SubscriberExt;
        let provider = SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("test"))
            .with_filter(Targets::new().with_target(TARGET, tracing::Level::TRACE));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(subscriber, || {
            let parent = TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
            let span = tracing::info_span!(target: TARGET, "child");
            set_parent(&span, Some(&parent));
            let context = span.in_scope(current).expect("a traced span has a context");
            assert_eq!(context.trace_id(), parent.trace_id());
            assert_ne!(context.span_id(), parent.span_id());
            // A span of another target is not traced.
            let other = tracing::info_span!("not for traces");
            assert_eq!(of(&other), None);
        });
    }
}
