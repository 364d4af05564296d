//! Randomness is always passed in. Decisions that draw (spot checks, replication, placement
//! among equals, storage challenges, sweepstakes, simulations) take a [`RandomSource`]: the server
//! gives its own secret generator, tests and simulators a seeded [`Xoshiro256StarStar`], so that
//! a report made from a seed never changes.
//!
//! The generators are written here, not taken from a crate, so that a seeded result never changes
//! with a dependency upgrade. [`SplitMix64`] (Steele, Lea, Flood 2014) expands a seed;
//! [`Xoshiro256StarStar`] (Blackman, Vigna 2018) is the generator. Neither is cryptographic: where
//! a draw must be unpredictable to a party, the caller passes a source seeded from a secret.

/// A source of uniform 64-bit numbers, with the distributions built on it.
pub trait RandomSource {
    fn next_u64(&mut self) -> u64;

    /// Uniform in [0, 1), with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..bound` (0 when `bound` is 0) by multiply-shift: one draw, the same result on
    /// every platform, bias below 2^-32 for bounds under 2^32.
    fn below(&mut self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }

    /// Uniform in `0..bound` without any bias (Lemire's multiply-and-reject); 0 when `bound` is 0.
    /// For draws where a party gains from a skew, such as sweepstakes among many entries.
    fn below_unbiased(&mut self, bound: u64) -> u64 {
        if bound == 0 {
            return 0;
        }
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let product = self.next_u64() as u128 * bound as u128;
            if (product as u64) >= threshold {
                return (product >> 64) as u64;
            }
        }
    }

    /// True with probability `p` (never for p <= 0 or NaN, always for p >= 1).
    fn chance(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// Uniform in [low, high).
    fn uniform(&mut self, low: f64, high: f64) -> f64 {
        low + (high - low) * self.next_f64()
    }

    /// Exponentially distributed with the given mean (0 for a mean that is not positive).
    fn exponential(&mut self, mean: f64) -> f64 {
        if mean.is_nan() || mean <= 0.0 {
            return 0.0;
        }
        // 1 - u is in (0, 1], so the logarithm is finite.
        -mean * (1.0 - self.next_f64()).ln()
    }

    /// Standard normal, by the Box-Muller transform (one of the pair; simple and reproducible).
    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// Log-normal with the given median and the standard deviation of its logarithm.
    fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * (sigma * self.normal()).exp()
    }

    /// An independent stream for a sub-component, seeded from this source's next output, so that
    /// adding draws to one component does not shift another's.
    fn fork(&mut self) -> Xoshiro256StarStar {
        Xoshiro256StarStar::from_seed(self.next_u64())
    }
}

impl<R: RandomSource + ?Sized> RandomSource for &mut R {
    fn next_u64(&mut self) -> u64 {
        (**self).next_u64()
    }
}

impl<R: RandomSource + ?Sized> RandomSource for Box<R> {
    fn next_u64(&mut self) -> u64 {
        (**self).next_u64()
    }
}

/// A 64-bit generator with a 64-bit state: expands seeds, and serves short streams (one
/// placement decision).
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

/// The simulators' and tests' generator: 256 bits of state, period 2^256 - 1.
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

    /// A generator with exactly this state (for reference tests). An all-zero state, which would
    /// only ever produce zeros, is replaced by the state of seed 0.
    pub fn from_state(state: [u64; 4]) -> Xoshiro256StarStar {
        if state == [0; 4] { Xoshiro256StarStar::from_seed(0) } else { Xoshiro256StarStar { state } }
    }
}

impl RandomSource for Xoshiro256StarStar {
    fn next_u64(&mut self) -> u64 {
        let s = &mut self.state;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let shifted = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= shifted;
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
    fn same_seed_same_stream_and_forks_are_independent() {
        let mut a = Xoshiro256StarStar::from_seed(42);
        let mut b = Xoshiro256StarStar::from_seed(42);
        let xs: Vec<u64> = (0..100).map(|_| a.next_u64()).collect();
        assert_eq!(xs, (0..100).map(|_| b.next_u64()).collect::<Vec<_>>());
        let mut c = Xoshiro256StarStar::from_seed(43);
        assert_ne!(xs[0], c.next_u64());
        let mut parent = Xoshiro256StarStar::from_seed(7);
        let mut child = parent.fork();
        assert_ne!(parent.next_u64(), child.next_u64());
        assert_eq!(Xoshiro256StarStar::from_state([0; 4]), Xoshiro256StarStar::from_seed(0));
    }

    #[test]
    fn a_borrowed_or_boxed_source_draws_the_same_stream() {
        let mut direct = Xoshiro256StarStar::from_seed(9);
        let mut borrowed = Xoshiro256StarStar::from_seed(9);
        let mut boxed: Box<dyn RandomSource + Send> = Box::new(Xoshiro256StarStar::from_seed(9));
        for _ in 0..10 {
            let expected = direct.next_u64();
            assert_eq!(borrowed.next_u64(), expected);
            assert_eq!(boxed.next_u64(), expected);
        }
    }

    #[test]
    fn distributions_have_their_moments() {
        let mut g = Xoshiro256StarStar::from_seed(1);
        let n = 200_000;
        let draws: Vec<f64> = (0..n).map(|_| g.next_f64()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        let mean_uniform = draws.iter().sum::<f64>() / n as f64;
        assert!((mean_uniform - 0.5).abs() < 0.005, "{mean_uniform}");
        let mean_exponential = (0..n).map(|_| g.exponential(3.0)).sum::<f64>() / n as f64;
        assert!((mean_exponential - 3.0).abs() < 0.05, "{mean_exponential}");
        let normals: Vec<f64> = (0..n).map(|_| g.normal()).collect();
        let mean = normals.iter().sum::<f64>() / n as f64;
        let variance = normals.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.01 && (variance - 1.0).abs() < 0.02, "{mean} {variance}");
        for draw in [RandomSource::below, RandomSource::below_unbiased] {
            let counts = (0..n).fold([0u32; 10], |mut c, _| {
                c[draw(&mut g, 10) as usize] += 1;
                c
            });
            for count in counts {
                assert!((count as f64 - n as f64 / 10.0).abs() < 600.0, "{counts:?}");
            }
            assert_eq!(draw(&mut g, 0), 0);
            assert_eq!(draw(&mut g, 1), 0);
        }
        assert_eq!(g.exponential(-1.0), 0.0);
        assert!(!g.chance(f64::NAN));
        assert!(!g.chance(0.0));
        assert!(g.chance(1.0));
        let mut s = SplitMix64::new(5);
        assert!((0..1000).all(|_| s.below(7) < 7));
    }
}
