//! The random spot-check sample: at least 10% of devices, reproducible from a recorded seed.
//!
//! The algorithm, fixed so that a recorded seed gives the same sample on every platform and
//! every build:
//!
//! 1. Sort the device ids ascending and drop duplicates (n ids).
//! 2. The sample size is k = ceil(n × percent / 100); at least 1 when n > 0.
//! 3. Key ChaCha20 (`rand_chacha::ChaCha20Rng`, the 20-round stream cipher as a generator)
//!    with the seed's 8 little-endian bytes followed by 24 zero bytes; stream 0, from the
//!    start.
//! 4. Partial Fisher–Yates: for i = 0 … k−1, let m = n − i; draw 64-bit words (ChaCha's
//!    `next_u64`) until one, x, is at least 2⁶⁴ mod m (rejection removes modulo bias); swap
//!    the ids at positions i and i + (x mod m).
//! 5. The sample is the first k ids, sorted ascending.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{RngCore, SeedableRng};

/// The smallest share of devices a spot check may sample, in percent.
pub const MIN_PERCENT: u8 = 10;

/// A spot check was asked for less than 10% or more than 100% of devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a spot check samples from 10 to 100 percent of devices")]
pub struct PercentError;

/// How many of `population` devices a `percent` sample holds: ceil(population × percent / 100).
pub fn sample_size(population: usize, percent: u8) -> Result<usize, PercentError> {
    if !(MIN_PERCENT..=100).contains(&percent) {
        return Err(PercentError);
    }
    Ok(population.saturating_mul(usize::from(percent)).div_ceil(100))
}

/// The sample of `percent` (10–100) of `ids` chosen by `seed`, sorted ascending. The order
/// of `ids` and any duplicates make no difference.
pub fn spot_check<T: Ord + Clone>(ids: &[T], seed: u64, percent: u8) -> Result<Vec<T>, PercentError> {
    let mut pool: Vec<T> = ids.to_vec();
    pool.sort();
    pool.dedup();
    let k = sample_size(pool.len(), percent)?;
    let mut rng = rng(seed);
    for i in 0..k {
        let remaining = (pool.len() - i) as u64;
        // remaining <= usize::MAX, so the pick fits in usize.
        let j = i + below(&mut rng, remaining) as usize;
        pool.swap(i, j);
    }
    pool.truncate(k);
    pool.sort();
    Ok(pool)
}

/// The generator for `seed` (step 3).
pub(crate) fn rng(seed: u64) -> ChaCha20Rng {
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    ChaCha20Rng::from_seed(key)
}

/// A uniform draw from 0..bound (bound > 0), without modulo bias (step 4).
fn below(rng: &mut ChaCha20Rng, bound: u64) -> u64 {
    // 2^64 mod bound: the words below it would favour small results.
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let x = rng.next_u64();
        if x >= threshold {
            return x % bound;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up() {
        assert_eq!(sample_size(0, 10), Ok(0));
        assert_eq!(sample_size(1, 10), Ok(1));
        assert_eq!(sample_size(10, 10), Ok(1));
        assert_eq!(sample_size(11, 10), Ok(2));
        assert_eq!(sample_size(200, 25), Ok(50));
        assert_eq!(sample_size(7, 100), Ok(7));
        assert_eq!(sample_size(100, 9), Err(PercentError));
        assert_eq!(sample_size(100, 101), Err(PercentError));
    }

    /// Pinned outputs: a change of algorithm, key layout or generator breaks old seeds.
    #[test]
    fn known_answers() {
        let ids: Vec<u32> = (0..100).collect();
        let mut r = rng(0);
        assert_eq!(r.next_u64(), KNOWN_FIRST_WORD);
        assert_eq!(spot_check(&ids, 0, 10).unwrap(), KNOWN_SEED_0);
        assert_eq!(spot_check(&ids, 0x5EED_0000_0000_0001, 10).unwrap(), KNOWN_SEED_1);
    }

    const KNOWN_SEED_0: [u32; 10] = [0, 12, 30, 41, 50, 51, 62, 85, 93, 99];
    const KNOWN_SEED_1: [u32; 10] = [14, 19, 30, 33, 44, 46, 59, 65, 85, 90];
    /// The first 8 keystream bytes of ChaCha20 under the all-zero key and nonce (RFC 8439,
    /// appendix A.1, test vector #1: 76 b8 e0 ad a0 f1 3d 90), read little-endian.
    const KNOWN_FIRST_WORD: u64 = 0x903d_f1a0_ade0_b876;

    #[test]
    fn order_and_duplicates_do_not_matter() {
        let ids: Vec<String> = (0..37).map(|i| format!("device-{i}")).collect();
        let mut shuffled: Vec<String> = ids.iter().rev().cloned().collect();
        shuffled.extend(ids.iter().take(5).cloned());
        assert_eq!(spot_check(&ids, 42, 10).unwrap(), spot_check(&shuffled, 42, 10).unwrap());
        assert_eq!(spot_check(&ids, 42, 10).unwrap().len(), 4);
        assert_ne!(spot_check(&ids, 42, 50).unwrap(), spot_check(&ids, 43, 50).unwrap());
        assert!(spot_check::<u8>(&[], 1, 10).unwrap().is_empty());
        assert_eq!(spot_check(&[7u8], 1, 10).unwrap(), [7]);
    }
}
