//! The W3C Trace Context of one span (`traceparent`): what a request brings in,
//! what an order, an outbox event, a job and a bus message carry on, and what
//! a worker continues.

use std::fmt;

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};

/// A span's place in a trace: its trace id, its own id, and whether the trace
/// is sampled. `Copy` and 32 bytes: carrying it costs nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    trace_id: u128,
    span_id: u64,
    sampled: bool,
}

/// The length of a version-00 `traceparent` value.
const LEN: usize = 55;

impl TraceParent {
    /// `None` when either id is zero (invalid in W3C Trace Context).
    pub fn new(trace_id: u128, span_id: u64, sampled: bool) -> Option<Self> {
        (trace_id != 0 && span_id != 0).then_some(Self {
            trace_id,
            span_id,
            sampled,
        })
    }

    /// Parses a `traceparent` header: `00-<32 hex>-<16 hex>-<2 hex>`. A later
    /// version is read by its version-00 prefix, as the specification asks;
    /// version `ff`, upper-case hex, and all-zero ids are refused.
    pub fn parse(value: &str) -> Option<Self> {
        let bytes = value.as_bytes();
        let valid_length = match value.get(..2)? {
            "00" => bytes.len() == LEN,
            "ff" => false,
            _ => bytes.len() == LEN || (bytes.len() > LEN && bytes[LEN] == b'-'),
        };
        if !valid_length || bytes[2] != b'-' || bytes[35] != b'-' || bytes[52] != b'-' {
            return None;
        }
        hex(&value[..2])?;
        let trace_id = hex(&value[3..35])?;
        let span_id = u64::try_from(hex(&value[36..52])?).ok()?;
        let flags = hex(&value[53..55])?;
        Self::new(trace_id, span_id, flags & 1 == 1)
    }

    /// Ids known to be non-zero: made by [`ids`](crate::ids), or taken from
    /// a valid context.
    pub(crate) fn known(trace_id: u128, span_id: u64, sampled: bool) -> Self {
        debug_assert!(trace_id != 0 && span_id != 0);
        Self {
            trace_id,
            span_id,
            sampled,
        }
    }

    pub fn trace_id(&self) -> u128 {
        self.trace_id
    }

    pub fn span_id(&self) -> u64 {
        self.span_id
    }

    pub fn sampled(&self) -> bool {
        self.sampled
    }

    /// The OpenTelemetry form of a context handed over from elsewhere (a
    /// header, a stored event, a job): remote, as far as the SDK knows.
    pub fn otel(&self) -> SpanContext {
        let flags = match self.sampled {
            true => TraceFlags::SAMPLED,
            false => TraceFlags::default(),
        };
        SpanContext::new(
            TraceId::from_bytes(self.trace_id.to_be_bytes()),
            SpanId::from_bytes(self.span_id.to_be_bytes()),
            flags,
            true,
            TraceState::NONE,
        )
    }

    /// The trace id as 32 lower-case hex digits, for logs (no allocation).
    pub fn trace_hex(&self) -> impl fmt::Display + use<> {
        let id = self.trace_id;
        Hex(move |f| write!(f, "{id:032x}"))
    }

    /// The span id as 16 lower-case hex digits, for logs (no allocation).
    pub fn span_hex(&self) -> impl fmt::Display + use<> {
        let id = self.span_id;
        Hex(move |f| write!(f, "{id:016x}"))
    }
}

/// The `traceparent` header value (version 00).
impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

/// Lower-case hex digits only (W3C forbids upper case).
fn hex(digits: &str) -> Option<u128> {
    digits
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        .then(|| u128::from_str_radix(digits, 16).ok())
        .flatten()
}

struct Hex<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result>(F);

impl<F: Fn(&mut fmt::Formatter<'_>) -> fmt::Result> fmt::Display for Hex<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (self.0)(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_valid_header_survives_the_round_trip() {
        let parent = TraceParent::parse(GOOD).unwrap();
        assert_eq!(parent.trace_id(), 0x4bf92f3577b34da6a3ce929d0e0e4736);
        assert_eq!(parent.span_id(), 0x00f067aa0ba902b7);
        assert!(parent.sampled());
        assert_eq!(parent.to_string(), GOOD);
        assert_eq!(
            parent.trace_hex().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(parent.span_hex().to_string(), "00f067aa0ba902b7");
        let unsampled = TraceParent::parse(&GOOD.replace("-01", "-00")).unwrap();
        assert!(!unsampled.sampled());
    }

    #[test]
    fn later_versions_are_read_by_their_prefix() {
        let later = format!("cc{}-what-comes-next", &GOOD[2..]);
        assert_eq!(
            TraceParent::parse(&later).map(|p| p.trace_id()),
            TraceParent::parse(GOOD).map(|p| p.trace_id())
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "",
            "garbage",
            &GOOD.replace("4bf9", "4BF9"),
            &GOOD.replace("4bf92f3577b34da6a3ce929d0e0e4736", &"0".repeat(32)),
            &GOOD.replace("00f067aa0ba902b7", &"0".repeat(16)),
            &format!("ff{}", &GOOD[2..]),
            &format!("{GOOD}-extra"),
            &GOOD[..54],
            &GOOD.replace('-', "_"),
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-+bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad}");
        }
    }
}
