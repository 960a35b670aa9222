//! Ordered iteration and the content digest. The arena is scanned (sequential, prefetch-friendly)
//! for live items, which are then sorted by key and re-read one by one. Each visited item is a
//! consistent copy; concurrent writes may or may not be seen (no global snapshot).

use xxhash_rust::xxh3::Xxh3Default;

use crate::{ItemMeta, Store};

impl Store {
    /// Visits every item in ascending key order with a consistent copy of it.
    pub fn for_each_sorted(&self, mut f: impl FnMut(u64, ItemMeta, &[u8])) {
        let mut live: Vec<(u64, u32)> = (0..self.arena.high_water())
            .filter_map(|idx| self.arena.key_of(idx).map(|key| (key, idx)))
            .collect();
        live.sort_unstable();
        let mut value = vec![0u8; self.value_size];
        let mut last = None;
        for (key, idx) in live {
            // A key deleted and re-inserted during the scan can be listed twice; and an item may
            // have changed hands since: `read` checks it still holds `key`.
            if last == Some(key) {
                continue;
            }
            if let Some(meta) = self.arena.read(idx, key, &mut value) {
                f(key, meta, &value[..meta.len]);
                last = Some(key);
            }
        }
    }

    /// xxh3-64 over `(key, zxid, len as u64, value)` of every item in ascending key order, integers
    /// little-endian: equal contents give equal digests on any machine.
    pub fn digest(&self) -> u64 {
        let mut h = Xxh3Default::new();
        self.for_each_sorted(|key, meta, value| {
            h.update(&key.to_le_bytes());
            h.update(&meta.zxid.to_le_bytes());
            h.update(&(meta.len as u64).to_le_bytes());
            h.update(value);
        });
        h.digest()
    }
}
