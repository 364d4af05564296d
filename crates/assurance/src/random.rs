//! Randomness is passed in: the state machine and the planner draw through `RandomSource`, which
//! the server implements over its own generator and the simulation over `Xoshiro256StarStar`.
//!
//! The simulation's generators are written here, not taken from a crate, so that a report made
//! from a seed never changes with a dependency upgrade. `SplitMix64` (Steele, Lea, Flood 2014)
//! expands a seed; `Xoshiro256StarStar` (Blackman, Vigna 2018) is the generator. Neither is
//! cryptographic: what they choose (when to spot-check, whether to replicate) must be
//! unpredictable to providers only through the server's own secret source in production.

/// A source of uniform 64-bit numbers.
pub trait RandomSource {
    fn next_u64(&mut self) -> u64;
}

/// Uniform in [0, 1), with 53 random bits.
pub fn unit_interval(random: &mut dyn RandomSource) -> f64 {
    (random.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
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
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// The simulation's generator: 256 bits of state, period 2^256 - 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xoshiro256StarStar {
    state: [u64; 4],
}

impl Xoshiro256StarStar {
    /// Expand `seed` with SplitMix64, as the authors recommend (an all-zero state is impossible).
    pub fn from_seed(seed: u64) -> Xoshiro256StarStar {
        let mut expander = SplitMix64::new(seed);
        let state = [expander.next_u64(), expander.next_u64(), expander.next_u64(), expander.next_u64()];
        Xoshiro256StarStar { state }
    }

    /// A generator with exactly this state (for reference tests). An all-zero state, which would
    /// only ever produce zeros, is replaced by the state of seed 0.
    pub fn from_state(state: [u64; 4]) -> Xoshiro256StarStar {
        if state == [0; 4] { Xoshiro256StarStar::from_seed(0) } else { Xoshiro256StarStar { state } }
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        unit_interval(self)
    }

    /// Uniform in `0..bound` (0 when `bound` is 0), by the multiply-shift method: same result on
    /// every platform, bias below 2^-32 for the bounds used here.
    pub fn below(&mut self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }

    /// True with probability `p` (never for p <= 0 or NaN, always for p >= 1).
    pub fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }
}

impl RandomSource for Xoshiro256StarStar {
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // Reference values of splitmix64 seeded with 0 (Vigna's splitmix64.c).
        let mut generator = SplitMix64::new(0);
        assert_eq!(generator.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(generator.next_u64(), 0x6E78_9E6A_A1B9_65F4);
        assert_eq!(generator.next_u64(), 0x06C4_5D18_8009_454F);
    }

    #[test]
    fn xoshiro256starstar_matches_the_reference_sequence() {
        // State {1, 2, 3, 4}: the first outputs of the reference implementation.
        let mut generator = Xoshiro256StarStar::from_state([1, 2, 3, 4]);
        assert_eq!(generator.next_u64(), 11520);
        assert_eq!(generator.next_u64(), 0);
        assert_eq!(generator.next_u64(), 1509978240);
        assert_eq!(generator.next_u64(), 1215971899390074240);
    }

    #[test]
    fn unit_draws_are_uniform_and_bounded() {
        let mut generator = Xoshiro256StarStar::from_seed(3);
        let draws: Vec<f64> = (0..100_000).map(|_| generator.next_f64()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.5).abs() < 0.01, "{mean}");
        assert!(!generator.chance(f64::NAN));
        assert!(!generator.chance(0.0));
        assert!(generator.chance(1.0));
        assert_eq!(generator.below(0), 0);
        assert!((0..1000).all(|_| generator.below(7) < 7));
        assert_eq!(Xoshiro256StarStar::from_state([0; 4]), Xoshiro256StarStar::from_seed(0));
    }
}
