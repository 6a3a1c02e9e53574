//! The proof of work a purchase token may ask for: a nonce such that
//! SHA-256 of `<challenge>:<nonce>` starts with enough zero bits (the
//! hashcash scheme). Each bit doubles the expected work: 20 bits is about a
//! million hashes, a second or less in a browser, and a million accounts'
//! worth of it is a million seconds.

use sha2::{Digest, Sha256};

/// Leading zero bits of SHA-256(`challenge` `:` `nonce`).
pub fn leading_zero_bits(challenge: &str, nonce: &str) -> u8 {
    let digest = Sha256::new()
        .chain_update(challenge.as_bytes())
        .chain_update(b":")
        .chain_update(nonce.as_bytes())
        .finalize();
    let mut bits = 0u8;
    for byte in digest {
        if byte == 0 {
            bits += 8;
            continue;
        }
        // At most 7 more: the byte is not 0.
        bits += u8::try_from(byte.leading_zeros()).unwrap_or(0);
        break;
    }
    bits
}

/// A nonce reaching `bits` for `challenge`: what a client does (tests, the
/// load generator).
pub fn solve(challenge: &str, bits: u8) -> String {
    (0u64..)
        .map(|n| n.to_string())
        .find(|nonce| leading_zero_bits(challenge, nonce) >= bits)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_solved_nonce_reaches_its_bits_and_the_work_doubles_per_bit() {
        let challenge = "1800000000000.0123456789abcdef0123456789abcdef";
        for bits in [0u8, 4, 8, 12] {
            let nonce = solve(challenge, bits);
            assert!(leading_zero_bits(challenge, &nonce) >= bits);
        }
        // Over many challenges, a 12-bit proof takes about 4096 tries.
        let tries: u64 = (0..64)
            .map(|n| solve(&format!("c{n}"), 12).parse::<u64>().unwrap() + 1)
            .sum();
        let mean = tries / 64;
        assert!((1_000..16_000).contains(&mean), "{mean} tries on average");
    }

    #[test]
    fn the_count_stops_at_the_first_one_bit() {
        // SHA-256("abc:") starts with 0x..: check the count against the
        // digest itself.
        let digest = Sha256::digest(b"abc:1");
        let expected = digest
            .iter()
            .map(|b| b.leading_zeros())
            .scan(true, |going, z| {
                let take = *going;
                *going = z == 8;
                take.then_some(z)
            })
            .sum::<u32>();
        assert_eq!(u32::from(leading_zero_bits("abc", "1")), expected);
    }
}
