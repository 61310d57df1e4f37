//! Which windows a timestamp belongs to, with Flink's semantics: windows are `[start, end)`,
//! aligned to the epoch (`TimeWindow.getWindowStartWithOffset` with offset 0), a window fires
//! when the watermark reaches `end - 1` (its max timestamp), and a row is late when every
//! window it would join has already fired. Session windows are `[ts, ts + gap)` merged when
//! they overlap or touch (`TimeWindow.intersects`).

/// `[start, end)` in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Window {
    pub start: i64,
    pub end: i64,
}

impl Window {
    /// The largest timestamp inside the window; it fires once the watermark reaches it.
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.end - 1
    }

    pub(crate) fn is_fired_by(&self, watermark: i64) -> bool {
        self.max_timestamp() <= watermark
    }

    /// Flink's `TimeWindow.intersects`: overlapping or touching.
    pub(crate) fn intersects(&self, other: &Window) -> bool {
        self.start <= other.end && self.end >= other.start
    }

    pub(crate) fn cover(&self, other: &Window) -> Window {
        Window {
            start: self.start.min(other.start),
            end: self.end.max(other.end),
        }
    }
}

/// Flink's `getWindowStartWithOffset` (offset 0), correct for negative timestamps too.
pub(crate) fn window_start(ts: i64, size: i64) -> i64 {
    ts - ts.rem_euclid(size)
}

pub(crate) fn tumbling(ts: i64, size: i64) -> Window {
    let start = window_start(ts, size);
    Window {
        start,
        end: start + size,
    }
}

/// Tumbling windows of a run of timestamps: rows mostly follow each other in time, so a
/// timestamp inside the window before takes it again without a division.
pub(crate) struct TumblingRun {
    size: i64,
    last: Window,
}

impl TumblingRun {
    pub(crate) fn new(size: i64) -> TumblingRun {
        TumblingRun {
            size,
            last: Window { start: 0, end: 0 },
        }
    }

    pub(crate) fn window(&mut self, ts: i64) -> Window {
        if ts < self.last.start || ts >= self.last.end {
            self.last = tumbling(ts, self.size);
        }
        self.last
    }
}

/// Every sliding window containing `ts`, latest first (as Flink's assigner lists them).
pub(crate) fn sliding(ts: i64, size: i64, slide: i64, out: &mut Vec<Window>) {
    out.clear();
    let mut start = window_start(ts, slide);
    while start > ts - size {
        out.push(Window {
            start,
            end: start + size,
        });
        start -= slide;
    }
}

pub(crate) fn session(ts: i64, gap: i64) -> Window {
    Window {
        start: ts,
        end: ts + gap,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_windows_align_to_the_epoch() {
        assert_eq!(tumbling(0, 5000), Window { start: 0, end: 5000 });
        assert_eq!(tumbling(4999, 5000), Window { start: 0, end: 5000 });
        assert_eq!(
            tumbling(5000, 5000),
            Window {
                start: 5000,
                end: 10000
            }
        );
        assert_eq!(tumbling(-1, 5000), Window { start: -5000, end: 0 });
        // 2026-01-01T00:03:20Z in a 5-minute window.
        assert_eq!(
            tumbling(1767225800000, 300_000),
            Window {
                start: 1767225600000,
                end: 1767225900000
            }
        );
    }

    #[test]
    fn sliding_windows_cover_size_over_slide() {
        let mut w = Vec::new();
        sliding(7000, 10_000, 5000, &mut w);
        assert_eq!(
            w,
            vec![
                Window {
                    start: 5000,
                    end: 15000
                },
                Window { start: 0, end: 10000 }
            ]
        );
        sliding(5000, 10_000, 5000, &mut w);
        assert_eq!(
            w,
            vec![
                Window {
                    start: 5000,
                    end: 15000
                },
                Window { start: 0, end: 10000 }
            ]
        );
        sliding(4999, 10_000, 3000, &mut w);
        assert_eq!(w.iter().map(|x| x.start).collect::<Vec<_>>(), vec![3000, 0, -3000]);
        assert!(w.iter().all(|x| x.start <= 4999 && 4999 < x.end));
    }

    #[test]
    fn firing_and_lateness() {
        let w = tumbling(1234, 1000);
        assert!(!w.is_fired_by(1998));
        assert!(w.is_fired_by(1999));
        // A row for this window arriving once the watermark passed 1999 is late.
        assert!(tumbling(1500, 1000).is_fired_by(2000));
    }

    #[test]
    fn sessions_merge_when_touching() {
        let a = session(0, 100);
        let b = session(100, 100);
        let c = session(201, 100);
        assert!(a.intersects(&b));
        assert_eq!(a.cover(&b), Window { start: 0, end: 200 });
        assert!(!a.cover(&b).intersects(&c));
    }

    #[test]
    fn a_tumbling_run_assigns_as_each_timestamp_alone() {
        let mut run = TumblingRun::new(1000);
        for ts in [0, 5, 999, 1000, 1001, -1, -1000, -1001, 2500, 2499, 0, 7] {
            assert_eq!(run.window(ts), tumbling(ts, 1000), "ts {ts}");
        }
    }
}
