//! The trace a piece of work belongs to: each request and each worker step
//! runs in a span that continues the trace it was given (or starts one), and
//! code below it asks [`current`] for that span's context — to store it with
//! an outbox event, put it on a queued order or a job, or send it along.
//!
//! With the exporter on, spans are OpenTelemetry spans and the ids are theirs;
//! off, the ids are made here, so logs still tie a worker's lines to the
//! request that asked for the work.

use std::future::Future;

use opentelemetry::trace::TraceContextExt;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::export;
use crate::{TraceParent, ids};

tokio::task_local! {
    static CURRENT: TraceParent;
}

/// A span that can carry a trace: an `info` span with empty `trace_id` and
/// `span_id` fields for [`begin`] to fill, and any fields given.
#[macro_export]
macro_rules! span {
    ($name:literal $(, $($fields:tt)*)?) => {
        $crate::__tracing::info_span!(
            $name,
            trace_id = $crate::__tracing::field::Empty,
            span_id = $crate::__tracing::field::Empty
            $(, $($fields)*)?
        )
    };
}

/// The context of the span the caller runs in, if it runs in one that
/// [`begin`] started (through [`in_span`] or [`within`]).
pub fn current() -> Option<TraceParent> {
    CURRENT.try_with(|trace| *trace).ok()
}

/// Makes `span` continue `parent` (a new trace when `None`) and returns the
/// span's own context, recorded as its `trace_id` and `span_id` fields.
pub fn begin(span: &Span, parent: Option<TraceParent>) -> TraceParent {
    let trace = exported(span, parent).unwrap_or_else(|| own(parent));
    if !span.is_disabled() {
        span.record("trace_id", tracing::field::display(trace.trace_hex()));
        span.record("span_id", tracing::field::display(trace.span_hex()));
    }
    trace
}

/// Runs `work` in `span`, which continues `parent`; [`current`] inside
/// answers the span's context.
pub fn in_span<F: Future>(
    span: Span,
    parent: Option<TraceParent>,
    work: F,
) -> impl Future<Output = F::Output> {
    let trace = begin(&span, parent);
    entered(trace, span, work)
}

/// Runs `work` in `span`, whose context [`begin`] answered as `trace`.
pub fn entered<F: Future>(
    trace: TraceParent,
    span: Span,
    work: F,
) -> impl Future<Output = F::Output> {
    CURRENT.scope(trace, work.instrument(span))
}

/// Runs `work` with `trace` as [`current`]: a span's context handed to work
/// it spawned, or none.
pub async fn within<F: Future>(trace: Option<TraceParent>, work: F) -> F::Output {
    match trace {
        Some(trace) => CURRENT.scope(trace, work).await,
        None => work.await,
    }
}

/// [`within`] for synchronous work, on any thread (the SQLite writer runs
/// each caller's write with the caller's context).
pub fn within_sync<R>(trace: Option<TraceParent>, work: impl FnOnce() -> R) -> R {
    match trace {
        Some(trace) => CURRENT.sync_scope(trace, work),
        None => work(),
    }
}

/// Links `span` to the traces `to` (a batch's span to the traces of what is
/// in it), at most [`MAX_LINKS`] of them; nothing unless exported. Call it
/// before the span starts.
pub fn link_all(span: &Span, to: impl Iterator<Item = TraceParent>) {
    if !export::is_on() || span.is_disabled() {
        return;
    }
    for trace in to.filter(TraceParent::sampled).take(MAX_LINKS) {
        span.add_link(trace.otel());
    }
}

/// Links kept on one span: enough to find the requests behind a batch,
/// bounded so a large batch does not make a huge span.
pub const MAX_LINKS: usize = 32;

/// The OpenTelemetry span's context, when the exporter is on and the span
/// reaches it.
fn exported(span: &Span, parent: Option<TraceParent>) -> Option<TraceParent> {
    if !export::is_on() || span.is_disabled() {
        return None;
    }
    if let Some(parent) = parent {
        let cx = opentelemetry::Context::new().with_remote_span_context(parent.otel());
        // Fails only for a span the layer does not see: then the ids are ours.
        span.set_parent(cx).ok()?;
    }
    let cx = span.context();
    let context = cx.span().span_context().clone();
    context.is_valid().then(|| {
        TraceParent::known(
            u128::from_be_bytes(context.trace_id().to_bytes()),
            u64::from_be_bytes(context.span_id().to_bytes()),
            context.is_sampled(),
        )
    })
}

/// A context made here: the parent's trace, or a new one, and a new span id.
fn own(parent: Option<TraceParent>) -> TraceParent {
    let (trace_id, sampled) = parent.map_or_else(
        || (ids::next_trace(), true),
        |p| (p.trace_id(), p.sampled()),
    );
    TraceParent::known(trace_id, ids::next(), sampled)
}
