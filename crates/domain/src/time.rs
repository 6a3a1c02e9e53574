//! Instants as milliseconds since the Unix epoch: cheap to compare and store,
//! shown to clients as RFC 3339 UTC strings. The domain never reads a clock;
//! callers pass `now`.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::ValidationError;

/// An instant with millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The wall clock, for the edges that own one.
    pub fn now() -> Self {
        let now = OffsetDateTime::now_utc();
        Self((now.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    pub fn plus_secs(self, secs: u32) -> Self {
        Self(self.0.saturating_add(i64::from(secs) * 1000))
    }

    pub fn plus_millis(self, millis: i64) -> Self {
        Self(self.0.saturating_add(millis))
    }

    /// Parses an RFC 3339 timestamp with any offset; `field` names the input in
    /// the error.
    pub fn parse_rfc3339(field: &'static str, text: &str) -> Result<Self, ValidationError> {
        let parsed = OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
            ValidationError::new(
                field,
                "must be an RFC 3339 timestamp, e.g. 2026-11-11T00:00:00Z",
            )
        })?;
        let millis = parsed.unix_timestamp_nanos() / 1_000_000;
        i64::try_from(millis)
            .map(Self)
            .map_err(|_| ValidationError::new(field, "is out of range"))
    }

    /// RFC 3339 in UTC with millisecond precision, e.g. `2026-11-11T00:00:00.000Z`.
    pub fn to_rfc3339(self) -> String {
        let secs = self.0.div_euclid(1000);
        let millis = self.0.rem_euclid(1000);
        match OffsetDateTime::from_unix_timestamp(secs) {
            Ok(at) => {
                let (y, mo, d) = (at.year(), u8::from(at.month()), at.day());
                let (h, mi, s) = (at.hour(), at.minute(), at.second());
                format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{millis:03}Z")
            }
            // Unreachable for timestamps this crate creates; keep Display total.
            Err(_) => format!("@{}ms", self.0),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_rfc3339())
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse_rfc3339("timestamp", &text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_with_milliseconds() {
        let at = Timestamp::from_millis(1_762_819_200_123);
        assert_eq!(at.to_rfc3339(), "2025-11-11T00:00:00.123Z");
    }

    #[test]
    fn parses_any_offset_into_utc() {
        let at = Timestamp::parse_rfc3339("starts_at", "2025-11-11T08:00:00+08:00").unwrap();
        assert_eq!(at, Timestamp::from_millis(1_762_819_200_000));
    }

    #[test]
    fn rejects_what_is_not_rfc3339_and_names_the_field() {
        let err = Timestamp::parse_rfc3339("ends_at", "tomorrow").unwrap_err();
        assert_eq!(err.field, "ends_at");
    }

    #[test]
    fn round_trips_through_text() {
        let at = Timestamp::from_millis(1_700_000_000_007);
        assert_eq!(Timestamp::parse_rfc3339("t", &at.to_rfc3339()).unwrap(), at);
    }
}
