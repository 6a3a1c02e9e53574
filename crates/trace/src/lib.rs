//! Traces: the context that ties a request to the work it causes later, and
//! the exporter that sends spans to an OpenTelemetry collector.
//!
//! - [`parent`]: [`TraceParent`], the W3C context a request brings in and an
//!   order, outbox event, job or bus message carries on.
//! - [`scope`]: spans that continue a context, and [`current`], the context
//!   of the span the caller runs in.
//! - [`export`]: the OTLP exporter and its `tracing` layer, off unless an
//!   endpoint is named.
//! - [`ids`]: cheap unique ids.

pub mod export;
pub mod ids;
pub mod parent;
pub mod scope;

pub use export::{is_on, record_span};
pub use parent::TraceParent;
pub use scope::{begin, current, entered, in_span, link_all, within, within_sync};

#[doc(hidden)]
pub use tracing as __tracing;
