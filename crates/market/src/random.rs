//! Randomness is always passed in. Challenges, draws and the simulation take a `&mut dyn
//! RandomSource`: the server gives its own secret generator, tests and the simulation a seeded
//! `Xoshiro256StarStar`, so that a report made from a seed never changes.
//!
//! `SplitMix64` (Steele, Lea, Flood 2014) expands a seed; `Xoshiro256StarStar` (Blackman,
//! Vigna 2018) is the generator. Neither is cryptographic: where a draw must be unpredictable
//! to a party (proof-of-storage challenges), the server must pass a generator seeded from a
//! secret source.

/// A source of uniform 64-bit numbers.
pub trait RandomSource {
    fn next_u64(&mut self) -> u64;
}

/// Uniform in [0, 1), from 53 random bits.
pub fn unit_interval(random: &mut dyn RandomSource) -> f64 {
    (random.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// Uniform in [0, bound) without modulo bias (Lemire's multiply-and-reject); 0 when `bound` is 0.
pub fn below(random: &mut dyn RandomSource, bound: u64) -> u64 {
    if bound == 0 {
        return 0;
    }
    let threshold = bound.wrapping_neg() % bound;
    loop {
        let product = random.next_u64() as u128 * bound as u128;
        if (product as u64) >= threshold {
            return (product >> 64) as u64;
        }
    }
}

/// A 64-bit generator with a 64-bit state; seeds `Xoshiro256StarStar`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }
}

impl RandomSource for SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut mixed = self.state;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        mixed ^ (mixed >> 31)
    }
}

/// The simulation's and the tests' generator: 256 bits of state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xoshiro256StarStar {
    state: [u64; 4],
}

impl Xoshiro256StarStar {
    /// Expand `seed` with SplitMix64, as the authors recommend (never an all-zero state).
    pub fn from_seed(seed: u64) -> Xoshiro256StarStar {
        let mut expander = SplitMix64::new(seed);
        let state = [expander.next_u64(), expander.next_u64(), expander.next_u64(), expander.next_u64()];
        Xoshiro256StarStar { state }
    }
}

impl RandomSource for Xoshiro256StarStar {
    fn next_u64(&mut self) -> u64 {
        let result = self.state[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let shifted = self.state[1] << 17;
        self.state[2] ^= self.state[0];
        self.state[3] ^= self.state[1];
        self.state[1] ^= self.state[2];
        self.state[0] ^= self.state[3];
        self.state[2] ^= shifted;
        self.state[3] = self.state[3].rotate_left(45);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_numbers_and_another_seed_others() {
        let mut a = Xoshiro256StarStar::from_seed(7);
        let mut b = Xoshiro256StarStar::from_seed(7);
        let mut c = Xoshiro256StarStar::from_seed(8);
        let first: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..8).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(first, (0..8).map(|_| c.next_u64()).collect::<Vec<_>>());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut random = Xoshiro256StarStar::from_seed(1);
        let mut seen = [0u32; 5];
        for _ in 0..5000 {
            seen[below(&mut random, 5) as usize] += 1;
        }
        assert!(seen.iter().all(|&count| count > 800), "{seen:?}");
        assert_eq!(below(&mut random, 0), 0);
        assert_eq!(below(&mut random, 1), 0);
        let x = unit_interval(&mut random);
        assert!((0.0..1.0).contains(&x));
    }
}
