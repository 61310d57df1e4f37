//! Tumbling and sliding window panes on the heap (`state.backend.type: hashmap`): one pane per
//! window with a DataFusion `GroupsAccumulator` per aggregate (one group per key), updated a
//! batch at a time, budgeted against the slot's share of task heap. A snapshot encodes every
//! (window, key) as a per-key-group entry.

use std::collections::BTreeMap;

use arrow::array::UInt32Array;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use sluice_common::state::key_group_blocks::BlocksWriter;

use super::assigner::Window;
use super::pane_keys::{KeyView, PaneKeys};
use super::pane_store::{df, new_accumulators, take_rows, Fired, PaneBatch, PaneStore};
use super::state_codec::{pane_key, parse_pane_key, StateCodec};
use crate::state::snapshot::SnapshotKind;
use crate::state::snapshot::{KeyedSnapshot, OperatorRestoreData};
use crate::state::{for_each_restored, state_ids, StateSettings};

struct Pane {
    /// Key row bytes ↔ group index.
    keys: PaneKeys,
    accs: Vec<Box<dyn GroupsAccumulator>>,
    /// Heap bytes at the last count (keys and accumulators).
    bytes: usize,
}

impl Pane {
    fn new(codec: &StateCodec, aggs: &[AggregateFunctionExpr], capacity: usize) -> Result<Pane, String> {
        Ok(Pane {
            keys: PaneKeys::with_capacity(codec, capacity),
            accs: new_accumulators(aggs)?,
            bytes: 0,
        })
    }
}

pub(super) struct HeapPanes {
    panes: BTreeMap<Window, Pane>,
    settings: StateSettings,
    heap_bytes: usize,
    /// Keys of the last pane a watermark closed: a new pane is sized for as many, so that its
    /// table does not grow (and rehash) a dozen times. A pane flushed whole (a local phase that
    /// is full or meets a barrier) does not count: it may have been cut short.
    last_keys: usize,
}

impl HeapPanes {
    pub(super) fn open(
        settings: &StateSettings,
        restore: Option<&OperatorRestoreData>,
        codec: &StateCodec,
        aggs: &[AggregateFunctionExpr],
    ) -> Result<HeapPanes, String> {
        let mut store = HeapPanes {
            panes: BTreeMap::new(),
            settings: settings.clone(),
            heap_bytes: 0,
            last_keys: 0,
        };
        if let Some(r) = restore {
            store.restore(r, codec, aggs)?;
        }
        Ok(store)
    }

    /// The (pane, key) entries held.
    pub(super) fn entries(&self) -> usize {
        self.panes.values().map(|p| p.keys.len()).sum()
    }

    /// The heap they take (keys and accumulators), as counted against the budget.
    pub(super) fn heap_bytes(&self) -> usize {
        self.heap_bytes
    }

    fn restore(
        &mut self,
        r: &OperatorRestoreData,
        codec: &StateCodec,
        aggs: &[AggregateFunctionExpr],
    ) -> Result<(), String> {
        type Entries = Vec<(Vec<u8>, Vec<u8>)>;
        let mut panes: BTreeMap<Window, Entries> = BTreeMap::new();
        for_each_restored(r, self.settings.key_groups, |_, k, v| {
            match k.first() {
                Some(&state_ids::PANE) => {
                    let (w, key) = parse_pane_key(k)?;
                    panes.entry(w).or_default().push((key.to_vec(), v.to_vec()));
                }
                _ => return Err("unknown state in a window snapshot".into()),
            }
            Ok(())
        })?;
        for (w, entries) in panes {
            let mut pane = Pane::new(codec, aggs, entries.len())?;
            let groups = pane
                .keys
                .intern_encoded(codec, entries.iter().map(|(key, _)| key.as_slice()))?;
            let n = pane.keys.len();
            let states = codec.decode_states(entries.iter().map(|(_, v)| v.as_slice()))?;
            for (acc, st) in pane.accs.iter_mut().zip(&states) {
                df(acc.merge_batch(st, &groups, n))?;
            }
            self.panes.insert(w, pane);
        }
        Ok(())
    }
}

impl PaneStore for HeapPanes {
    fn reads_key_rows(&self) -> bool {
        false
    }

    fn add(&mut self, codec: &StateCodec, aggs: &[AggregateFunctionExpr], batch: &PaneBatch) -> Result<u64, String> {
        let assigned = batch.assigned;
        let keys = KeyView::of(codec, batch.key_columns, batch.key_rows)?;
        // Rows of a batch mostly share a window: runs of equal windows take one pane lookup.
        let mut per_window: Vec<(Window, Vec<u32>, Vec<usize>)> = Vec::new();
        let mut i = 0;
        while i < assigned.len() {
            let w = assigned[i].0;
            let run = assigned[i..].iter().take_while(|(x, _)| *x == w).count();
            let pane = match self.panes.entry(w) {
                std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::btree_map::Entry::Vacant(e) => e.insert(Pane::new(codec, aggs, self.last_keys)?),
            };
            let slot = match per_window.iter().position(|(x, _, _)| *x == w) {
                Some(s) => s,
                None => {
                    per_window.push((w, Vec::with_capacity(run), Vec::with_capacity(run)));
                    per_window.len() - 1
                }
            };
            let (_, row_idx, groups) = &mut per_window[slot];
            let rows = &assigned[i..i + run];
            row_idx.extend(rows.iter().map(|&(_, r)| r));
            pane.keys
                .intern_rows(&keys, rows.iter().map(|&(_, r)| r as usize), groups)?;
            i += run;
        }
        for (w, row_idx, groups) in per_window {
            let pane = self.panes.get_mut(&w).ok_or("pane vanished")?;
            let idx = UInt32Array::from(row_idx);
            let total = pane.keys.len();
            for (a, acc) in pane.accs.iter_mut().enumerate() {
                df(acc.update_batch(&take_rows(&batch.args[a], &idx)?, &groups, None, total))?;
            }
            let bytes = pane.accs.iter().map(|a| a.size()).sum::<usize>() + pane.keys.heap_bytes();
            self.heap_bytes = (self.heap_bytes + bytes).saturating_sub(pane.bytes);
            pane.bytes = bytes;
        }
        if self.heap_bytes as u64 > self.settings.heap_budget {
            return Err(self.settings.heap_budget_error(self.heap_bytes as u64));
        }
        Ok(0)
    }

    fn fire(&mut self, codec: &StateCodec, _aggs: &[AggregateFunctionExpr], time: i64) -> Result<Vec<Fired>, String> {
        let mut out = Vec::new();
        while self.panes.first_key_value().is_some_and(|(w, _)| w.is_fired_by(time)) {
            let Some((w, pane)) = self.panes.pop_first() else {
                break;
            };
            self.heap_bytes = self.heap_bytes.saturating_sub(pane.bytes);
            let n = pane.keys.len();
            if time != i64::MAX {
                self.last_keys = n;
            }
            let keys = pane.keys.columns(codec)?;
            out.extend(Fired::pane(w, keys, n, pane.accs)?);
        }
        Ok(out)
    }

    /// Every pane as per-key-group entries. Reading a pane's state drains its accumulators, so
    /// they are rebuilt from that state.
    fn snapshot(
        &mut self,
        codec: &StateCodec,
        aggs: &[AggregateFunctionExpr],
        _checkpoint_id: u64,
        _kind: SnapshotKind,
    ) -> Result<KeyedSnapshot, String> {
        let mut entries: Vec<(u32, Vec<u8>, Vec<u8>)> = Vec::new();
        for (w, pane) in self.panes.iter_mut() {
            let n = pane.keys.len();
            if n == 0 {
                continue;
            }
            let states = pane
                .accs
                .iter_mut()
                .map(|a| df(a.state(EmitTo::All)))
                .collect::<Result<Vec<_>, _>>()?;
            let mut fresh = new_accumulators(aggs)?;
            let groups: Vec<usize> = (0..n).collect();
            for (acc, st) in fresh.iter_mut().zip(&states) {
                df(acc.merge_batch(st, &groups, n))?;
            }
            pane.accs = fresh;
            let rows = codec.encode_states(&states)?;
            // From the key columns: a BIGINT pane's are its values, not decoded from rows.
            let kgs = codec.key_groups_of(&pane.keys.columns(codec)?, n)?;
            let encoded = pane.keys.encoded(codec)?;
            for (i, key) in encoded.iter().enumerate() {
                entries.push((kgs[i], pane_key(*w, key), rows.row(i).as_ref().to_vec()));
            }
        }
        entries.sort_by_key(|e| e.0);
        let mut w = BlocksWriter::new(self.settings.key_groups);
        for (kg, k, v) in &entries {
            w.entry(*kg, k, v)?;
        }
        let (data, offsets) = w.finish();
        Ok(KeyedSnapshot::Full {
            range: self.settings.key_groups,
            data,
            offsets,
        })
    }
}
