//! Key hashing. Benchmarks and clients use dense keys (0..N), so the raw key cannot pick a bucket:
//! a full-avalanche 64-bit mixer spreads them. The mixer is fixed (not seeded) so every replica
//! places keys identically and reaches `Full` on the same write.

/// Murmur3's 64-bit finalizer: a bijection with full avalanche, about 4 cycles.
#[inline(always)]
pub(crate) fn hash(key: u64) -> u64 {
    let mut h = key ^ 0x9e37_79b9_7f4a_7c15;
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// The slot tag: the top 8 hash bits (the bucket uses the low bits). 0 marks an empty slot, so a
/// real tag is never 0.
#[inline(always)]
pub(crate) fn tag(h: u64) -> u8 {
    ((h >> 56) as u8).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_keys_spread_over_buckets() {
        let buckets = 1024usize;
        let mut counts = vec![0u32; buckets];
        for k in 0..(buckets as u64 * 16) {
            counts[hash(k) as usize & (buckets - 1)] += 1;
        }
        let max = counts.iter().copied().max().unwrap_or(0);
        assert!(max < 40, "worst bucket got {max} of an average 16");
    }

    #[test]
    fn tags_are_never_zero() {
        assert!((0..100_000u64).all(|k| tag(hash(k)) != 0));
    }
}
