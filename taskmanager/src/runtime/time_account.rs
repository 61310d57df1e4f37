//! Flink's time accounting of a subtask: at every moment it is in exactly one phase, busy,
//! idle (waiting for input, or a source with nothing to read) or back-pressured (waiting for
//! an output buffer or credit), so busy + idle + back-pressured covers its wall time. The task
//! loop says when the phase changes; the output side marks its waits with `back_pressured()`,
//! which returns to the phase before when the wait ends (or is cancelled). A reading includes
//! the phase still in progress, so a subtask blocked for minutes shows it at every scrape, not
//! once when the wait ends.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Busy,
    Idle,
    BackPressured,
}

/// Time spent in each phase.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct PhaseTotals {
    pub busy: Duration,
    pub idle: Duration,
    pub back_pressured: Duration,
}

impl PhaseTotals {
    fn add(&mut self, phase: Phase, d: Duration) {
        match phase {
            Phase::Busy => self.busy += d,
            Phase::Idle => self.idle += d,
            Phase::BackPressured => self.back_pressured += d,
        }
    }
}

#[derive(Debug)]
struct Clock {
    phase: Phase,
    since: Instant,
    /// Closed periods only; the one in progress runs from `since`.
    closed: PhaseTotals,
}

#[derive(Debug)]
pub(crate) struct TimeAccount {
    clock: Mutex<Clock>,
}

impl Default for TimeAccount {
    /// A subtask starts busy (deploying, restoring).
    fn default() -> Self {
        TimeAccount::starting(Phase::Busy, Instant::now())
    }
}

impl TimeAccount {
    pub(crate) fn starting(phase: Phase, now: Instant) -> Self {
        TimeAccount {
            clock: Mutex::new(Clock {
                phase,
                since: now,
                closed: PhaseTotals::default(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Clock> {
        // The clock holds plain numbers: a panic elsewhere cannot leave them half-updated.
        self.clock.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Enters `phase` now; returns the phase it leaves.
    pub(crate) fn enter(&self, phase: Phase) -> Phase {
        self.enter_at(phase, Instant::now())
    }

    pub(crate) fn enter_at(&self, phase: Phase, now: Instant) -> Phase {
        let mut c = self.lock();
        let left = c.phase;
        if left != phase {
            let spent = now.saturating_duration_since(c.since);
            c.closed.add(left, spent);
            c.since = now;
            c.phase = phase;
        }
        left
    }

    /// Back-pressured until the guard is dropped, then back in the phase before.
    pub(crate) fn back_pressured(&self) -> PhaseGuard<'_> {
        let before = self.enter(Phase::BackPressured);
        PhaseGuard { account: self, before }
    }

    /// Totals up to `now`, the phase in progress included.
    pub(crate) fn totals_at(&self, now: Instant) -> PhaseTotals {
        let c = self.lock();
        let mut t = c.closed;
        t.add(c.phase, now.saturating_duration_since(c.since));
        t
    }
}

pub(crate) struct PhaseGuard<'a> {
    account: &'a TimeAccount,
    before: Phase,
}

impl Drop for PhaseGuard<'_> {
    fn drop(&mut self) {
        self.account.enter(self.before);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// A source's second on a fake clock: it reads (busy), waits for an output buffer
    /// (back-pressured), finds nothing to read (idle), reads again. Every moment is counted
    /// once, and a reading in the middle of a long wait already shows the wait.
    #[test]
    fn every_moment_is_in_one_phase() {
        let t0 = Instant::now();
        let account = TimeAccount::starting(Phase::Busy, t0);
        assert_eq!(account.enter_at(Phase::BackPressured, t0 + ms(100)), Phase::Busy);
        // Half-way through the back-pressured wait a scrape sees it growing.
        let mid = account.totals_at(t0 + ms(400));
        assert_eq!(mid.back_pressured, ms(300));
        assert_eq!(mid.busy, ms(100));
        account.enter_at(Phase::Busy, t0 + ms(700));
        account.enter_at(Phase::Idle, t0 + ms(800));
        // Entering the phase it is in changes nothing.
        assert_eq!(account.enter_at(Phase::Idle, t0 + ms(850)), Phase::Idle);
        account.enter_at(Phase::Busy, t0 + ms(900));
        let t = account.totals_at(t0 + ms(1000));
        assert_eq!(t.busy, ms(300));
        assert_eq!(t.back_pressured, ms(600));
        assert_eq!(t.idle, ms(100));
        assert_eq!(t.busy + t.idle + t.back_pressured, ms(1000));
    }

    #[test]
    fn a_back_pressured_wait_returns_to_the_phase_before() {
        let account = TimeAccount::starting(Phase::Idle, Instant::now());
        {
            let _wait = account.back_pressured();
            assert_eq!(account.lock().phase, Phase::BackPressured);
        }
        assert_eq!(account.lock().phase, Phase::Idle);
    }

    #[test]
    fn a_clock_read_before_the_start_counts_nothing() {
        let t0 = Instant::now();
        let account = TimeAccount::starting(Phase::Busy, t0 + ms(50));
        assert_eq!(account.totals_at(t0), PhaseTotals::default());
    }
}
