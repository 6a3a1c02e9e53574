//! The OTLP exporter: where spans go, chosen by `STAMPEDE_OTLP_ENDPOINT` or
//! the standard `OTEL_*` variables, and the `tracing` layer that turns our
//! spans into OpenTelemetry spans. Off unless an endpoint is named; then no
//! layer is installed and spans cost what they cost before.
//!
//! The SDK itself honours the rest of the standard variables: the sampler
//! (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`), the resource
//! (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`), the batch processor
//! (`OTEL_BSP_*`) and the exporter's headers, timeout and compression
//! (`OTEL_EXPORTER_OTLP_[TRACES_]HEADERS|TIMEOUT|COMPRESSION`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use opentelemetry::KeyValue;
use opentelemetry::trace::{
    Span as _, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::dynamic_filter_fn;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use crate::TraceParent;

static ON: AtomicBool = AtomicBool::new(false);
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Whether spans are exported (one relaxed load: callers check it before
/// doing anything only an exporter needs).
pub fn is_on() -> bool {
    ON.load(Ordering::Relaxed)
}

/// How spans reach the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `http/protobuf`: POST to `<base>/v1/traces` (the OTLP default).
    HttpProtobuf,
    /// `grpc`: the collector's `TraceService/Export`.
    Grpc,
}

/// Where and how to export, read from the setting and the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub protocol: Protocol,
    /// The URL given to the exporter; `None`: it reads the standard
    /// variables itself (`OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT`).
    pub endpoint: Option<String>,
}

impl Plan {
    /// `None` when tracing is off: no endpoint anywhere, `OTEL_SDK_DISABLED`
    /// true, or `OTEL_TRACES_EXPORTER=none`. `setting` is
    /// `STAMPEDE_OTLP_ENDPOINT`, a base URL like the standard
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, which it overrides.
    pub fn read(
        setting: Option<&str>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Self>, String> {
        let var = |name: &str| env(name).filter(|value| !value.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match var("OTEL_TRACES_EXPORTER").as_deref().map(str::trim) {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(format!(
                    "OTEL_TRACES_EXPORTER `{other}` is not supported: `otlp` or `none`"
                ));
            }
        }
        let setting = setting.map(str::trim).filter(|s| !s.is_empty());
        let named = setting.is_some()
            || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
            || var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
        if !named {
            return Ok(None);
        }
        let protocol = match var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"))
            .as_deref()
            .map(str::trim)
        {
            None | Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("grpc") => Protocol::Grpc,
            Some(other) => {
                return Err(format!(
                    "OTLP protocol `{other}` is not supported: `http/protobuf` or `grpc`"
                ));
            }
        };
        let endpoint = match setting {
            Some(base) => {
                if !(base.starts_with("http://") || base.starts_with("https://")) {
                    return Err(format!("`{base}` is not an http:// or https:// URL"));
                }
                let base = base.trim_end_matches('/');
                Some(match protocol {
                    Protocol::HttpProtobuf => format!("{base}/v1/traces"),
                    Protocol::Grpc => base.to_owned(),
                })
            }
            None => None,
        };
        Ok(Some(Self { protocol, endpoint }))
    }
}

/// The running exporter: hand its [`layer`](Self::layer) to the subscriber,
/// and [`shutdown`](Self::shutdown) it last to send what is still queued.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Builds the exporter and turns tracing on. Call it inside the Tokio
    /// runtime: the gRPC channel lives on it.
    pub fn start(plan: &Plan) -> Result<Self, String> {
        let exporter = match plan.protocol {
            Protocol::HttpProtobuf => {
                let builder = SpanExporter::builder().with_http();
                match &plan.endpoint {
                    Some(endpoint) => builder.with_endpoint(endpoint).build(),
                    None => builder.build(),
                }
            }
            Protocol::Grpc => {
                let builder = SpanExporter::builder().with_tonic();
                match &plan.endpoint {
                    Some(endpoint) => builder.with_endpoint(endpoint).build(),
                    None => builder.build(),
                }
            }
        }
        .map_err(|err| format!("the OTLP exporter: {err}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource())
            .build();
        let tracer = provider.tracer("stampede");
        // A second start in one process (tests) keeps the first tracer.
        let _ = TRACER.set(tracer);
        ON.store(true, Ordering::Relaxed);
        Ok(Self { provider })
    }

    /// The layer that exports our spans (`stampede*` targets) with `warn`
    /// and `error` events as span events. Requests' and worker steps' spans
    /// (`info`) always; the `debug` spans of dependency calls and store
    /// operations only inside one of those, so a worker polling an idle
    /// store sends no lone trace each interval. The exporter's own HTTP and
    /// gRPC spans are not ours, so they never feed back.
    pub fn layer<S>(&self) -> impl Layer<S> + Send + Sync + 'static
    where
        S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    {
        let tracer = self.provider.tracer("stampede");
        let ours = |meta: &Metadata<'_>, cx: &Context<'_, S>| {
            meta.target().starts_with("stampede")
                && match (meta.is_span(), *meta.level()) {
                    (true, level) if level <= Level::INFO => true,
                    (true, Level::DEBUG) => cx.lookup_current().is_some(),
                    (true, _) => false,
                    (false, level) => level <= Level::WARN,
                }
        };
        tracing_opentelemetry::layer()
            .with_tracer(tracer)
            .with_location(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            // Our code never reads OpenTelemetry's current context (the
            // trace is our task-local), so entering a span need not attach
            // one: saves an attach and a detach on every poll.
            .with_context_activation(false)
            .with_filter(dynamic_filter_fn(ours))
    }

    /// Sends the spans still queued (waiting at most `timeout`) and stops.
    pub fn shutdown(self, timeout: Duration) {
        ON.store(false, Ordering::Relaxed);
        if let Err(err) = self.provider.shutdown_with_timeout(timeout) {
            tracing::warn!(error = %err, "the OTLP exporter did not shut down cleanly");
        }
    }
}

/// `service.name` is `stampede` unless the standard variables name it.
fn resource() -> Resource {
    let named = std::env::var("OTEL_SERVICE_NAME").is_ok_and(|v| !v.is_empty())
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|v| v.contains("service.name="));
    let builder = Resource::builder()
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    match named {
        true => builder.build(),
        false => builder.with_service_name("stampede").build(),
    }
}

/// Records a finished span that was not a `tracing` span: one that covered
/// work done for many traces at once (a group commit), reported once in
/// each. Nothing when the exporter is off.
pub fn record_span(
    name: &'static str,
    parent: TraceParent,
    started: SystemTime,
    ended: SystemTime,
    attributes: &[(&'static str, i64)],
) {
    if !is_on() {
        return;
    }
    let Some(tracer) = TRACER.get() else { return };
    let cx = opentelemetry::Context::new().with_remote_span_context(parent.otel());
    let mut span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Internal)
        .with_start_time(started)
        .with_attributes(attributes.iter().map(|(k, v)| KeyValue::new(*k, *v)))
        .start_with_context(tracer, &cx);
    span.end_with_timestamp(ended);
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn read(setting: Option<&str>, vars: &[(&str, &str)]) -> Result<Option<Plan>, String> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Plan::read(setting, |name| vars.get(name).cloned())
    }

    #[test]
    fn off_unless_an_endpoint_is_named() {
        assert_eq!(read(None, &[]), Ok(None));
        assert_eq!(
            read(Some(" "), &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
            Ok(None)
        );
        assert_eq!(
            read(Some("http://c:4318"), &[("OTEL_SDK_DISABLED", "true")]),
            Ok(None)
        );
        assert_eq!(
            read(Some("http://c:4318"), &[("OTEL_TRACES_EXPORTER", "none")]),
            Ok(None)
        );
    }

    #[test]
    fn the_setting_is_a_base_url_like_the_standard_variable() {
        let plan = |setting, vars| read(setting, vars).unwrap().unwrap();
        assert_eq!(
            plan(Some("http://c:4318/"), &[]),
            Plan {
                protocol: Protocol::HttpProtobuf,
                endpoint: Some("http://c:4318/v1/traces".into()),
            }
        );
        assert_eq!(
            plan(
                Some("http://c:4317"),
                &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]
            ),
            Plan {
                protocol: Protocol::Grpc,
                endpoint: Some("http://c:4317".into()),
            }
        );
        // The standard variables alone: the exporter resolves them.
        assert_eq!(
            plan(None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")]).endpoint,
            None
        );
        assert_eq!(
            plan(
                None,
                &[
                    ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://c:4317"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "grpc"),
                ]
            )
            .protocol,
            Protocol::Grpc
        );
    }

    #[test]
    fn what_is_not_built_in_is_refused_by_name() {
        let err = read(
            Some("http://c"),
            &[("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json")],
        );
        assert!(err.unwrap_err().contains("http/json"));
        let err = read(Some("c:4318"), &[]);
        assert!(err.unwrap_err().contains("c:4318"));
        let err = read(Some("http://c"), &[("OTEL_TRACES_EXPORTER", "zipkin")]);
        assert!(err.unwrap_err().contains("zipkin"));
    }
}
