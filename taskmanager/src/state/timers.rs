//! Event- and processing-time timers as keyed state (Flink's `InternalTimerService`): a timer
//! is an entry `TIMER, domain, time (order-preserving), key` in the key's key group, so it is
//! snapshotted, restored and redistributed with the rest of the keyed state. An in-memory
//! queue per domain, rebuilt from the store on open, yields the due timers in time order; a
//! timer registered twice for the same key and time fires once.

use std::collections::BTreeSet;

use super::keyed::KeyedState;
use super::{decode_i64, encode_i64, state_ids};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimeDomain {
    EventTime = 0,
    ProcessingTime = 1,
}

/// A due timer: its time and the key it was registered for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Timer {
    pub time: i64,
    pub key: Vec<u8>,
}

#[derive(Default)]
pub(crate) struct TimerService {
    /// (time, key group, key) per domain.
    queues: [BTreeSet<(i64, u32, Vec<u8>)>; 2],
}

fn timer_key(domain: TimeDomain, time: i64, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(10 + key.len());
    k.push(state_ids::TIMER);
    k.push(domain as u8);
    k.extend_from_slice(&encode_i64(time));
    k.extend_from_slice(key);
    k
}

impl TimerService {
    /// The timers `state` holds (restored ones included).
    pub(crate) fn open(state: &mut KeyedState) -> Result<TimerService, String> {
        let mut service = TimerService::default();
        let kv = state.kv();
        for kg in kv.key_groups().iter() {
            kv.scan(kg, &[state_ids::TIMER], |k, _| {
                let domain = *k.get(1).ok_or("truncated timer key")?;
                let time = decode_i64(k.get(2..).ok_or("truncated timer key")?)?;
                let key = k.get(10..).ok_or("truncated timer key")?.to_vec();
                let queue = service
                    .queues
                    .get_mut(usize::from(domain))
                    .ok_or_else(|| format!("timer of unknown time domain {domain}"))?;
                queue.insert((time, kg, key));
                Ok(())
            })?;
        }
        Ok(service)
    }

    fn current(state: &KeyedState) -> Result<(u32, Vec<u8>), String> {
        let key = state.current_key().ok_or("timer registered without a current key")?;
        let kg = state
            .current_key_group()
            .ok_or("timer registered without a current key")?;
        Ok((kg, key.to_vec()))
    }

    /// Registers a timer at `time` for the current key.
    pub(crate) fn register(&mut self, state: &mut KeyedState, domain: TimeDomain, time: i64) -> Result<(), String> {
        let (kg, key) = Self::current(state)?;
        state.kv().put(kg, &timer_key(domain, time, &key), &[])?;
        self.queues[domain as usize].insert((time, kg, key));
        Ok(())
    }

    /// Deletes the current key's timer at `time`, if there is one.
    #[allow(
        dead_code,
        reason = "Flink's timer service API, tested here; session windows only register and advance"
    )]
    pub(crate) fn delete(&mut self, state: &mut KeyedState, domain: TimeDomain, time: i64) -> Result<(), String> {
        let (kg, key) = Self::current(state)?;
        state.kv().delete(kg, &timer_key(domain, time, &key))?;
        self.queues[domain as usize].remove(&(time, kg, key));
        Ok(())
    }

    /// Removes and returns every timer of `domain` at or before `time`, earliest first (the
    /// watermark or the clock advanced to `time`).
    pub(crate) fn advance(
        &mut self,
        state: &mut KeyedState,
        domain: TimeDomain,
        time: i64,
    ) -> Result<Vec<Timer>, String> {
        let queue = &mut self.queues[domain as usize];
        let mut due = Vec::new();
        while queue.first().is_some_and(|(t, _, _)| *t <= time) {
            if let Some((t, kg, key)) = queue.pop_first() {
                state.kv().delete(kg, &timer_key(domain, t, &key))?;
                due.push(Timer { time: t, key });
            }
        }
        Ok(due)
    }

    /// The earliest pending timer of `domain`.
    #[allow(
        dead_code,
        reason = "Flink's timer service API, tested here; session windows only register and advance"
    )]
    pub(crate) fn next(&self, domain: TimeDomain) -> Option<i64> {
        self.queues[domain as usize].first().map(|(t, _, _)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::keyed::KeyedState;
    use crate::state::snapshot::SnapshotKind;
    use crate::state::snapshot::{KeyedSnapshot, OperatorRestoreData};
    use crate::state::test_settings;
    use sluice_common::config::options::StateBackendKind;

    #[test]
    fn timers_fire_in_order_and_survive_a_snapshot_on_either_backend() {
        let dir = tempfile::tempdir().unwrap();
        let settings = test_settings(StateBackendKind::RocksDb, dir.path(), (0, 127));
        let mut s = KeyedState::open(&settings, None).unwrap();
        let mut timers = TimerService::open(&mut s).unwrap();
        for (key, t) in [(b"a".as_slice(), 30), (b"b".as_slice(), 10), (b"c".as_slice(), 20)] {
            s.set_current_key(key).unwrap();
            timers.register(&mut s, TimeDomain::EventTime, t).unwrap();
            timers.register(&mut s, TimeDomain::EventTime, t).unwrap();
        }
        s.set_current_key(b"c").unwrap();
        timers.register(&mut s, TimeDomain::ProcessingTime, 5).unwrap();
        timers.register(&mut s, TimeDomain::EventTime, 25).unwrap();
        timers.delete(&mut s, TimeDomain::EventTime, 25).unwrap();
        let due = timers.advance(&mut s, TimeDomain::EventTime, 10).unwrap();
        assert_eq!(
            due,
            vec![Timer {
                time: 10,
                key: b"b".to_vec()
            }]
        );
        assert_eq!(timers.next(TimeDomain::EventTime), Some(20));

        let KeyedSnapshot::Full { range, data, offsets } = s.snapshot(1, SnapshotKind::Savepoint).unwrap() else {
            panic!("a savepoint is full")
        };
        let restore = OperatorRestoreData {
            full: vec![(data, range, offsets)],
            ..Default::default()
        };
        let heap = test_settings(StateBackendKind::HashMap, dir.path(), (0, 127));
        let mut r = KeyedState::open(&heap, Some(&restore)).unwrap();
        let mut restored = TimerService::open(&mut r).unwrap();
        let due = restored.advance(&mut r, TimeDomain::EventTime, i64::MAX).unwrap();
        let keys: Vec<(i64, &[u8])> = due.iter().map(|t| (t.time, t.key.as_slice())).collect();
        assert_eq!(keys, vec![(20, b"c".as_slice()), (30, b"a".as_slice())]);
        let due = restored.advance(&mut r, TimeDomain::ProcessingTime, 100).unwrap();
        assert_eq!(due.len(), 1);
        assert!(restored
            .advance(&mut r, TimeDomain::EventTime, i64::MAX)
            .unwrap()
            .is_empty());
    }
}
