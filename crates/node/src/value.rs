//! The bytes a write stores: a tag naming the write, then a pattern derived
//! from (key, tag), so a reader can tell a whole value from a torn or
//! misplaced one.

/// Identifies a write: origin node, lane, session, session seq (its low 32
/// bits: built-in sessions never start a second generation).
pub fn tag(origin: u8, lane: u8, session: u32, seq: u64) -> u64 {
    ((origin as u64) << 56)
        | ((lane as u64) << 48)
        | (((session & 0xFFFF) as u64) << 32)
        | (seq & 0xFFFF_FFFF)
}

fn word(key: u64, tag: u64) -> u64 {
    key.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ tag.rotate_left(17)
}

/// Fills `buf` (at least 8 bytes) with the value of write `tag` to `key`.
pub fn fill(buf: &mut [u8], key: u64, tag: u64) {
    buf[..8].copy_from_slice(&tag.to_le_bytes());
    let w = word(key, tag).to_le_bytes();
    for (i, b) in buf[8..].iter_mut().enumerate() {
        *b = w[i % 8];
    }
}

/// Whether `buf` is a whole value that some write stored under `key`.
pub fn check(buf: &[u8], key: u64) -> bool {
    let Some(tag) = buf.get(..8) else { return false };
    let mut t = [0u8; 8];
    t.copy_from_slice(tag);
    let w = word(key, u64::from_le_bytes(t)).to_le_bytes();
    buf[8..].iter().enumerate().all(|(i, b)| *b == w[i % 8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_then_check() {
        let mut v = [0u8; 32];
        fill(&mut v, 7, tag(1, 2, 3, 4));
        assert!(check(&v, 7));
        assert!(!check(&v, 8), "another key's value is detected");
        let mut torn = v;
        let mut other = [0u8; 32];
        fill(&mut other, 7, tag(1, 2, 3, 5));
        torn[20..].copy_from_slice(&other[20..]);
        assert!(!check(&torn, 7), "a mix of two values is detected");
    }
}
