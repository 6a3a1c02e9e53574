//! The draw at a sale's start: a random permutation of the tickets issued
//! before it, computed rather than stored. A ticket's position is a keyed
//! bijection of its number (a four-round Feistel network over the smallest
//! even power of two that holds the count, walking the cycle until the
//! value falls inside it), so the book keeps two numbers for the whole
//! lottery, the count and the seed, and every node computes the same
//! positions.

use crate::ports::Draw;

/// A ticket's place in line, 1 first; `None` before the draw. Tickets up to
/// the draw's count are permuted; later ones keep their number.
pub fn position(ticket: u64, draw: Option<Draw>) -> Option<u64> {
    let draw = draw?;
    Some(if (1..=draw.count).contains(&ticket) {
        1 + permute(ticket - 1, draw.count, draw.seed)
    } else {
        ticket
    })
}

/// A bijection of `0..count` keyed by `seed`.
pub fn permute(index: u64, count: u64, seed: u64) -> u64 {
    if count <= 1 {
        return index;
    }
    let bits = 64 - (count - 1).leading_zeros();
    let half = bits.div_ceil(2);
    let mut value = index;
    // The network permutes 0..4^half ⊇ 0..count; the values of 0..count
    // leave it on a cycle that comes back inside, so the walk ends, within
    // four steps on average (the domain is less than four times the count).
    loop {
        value = feistel(value, half, seed);
        if value < count {
            return value;
        }
    }
}

fn feistel(value: u64, half: u32, seed: u64) -> u64 {
    let mask = (1u64 << half) - 1;
    let (mut left, mut right) = (value >> half, value & mask);
    for round in 0..4u64 {
        let mixed = mix(seed ^ round.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ right) & mask;
        (left, right) = (right, left ^ mixed);
    }
    (left << half) | right
}

/// SplitMix64's finaliser: every input bit moves every output bit.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_count_and_seed_gives_a_permutation() {
        for count in [1u64, 2, 3, 5, 16, 17, 100, 1000, 4097] {
            for seed in [0u64, 1, 42, u64::MAX] {
                let mut seen = vec![false; count as usize];
                for index in 0..count {
                    let to = permute(index, count, seed);
                    assert!(to < count, "{index} → {to} of {count}");
                    assert!(!seen[to as usize], "{to} twice for count {count}");
                    seen[to as usize] = true;
                }
            }
        }
    }

    #[test]
    fn seeds_draw_different_orders_far_from_the_arrival_order() {
        let order = |seed| {
            (0..1000)
                .map(|i| permute(i, 1000, seed))
                .collect::<Vec<_>>()
        };
        assert_ne!(order(1), order(2));
        // Few tickets keep their place: a shuffle keeps one on average.
        let kept = order(7)
            .iter()
            .enumerate()
            .filter(|(i, p)| *i as u64 == **p)
            .count();
        assert!(kept < 10, "{kept} of 1000 kept their place");
    }

    #[test]
    fn tickets_after_the_draw_keep_their_number() {
        let draw = Some(Draw { count: 3, seed: 9 });
        let drawn: Vec<_> = (1..=3).filter_map(|t| position(t, draw)).collect();
        let mut sorted = drawn.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [1, 2, 3]);
        assert_eq!(position(4, draw), Some(4));
        assert_eq!(position(1000, draw), Some(1000));
        assert_eq!(position(1, None), None);
    }
}
