//! An input gate: all channels feeding one consumer subtask (across all its input edges), one
//! ordered queue of their buffers and events, and the credit bookkeeping that bounds it. A
//! buffer counts as in use until the task asks for the next one. For barrier alignment a
//! channel can be blocked: what arrives on it is held back (its credit not returned, so its
//! sender soon stops) and replayed, in order, once the gate is unblocked.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

use super::credit::{Announcement, ReceiverCredits};
use super::event::{GateKey, StreamEvent};

/// Where a channel's credit announcements go: the local sender, or a frame to a remote one.
pub(crate) trait CreditSink: Send + Sync {
    fn grant(&self, credit: u32);
}

struct Inner {
    credits: ReceiverCredits,
    sinks: Vec<Option<Arc<dyn CreditSink>>>,
}

/// The part of a gate that senders and the transport see.
pub(crate) struct GateShared {
    pub key: GateKey,
    /// (input edge, producer subtask) → channel index.
    channels: HashMap<(u32, u32), usize>,
    inner: Mutex<Inner>,
    tx: mpsc::UnboundedSender<(usize, StreamEvent)>,
}

impl GateShared {
    /// The channel index of producer `from` on `edge`.
    pub(crate) fn channel_index(&self, edge: u32, from: u32) -> Option<usize> {
        self.channels.get(&(edge, from)).copied()
    }

    fn dispatch(inner: &Inner, announcements: Vec<Announcement>) {
        for (ch, n) in announcements {
            if let Some(Some(sink)) = inner.sinks.get(ch) {
                sink.grant(n);
            }
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> Result<T, String> {
        let mut inner = self.inner.lock().map_err(|_| "input gate lock poisoned".to_string())?;
        Ok(f(&mut inner))
    }

    /// A sender connected to channel `ch`; it receives its exclusive credit now.
    pub(crate) fn attach(&self, ch: usize, sink: Arc<dyn CreditSink>) -> Result<(), String> {
        self.with(|inner| {
            inner.sinks[ch] = Some(sink);
            let a = inner.credits.attach(ch);
            Self::dispatch(inner, a);
        })
    }

    /// A buffer or event arrived on `ch`.
    pub(crate) fn deliver(&self, ch: usize, event: StreamEvent, backlog: u32) -> Result<(), String> {
        self.with(|inner| -> Result<(), String> {
            let a = inner.credits.on_buffer(ch, backlog)?;
            Self::dispatch(inner, a);
            Ok(())
        })??;
        self.tx
            .send((ch, event))
            .map_err(|_| sluice_common::failure::CONSUMER_GONE.to_string())
    }

    /// The sender of `ch` has `backlog` buffers waiting for credit.
    pub(crate) fn backlog(&self, ch: usize, backlog: u32) -> Result<(), String> {
        self.with(|inner| {
            let a = inner.credits.on_backlog(ch, backlog);
            Self::dispatch(inner, a);
        })
    }

    fn consumed(&self, ch: usize) {
        let _ = self.with(|inner| {
            let a = inner.credits.on_consumed(ch);
            Self::dispatch(inner, a);
        });
    }

    /// The connection carrying channel `ch` failed: the consuming task gets the reason.
    pub(crate) fn fail(&self, ch: usize, reason: String) {
        let _ = self.tx.send((ch, StreamEvent::Broken(reason)));
    }

    /// Buffers received and not yet consumed.
    #[cfg(test)]
    pub(crate) fn buffers_in_use(&self) -> u32 {
        self.with(|inner| inner.credits.in_use()).unwrap_or(0)
    }
}

/// The consumer's end.
pub(crate) struct InputGate {
    shared: Arc<GateShared>,
    /// Channel → the consumer's input it feeds (`Edge.target_input`).
    input_of: Vec<usize>,
    rx: mpsc::UnboundedReceiver<(usize, StreamEvent)>,
    holding: Option<usize>,
    channels: usize,
    blocked: Vec<bool>,
    /// Held back from blocked channels, in arrival order.
    stashed: VecDeque<(usize, StreamEvent)>,
    /// Released by `unblock_all`, served before anything new.
    replay: VecDeque<(usize, StreamEvent)>,
}

impl InputGate {
    /// A gate for `inputs` = (edge, the consumer's input it feeds, the producer subtasks
    /// feeding this consumer) in input order, with `exclusive` buffers per channel and
    /// `floating` for the gate.
    pub(crate) fn new(key: GateKey, inputs: &[(u32, u32, Vec<u32>)], exclusive: u32, floating: u32) -> InputGate {
        let mut channels = HashMap::new();
        let mut input_of = Vec::new();
        for (edge, input, producers) in inputs {
            for from in producers {
                let next = channels.len();
                channels.insert((*edge, *from), next);
                input_of.push(*input as usize);
            }
        }
        let offset = channels.len();
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(GateShared {
            key,
            channels,
            inner: Mutex::new(Inner {
                credits: ReceiverCredits::new(offset, exclusive, floating),
                sinks: vec![None; offset],
            }),
            tx,
        });
        InputGate {
            shared,
            input_of,
            rx,
            holding: None,
            channels: offset,
            blocked: vec![false; offset],
            stashed: VecDeque::new(),
            replay: VecDeque::new(),
        }
    }

    pub(crate) fn shared(&self) -> Arc<GateShared> {
        self.shared.clone()
    }

    pub(crate) fn channels(&self) -> usize {
        self.channels
    }

    /// Which input of the consumer channel `ch` feeds.
    pub(crate) fn input_of(&self, ch: usize) -> usize {
        self.input_of.get(ch).copied().unwrap_or(0)
    }

    /// Holds back channel `ch` until `unblock_all` (barrier alignment).
    pub(crate) fn block(&mut self, ch: usize) {
        if let Some(b) = self.blocked.get_mut(ch) {
            *b = true;
        }
    }

    /// Unblocks every channel; what they held back comes next, in order.
    pub(crate) fn unblock_all(&mut self) {
        self.blocked.iter_mut().for_each(|b| *b = false);
        self.replay.extend(self.stashed.drain(..));
    }

    /// The next buffer or event of any unblocked channel, releasing the previous one's buffer.
    pub(crate) async fn next(&mut self) -> Option<(usize, StreamEvent)> {
        if let Some(ch) = self.holding.take() {
            self.shared.consumed(ch);
        }
        if let Some((ch, event)) = self.replay.pop_front() {
            self.holding = Some(ch);
            return Some((ch, event));
        }
        loop {
            let (ch, event) = self.rx.recv().await?;
            if self.blocked.get(ch).copied().unwrap_or(false) && !matches!(event, StreamEvent::Broken(_)) {
                self.stashed.push_back((ch, event));
                continue;
            }
            self.holding = Some(ch);
            return Some((ch, event));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_channel_knows_the_input_it_feeds() {
        let key = GateKey {
            epoch: 1,
            vertex: 2,
            subtask: 0,
        };
        // Edge 5 feeds input 0 from producers 0 and 1; edge 7 feeds input 1 from producer 0.
        let gate = InputGate::new(key, &[(5, 0, vec![0, 1]), (7, 1, vec![0])], 2, 1);
        assert_eq!(gate.channels(), 3);
        let shared = gate.shared();
        let ch = |edge, from| shared.channel_index(edge, from).expect("channel");
        assert_eq!(gate.input_of(ch(5, 0)), 0);
        assert_eq!(gate.input_of(ch(5, 1)), 0);
        assert_eq!(gate.input_of(ch(7, 0)), 1);
    }
}
