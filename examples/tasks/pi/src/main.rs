//! Monte Carlo estimate of pi: count random points of the unit square inside the quarter circle.
//! Parameters: `samples=N seed=S`. Result: `inside total` as text. Checkpoints every chunk, and
//! whenever the engine asks, so an interrupted task resumes where it stopped.

use idlegrid_guest::{Control, TaskError};

const CHUNK: u64 = 1 << 20;

/// xorshift64*: small, fast, and deterministic for a given seed, so replicas agree.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (x >> 11) as f64 / (1u64 << 53) as f64
    }
}

struct State {
    done: u64,
    inside: u64,
    rng: u64,
}

impl State {
    fn encode(&self) -> Vec<u8> {
        [self.done, self.inside, self.rng].iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn decode(bytes: &[u8]) -> Option<State> {
        if bytes.len() != 24 {
            return None;
        }
        let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        Some(State { done: word(0), inside: word(1), rng: word(2) })
    }
}

fn number(name: &str, default: u64) -> Result<u64, TaskError> {
    match idlegrid_guest::param(name) {
        None => Ok(default),
        Some(text) => {
            text.parse().map_err(|_| TaskError::Failed(format!("parameter {name}={text} is not a whole number")))
        }
    }
}

fn main() {
    idlegrid_guest::run(|| {
        let samples = number("samples", 1_000_000)?;
        let seed = number("seed", 1)?;
        let mut state = match idlegrid_guest::restore() {
            Some(bytes) => State::decode(&bytes).ok_or("checkpoint is corrupt")?,
            // xorshift must not start at zero.
            None => State { done: 0, inside: 0, rng: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1 },
        };
        let mut rng = Rng(state.rng);
        while state.done < samples {
            let n = CHUNK.min(samples - state.done);
            for _ in 0..n {
                let (x, y) = (rng.next_f64(), rng.next_f64());
                if x * x + y * y <= 1.0 {
                    state.inside += 1;
                }
            }
            state.done += n;
            state.rng = rng.0;
            match idlegrid_guest::control() {
                Control::Stop => {
                    idlegrid_guest::checkpoint(&state.encode())?;
                    return Err(TaskError::Stopped);
                }
                Control::Checkpoint | Control::Continue => {
                    idlegrid_guest::checkpoint(&state.encode())?;
                    idlegrid_guest::progress(state.done as f32 / samples as f32);
                }
            }
        }
        Ok(format!("{} {}", state.inside, state.done).into_bytes())
    });
}
