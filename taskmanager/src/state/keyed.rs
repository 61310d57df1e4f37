//! Typed keyed state for operators, as Flink's `KeyedStateBackend` offers it: value, list, map,
//! reducing and aggregating state, each named by a descriptor with an optional TTL, scoped to
//! the current key (`set_current_key`). Entries live in the job's backend (`kv`), under the
//! logical key `USER, name length, name, key length (u32 BE), key[, map user key]`, so every
//! state of a key group is one contiguous range and a snapshot or rescale moves key groups
//! whole.
//!
//! TTL (Flink's `StateTtlConfig` with `OnCreateAndWrite` and `NeverReturnExpired`): every value
//! carries the processing time it expires at; a read of an expired value returns nothing and
//! deletes it, and a snapshot leaves expired entries out (`cleanupFullSnapshot`). A list
//! expires as a whole; each map entry expires on its own.

use std::sync::Arc;
use std::time::Duration;

use sluice_common::key_groups::{hash_bytes, key_group};

use super::kv::KvStore;
use super::snapshot::{KeyedSnapshot, OperatorRestoreData, SnapshotKind};
use super::{state_ids, StateSettings};

/// Processing time in ms since the epoch (injectable for tests).
pub(crate) type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

pub(crate) fn system_clock() -> Clock {
    Arc::new(sluice_common::wall_ms::wall_ms)
}

/// Encoding of state values and map keys.
pub(crate) trait StateCodec: Sized {
    fn encode(&self, out: &mut Vec<u8>);
    fn decode(bytes: &[u8]) -> Result<Self, String>;
}

macro_rules! fixed_codec {
    ($($t:ty),*) => {$(
        impl StateCodec for $t {
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_be_bytes());
            }
            fn decode(bytes: &[u8]) -> Result<Self, String> {
                bytes
                    .try_into()
                    .map(<$t>::from_be_bytes)
                    .map_err(|_| format!("state value of {} bytes is not a {}", bytes.len(), stringify!($t)))
            }
        }
    )*};
}
fixed_codec!(i32, i64, u32, u64, f64);

impl StateCodec for Vec<u8> {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        Ok(bytes.to_vec())
    }
}

impl StateCodec for String {
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        String::from_utf8(bytes.to_vec()).map_err(|e| format!("state value is not UTF-8: {e}"))
    }
}

/// A state's name and its time to live.
#[derive(Debug, Clone)]
pub(crate) struct StateDescriptor {
    pub name: String,
    pub ttl: Option<Duration>,
}

impl StateDescriptor {
    pub(crate) fn new(name: &str) -> Self {
        StateDescriptor {
            name: name.to_string(),
            ttl: None,
        }
    }

    #[allow(
        dead_code,
        reason = "Flink's keyed-state API, tested here; the built-in operators use map state and timers so far"
    )]
    pub(crate) fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// Expiry header of every stored value: `i64` BE processing time it expires at (`i64::MAX`:
/// never).
const HEADER: usize = 8;

fn expired_at(value: &[u8]) -> Result<i64, String> {
    value
        .get(..HEADER)
        .and_then(|b| b.try_into().ok())
        .map(i64::from_be_bytes)
        .ok_or_else(|| "keyed state value without its TTL header".to_string())
}

/// The keyed state of one operator in one subtask.
pub(crate) struct KeyedState {
    kv: KvStore,
    #[allow(
        dead_code,
        reason = "Flink's keyed-state API, tested here; the built-in operators use map state and timers so far"
    )]
    max_parallelism: u32,
    clock: Clock,
    /// The current key: its key group and canonical bytes.
    current: Option<(u32, Vec<u8>)>,
    /// A state with a TTL may hold entries (restored or written): snapshots then drop expired
    /// ones. Without TTLs that scan of every key group is skipped.
    ttl_used: bool,
}

impl KeyedState {
    pub(crate) fn open(settings: &StateSettings, restore: Option<&OperatorRestoreData>) -> Result<KeyedState, String> {
        Ok(KeyedState {
            kv: KvStore::open(settings, restore)?,
            max_parallelism: settings.max_parallelism,
            clock: system_clock(),
            current: None,
            ttl_used: restore.is_some(),
        })
    }

    #[allow(
        dead_code,
        reason = "Flink's keyed-state API, tested here; the built-in operators use map state and timers so far"
    )]
    pub(crate) fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Scopes every state access to `key` (its canonical bytes, as the key hash reads them).
    #[allow(
        dead_code,
        reason = "Flink's keyed-state API, tested here; the built-in operators use map state and timers so far"
    )]
    pub(crate) fn set_current_key(&mut self, key: &[u8]) -> Result<(), String> {
        self.set_current_key_in_group(key_group(hash_bytes(key), self.max_parallelism), key)
    }

    /// Scopes every state access to `key`, whose key group the caller already knows.
    pub(crate) fn set_current_key_in_group(&mut self, kg: u32, key: &[u8]) -> Result<(), String> {
        if !self.kv.key_groups().contains(kg) {
            return Err(format!("key group {kg} is not owned by this subtask"));
        }
        match &mut self.current {
            Some((g, k)) => {
                *g = kg;
                k.clear();
                k.extend_from_slice(key);
            }
            None => self.current = Some((kg, key.to_vec())),
        }
        Ok(())
    }

    pub(crate) fn current_key(&self) -> Option<&[u8]> {
        self.current.as_ref().map(|(_, k)| k.as_slice())
    }

    pub(crate) fn current_key_group(&self) -> Option<u32> {
        self.current.as_ref().map(|(kg, _)| *kg)
    }

    pub(crate) fn now(&self) -> i64 {
        (self.clock)()
    }

    pub(super) fn kv(&mut self) -> &mut KvStore {
        &mut self.kv
    }

    /// The logical key of state `name` for the current key (a map's user key goes after it).
    fn state_key(&self, name: &str) -> Result<(u32, Vec<u8>), String> {
        let (kg, key) = self
            .current
            .as_ref()
            .ok_or("keyed state accessed without a current key")?;
        let name_len = u8::try_from(name.len()).map_err(|_| format!("state name '{name}' is longer than 255 bytes"))?;
        let mut k = Vec::with_capacity(6 + name.len() + key.len());
        k.push(state_ids::USER);
        k.push(name_len);
        k.extend_from_slice(name.as_bytes());
        k.extend_from_slice(&(key.len() as u32).to_be_bytes());
        k.extend_from_slice(key);
        Ok((*kg, k))
    }

    /// The live payload under `key`; an expired one is deleted and reads as absent.
    fn read(&mut self, kg: u32, key: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let Some(v) = self.kv.get(kg, key)? else {
            return Ok(None);
        };
        if expired_at(&v)? <= self.now() {
            self.kv.delete(kg, key)?;
            return Ok(None);
        }
        Ok(Some(v[HEADER..].to_vec()))
    }

    fn write(&mut self, d: &StateDescriptor, kg: u32, key: &[u8], payload: &[u8]) -> Result<(), String> {
        self.ttl_used |= d.ttl.is_some();
        let expires = d
            .ttl
            .map_or(i64::MAX, |t| self.now().saturating_add(t.as_millis() as i64));
        let mut v = Vec::with_capacity(HEADER + payload.len());
        v.extend_from_slice(&expires.to_be_bytes());
        v.extend_from_slice(payload);
        self.kv.put(kg, key, &v)
    }

    /// Deletes every expired entry of the typed states.
    fn drop_expired(&mut self) -> Result<(), String> {
        let now = self.now();
        for kg in self.kv.key_groups().iter() {
            let mut dead = Vec::new();
            self.kv.scan(kg, &[state_ids::USER], |k, v| {
                if expired_at(v)? <= now {
                    dead.push(k.to_vec());
                }
                Ok(())
            })?;
            for k in dead {
                self.kv.delete(kg, &k)?;
            }
        }
        Ok(())
    }

    /// The synchronous part of a checkpoint; expired entries are dropped first.
    pub(crate) fn snapshot(&mut self, checkpoint_id: u64, kind: SnapshotKind) -> Result<KeyedSnapshot, String> {
        if self.ttl_used {
            self.drop_expired()?;
        }
        self.kv.snapshot(checkpoint_id, kind)
    }

    pub(crate) fn notify_checkpoint_complete(&mut self, id: u64) {
        self.kv.confirm(id);
    }
}

/// A single value per key.
#[allow(
    dead_code,
    reason = "Flink's keyed-state API, tested here; the built-in operators use map state and timers so far"
)]
pub(crate) struct ValueState<T> {
    d: StateDescriptor,
    _t: std::marker::PhantomData<T>,
}

#[allow(
    dead_code,
    reason = "Flink's keyed-state API, tested here; the built-in operators use map state and timers so far"
)]
impl<T: StateCodec> ValueState<T> {
    pub(crate) fn new(d: StateDescriptor) -> Self {
        ValueState {
            d,
            _t: std::marker::PhantomData,
        }
    }

    pub(crate) fn value(&self, s: &mut KeyedState) -> Result<Option<T>, String> {
        let (kg, k) = s.state_key(&self.d.name)?;
        s.read(kg, &k)?.map(|v| T::decode(&v)).transpose()
    }

    pub(crate) fn update(&self, s: &mut KeyedState, value: &T) -> Result<(), String> {
        let (kg, k) = s.state_key(&self.d.name)?;
        let mut buf = Vec::new();
        value.encode(&mut buf);
        s.write(&self.d, kg, &k, &buf)
    }

    pub(crate) fn clear(&self, s: &mut KeyedState) -> Result<(), String> {
        let (kg, k) = s.state_key(&self.d.name)?;
        s.kv.delete(kg, &k)
    }
}

/// A list per key; elements are length-prefixed in one value.
#[allow(
    dead_code,
    reason = "Flink's keyed-state API, tested here; the built-in operators use map state and timers so far"
)]
pub(crate) struct ListState<T> {
    d: StateDescriptor,
    _t: std::marker::PhantomData<T>,
}

#[allow(
    dead_code,
    reason = "Flink's keyed-state API, tested here; the built-in operators use map state and timers so far"
)]
impl<T: StateCodec> ListState<T> {
    pub(crate) fn new(d: StateDescriptor) -> Self {
        ListState {
            d,
            _t: std::marker::PhantomData,
        }
    }

    pub(crate) fn get(&self, s: &mut KeyedState) -> Result<Vec<T>, String> {
        let (kg, k) = s.state_key(&self.d.name)?;
        let Some(bytes) = s.read(kg, &k)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len = bytes
                .get(at..at + 4)
                .and_then(|b| b.try_into().ok())
                .map(u32::from_be_bytes)
                .ok_or("list state element length is truncated")? as usize;
            let item = bytes
                .get(at + 4..at + 4 + len)
                .ok_or("list state element is truncated")?;
            out.push(T::decode(item)?);
            at += 4 + len;
        }
        Ok(out)
    }

    pub(crate) fn add(&self, s: &mut KeyedState, value: &T) -> Result<(), String> {
        let (kg, k) = s.state_key(&self.d.name)?;
        let mut bytes = s.read(kg, &k)?.unwrap_or_default();
        let mut item = Vec::new();
        value.encode(&mut item);
        bytes.extend_from_slice(&(item.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&item);
        s.write(&self.d, kg, &k, &bytes)
    }

    pub(crate) fn update(&self, s: &mut KeyedState, values: &[T]) -> Result<(), String> {
        self.clear(s)?;
        for v in values {
            self.add(s, v)?;
        }
        Ok(())
    }

    pub(crate) fn clear(&self, s: &mut KeyedState) -> Result<(), String> {
        let (kg, k) = s.state_key(&self.d.name)?;
        s.kv.delete(kg, &k)
    }
}

/// A map per key; each entry is its own backend entry (and expires on its own).
pub(crate) struct MapState<K, V> {
    d: StateDescriptor,
    _t: std::marker::PhantomData<(K, V)>,
}

impl<K: StateCodec, V: StateCodec> MapState<K, V> {
    pub(crate) fn new(d: StateDescriptor) -> Self {
        MapState {
            d,
            _t: std::marker::PhantomData,
        }
    }

    fn entry_key(&self, s: &KeyedState, user_key: &K) -> Result<(u32, Vec<u8>), String> {
        let (kg, mut k) = s.state_key(&self.d.name)?;
        user_key.encode(&mut k);
        Ok((kg, k))
    }

    #[allow(
        dead_code,
        reason = "Flink's keyed-state API, tested here; the built-in operators use map state and timers so far"
    )]
    pub(crate) fn get(&self, s: &mut KeyedState, user_key: &K) -> Result<Option<V>, String> {
        let (kg, k) = self.entry_key(s, user_key)?;
        s.read(kg, &k)?.map(|v| V::decode(&v)).transpose()
    }

    pub(crate) fn put(&self, s: &mut KeyedState, user_key: &K, value: &V) -> Result<(), String> {
        let (kg, k) = self.entry_key(s, user_key)?;
        let mut buf = Vec::new();
        value.encode(&mut buf);
        s.write(&self.d, kg, &k, &buf)
    }

    pub(crate) fn remove(&self, s: &mut KeyedState, user_key: &K) -> Result<(), String> {
        let (kg, k) = self.entry_key(s, user_key)?;
        s.kv.delete(kg, &k)
    }

    /// The live entries in the order of their encoded user keys.
    pub(crate) fn entries(&self, s: &mut KeyedState) -> Result<Vec<(K, V)>, String> {
        let (kg, prefix) = s.state_key(&self.d.name)?;
        let now = s.now();
        let mut raw = Vec::new();
        s.kv.scan(kg, &prefix, |k, v| {
            raw.push((k[prefix.len()..].to_vec(), expired_at(v)? <= now, v[HEADER..].to_vec()));
            Ok(())
        })?;
        let mut out = Vec::new();
        for (uk, expired, v) in raw {
            if expired {
                let mut k = prefix.clone();
                k.extend_from_slice(&uk);
                s.kv.delete(kg, &k)?;
            } else {
                out.push((K::decode(&uk)?, V::decode(&v)?));
            }
        }
        Ok(out)
    }

    pub(crate) fn clear(&self, s: &mut KeyedState) -> Result<(), String> {
        let (kg, prefix) = s.state_key(&self.d.name)?;
        let mut keys = Vec::new();
        s.kv.scan(kg, &prefix, |k, _| {
            keys.push(k.to_vec());
            Ok(())
        })?;
        for k in keys {
            s.kv.delete(kg, &k)?;
        }
        Ok(())
    }
}

/// Flink's `AggregateFunction`: input values folded into an accumulator, read as a result.
#[allow(
    dead_code,
    reason = "Flink's keyed-state API, tested here; the built-in operators use map state and timers so far"
)]
pub(crate) trait AggregateFunction {
    type In;
    type Acc: StateCodec;
    type Out;
    fn create_accumulator(&self) -> Self::Acc;
    fn add(&self, value: &Self::In, acc: Self::Acc) -> Self::Acc;
    fn result(&self, acc: &Self::Acc) -> Self::Out;
}

/// One accumulator per key that every added value is folded into.
#[allow(
    dead_code,
    reason = "Flink's keyed-state API, tested here; the built-in operators use map state and timers so far"
)]
pub(crate) struct AggregatingState<F: AggregateFunction> {
    acc: ValueState<F::Acc>,
    f: F,
}

#[allow(
    dead_code,
    reason = "Flink's keyed-state API, tested here; the built-in operators use map state and timers so far"
)]
impl<F: AggregateFunction> AggregatingState<F> {
    pub(crate) fn new(d: StateDescriptor, f: F) -> Self {
        AggregatingState {
            acc: ValueState::new(d),
            f,
        }
    }

    pub(crate) fn add(&self, s: &mut KeyedState, value: &F::In) -> Result<(), String> {
        let acc = self.acc.value(s)?.unwrap_or_else(|| self.f.create_accumulator());
        self.acc.update(s, &self.f.add(value, acc))
    }

    pub(crate) fn get(&self, s: &mut KeyedState) -> Result<Option<F::Out>, String> {
        Ok(self.acc.value(s)?.map(|a| self.f.result(&a)))
    }

    pub(crate) fn clear(&self, s: &mut KeyedState) -> Result<(), String> {
        self.acc.clear(s)
    }
}

/// Flink's `ReducingState`: an aggregating state whose accumulator is the value itself.
#[allow(
    dead_code,
    reason = "Flink's keyed-state API, tested here; the built-in operators use map state and timers so far"
)]
pub(crate) struct Reduce<T, R>(R, std::marker::PhantomData<T>);

impl<T: StateCodec + Clone + Default, R: Fn(&T, &T) -> T> AggregateFunction for Reduce<T, R> {
    type In = T;
    type Acc = Option<T>;
    type Out = T;
    fn create_accumulator(&self) -> Option<T> {
        None
    }
    fn add(&self, value: &T, acc: Option<T>) -> Option<T> {
        Some(match acc {
            Some(a) => (self.0)(&a, value),
            None => value.clone(),
        })
    }
    fn result(&self, acc: &Option<T>) -> T {
        acc.clone().unwrap_or_default()
    }
}

impl<T: StateCodec> StateCodec for Option<T> {
    fn encode(&self, out: &mut Vec<u8>) {
        if let Some(v) = self {
            out.push(1);
            v.encode(out);
        } else {
            out.push(0);
        }
    }
    fn decode(bytes: &[u8]) -> Result<Self, String> {
        match bytes.split_first() {
            Some((1, rest)) => T::decode(rest).map(Some),
            Some((0, _)) => Ok(None),
            _ => Err("malformed optional state value".into()),
        }
    }
}

#[allow(
    dead_code,
    reason = "Flink's keyed-state API, tested here; the built-in operators use map state and timers so far"
)]
pub(crate) type ReducingState<T, R> = AggregatingState<Reduce<T, R>>;

#[allow(
    dead_code,
    reason = "Flink's keyed-state API, tested here; the built-in operators use map state and timers so far"
)]
pub(crate) fn reducing_state<T: StateCodec + Clone + Default, R: Fn(&T, &T) -> T>(
    d: StateDescriptor,
    reduce: R,
) -> ReducingState<T, R> {
    AggregatingState::new(d, Reduce(reduce, std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::test_settings;
    use sluice_common::config::options::StateBackendKind;
    use std::sync::atomic::{AtomicI64, Ordering};

    fn open(backend: StateBackendKind, dir: &std::path::Path, clock: Arc<AtomicI64>) -> KeyedState {
        let s = test_settings(backend, dir, (0, 127));
        KeyedState::open(&s, None)
            .unwrap()
            .with_clock(Arc::new(move || clock.load(Ordering::Relaxed)))
    }

    fn exercise(backend: StateBackendKind) {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(AtomicI64::new(1000));
        let mut s = open(backend, dir.path(), clock.clone());
        let count = ValueState::<i64>::new(StateDescriptor::new("count"));
        let seen = ListState::<String>::new(StateDescriptor::new("seen"));
        let per_day = MapState::<i64, f64>::new(StateDescriptor::new("per-day"));
        let max = reducing_state(StateDescriptor::new("max"), |a: &i64, b: &i64| *a.max(b));
        let recent = ValueState::<i64>::new(StateDescriptor::new("recent").with_ttl(Duration::from_millis(100)));
        assert!(count.value(&mut s).unwrap_err().contains("without a current key"));

        for (key, n) in [(b"alice".as_slice(), 3), (b"bob".as_slice(), 5)] {
            s.set_current_key(key).unwrap();
            for i in 0..n {
                let c = count.value(&mut s).unwrap().unwrap_or(0);
                count.update(&mut s, &(c + 1)).unwrap();
                seen.add(&mut s, &format!("e{i}")).unwrap();
                per_day.put(&mut s, &(i % 2), &(i as f64)).unwrap();
                max.add(&mut s, &(i * 10)).unwrap();
            }
            recent.update(&mut s, &n).unwrap();
        }
        s.set_current_key(b"alice").unwrap();
        assert_eq!(count.value(&mut s).unwrap(), Some(3));
        assert_eq!(seen.get(&mut s).unwrap(), vec!["e0", "e1", "e2"]);
        assert_eq!(per_day.entries(&mut s).unwrap(), vec![(0, 2.0), (1, 1.0)]);
        assert_eq!(max.get(&mut s).unwrap(), Some(20));
        per_day.remove(&mut s, &0).unwrap();
        assert_eq!(per_day.get(&mut s, &0).unwrap(), None);

        // A full snapshot restores at another parallelism, on the other backend too.
        clock.store(1050, Ordering::Relaxed);
        let snap = s.snapshot(1, SnapshotKind::Checkpoint).unwrap();
        let KeyedSnapshot::Full { range, data, offsets } = snap else {
            panic!("full snapshot expected")
        };
        let restore = OperatorRestoreData {
            full: vec![(data, range, offsets)],
            ..Default::default()
        };
        for other in [StateBackendKind::HashMap, StateBackendKind::RocksDb] {
            let dir2 = tempfile::tempdir().unwrap();
            let mut found = 0;
            for half in [(0, 63), (64, 127)] {
                let settings = test_settings(other, dir2.path(), half);
                let c = clock.clone();
                let mut r = KeyedState::open(&settings, Some(&restore))
                    .unwrap()
                    .with_clock(Arc::new(move || c.load(Ordering::Relaxed)));
                for key in [b"alice".as_slice(), b"bob".as_slice()] {
                    if r.set_current_key(key).is_err() {
                        continue;
                    }
                    found += 1;
                    let n = count.value(&mut r).unwrap().unwrap();
                    assert_eq!(seen.get(&mut r).unwrap().len() as i64, n);
                    assert_eq!(recent.value(&mut r).unwrap(), Some(n));
                }
            }
            assert_eq!(found, 2, "each key restored on exactly one of the two subtasks");
        }

        // TTL: expired values read as absent, and a snapshot leaves them out.
        clock.store(1100, Ordering::Relaxed);
        s.set_current_key(b"bob").unwrap();
        assert_eq!(recent.value(&mut s).unwrap(), None);
        assert_eq!(count.value(&mut s).unwrap(), Some(5));
        count.clear(&mut s).unwrap();
        seen.clear(&mut s).unwrap();
        per_day.clear(&mut s).unwrap();
        assert_eq!(count.value(&mut s).unwrap(), None);
        assert!(seen.get(&mut s).unwrap().is_empty());
        assert!(per_day.entries(&mut s).unwrap().is_empty());
    }

    #[test]
    fn typed_state_on_the_heap() {
        exercise(StateBackendKind::HashMap);
    }

    #[test]
    fn typed_state_on_rocksdb() {
        exercise(StateBackendKind::RocksDb);
    }
}
