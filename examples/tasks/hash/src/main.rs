//! Hashes a generated buffer with SHA-256, round after round (an integer and bit-twiddling
//! kernel, written out here so that the same code runs in WebAssembly and natively, with no
//! processor-specific instructions on either side).
//! Parameters: `bytes` (buffer size, at most 256 MiB), `rounds` (each hashes the buffer with the
//! previous digest in front), `seed`. Result: the last digest as hexadecimal text.

use idlegrid_guest::TaskError;

const ROUND_CONSTANTS: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5, 0xd807aa98,
    0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786,
    0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8,
    0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13,
    0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819,
    0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a,
    0x5b9cca4f, 0x682e6ff3, 0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
    0xc67178f2,
];

const INITIAL_STATE: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

/// One 64-byte block into the state (FIPS 180-4, section 6.2.2).
fn compress(state: &mut [u32; 8], block: &[u8]) {
    let mut w = [0u32; 64];
    for (word, bytes) in w.iter_mut().zip(block.chunks_exact(4)) {
        *word = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    }
    for t in 16..64 {
        let s0 = w[t - 15].rotate_right(7) ^ w[t - 15].rotate_right(18) ^ (w[t - 15] >> 3);
        let s1 = w[t - 2].rotate_right(17) ^ w[t - 2].rotate_right(19) ^ (w[t - 2] >> 10);
        w[t] = w[t - 16].wrapping_add(s0).wrapping_add(w[t - 7]).wrapping_add(s1);
    }
    let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut h] = *state;
    for t in 0..64 {
        let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
        let choose = (e & f) ^ (!e & g);
        let t1 = h.wrapping_add(s1).wrapping_add(choose).wrapping_add(ROUND_CONSTANTS[t]).wrapping_add(w[t]);
        let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
        let majority = (a & b) ^ (a & c) ^ (b & c);
        let t2 = s0.wrapping_add(majority);
        (h, g, f, e, d, c, b, a) = (g, f, e, d.wrapping_add(t1), c, b, a, t1.wrapping_add(t2));
    }
    for (word, value) in state.iter_mut().zip([a, b, c, d, e, f, g, h]) {
        *word = word.wrapping_add(value);
    }
}

/// SHA-256 of `prefix` followed by `data`.
fn sha256(prefix: &[u8], data: &[u8]) -> [u8; 32] {
    let mut state = INITIAL_STATE;
    let mut message = Vec::with_capacity(prefix.len() + data.len() + 72);
    message.extend_from_slice(prefix);
    message.extend_from_slice(data);
    let bits = (message.len() as u64) * 8;
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&bits.to_be_bytes());
    for block in message.chunks_exact(64) {
        compress(&mut state, block);
    }
    let mut digest = [0u8; 32];
    for (bytes, word) in digest.chunks_exact_mut(4).zip(state) {
        bytes.copy_from_slice(&word.to_be_bytes());
    }
    digest
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
        let bytes = number("bytes", 1 << 20)?;
        let rounds = number("rounds", 1)?;
        let seed = number("seed", 1)?;
        if bytes > 256 << 20 {
            return Err("bytes must be at most 268435456".into());
        }
        if rounds == 0 || rounds > 1_000_000 {
            return Err("rounds must be between 1 and 1000000".into());
        }
        let mut state = seed | 1;
        let data: Vec<u8> = (0..bytes)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let mut digest = [0u8; 32];
        for round in 0..rounds {
            digest = sha256(&digest, &data);
            idlegrid_guest::progress((round + 1) as f32 / rounds as f32);
        }
        Ok(digest.iter().map(|b| format!("{b:02x}")).collect::<String>().into_bytes())
    });
}
