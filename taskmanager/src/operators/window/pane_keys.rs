//! The keys of one window pane and each key's group index (its position, which indexes the
//! pane's accumulators). Two representations:
//! - any keys: each distinct key's row-encoded bytes, stored once in one arena, and a hash
//!   table from key bytes to group; a new key costs no allocation of its own, and a lookup
//!   hashes the bytes once;
//! - one BIGINT key column (the common case, and the hot one of a local aggregate): the values
//!   themselves in an open-addressing table with the group beside the value, so a lookup reads
//!   one cache line, the slots of rows a few ahead are loaded early (a pane's keys are
//!   many and the probes random), and the batch's keys are never row-encoded.
//!
//! Snapshots and restores see row-encoded keys either way.

use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::buffer::NullBuffer;
use arrow::datatypes::Int64Type;
use arrow::row::Rows;
use hashbrown::HashTable;
use std::sync::Arc;

use super::state_codec::StateCodec;

/// A batch's keys as a pane reads them: row-encoded, or the BIGINT column itself.
pub(super) enum KeyView<'a> {
    Rows(&'a Rows),
    Ints(&'a Int64Array),
}

impl<'a> KeyView<'a> {
    /// The view the codec's panes take: the column itself for one BIGINT key, else `rows`.
    pub(super) fn of(codec: &StateCodec, columns: &'a [ArrayRef], rows: Option<&'a Rows>) -> Result<Self, String> {
        match (
            codec.int_key,
            columns.first().and_then(|c| c.as_primitive_opt::<Int64Type>()),
            rows,
        ) {
            (true, Some(ints), _) => Ok(KeyView::Ints(ints)),
            (_, _, Some(rows)) => Ok(KeyView::Rows(rows)),
            _ => Err("window keys were not read as this pane store takes them".into()),
        }
    }
}

pub(super) enum PaneKeys {
    Rows(RowKeys),
    Ints(IntKeys),
}

#[derive(Default)]
pub(super) struct RowKeys {
    bytes: Vec<u8>,
    /// End offset in `bytes` of key `i`.
    ends: Vec<usize>,
    table: HashTable<u32>,
    hasher: ahash::RandomState,
}

#[derive(Default)]
pub(super) struct IntKeys {
    /// Key of each group (0 for the null key's).
    values: Vec<i64>,
    /// (key, group) of every non-null key.
    table: IntTable,
    null: Option<u32>,
}

/// Open addressing with linear probing over `(key, group)` slots: a power-of-two number of
/// slots, at most half of them used, `EMPTY` as the group of a free one.
pub(super) struct IntTable {
    slots: Vec<(i64, u32)>,
    used: usize,
    seed: u64,
}

const EMPTY: u32 = u32::MAX;

impl Default for IntTable {
    fn default() -> Self {
        IntTable {
            slots: Vec::new(),
            used: 0,
            // Per table, so that no set of keys collides in every process.
            seed: ahash::RandomState::new().hash_one(0u64) | 1,
        }
    }
}

impl IntTable {
    fn home(&self, key: i64) -> usize {
        // A folded multiply: every bit of the key reaches the low bits the mask keeps.
        let m = u128::from(key as u64 ^ self.seed) * 0x9E37_79B9_7F4A_7C15u128;
        ((m as u64) ^ ((m >> 64) as u64)) as usize & (self.slots.len().wrapping_sub(1))
    }

    fn reserve(&mut self, keys: usize) {
        let want = (keys * 2).next_power_of_two().max(16);
        if want > self.slots.len() {
            let old = std::mem::replace(&mut self.slots, vec![(0, EMPTY); want]);
            for (k, g) in old.into_iter().filter(|s| s.1 != EMPTY) {
                let mut i = self.home(k);
                while self.slots[i].1 != EMPTY {
                    i = (i + 1) & (want - 1);
                }
                self.slots[i] = (k, g);
            }
        }
    }

    /// Prefetches the slot `key` starts probing at, so that its lookup soon after finds it
    /// cached (a hint: it reads nothing and does nothing off x86-64).
    fn touch(&self, key: i64) {
        #[cfg(target_arch = "x86_64")]
        if let Some(s) = self.slots.get(self.home(key)) {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            // SAFETY: SSE is part of every x86-64 target, and a prefetch of the address of a
            // live slot neither reads nor writes memory; it cannot fault.
            unsafe { _mm_prefetch::<_MM_HINT_T0>((s as *const (i64, u32)).cast()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = key;
    }

    /// The group of `key`, or `next` after inserting it.
    fn find_or_insert(&mut self, key: i64, next: u32) -> (u32, bool) {
        if (self.used + 1) * 2 > self.slots.len() {
            self.reserve(self.used + 1);
        }
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let (k, g) = self.slots[i];
            if g == EMPTY {
                self.slots[i] = (key, next);
                self.used += 1;
                return (next, true);
            }
            if k == key {
                return (g, false);
            }
            i = (i + 1) & mask;
        }
    }
}

/// Key `i` of an arena.
fn key_at<'a>(bytes: &'a [u8], ends: &[usize], i: u32) -> &'a [u8] {
    let i = i as usize;
    let start = if i == 0 { 0 } else { ends[i - 1] };
    &bytes[start..ends[i]]
}

impl RowKeys {
    /// The group of `key`, adding it as the next group when it is new.
    fn intern(&mut self, key: &[u8]) -> usize {
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

    fn iter(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.ends.len() as u32).map(|i| key_at(&self.bytes, &self.ends, i))
    }
}

impl IntKeys {
    fn intern(&mut self, key: Option<i64>) -> usize {
        let next = self.values.len() as u32;
        let Some(v) = key else {
            let g = *self.null.get_or_insert(next);
            if g == next {
                self.values.push(0);
            }
            return g as usize;
        };
        let (g, new) = self.table.find_or_insert(v, next);
        if new {
            self.values.push(v);
        }
        g as usize
    }

    fn column(&self) -> Int64Array {
        let nulls = self
            .null
            .map(|n| NullBuffer::from_iter((0..self.values.len()).map(|i| i != n as usize)));
        Int64Array::new(self.values.clone().into(), nulls)
    }
}

/// Row-encoded keys in group order: the arena's, or encoded from a BIGINT pane's values.
pub(super) enum EncodedKeys<'a> {
    Arena(&'a RowKeys),
    Rows(Rows),
}

impl EncodedKeys<'_> {
    pub(super) fn iter(&self) -> Box<dyn Iterator<Item = &[u8]> + '_> {
        match self {
            EncodedKeys::Arena(k) => Box::new(k.iter()),
            EncodedKeys::Rows(rows) => Box::new(rows.iter().map(|r| r.data())),
        }
    }
}

impl PaneKeys {
    /// Keys as `codec` reads them.
    pub(super) fn new(codec: &StateCodec) -> PaneKeys {
        if codec.int_key {
            PaneKeys::Ints(IntKeys::default())
        } else {
            PaneKeys::Rows(RowKeys::default())
        }
    }

    /// Keys as `codec` reads them, with room for `capacity` keys.
    pub(super) fn with_capacity(codec: &StateCodec, capacity: usize) -> PaneKeys {
        let mut keys = PaneKeys::new(codec);
        match &mut keys {
            PaneKeys::Rows(k) => {
                k.ends.reserve(capacity);
                k.table.reserve(capacity, |_| 0);
            }
            PaneKeys::Ints(k) => {
                k.values.reserve(capacity);
                k.table.reserve(capacity);
            }
        }
        keys
    }

    /// The group of the key of each of `rows`, pushed to `groups`; new keys become the next
    /// groups.
    pub(super) fn intern_rows(
        &mut self,
        keys: &KeyView,
        rows: impl Iterator<Item = usize> + Clone,
        groups: &mut Vec<usize>,
    ) -> Result<(), String> {
        /// How many rows ahead a slot is loaded.
        const AHEAD: usize = 8;
        match (self, keys) {
            (PaneKeys::Rows(k), KeyView::Rows(encoded)) => groups.extend(rows.map(|r| k.intern(encoded.row(r).data()))),
            (PaneKeys::Ints(k), KeyView::Ints(ints)) if ints.null_count() == 0 => {
                let values = ints.values();
                let mut ahead = rows.clone().skip(AHEAD);
                for r in rows {
                    if let Some(a) = ahead.next() {
                        k.table.touch(values[a]);
                    }
                    groups.push(k.intern(Some(values[r])));
                }
            }
            (PaneKeys::Ints(k), KeyView::Ints(ints)) => {
                groups.extend(rows.map(|r| k.intern(ints.is_valid(r).then(|| ints.value(r)))))
            }
            _ => return Err("window keys were not read as this pane keeps them".into()),
        }
        Ok(())
    }

    /// The groups of row-encoded keys (a restore's), adding the new ones.
    pub(super) fn intern_encoded<'a>(
        &mut self,
        codec: &StateCodec,
        keys: impl Iterator<Item = &'a [u8]>,
    ) -> Result<Vec<usize>, String> {
        match self {
            PaneKeys::Rows(k) => Ok(keys.map(|key| k.intern(key)).collect()),
            PaneKeys::Ints(k) => {
                let columns = codec.key_columns(keys)?;
                let ints = columns
                    .first()
                    .and_then(|c| c.as_primitive_opt::<Int64Type>())
                    .ok_or("a BIGINT window key decoded as another type")?;
                Ok(ints.iter().map(|v| k.intern(v)).collect())
            }
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            PaneKeys::Rows(k) => k.ends.len(),
            PaneKeys::Ints(k) => k.values.len(),
        }
    }

    /// The key columns in group order.
    pub(super) fn columns(&self, codec: &StateCodec) -> Result<Vec<ArrayRef>, String> {
        match self {
            PaneKeys::Rows(k) => codec.key_columns(k.iter()),
            PaneKeys::Ints(k) => Ok(vec![Arc::new(k.column())]),
        }
    }

    /// The keys row-encoded, in group order.
    pub(super) fn encoded(&self, codec: &StateCodec) -> Result<EncodedKeys<'_>, String> {
        match self {
            PaneKeys::Rows(k) => Ok(EncodedKeys::Arena(k)),
            PaneKeys::Ints(k) => {
                let column: ArrayRef = Arc::new(k.column());
                let rows = codec.keys.convert_columns(&[column]).map_err(|e| e.to_string())?;
                Ok(EncodedKeys::Rows(rows))
            }
        }
    }

    /// Heap bytes held.
    pub(super) fn heap_bytes(&self) -> usize {
        match self {
            PaneKeys::Rows(k) => k.bytes.capacity() + k.ends.capacity() * 8 + k.table.capacity() * 5,
            PaneKeys::Ints(k) => k.values.capacity() * 8 + k.table.slots.capacity() * 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Int32Array;
    use arrow::datatypes::DataType;
    use arrow::row::{RowConverter, SortField};

    fn codec(ty: DataType) -> StateCodec {
        let keys = RowConverter::new(vec![SortField::new(ty.clone())]).unwrap();
        let mut codec = StateCodec::new(keys, &[], 128).unwrap();
        codec.int_key = ty == DataType::Int64;
        codec
    }

    #[test]
    fn row_keys_take_groups_in_first_seen_order() {
        let mut k = RowKeys::default();
        assert_eq!(k.intern(b"b"), 0);
        assert_eq!(k.intern(b""), 1);
        assert_eq!(k.intern(b"abc"), 2);
        assert_eq!(k.intern(b"b"), 0);
        assert_eq!(k.intern(b""), 1);
        for i in 0..1000u32 {
            assert_eq!(k.intern(&i.to_le_bytes()), 3 + i as usize);
        }
        assert_eq!(k.intern(&7u32.to_le_bytes()), 10);
        let keys = PaneKeys::Rows(k);
        assert_eq!(keys.len(), 1003);
        let PaneKeys::Rows(k) = &keys else { unreachable!() };
        let first: Vec<&[u8]> = k.iter().take(3).collect();
        assert_eq!(first, vec![&b"b"[..], b"", b"abc"]);
        assert!(keys.heap_bytes() > 1000 * 4);
    }

    #[test]
    fn bigint_keys_intern_values_with_a_null_group_and_encode_as_rows_do() {
        let codec = codec(DataType::Int64);
        let mut keys = PaneKeys::new(&codec);
        let column: ArrayRef = Arc::new(Int64Array::from(vec![
            Some(5),
            None,
            Some(-3),
            Some(5),
            None,
            Some(i64::MIN),
        ]));
        let view = KeyView::of(&codec, std::slice::from_ref(&column), None).unwrap();
        let mut groups = Vec::new();
        keys.intern_rows(&view, 0..6, &mut groups).unwrap();
        assert_eq!(groups, vec![0, 1, 2, 0, 1, 3]);
        assert_eq!(keys.len(), 4);
        let out = keys.columns(&codec).unwrap();
        let expected: ArrayRef = Arc::new(Int64Array::from(vec![Some(5), None, Some(-3), Some(i64::MIN)]));
        assert_eq!(&out[0], &expected);

        // Encoded keys are the row format's, and a restore maps them to the same groups.
        let rows = codec.keys.convert_columns(&[expected]).unwrap();
        let encoded = keys.encoded(&codec).unwrap();
        let encoded: Vec<&[u8]> = encoded.iter().collect();
        let direct: Vec<&[u8]> = rows.iter().map(|r| r.data()).collect();
        assert_eq!(encoded, direct);
        let mut restored = PaneKeys::new(&codec);
        let again = restored.intern_encoded(&codec, direct.iter().rev().copied()).unwrap();
        assert_eq!(again, vec![0, 1, 2, 3]);
        assert_eq!(restored.columns(&codec).unwrap()[0].len(), 4);
    }

    #[test]
    fn other_keys_go_through_rows_and_a_mismatched_view_is_an_error() {
        let codec = codec(DataType::Int32);
        let mut keys = PaneKeys::new(&codec);
        let column: ArrayRef = Arc::new(Int32Array::from(vec![1, 2, 1]));
        assert!(
            KeyView::of(&codec, std::slice::from_ref(&column), None).is_err(),
            "rows are needed"
        );
        let rows = codec.keys.convert_columns(std::slice::from_ref(&column)).unwrap();
        let view = KeyView::of(&codec, std::slice::from_ref(&column), Some(&rows)).unwrap();
        let mut groups = Vec::new();
        keys.intern_rows(&view, 0..3, &mut groups).unwrap();
        assert_eq!(groups, vec![0, 1, 0]);
        assert_eq!(
            &keys.columns(&codec).unwrap()[0],
            &(Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef)
        );
        let ints = Int64Array::from(vec![1]);
        assert!(keys.intern_rows(&KeyView::Ints(&ints), 0..1, &mut groups).is_err());
    }

    #[test]
    fn the_int_table_grows_and_probes_past_collisions() {
        let mut k = IntKeys::default();
        // Keys that share their low bits, negative ones and the extremes.
        let keys: Vec<i64> = (0..20_000i64)
            .map(|i| i << 20)
            .chain((0..5_000).map(|i| -i - 1))
            .chain([i64::MIN, i64::MAX])
            .collect();
        for (g, &v) in keys.iter().enumerate() {
            assert_eq!(k.intern(Some(v)), g, "key {v} is new");
        }
        for (g, &v) in keys.iter().enumerate().rev() {
            assert_eq!(k.intern(Some(v)), g, "key {v} is found again");
        }
        assert_eq!(k.table.used, keys.len());
        assert!(k.table.slots.len() >= keys.len() * 2, "at most half full");
        assert_eq!(k.intern(None), keys.len(), "the null key takes the next group");
    }
}
