//! Session windows on the typed keyed state (`crate::state::keyed`), on either backend: per key,
//! a map from session window to the row of its accumulators' state, and an event- or
//! processing-time timer at each session's max timestamp (`crate::state::timers`). A batch is
//! applied key by key: the key's sessions are loaded once, the rows merged in (sessions that a
//! row's window touches merge, as Flink's `MergingWindowSet` does), and written back. A due
//! timer loads its key's sessions and emits those the time has passed.

use std::collections::HashMap;

use arrow::array::ArrayRef;
use arrow::row::Rows;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::Accumulator;
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;

use super::assigner::{self, Window};
use super::pane_store::{df, Fired, PaneBatch, PaneStore};
use super::state_codec::StateCodec;
use crate::state::keyed::{self, KeyedState, MapState, StateDescriptor};
use crate::state::snapshot::SnapshotKind;
use crate::state::snapshot::{KeyedSnapshot, OperatorRestoreData};
use crate::state::timers::{TimeDomain, TimerService};
use crate::state::{decode_i64, encode_i64, StateSettings};

impl keyed::StateCodec for Window {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&encode_i64(self.start));
        out.extend_from_slice(&encode_i64(self.end));
    }
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != 16 {
            return Err("malformed session window in state".into());
        }
        Ok(Window {
            start: decode_i64(&bytes[..8])?,
            end: decode_i64(&bytes[8..])?,
        })
    }
}

struct Session {
    window: Window,
    accs: Vec<Box<dyn Accumulator>>,
}

pub(super) struct SessionWindows {
    state: KeyedState,
    timers: TimerService,
    sessions: MapState<Window, Vec<u8>>,
    domain: TimeDomain,
    gap: i64,
}

impl SessionWindows {
    pub(super) fn open(
        settings: &StateSettings,
        restore: Option<&OperatorRestoreData>,
        gap: i64,
        domain: TimeDomain,
    ) -> Result<Self, String> {
        let mut state = KeyedState::open(settings, restore)?;
        let timers = TimerService::open(&mut state)?;
        Ok(SessionWindows {
            state,
            timers,
            sessions: MapState::new(StateDescriptor::new("sessions")),
            domain,
            gap,
        })
    }

    fn load(&mut self, codec: &StateCodec, aggs: &[AggregateFunctionExpr]) -> Result<Vec<Session>, String> {
        let entries = self.sessions.entries(&mut self.state)?;
        let states = codec.decode_states(entries.iter().map(|(_, v)| v.as_slice()))?;
        let mut out = Vec::with_capacity(entries.len());
        for (i, (window, _)) in entries.iter().enumerate() {
            let mut accs = Vec::with_capacity(aggs.len());
            for (a, agg) in aggs.iter().enumerate() {
                let mut acc = df(agg.create_accumulator())?;
                let arrays: Vec<ArrayRef> = states[a].iter().map(|arr| arr.slice(i, 1)).collect();
                df(acc.merge_batch(&arrays))?;
                accs.push(acc);
            }
            out.push(Session { window: *window, accs });
        }
        Ok(out)
    }

    fn store(&mut self, codec: &StateCodec, sessions: &mut [Session]) -> Result<(), String> {
        self.sessions.clear(&mut self.state)?;
        for s in sessions.iter_mut() {
            let per_agg = s
                .accs
                .iter_mut()
                .map(|a| {
                    df(a.state())?
                        .iter()
                        .map(|v| df(v.to_array()))
                        .collect::<Result<Vec<ArrayRef>, String>>()
                })
                .collect::<Result<Vec<_>, _>>()?;
            let rows = codec.encode_states(&per_agg)?;
            self.sessions
                .put(&mut self.state, &s.window, &rows.row(0).as_ref().to_vec())?;
            self.timers
                .register(&mut self.state, self.domain, s.window.max_timestamp())?;
        }
        Ok(())
    }
}

impl PaneStore for SessionWindows {
    /// Rows whose session the watermark has already passed are late and counted in the result.
    fn add(&mut self, codec: &StateCodec, aggs: &[AggregateFunctionExpr], batch: &PaneBatch) -> Result<u64, String> {
        let (args, ts, keys, time): (&[Vec<ArrayRef>], &[i64], &Rows, i64) =
            (batch.args, batch.ts, batch.rows()?, batch.watermark);
        let mut late = 0u64;
        let mut by_key: HashMap<&[u8], Vec<usize>, ahash::RandomState> = HashMap::default();
        for (r, &t) in ts.iter().enumerate() {
            if t == i64::MIN || assigner::session(t, self.gap).is_fired_by(time) {
                late += 1;
                continue;
            }
            by_key.entry(keys.row(r).data()).or_default().push(r);
        }
        let distinct: Vec<&[u8]> = by_key.keys().copied().collect();
        let groups = codec.key_groups(distinct.iter().copied())?;
        for (key, kg) in distinct.into_iter().zip(groups) {
            self.state.set_current_key_in_group(kg, key)?;
            let mut sessions = self.load(codec, aggs)?;
            for &r in &by_key[key] {
                let window = assigner::session(ts[r], self.gap);
                let (mut joined, rest): (Vec<Session>, Vec<Session>) =
                    sessions.drain(..).partition(|s| s.window.intersects(&window));
                sessions = rest;
                let mut session = match joined.pop() {
                    Some(s) => s,
                    None => Session {
                        window,
                        accs: aggs
                            .iter()
                            .map(|a| df(a.create_accumulator()))
                            .collect::<Result<_, _>>()?,
                    },
                };
                for mut other in joined {
                    session.window = session.window.cover(&other.window);
                    for (acc, o) in session.accs.iter_mut().zip(other.accs.iter_mut()) {
                        let state = df(o.state())?;
                        let arrays = state.iter().map(|s| df(s.to_array())).collect::<Result<Vec<_>, _>>()?;
                        df(acc.merge_batch(&arrays))?;
                    }
                }
                session.window = session.window.cover(&window);
                for (a, acc) in session.accs.iter_mut().enumerate() {
                    let values: Vec<ArrayRef> = args[a].iter().map(|arr| arr.slice(r, 1)).collect();
                    df(acc.update_batch(&values))?;
                }
                sessions.push(session);
            }
            self.store(codec, &mut sessions)?;
        }
        Ok(late)
    }

    /// Emits and forgets every session `time` has passed.
    fn fire(&mut self, codec: &StateCodec, aggs: &[AggregateFunctionExpr], time: i64) -> Result<Vec<Fired>, String> {
        let mut windows = Vec::new();
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut values: Vec<Vec<ScalarValue>> = vec![Vec::new(); aggs.len()];
        let mut due = self.timers.advance(&mut self.state, self.domain, time)?;
        due.sort_by(|a, b| a.key.cmp(&b.key));
        due.dedup_by(|a, b| a.key == b.key);
        let groups = codec.key_groups(due.iter().map(|t| t.key.as_slice()))?;
        for (timer, kg) in due.iter().zip(groups) {
            self.state.set_current_key_in_group(kg, &timer.key)?;
            let sessions = self.load(codec, aggs)?;
            for mut s in sessions.into_iter().filter(|s| s.window.is_fired_by(time)) {
                self.sessions.remove(&mut self.state, &s.window)?;
                windows.push(s.window);
                keys.push(timer.key.clone());
                for (a, acc) in s.accs.iter_mut().enumerate() {
                    values[a].push(df(acc.evaluate())?);
                }
            }
        }
        if windows.is_empty() {
            return Ok(Vec::new());
        }
        Ok(vec![Fired {
            windows,
            keys: codec.key_columns(keys.iter().map(|k| k.as_slice()))?,
            values: values
                .into_iter()
                .map(|v| df(ScalarValue::iter_to_array(v)))
                .collect::<Result<_, _>>()?,
        }])
    }

    fn snapshot(
        &mut self,
        _codec: &StateCodec,
        _aggs: &[AggregateFunctionExpr],
        checkpoint_id: u64,
        kind: SnapshotKind,
    ) -> Result<KeyedSnapshot, String> {
        self.state.snapshot(checkpoint_id, kind)
    }

    fn notify_checkpoint_complete(&mut self, id: u64) {
        self.state.notify_checkpoint_complete(id);
    }
}
