//! An event as a message body: the whole `StoredEvent` as JSON, so a consumer
//! on another node rebuilds exactly what the outbox holds; and its trace, or a
//! job's, as the message's W3C `traceparent` header, where any NATS tool sees
//! it. A private struct keeps serialisation out of the application's types.

use async_nats::HeaderMap;
use serde::{Deserialize, Serialize};
use stampede_app::ports::StoredEvent;
use stampede_domain::ids::EventId;
use stampede_domain::time::Timestamp;
use stampede_trace::TraceParent;

const TRACEPARENT: &str = "traceparent";

/// Headers carrying `trace`, if any.
pub(crate) fn trace_headers(trace: Option<TraceParent>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(trace) = trace {
        headers.insert(TRACEPARENT, trace.to_string().as_str());
    }
    headers
}

/// The trace a message carries, if any (one that does not parse is none).
pub(crate) fn trace_of(headers: Option<&HeaderMap>) -> Option<TraceParent> {
    headers
        .and_then(|headers| headers.get(TRACEPARENT))
        .and_then(|value| TraceParent::parse(value.as_str()))
}

#[derive(Serialize, Deserialize)]
struct WireEvent<'a> {
    seq: i64,
    id: EventId,
    #[serde(borrow)]
    event_type: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    aggregate_id: std::borrow::Cow<'a, str>,
    payload: serde_json::Value,
    /// Milliseconds since the Unix epoch.
    created_at: i64,
}

pub(crate) fn encode(event: &StoredEvent) -> Result<bytes::Bytes, serde_json::Error> {
    let wire = WireEvent {
        seq: event.seq,
        id: event.id,
        event_type: event.event_type.as_str().into(),
        aggregate_id: event.aggregate_id.as_str().into(),
        payload: event.payload.clone(),
        created_at: event.created_at.as_millis(),
    };
    serde_json::to_vec(&wire).map(bytes::Bytes::from)
}

/// The event in `body`, with the trace from the message's `headers`.
pub(crate) fn decode(
    body: &[u8],
    headers: Option<&HeaderMap>,
) -> Result<StoredEvent, serde_json::Error> {
    let wire: WireEvent<'_> = serde_json::from_slice(body)?;
    Ok(StoredEvent {
        seq: wire.seq,
        id: wire.id,
        event_type: wire.event_type.into_owned(),
        aggregate_id: wire.aggregate_id.into_owned(),
        payload: wire.payload,
        created_at: Timestamp::from_millis(wire.created_at),
        trace: trace_of(headers),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_event_survives_the_wire() {
        let event = StoredEvent {
            seq: 42,
            id: EventId::generate(),
            event_type: "order.paid".to_owned(),
            aggregate_id: "o-1".to_owned(),
            payload: serde_json::json!({"total": 100, "note": "caf\u{e9} \"x\""}),
            created_at: Timestamp::from_millis(1_800_000_000_123),
            trace: TraceParent::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        };
        let headers = trace_headers(event.trace);
        let body = encode(&event).unwrap();
        assert_eq!(decode(&body, Some(&headers)).unwrap(), event);
        let untraced = decode(&body, None).unwrap();
        assert_eq!(untraced.trace, None);
    }
}
