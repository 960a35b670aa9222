//! Batched reads and writes. A lookup costs two dependent cache misses (bucket, then item); done
//! one key at a time they serialize. Here the keys flow through a three-stage software pipeline,
//! a block of `DIST` keys at a time: block `b` is hashed and its home buckets prefetched while
//! block `b - 1` finds its first candidate items and prefetches them, and block `b - 2` is read
//! (or written) for real. Each stage finds its lines already arriving. Prefetches and candidates
//! are only hints: the last stage is the ordinary, fully checked path.

use crate::hash::hash;
use crate::index::NO_ITEM;
use crate::{ItemMeta, Op, Store, StoreError, Write};

/// Keys per pipeline block: the stages move a block at a time, so about `2 * DIST` misses are in
/// flight, which covers memory latency and fits the core's miss buffers.
const DIST: usize = 16;

/// Per-key state carried between the stages, for the three blocks in flight.
struct Pipeline {
    hashes: [[u64; DIST]; 3],
    cands: [[u32; DIST]; 3],
}

impl Pipeline {
    fn new() -> Pipeline {
        Pipeline {
            hashes: [[0; DIST]; 3],
            cands: [[NO_ITEM; DIST]; 3],
        }
    }

    /// Runs the three stages over `n` keys; `key(i)` gives key `i`, `last(i, h, cand)` does the
    /// real work for key `i`, in order, and may stop the run with an error.
    #[inline(always)]
    fn run<E>(
        &mut self,
        store: &Store,
        n: usize,
        key: impl Fn(usize) -> u64,
        mut last: impl FnMut(usize, u64, u32) -> Result<(), E>,
    ) -> Result<(), E> {
        let blocks = n.div_ceil(DIST);
        let keys_of = |b: usize| b * DIST..n.min((b + 1) * DIST);
        for b in 0..blocks + 2 {
            if b < blocks {
                let hashes = &mut self.hashes[b % 3];
                for (h, i) in hashes.iter_mut().zip(keys_of(b)) {
                    *h = hash(key(i));
                    store.index.prefetch_home(*h);
                }
            }
            if let Some(b) = b.checked_sub(1).filter(|&b| b < blocks) {
                let (hashes, cands) = (&self.hashes[b % 3], &mut self.cands[b % 3]);
                for ((c, &h), _) in cands.iter_mut().zip(hashes).zip(keys_of(b)) {
                    *c = store.index.first_candidate(h);
                    if *c != NO_ITEM {
                        store.arena.prefetch(*c);
                    }
                }
            }
            if let Some(b) = b.checked_sub(2) {
                let (hashes, cands) = (&self.hashes[b % 3], &self.cands[b % 3]);
                for ((&c, &h), i) in cands.iter().zip(hashes).zip(keys_of(b)) {
                    last(i, h, c)?;
                }
            }
        }
        Ok(())
    }
}

impl Store {
    /// Looks up many keys: value `i` lands in `values[i * value_size()..]`, `metas[i]` is its meta
    /// or `None`.
    ///
    /// # Panics
    /// If `values.len() < keys.len() * value_size()` or `metas.len() < keys.len()`.
    pub fn get_batch(&self, keys: &[u64], values: &mut [u8], metas: &mut [Option<ItemMeta>]) {
        self.check_out(values.len(), keys.len());
        assert!(
            metas.len() >= keys.len(),
            "metas holds {} of {} keys",
            metas.len(),
            keys.len()
        );
        let vs = self.value_size;
        let done: Result<(), ()> = Pipeline::new().run(
            self,
            keys.len(),
            |i| keys[i],
            |i, h, cand| {
                let out = &mut values[i * vs..(i + 1) * vs];
                metas[i] = self.get_hinted(keys[i], h, cand, out);
                Ok(())
            },
        );
        debug_assert!(done.is_ok());
    }

    /// `get` that first tries the item the pipeline already found (and prefetched).
    #[inline(always)]
    fn get_hinted(&self, key: u64, h: u64, cand: u32, out: &mut [u8]) -> Option<ItemMeta> {
        if cand != NO_ITEM
            && let Some(meta) = self.arena.read(cand, key, out)
        {
            return Some(meta);
        }
        self.get_hashed(key, h, out)
    }

    /// Applies the writes in slice order (a later write to a key wins). On error returns its index
    /// and the error; the writes before it are applied, it and those after are not.
    pub fn apply_batch(&self, writes: &[Write<'_>]) -> Result<(), (usize, StoreError)> {
        Pipeline::new().run(
            self,
            writes.len(),
            |i| writes[i].key,
            |i, h, _| self.apply_one(&writes[i], h).map_err(|e| (i, e)),
        )
    }

    fn apply_one(&self, w: &Write<'_>, h: u64) -> Result<(), StoreError> {
        match w.op {
            Op::Put(value) => {
                self.check_value(value)?;
                self.put_hashed(w.key, h, value, w.zxid)
            }
            Op::Delete => {
                self.delete_hashed(w.key, h);
                Ok(())
            }
        }
    }
}
