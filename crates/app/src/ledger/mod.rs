//! What the app does around any stock ledger: how long it remembers
//! idempotency answers ([`KeyMemorySettings`]), and the repair that rebuilds a
//! sale a ledger lost from the store.

mod repair;

pub use repair::LedgerRepair;

/// How long and how many answers are remembered (the `idempotency_*`
/// settings; the retention is set in seconds).
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeyMemorySettings {
    /// Answers are kept at least this long (docs/api.md §4 promises 24 hours).
    #[serde(rename = "retention_secs", with = "retention_secs")]
    pub retention_ms: i64,
    /// At most this many answers are kept; past it the oldest go early.
    pub capacity: usize,
}

impl Default for KeyMemorySettings {
    fn default() -> Self {
        Self {
            retention_ms: 24 * 3600 * 1000,
            capacity: 1_000_000,
        }
    }
}

/// `retention_secs`: the retention in whole seconds.
mod retention_secs {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(millis: &i64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i64(millis / 1000)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
        u32::deserialize(deserializer).map(|secs| i64::from(secs) * 1000)
    }
}
