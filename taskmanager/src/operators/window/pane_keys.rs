//! The keys of one window pane: each distinct key's row-encoded bytes, stored once in one
//! arena, and a hash table from key bytes to the key's group index (its position, which
//! indexes the pane's accumulators). A new key costs no allocation of its own, and a lookup
//! hashes the bytes once.

use hashbrown::HashTable;

#[derive(Default)]
pub(super) struct PaneKeys {
    bytes: Vec<u8>,
    /// End offset in `bytes` of key `i`.
    ends: Vec<usize>,
    table: HashTable<u32>,
    hasher: ahash::RandomState,
}

/// Key `i` of an arena.
fn key_at<'a>(bytes: &'a [u8], ends: &[usize], i: u32) -> &'a [u8] {
    let i = i as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &bytes[start..ends[i]]
}

impl PaneKeys {
    /// The group of `key`, adding it as the next group when it is new.
    pub(super) fn intern(&mut self, key: &[u8]) -> usize {
        let hash = self.hasher.hash_one(key);
        let (bytes, ends) = (&self.bytes, &self.ends);
        if let Some(&g) = self.table.find(hash, |&g| key_at(bytes, ends, g) == key) {
            return g as usize;
        }
        let g = self.ends.len() as u32;
        self.bytes.extend_from_slice(key);
        self.ends.push(self.bytes.len());
        let (bytes, ends, hasher) = (&self.bytes, &self.ends, &self.hasher);
        self.table
            .insert_unique(hash, g, |&i| hasher.hash_one(key_at(bytes, ends, i)));
        g as usize
    }

    pub(super) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The keys in group order.
    pub(super) fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.len() as u32).map(|i| key_at(&self.bytes, &self.ends, i))
    }

    /// Heap bytes held.
    pub(super) fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.ends.capacity() * 8 + self.table.capacity() * 5
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_in_first_seen_order() {
        let mut k = PaneKeys::default();
        assert_eq!(k.intern(b"b"), 0);
        assert_eq!(k.intern(b""), 1);
        assert_eq!(k.intern(b"abc"), 2);
        assert_eq!(k.intern(b"b"), 0);
        assert_eq!(k.intern(b""), 1);
        for i in 0..1000u32 {
            assert_eq!(k.intern(&i.to_le_bytes()), 3 + i as usize);
        }
        assert_eq!(k.intern(&7u32.to_le_bytes()), 10);
        assert_eq!(k.len(), 1003);
        let keys: Vec<&[u8]> = k.iter().take(3).collect();
        assert_eq!(keys, vec![&b"b"[..], b"", b"abc"]);
        assert!(k.heap_bytes() > 1000 * 4);
    }
}
