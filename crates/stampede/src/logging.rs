//! Structured logs: JSON lines (with the current span's fields, such as
//! `request_id`, `trace_id` and `span_id`) for machines, or a human format on
//! a terminal; and, when an OTLP endpoint is named, the same spans exported
//! to an OpenTelemetry collector.

use std::io::IsTerminal;
use std::time::Duration;

use stampede_trace::export::Exporter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LogSettings};

/// The OTLP exporter while it runs; [`Traces::flush`] sends what is queued.
pub struct Traces(Option<Exporter>);

impl Traces {
    /// Sends the spans still queued, waiting at most a few seconds: called
    /// last, once the server has drained.
    pub fn flush(self) {
        if let Some(exporter) = self.0 {
            exporter.shutdown(Duration::from_secs(5));
        }
    }
}

/// Installs the global subscriber. Later calls (tests starting several
/// servers in one process) keep the first. Call it inside the Tokio runtime:
/// the gRPC exporter's channel lives there.
pub fn init(settings: &LogSettings) -> anyhow::Result<Traces> {
    let filter = EnvFilter::try_new(&settings.filter)?;
    let format = settings
        .format
        .unwrap_or(if std::io::stdout().is_terminal() {
            LogFormat::Pretty
        } else {
            LogFormat::Json
        });
    let lines: Box<dyn Layer<Registry> + Send + Sync> = match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer().boxed(),
    };
    let exporter = settings.traces.as_ref().map(Exporter::start).transpose();
    let exporter = exporter.map_err(|err| anyhow::anyhow!("otlp_endpoint: {err}"))?;
    // Without an exporter the log filter is global, so a disabled span costs
    // one check; with one, each layer has its own filter.
    let result = match &exporter {
        None => tracing_subscriber::registry()
            .with(lines)
            .with(filter)
            .try_init(),
        Some(exporter) => tracing_subscriber::registry()
            .with(lines.with_filter(filter))
            .with(exporter.layer())
            .try_init(),
    };
    // Already installed: keep it.
    let _ = result;
    Ok(Traces(exporter))
}
