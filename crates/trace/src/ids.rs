//! Ids that must be unique, not secret: a random per-process seed mixed with
//! a counter (splitmix64), so making one costs no system call.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh 64-bit id, never zero.
pub fn next() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Without randomness the ids are still unique within the process.
        let _ = getrandom::fill(&mut bytes);
        u64::from_le_bytes(bytes)
    });
    let mut z = seed.wrapping_add(
        COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    (z ^ (z >> 31)).max(1)
}

/// A fresh 128-bit trace id.
pub(crate) fn next_trace() -> u128 {
    (u128::from(next()) << 64) | u128::from(next())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_do_not_repeat() {
        let ids: std::collections::HashSet<u64> = (0..10_000).map(|_| super::next()).collect();
        assert_eq!(ids.len(), 10_000);
    }
}
