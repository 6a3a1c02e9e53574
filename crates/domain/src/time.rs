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
        self.with_text(str::to_owned)
    }

    /// Hands the text form to `use_it`: from the stack, or, outside the years
    /// 0–9999 (never for timestamps this crate creates), `@<millis>ms` so
    /// that Display stays total.
    fn with_text<R>(self, use_it: impl FnOnce(&str) -> R) -> R {
        match self.rfc3339() {
            Some(text) => use_it(text.as_str()),
            None => use_it(&format!("@{}ms", self.0)),
        }
    }

    /// The text written into a buffer on the stack, without the formatting
    /// machinery: every order answered and every event stored carries
    /// several timestamps, and `format!` with padded fields cost the win path
    /// 2 % of its CPU. `None` outside the years 0–9999.
    fn rfc3339(self) -> Option<Rfc3339Text> {
        let at = OffsetDateTime::from_unix_timestamp(self.0.div_euclid(1000)).ok()?;
        let year = u32::try_from(at.year()).ok().filter(|year| *year <= 9999)?;
        let mut text = *b"0000-00-00T00:00:00.000Z";
        put_digits(&mut text[0..4], year);
        put_digits(&mut text[5..7], u32::from(u8::from(at.month())));
        put_digits(&mut text[8..10], u32::from(at.day()));
        put_digits(&mut text[11..13], u32::from(at.hour()));
        put_digits(&mut text[14..16], u32::from(at.minute()));
        put_digits(&mut text[17..19], u32::from(at.second()));
        put_digits(
            &mut text[20..23],
            u32::try_from(self.0.rem_euclid(1000)).ok()?,
        );
        Some(Rfc3339Text(text))
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, ASCII only.
struct Rfc3339Text([u8; 24]);

impl Rfc3339Text {
    fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Writes `value`'s last decimal digits into `slot`, zero-padded.
fn put_digits(slot: &mut [u8], mut value: u32) {
    for byte in slot.iter_mut().rev() {
        *byte = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.with_text(|text| f.write_str(text))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.with_text(|text| serializer.serialize_str(text))
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

    /// The hand-written digits agree with the `time` crate's own formatting
    /// across the calendar: epoch, leap days, negative millis, year ends.
    #[test]
    fn formats_like_the_time_crate_everywhere() {
        let mut millis = -86_400_000_i64 * 365;
        while millis < 253_402_300_799_999 {
            let at = Timestamp::from_millis(millis);
            let expected =
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
                    .unwrap()
                    .format(&Rfc3339)
                    .unwrap();
            // `time` writes the fraction only as long as it needs.
            let ours = at.to_rfc3339();
            assert_eq!(
                Timestamp::parse_rfc3339("t", &expected).unwrap(),
                Timestamp::parse_rfc3339("t", &ours).unwrap(),
                "{ours} against {expected}"
            );
            assert_eq!(ours.len(), 24, "{ours}");
            assert_eq!(at.to_string(), ours);
            millis += 86_399_999_937;
        }
        assert_eq!(
            Timestamp::from_millis(0).to_rfc3339(),
            "1970-01-01T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_millis(-1).to_rfc3339(),
            "1969-12-31T23:59:59.999Z"
        );
        assert_eq!(
            Timestamp::from_millis(951_782_400_005).to_rfc3339(),
            "2000-02-29T00:00:00.005Z"
        );
        assert_eq!(
            serde_json::to_string(&Timestamp::from_millis(1_762_819_200_123)).unwrap(),
            "\"2025-11-11T00:00:00.123Z\""
        );
    }

    #[test]
    fn a_year_past_9999_is_still_shown() {
        let at = Timestamp::from_millis(253_402_300_800_000);
        assert_eq!(at.to_rfc3339(), "@253402300800000ms");
        assert_eq!(at.to_string(), "@253402300800000ms");
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
