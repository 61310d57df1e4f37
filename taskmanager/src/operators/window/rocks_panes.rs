//! Tumbling and sliding window panes in RocksDB (`state.backend.type: rocksdb`). A batch is
//! applied in one round trip: its distinct (window, key) groups are read with one multi-get,
//! merged into fresh group accumulators with the batch's rows, and written back in one write
//! batch. Which windows hold state is kept in memory (rebuilt from the keys on restore), so a
//! watermark fires a window by scanning that window's prefix in each owned key group.

use std::collections::{BTreeSet, HashMap};

use arrow::array::UInt32Array;
use datafusion::logical_expr::EmitTo;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use rocksdb::WriteBatch;
use sluice_common::key_groups::{hash_keys, key_group};

use super::assigner::Window;
use super::pane_store::{df, new_accumulators, take_rows, Fired, PaneBatch, PaneStore};
use super::state_codec::{pane_key, pane_prefix, parse_pane_key, StateCodec};
use crate::state::rocks::{prefixed, RocksStore};
use crate::state::snapshot::SnapshotKind;
use crate::state::snapshot::{KeyedSnapshot, OperatorRestoreData};
use crate::state::{state_ids, StateSettings};

pub(super) struct RocksPanes {
    store: RocksStore,
    windows: BTreeSet<Window>,
    /// The key group the first window's firing resumes at: a fire call emits about one
    /// chunk, and the operator calls again until none is due.
    fire_from: Option<u32>,
}

impl RocksPanes {
    pub(super) fn open(settings: &StateSettings, restore: Option<&OperatorRestoreData>) -> Result<RocksPanes, String> {
        let store = RocksStore::open(settings, restore)?;
        let mut windows = BTreeSet::new();
        for kg in store.range().iter() {
            store.scan(kg, &[state_ids::PANE], |k, _| {
                windows.insert(parse_pane_key(k)?.0);
                Ok(())
            })?;
        }
        Ok(RocksPanes {
            store,
            windows,
            fire_from: None,
        })
    }
}

/// Keys a fired window emits per chunk (rounded up to whole key groups).
const FIRE_CHUNK: usize = 65_536;

/// One chunk of a fired window: its keys, their encoded states, and their deletions.
#[derive(Default)]
struct FireChunk {
    keys: Vec<Vec<u8>>,
    states: Vec<Vec<u8>>,
    deletes: WriteBatch,
}

impl RocksPanes {
    /// The chunk's rows of window `w`, its entries deleted.
    fn emit(
        &mut self,
        codec: &StateCodec,
        aggs: &[AggregateFunctionExpr],
        w: Window,
        chunk: FireChunk,
    ) -> Result<Option<Fired>, String> {
        let n = chunk.keys.len();
        let mut accs = new_accumulators(aggs)?;
        if n > 0 {
            let decoded = codec.decode_states(chunk.states.iter().map(|s| s.as_slice()))?;
            let groups: Vec<usize> = (0..n).collect();
            for (acc, st) in accs.iter_mut().zip(&decoded) {
                df(acc.merge_batch(st, &groups, n))?;
            }
        }
        self.store.write(chunk.deletes)?;
        let columns = codec.key_columns(chunk.keys.iter().map(|k| k.as_slice()))?;
        Fired::pane(w, columns, n, accs)
    }
}

impl PaneStore for RocksPanes {
    /// Applies the batch's assigned rows in one round trip.
    fn add(&mut self, codec: &StateCodec, aggs: &[AggregateFunctionExpr], batch: &PaneBatch) -> Result<u64, String> {
        let (args, key_rows, assigned) = (batch.args, batch.rows()?, batch.assigned);
        if assigned.is_empty() {
            return Ok(0);
        }
        let hashes = hash_keys(batch.key_columns, key_rows.num_rows())?;
        let mut index: HashMap<(Window, &[u8]), usize, ahash::RandomState> = HashMap::default();
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut group_of = Vec::with_capacity(assigned.len());
        for &(w, r) in assigned {
            let row = key_rows.row(r as usize);
            let g = *index.entry((w, row.data())).or_insert_with(|| {
                let kg = key_group(hashes[r as usize], codec.max_parallelism);
                keys.push(prefixed(kg, &pane_key(w, row.as_ref())));
                keys.len() - 1
            });
            group_of.push(g);
            self.windows.insert(w);
        }
        let n = keys.len();
        let existing = self.store.multi_get(&keys)?;
        let mut accs = new_accumulators(aggs)?;
        let found: Vec<usize> = (0..n).filter(|g| existing[*g].is_some()).collect();
        if !found.is_empty() {
            let states = codec.decode_states(found.iter().filter_map(|g| existing[*g].as_deref()))?;
            for (acc, st) in accs.iter_mut().zip(&states) {
                df(acc.merge_batch(st, &found, n))?;
            }
        }
        let idx = UInt32Array::from_iter_values(assigned.iter().map(|(_, r)| *r));
        for (a, acc) in accs.iter_mut().enumerate() {
            df(acc.update_batch(&take_rows(&args[a], &idx)?, &group_of, None, n))?;
        }
        let states = accs
            .iter_mut()
            .map(|a| df(a.state(EmitTo::All)))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = codec.encode_states(&states)?;
        let mut write = WriteBatch::default();
        for (g, k) in keys.iter().enumerate() {
            write.put(k, rows.row(g).as_ref());
        }
        self.store.write(write)?;
        Ok(0)
    }

    /// Scans fired windows' prefixes in every owned key group, deleting what it emits, and
    /// returns once it emitted a chunk of key groups holding at least `FIRE_CHUNK` keys (the
    /// rest is due on the next call: `fire_pending`). So a window of millions of keys never
    /// holds all their raw entries, decoded states, deletions or output rows at once: each
    /// chunk's rows go downstream before the next is read.
    fn fire(&mut self, codec: &StateCodec, aggs: &[AggregateFunctionExpr], time: i64) -> Result<Vec<Fired>, String> {
        let mut out = Vec::new();
        let mut emitted = 0usize;
        let range = self.store.range();
        while let Some(w) = self.windows.first().copied() {
            if !w.is_fired_by(time) || emitted >= FIRE_CHUNK {
                break;
            }
            let prefix = pane_prefix(w);
            let mut chunk = FireChunk::default();
            let from = self.fire_from.take().unwrap_or(range.start);
            let mut resume = None;
            for kg in from..=range.end {
                self.store.scan(kg, &prefix, |k, v| {
                    let (_, key) = parse_pane_key(k)?;
                    chunk.keys.push(key.to_vec());
                    chunk.states.push(v.to_vec());
                    chunk.deletes.delete(prefixed(kg, k));
                    Ok(())
                })?;
                if chunk.keys.len() >= FIRE_CHUNK && kg < range.end {
                    resume = Some(kg + 1);
                    break;
                }
            }
            emitted += chunk.keys.len();
            out.extend(self.emit(codec, aggs, w, chunk)?);
            match resume {
                Some(kg) => {
                    self.fire_from = Some(kg);
                    break;
                }
                None => {
                    self.windows.pop_first();
                }
            }
        }
        Ok(out)
    }

    fn fire_pending(&self, time: i64) -> bool {
        self.fire_from.is_some() || self.windows.first().is_some_and(|w| w.is_fired_by(time))
    }

    fn snapshot(
        &mut self,
        _codec: &StateCodec,
        _aggs: &[AggregateFunctionExpr],
        checkpoint_id: u64,
        kind: SnapshotKind,
    ) -> Result<KeyedSnapshot, String> {
        self.store.snapshot(checkpoint_id, kind)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) {
        self.store.confirm(checkpoint_id);
    }
}
