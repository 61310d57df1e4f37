//! Every pane store behind the one interface: the same rows in, the same fired rows out;
//! a fired window is forgotten; a store that assigns its own windows (sessions) counts late rows.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use arrow::row::{RowConverter, SortField};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use sluice_common::config::options::StateBackendKind;
use sluice_common::job::expr::compile_aggregate;

use super::super::assigner::Window;
use super::super::heap_panes::HeapPanes;
use super::super::rocks_panes::RocksPanes;
use super::super::sessions::SessionWindows;
use super::super::state_codec::StateCodec;
use super::{take_rows, Fired, PaneBatch, PaneStore};
use crate::state::test_settings;
use crate::state::timers::TimeDomain;

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int64, false),
        Field::new("v", DataType::Float64, false),
    ]))
}

fn aggregates() -> (StateCodec, Vec<AggregateFunctionExpr>) {
    let aggs = vec![
        compile_aggregate("n", "count(*)", &schema()).unwrap(),
        compile_aggregate("total", "sum(v)", &schema()).unwrap(),
    ];
    let keys = RowConverter::new(vec![SortField::new(DataType::Int64)]).unwrap();
    (StateCodec::new(keys, &aggs, 128).unwrap(), aggs)
}

/// Adds rows (key, value, time) to `store`, every row in `window` unless it is `None`
/// (sessions); returns the late count.
fn add(store: &mut dyn PaneStore, rows: &[(i64, f64, i64)], window: Option<Window>, watermark: i64) -> u64 {
    let (codec, aggs) = aggregates();
    let k: ArrayRef = Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0)));
    let v: ArrayRef = Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.1)));
    let key_rows = codec.keys.convert_columns(std::slice::from_ref(&k)).unwrap();
    let ts: Vec<i64> = rows.iter().map(|r| r.2).collect();
    let assigned: Vec<(Window, u32)> = match window {
        Some(w) => (0..rows.len() as u32).map(|r| (w, r)).collect(),
        None => Vec::new(),
    };
    // count(*) is compiled with a literal argument, sum(v) with the column.
    let args: Vec<Vec<ArrayRef>> = aggs
        .iter()
        .map(|a| {
            let batch = arrow::record_batch::RecordBatch::try_new(schema(), vec![k.clone(), v.clone()]).unwrap();
            a.expressions()
                .iter()
                .map(|e| e.evaluate(&batch).unwrap().into_array(rows.len()).unwrap())
                .collect()
        })
        .collect();
    let batch = PaneBatch {
        args: &args,
        key_columns: std::slice::from_ref(&k),
        key_rows: Some(&key_rows),
        ts: &ts,
        assigned: &assigned,
        watermark,
    };
    store.add(&codec, &aggs, &batch).unwrap()
}

/// (window start, window end, key, count, sum), sorted.
fn fire(store: &mut dyn PaneStore, time: i64) -> Vec<(i64, i64, i64, i64, f64)> {
    let (codec, aggs) = aggregates();
    let mut out = Vec::new();
    let mut fired = store.fire(&codec, &aggs, time).unwrap();
    while store.fire_pending(time) {
        fired.extend(store.fire(&codec, &aggs, time).unwrap());
    }
    for Fired { windows, keys, values } in fired {
        let k = keys[0].as_primitive::<Int64Type>();
        let n = values[0].as_primitive::<Int64Type>();
        let total = values[1].as_primitive::<Float64Type>();
        for (i, w) in windows.iter().enumerate() {
            assert!(!k.is_null(i));
            out.push((w.start, w.end, k.value(i), n.value(i), total.value(i)));
        }
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    out
}

#[test]
fn heap_and_rocksdb_panes_fire_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (codec, aggs) = aggregates();
    let heap = test_settings(StateBackendKind::HashMap, dir.path(), (0, 127));
    let rocks = test_settings(StateBackendKind::RocksDb, dir.path(), (0, 127));
    let stores: Vec<Box<dyn PaneStore>> = vec![
        Box::new(HeapPanes::open(&heap, None, &codec, &aggs).unwrap()),
        Box::new(RocksPanes::open(&rocks, None).unwrap()),
    ];
    let window = Window { start: 0, end: 100 };
    for mut store in stores {
        let store = store.as_mut();
        assert_eq!(
            add(
                store,
                &[(1, 1.0, 10), (2, 2.0, 20), (1, 3.0, 30)],
                Some(window),
                i64::MIN
            ),
            0
        );
        assert!(fire(store, 98).is_empty(), "the window's max timestamp is 99");
        assert_eq!(fire(store, 99), vec![(0, 100, 1, 2, 4.0), (0, 100, 2, 1, 2.0)]);
        assert!(fire(store, i64::MAX).is_empty(), "a fired window is forgotten");
    }
}

#[test]
fn a_rocksdb_window_of_many_keys_fires_in_chunks_with_every_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let (codec, aggs) = aggregates();
    let settings = test_settings(StateBackendKind::RocksDb, dir.path(), (0, 127));
    let mut store = RocksPanes::open(&settings, None).unwrap();
    let window = Window { start: 0, end: 100 };
    let keys = 150_000;
    let rows: Vec<(i64, f64, i64)> = (0..keys).map(|k| (k, 1.0, 10)).collect();
    add(&mut store, &rows, Some(window), i64::MIN);
    // A second window behind the first fires in the same calls, after it.
    add(
        &mut store,
        &[(7, 1.0, 150)],
        Some(Window { start: 100, end: 200 }),
        i64::MIN,
    );
    let mut fired = Vec::new();
    let mut calls = 0;
    loop {
        let part = store.fire(&codec, &aggs, 199).unwrap();
        let rows: usize = part.iter().map(|f| f.windows.len()).sum();
        assert!(rows < 2 * 65_536, "one call emits about one chunk, not {rows} rows");
        fired.extend(part);
        calls += 1;
        if !store.fire_pending(199) {
            break;
        }
        assert!(calls < 100, "firing ends");
    }
    assert!(calls >= 2, "fired in {calls} calls");
    let last = fired.pop().expect("the second window");
    assert_eq!((last.windows[0].start, last.keys[0].len()), (100, 1));
    let mut seen: Vec<i64> = fired
        .iter()
        .flat_map(|f| f.keys[0].as_primitive::<Int64Type>().values().to_vec())
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..keys).collect::<Vec<_>>(), "every key once");
    assert!(
        fire(&mut store, i64::MAX).is_empty(),
        "the fired window's entries are gone"
    );
}

#[test]
fn sessions_assign_their_own_windows_and_count_late_rows() {
    let dir = tempfile::tempdir().unwrap();
    for backend in [StateBackendKind::HashMap, StateBackendKind::RocksDb] {
        let settings = test_settings(backend, dir.path(), (0, 127));
        let mut sessions = SessionWindows::open(&settings, None, 10, TimeDomain::EventTime).unwrap();
        // Key 1 at 10 and 15 share a session; at 40 it starts another.
        let late = add(
            &mut sessions,
            &[(1, 1.0, 10), (2, 2.0, 20), (1, 3.0, 15), (1, 5.0, 40)],
            None,
            i64::MIN,
        );
        assert_eq!(late, 0);
        assert_eq!(
            fire(&mut sessions, 30),
            vec![(10, 25, 1, 2, 4.0), (20, 30, 2, 1, 2.0)],
            "{backend:?}"
        );
        // A row whose session the watermark passed is late.
        assert_eq!(add(&mut sessions, &[(3, 1.0, 5)], None, 30), 1);
        assert_eq!(fire(&mut sessions, i64::MAX), vec![(40, 50, 1, 1, 5.0)], "{backend:?}");
    }
}

#[test]
fn taking_every_row_in_order_keeps_the_arrays_and_any_other_order_takes() {
    use arrow::array::UInt32Array;
    let a: ArrayRef = Arc::new(Int64Array::from(vec![5, 6, 7]));
    let all = take_rows(std::slice::from_ref(&a), &UInt32Array::from(vec![0, 1, 2])).unwrap();
    assert!(Arc::ptr_eq(&all[0], &a), "every row in order is the array itself");
    let some = take_rows(std::slice::from_ref(&a), &UInt32Array::from(vec![2, 0])).unwrap();
    let some = some[0].as_any().downcast_ref::<Int64Array>().unwrap();
    assert_eq!(some.values(), &[7, 5]);
    let same_len = take_rows(std::slice::from_ref(&a), &UInt32Array::from(vec![1, 1, 2])).unwrap();
    assert_eq!(
        same_len[0].as_any().downcast_ref::<Int64Array>().unwrap().values(),
        &[6, 6, 7]
    );
}
