//! Credit-based flow control (Flink's FLINK-7282 design). The receiver owns the buffers: each
//! channel has `exclusive` buffers (buffers-per-channel), the gate a pool of `floating` ones.
//! It announces credit = buffers free for a channel; the sender sends one buffer per credit and
//! tells its backlog, so the receiver can lend floating buffers to channels that have data
//! waiting. Every buffer or event costs one credit, so buffers in flight never exceed credit.
//!
//! `ReceiverCredits` is the pure bookkeeping (tested here); `SenderCredit` is the sender's
//! async counter.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

/// Credit to hand to one channel's sender.
pub(crate) type Announcement = (usize, u32);

#[derive(Debug, Default, Clone)]
struct ChannelCredit {
    exclusive: u32,
    floating_held: u32,
    /// Buffers received and not yet consumed by the task.
    in_use: u32,
    /// Credit announced that the sender has not used yet.
    announced: u32,
    /// What the sender last said it has queued.
    backlog: u32,
    attached: bool,
}

impl ChannelCredit {
    fn capacity(&self) -> u32 {
        self.exclusive + self.floating_held
    }
}

/// The receiver side's accounting for all channels of one input gate.
#[derive(Debug)]
pub(crate) struct ReceiverCredits {
    channels: Vec<ChannelCredit>,
    floating_free: u32,
}

impl ReceiverCredits {
    pub(crate) fn new(channels: usize, exclusive: u32, floating: u32) -> Self {
        ReceiverCredits {
            channels: vec![
                ChannelCredit {
                    exclusive,
                    ..Default::default()
                };
                channels
            ],
            floating_free: floating,
        }
    }

    /// The sender of `ch` connected: announce its exclusive buffers.
    pub(crate) fn attach(&mut self, ch: usize) -> Vec<Announcement> {
        let c = &mut self.channels[ch];
        c.attached = true;
        let grant = c.capacity() - c.in_use - c.announced;
        c.announced += grant;
        if grant > 0 {
            vec![(ch, grant)]
        } else {
            Vec::new()
        }
    }

    /// A buffer arrived on `ch` with the sender's backlog behind it. Returns an error when the
    /// sender sent without credit (a protocol violation).
    pub(crate) fn on_buffer(&mut self, ch: usize, backlog: u32) -> Result<Vec<Announcement>, String> {
        let c = &mut self.channels[ch];
        if c.announced == 0 {
            return Err(format!("channel {ch} sent a buffer without credit"));
        }
        c.announced -= 1;
        c.in_use += 1;
        c.backlog = backlog;
        Ok(self.lend_floating())
    }

    /// The sender announced a backlog without sending (it ran out of credit).
    pub(crate) fn on_backlog(&mut self, ch: usize, backlog: u32) -> Vec<Announcement> {
        self.channels[ch].backlog = backlog;
        self.lend_floating()
    }

    /// The task consumed one buffer of `ch`: its buffer goes back to the channel (exclusive) or
    /// to the gate's floating pool.
    pub(crate) fn on_consumed(&mut self, ch: usize) -> Vec<Announcement> {
        let c = &mut self.channels[ch];
        c.in_use = c.in_use.saturating_sub(1);
        let mut out = Vec::new();
        if c.floating_held > 0 && c.in_use + c.announced >= c.exclusive {
            c.floating_held -= 1;
            self.floating_free += 1;
        } else if c.attached && c.in_use + c.announced < c.capacity() {
            c.announced += 1;
            out.push((ch, 1));
        }
        out.extend(self.lend_floating());
        out
    }

    /// Lends free floating buffers to channels whose backlog exceeds their unused credit.
    fn lend_floating(&mut self) -> Vec<Announcement> {
        let mut out = Vec::new();
        while self.floating_free > 0 {
            let Some((i, c)) = self
                .channels
                .iter_mut()
                .enumerate()
                .filter(|(_, c)| c.attached && c.backlog > c.announced)
                .max_by_key(|(_, c)| c.backlog - c.announced)
            else {
                break;
            };
            self.floating_free -= 1;
            c.floating_held += 1;
            c.announced += 1;
            out.push((i, 1));
        }
        out
    }

    /// Buffers held across all channels (received, not consumed) — never above capacity.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> u32 {
        self.channels.iter().map(|c| c.in_use).sum()
    }

    /// Exclusive + floating buffers of the gate.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> u32 {
        self.channels.iter().map(|c| c.capacity()).sum::<u32>() + self.floating_free
    }
}

/// The sender's view of one channel: credit it may spend, and a wake-up when more arrives.
#[derive(Debug, Default)]
pub(crate) struct SenderCredit {
    available: Mutex<u32>,
    notify: Notify,
    closed: AtomicBool,
}

impl SenderCredit {
    pub(crate) fn add(&self, credit: u32) {
        if let Ok(mut a) = self.available.lock() {
            *a += credit;
        }
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Fails waiters: the channel or the task is gone.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
        self.notify.notify_one();
    }

    /// Takes one credit without waiting.
    pub(crate) fn try_acquire(&self) -> bool {
        match self.available.lock() {
            Ok(mut a) if *a > 0 => {
                *a -= 1;
                true
            }
            _ => false,
        }
    }

    /// Waits for one credit. `Err` when the channel was closed.
    pub(crate) async fn acquire(&self) -> Result<(), ()> {
        loop {
            let notified = self.notify.notified();
            if self.try_acquire() {
                return Ok(());
            }
            if self.closed.load(Ordering::Acquire) {
                return Err(());
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(a: &[Announcement]) -> u32 {
        a.iter().map(|(_, n)| n).sum()
    }

    #[test]
    fn exclusive_credit_then_floating_on_backlog() {
        let mut r = ReceiverCredits::new(2, 2, 8);
        assert_eq!(r.attach(0), vec![(0, 2)]);
        assert_eq!(r.attach(1), vec![(1, 2)]);
        // Channel 0 sends a buffer announcing 6 more queued; it has 1 credit left, so 5
        // floating buffers are lent to it, and to no other channel.
        let lent = r.on_buffer(0, 6).unwrap();
        assert_eq!(total(&lent), 5, "{lent:?}");
        assert!(lent.iter().all(|(ch, _)| *ch == 0));
        // Its backlog is now covered: the next buffer lends nothing.
        assert!(r.on_buffer(0, 5).unwrap().is_empty());
        assert_eq!(r.in_use(), 2);
        // Consuming returns floating buffers to the pool once exclusive ones suffice.
        for _ in 0..2 {
            r.on_consumed(0);
        }
        assert_eq!(r.capacity(), 2 + 2 + 8);
    }

    #[test]
    fn buffers_in_flight_never_exceed_credit() {
        // A simulated sender with an endless backlog against a slow consumer.
        let mut r = ReceiverCredits::new(3, 2, 4);
        let mut credit = [0u32; 3];
        for ch in 0..3 {
            for (c, n) in r.attach(ch) {
                credit[c] += n;
            }
        }
        let capacity = r.capacity();
        let mut queued = std::collections::VecDeque::new();
        for step in 0..10_000u32 {
            let ch = (step % 3) as usize;
            if credit[ch] > 0 {
                credit[ch] -= 1;
                for (c, n) in r.on_buffer(ch, 100).unwrap() {
                    credit[c] += n;
                }
                queued.push_back(ch);
            } else {
                for (c, n) in r.on_backlog(ch, 100) {
                    credit[c] += n;
                }
            }
            let in_flight = r.in_use() + credit.iter().sum::<u32>();
            assert!(in_flight <= capacity, "step {step}: {in_flight} > {capacity}");
            // The consumer takes one buffer every third step.
            if step % 3 == 0 {
                if let Some(ch) = queued.pop_front() {
                    for (c, n) in r.on_consumed(ch) {
                        credit[c] += n;
                    }
                }
            }
        }
        assert!(r.in_use() <= capacity);
    }

    #[test]
    fn sending_without_credit_is_refused() {
        let mut r = ReceiverCredits::new(1, 2, 0);
        r.attach(0);
        r.on_buffer(0, 0).unwrap();
        r.on_buffer(0, 0).unwrap();
        assert!(r.on_buffer(0, 0).is_err());
        assert_eq!(r.on_consumed(0), vec![(0, 1)]);
    }

    #[tokio::test]
    async fn sender_waits_for_credit() {
        let s = std::sync::Arc::new(SenderCredit::default());
        let waiter = {
            let s = s.clone();
            tokio::spawn(async move { s.acquire().await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        s.add(1);
        assert_eq!(waiter.await.unwrap(), Ok(()));
        let s2 = std::sync::Arc::new(SenderCredit::default());
        s2.close();
        assert_eq!(s2.acquire().await, Err(()));
    }
}
