//! Event time in a subtask. Sources: bounded out-of-orderness per split (Flink's
//! `BoundedOutOfOrdernessWatermarks`: max timestamp − out-of-orderness − 1), the subtask's
//! watermark being the minimum over its live splits; a split silent for the idle timeout stops
//! holding it back. A source emits at most one watermark per `pipeline.auto-watermark-interval`
//! (Flink's periodic emission: a watermark costs every downstream channel an event). Inputs: the minimum over channels, ignoring idle and finished ones
//! (Flink's `StatusWatermarkValve`).

use std::time::{Duration, Instant};

/// The watermark of a source subtask from its splits.
pub(crate) struct SplitWatermarks {
    max_ts: Vec<i64>,
    last_data: Vec<Instant>,
    finished: Vec<bool>,
    out_of_orderness: i64,
    idle_timeout: Option<Duration>,
    emitted: i64,
    /// At most one watermark per this long; zero: whenever it advances.
    emit_interval: Duration,
    last_emit: Option<Instant>,
}

impl SplitWatermarks {
    pub(crate) fn new(
        splits: usize,
        out_of_orderness: Duration,
        idle_timeout: Option<Duration>,
        emit_interval: Duration,
    ) -> Self {
        SplitWatermarks {
            max_ts: vec![i64::MIN; splits],
            last_data: vec![Instant::now(); splits],
            finished: vec![false; splits],
            out_of_orderness: i64::try_from(out_of_orderness.as_millis()).unwrap_or(i64::MAX),
            idle_timeout,
            emitted: i64::MIN,
            emit_interval,
            last_emit: None,
        }
    }

    /// `n` more splits (given while running): each holds the watermark back until it has data
    /// or goes idle.
    pub(crate) fn add_splits(&mut self, n: usize) {
        let total = self.max_ts.len() + n;
        self.max_ts.resize(total, i64::MIN);
        self.last_data.resize(total, Instant::now());
        self.finished.resize(total, false);
    }

    pub(crate) fn on_rows(&mut self, split: usize, max_ts: i64) {
        if let Some(m) = self.max_ts.get_mut(split) {
            *m = (*m).max(max_ts);
            self.last_data[split] = Instant::now();
        }
    }

    pub(crate) fn on_split_finished(&mut self, split: usize) {
        if let Some(f) = self.finished.get_mut(split) {
            *f = true;
        }
    }

    /// The new watermark when it advanced and the emit interval has passed since the last one
    /// (an advance held back is emitted by a later call: the source loop calls this after
    /// every batch and while it waits for data).
    pub(crate) fn advance(&mut self) -> Option<i64> {
        let now = Instant::now();
        if self
            .last_emit
            .is_some_and(|t| now.duration_since(t) < self.emit_interval)
        {
            return None;
        }
        let live = (0..self.max_ts.len()).filter(|&i| {
            !self.finished[i]
                && self
                    .idle_timeout
                    .is_none_or(|t| now.duration_since(self.last_data[i]) < t)
        });
        let wm = live
            .map(|i| self.max_ts[i].saturating_sub(self.out_of_orderness).saturating_sub(1))
            .min()?;
        (wm > self.emitted).then(|| {
            self.emitted = wm;
            self.last_emit = Some(now);
            wm
        })
    }

    /// Whether every split is idle (and none finished the subtask): downstream should not wait.
    pub(crate) fn all_idle(&self) -> bool {
        let now = Instant::now();
        self.idle_timeout.is_some_and(|t| {
            (0..self.max_ts.len()).all(|i| self.finished[i] || now.duration_since(self.last_data[i]) >= t)
        }) && self.finished.iter().any(|f| !f)
    }
}

#[derive(Clone, Copy)]
struct ChannelState {
    watermark: i64,
    idle: bool,
    finished: bool,
}

/// Combines the watermarks of a gate's channels.
pub(crate) struct WatermarkValve {
    channels: Vec<ChannelState>,
    emitted: i64,
}

impl WatermarkValve {
    pub(crate) fn new(channels: usize) -> Self {
        WatermarkValve {
            channels: vec![
                ChannelState {
                    watermark: i64::MIN,
                    idle: false,
                    finished: false
                };
                channels
            ],
            emitted: i64::MIN,
        }
    }

    pub(crate) fn current(&self) -> i64 {
        self.emitted
    }

    fn combined(&mut self) -> Option<i64> {
        let active = self.channels.iter().filter(|c| !c.idle && !c.finished);
        let wm = match active.map(|c| c.watermark).min() {
            Some(w) => w,
            None if self.channels.iter().all(|c| c.finished) => i64::MAX,
            // Every open channel is idle: nothing holds time back, nothing moves it either.
            None => return None,
        };
        (wm > self.emitted).then(|| {
            self.emitted = wm;
            wm
        })
    }

    pub(crate) fn on_watermark(&mut self, ch: usize, wm: i64) -> Option<i64> {
        let c = &mut self.channels[ch];
        c.watermark = c.watermark.max(wm);
        c.idle = false;
        self.combined()
    }

    pub(crate) fn on_idle(&mut self, ch: usize, idle: bool) -> Option<i64> {
        self.channels[ch].idle = idle;
        self.combined()
    }

    pub(crate) fn on_end(&mut self, ch: usize) -> Option<i64> {
        self.channels[ch].finished = true;
        self.combined()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valve_takes_the_minimum_over_channels() {
        let mut v = WatermarkValve::new(3);
        assert_eq!(v.on_watermark(0, 100), None);
        assert_eq!(v.on_watermark(1, 50), None);
        assert_eq!(v.on_watermark(2, 70), Some(50));
        assert_eq!(v.on_watermark(1, 80), Some(70));
        assert_eq!(v.on_watermark(1, 60), None, "a channel's watermark never goes back");
    }

    #[test]
    fn idle_and_finished_channels_stop_holding_back() {
        let mut v = WatermarkValve::new(2);
        v.on_watermark(0, 100);
        assert_eq!(v.on_idle(1, true), Some(100));
        assert_eq!(
            v.on_watermark(1, 10),
            None,
            "an active channel returns below the emitted watermark"
        );
        assert_eq!(v.on_watermark(1, 150), None);
        assert_eq!(v.on_watermark(0, 200), Some(150));
        assert_eq!(v.on_end(1), Some(200));
        assert_eq!(v.on_end(0), Some(i64::MAX));
    }

    #[test]
    fn all_idle_holds_the_watermark() {
        let mut v = WatermarkValve::new(2);
        v.on_watermark(0, 5);
        v.on_watermark(1, 7);
        assert_eq!(v.on_idle(0, true), Some(7));
        assert_eq!(v.on_idle(1, true), None);
        assert_eq!(v.current(), 7);
    }

    #[test]
    fn sources_bound_out_of_orderness_per_split() {
        let mut s = SplitWatermarks::new(2, Duration::from_millis(100), None, Duration::ZERO);
        s.on_rows(0, 1000);
        assert_eq!(s.advance(), None, "split 1 has no data yet");
        s.on_rows(1, 500);
        assert_eq!(s.advance(), Some(399));
        s.on_split_finished(1);
        assert_eq!(s.advance(), Some(899));
    }

    #[test]
    fn idle_splits_are_skipped() {
        let mut s = SplitWatermarks::new(2, Duration::ZERO, Some(Duration::from_millis(30)), Duration::ZERO);
        s.on_rows(0, 1000);
        std::thread::sleep(Duration::from_millis(40));
        s.on_rows(0, 2000);
        assert_eq!(s.advance(), Some(1999));
    }

    #[test]
    fn a_source_emits_at_most_one_watermark_per_interval() {
        // An hour's interval: nothing a slow machine does between two calls passes it.
        let mut s = SplitWatermarks::new(1, Duration::ZERO, None, Duration::from_secs(3600));
        s.on_rows(0, 100);
        assert_eq!(s.advance(), Some(99), "the first advance goes at once");
        s.on_rows(0, 200);
        assert_eq!(s.advance(), None, "held back within the interval");
        let mut s = SplitWatermarks::new(1, Duration::ZERO, None, Duration::from_millis(30));
        s.on_rows(0, 100);
        assert_eq!(s.advance(), Some(99));
        s.on_rows(0, 200);
        s.on_rows(0, 300);
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(s.advance(), Some(299), "the latest advance once the interval passed");
        assert_eq!(s.advance(), None, "nothing new");
    }
}
