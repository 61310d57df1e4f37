//! The sending side of one channel, split the way Flink splits a subpartition queue from its
//! netty writer. While the channel has credit and nothing queued, the task sends a buffer
//! itself. Without credit it queues (up to `taskmanager.network.memory.max-buffers-per-channel`
//! on the channel, and within its partition's buffers, which its channels share; beyond that
//! the task is back-pressured) and a pump sends the queue in order as credit arrives, announcing the real backlog so the receiver lends floating buffers early.
//! So the task does not wait out a credit round trip while its queue has room, and one slow
//! channel does not hold up the others. Both sides send under one lock, which keeps order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use super::credit::SenderCredit;
use super::event::{ChannelId, StreamEvent};
use super::gate::GateShared;
use super::ipc::ChannelEncoder;
use super::transport::Connection;
use crate::runtime::time_account::TimeAccount;

/// How long a pump whose task has ended keeps waiting for credit before giving up (the
/// consumer is gone without saying so).
const DRAIN_WAIT: Duration = Duration::from_secs(60);

pub(super) enum Target {
    Local(Arc<GateShared>, usize),
    /// The connection, and the channel's IPC stream on it.
    Remote(Arc<Connection>, Box<ChannelEncoder>),
}

impl Target {
    fn send(&mut self, id: ChannelId, event: StreamEvent, backlog: u32) -> Result<(), String> {
        match self {
            Target::Local(gate, ch) => gate.deliver(*ch, event, backlog),
            Target::Remote(conn, encoder) => conn.send_event(id, &event, backlog, encoder),
        }
    }

    fn announce_backlog(&self, id: ChannelId, backlog: u32) -> Result<(), String> {
        match self {
            Target::Local(gate, ch) => gate.backlog(*ch, backlog),
            Target::Remote(conn, _) => conn.send_backlog(id, backlog),
        }
    }

    fn closed_message(&self, id: ChannelId) -> String {
        let peer = match self {
            Target::Local(..) => "its local consumer".to_string(),
            Target::Remote(conn, _) => format!("the taskmanager at {}", conn.peer()),
        };
        format!(
            "channel {id:?} to {peer} closed while waiting for credit ({})",
            sluice_common::failure::CONSUMER_GONE
        )
    }
}

struct State {
    target: Target,
    queue: VecDeque<StreamEvent>,
    /// Why sending stopped; every later send fails with it.
    failure: Option<String>,
    /// The task is done with the channel.
    closed: bool,
}

struct Shared {
    id: ChannelId,
    credit: Arc<SenderCredit>,
    state: Mutex<State>,
    /// Queue room: one permit per buffer or event that may still be queued on this channel.
    room: Semaphore,
    /// The partition's buffers, shared by its channels; a queued item holds one.
    partition: Arc<Semaphore>,
    /// Something was queued, or the task closed the channel.
    work: Notify,
}

impl Shared {
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>, String> {
        self.state
            .lock()
            .map_err(|_| "output channel lock poisoned".to_string())
    }

    fn fail(&self, state: &mut State, e: String) -> String {
        state.failure.get_or_insert(e).clone()
    }
}

pub(crate) struct OutputChannel {
    shared: Arc<Shared>,
    pump: JoinHandle<()>,
    /// End of partition queued or sent: the pump may finish the queue after the task is gone.
    ended: bool,
}

impl OutputChannel {
    pub(super) fn new(
        id: ChannelId,
        credit: Arc<SenderCredit>,
        target: Target,
        max_queued: usize,
        partition: Arc<Semaphore>,
    ) -> Self {
        let shared = Arc::new(Shared {
            id,
            credit,
            state: Mutex::new(State {
                target,
                queue: VecDeque::new(),
                failure: None,
                closed: false,
            }),
            room: Semaphore::new(max_queued.max(1)),
            partition,
            work: Notify::new(),
        });
        let pump = tokio::spawn(pump(shared.clone()));
        OutputChannel {
            shared,
            pump,
            ended: false,
        }
    }

    /// Sends one buffer or event now if the channel has credit and nothing queued, else
    /// queues it, first waiting for queue room if the queue is full (the task is
    /// back-pressured meanwhile).
    pub(crate) async fn send(&mut self, event: StreamEvent, time: &TimeAccount) -> Result<(), String> {
        self.ended |= matches!(event, StreamEvent::EndOfPartition);
        let s = &self.shared;
        {
            let mut state = s.lock()?;
            if let Some(e) = &state.failure {
                return Err(e.clone());
            }
            if state.queue.is_empty() && s.credit.try_acquire() {
                return state.target.send(s.id, event, 0).map_err(|e| s.fail(&mut state, e));
            }
        }
        let stopped = || {
            s.lock()
                .ok()
                .and_then(|st| st.failure.clone())
                .unwrap_or_else(|| format!("channel {:?} stopped sending", s.id))
        };
        for room in [&s.room, s.partition.as_ref()] {
            let permit = match room.try_acquire() {
                Ok(p) => p,
                Err(_) => {
                    let _waiting = time.back_pressured();
                    room.acquire().await.map_err(|_| stopped())?
                }
            };
            permit.forget();
        }
        let mut state = s.lock()?;
        if let Some(e) = &state.failure {
            // The pump stopped meanwhile; the item is not queued.
            s.partition.add_permits(1);
            return Err(e.clone());
        }
        state.queue.push_back(event);
        drop(state);
        s.work.notify_one();
        Ok(())
    }
}

/// The task is done with the channel. After an end of partition the pump finishes the queue;
/// otherwise (a cancelled or failed task) it stops now.
impl Drop for OutputChannel {
    fn drop(&mut self) {
        if !self.ended {
            self.pump.abort();
        }
        if let Ok(mut state) = self.shared.state.lock() {
            state.closed = true;
            if !self.ended {
                if let Target::Remote(conn, _) = &state.target {
                    conn.close_channel(self.shared.id);
                }
            }
        }
        self.shared.work.notify_one();
    }
}

/// Sends the queue as credit arrives until the task is done with the channel and the queue is
/// empty, or sending fails.
async fn pump(s: Arc<Shared>) {
    let result = async {
        loop {
            let notified = s.work.notified();
            let (backlog, closed) = {
                let state = s.lock()?;
                (state.queue.len() as u32, state.closed)
            };
            if backlog == 0 {
                if closed {
                    return Ok(());
                }
                notified.await;
                continue;
            }
            if !s.credit.try_acquire() {
                let message = {
                    let state = s.lock()?;
                    state.target.announce_backlog(s.id, backlog)?;
                    state.target.closed_message(s.id)
                };
                let acquired = if closed {
                    // The task has ended; its consumer may be gone without a word.
                    tokio::time::timeout(DRAIN_WAIT, s.credit.acquire())
                        .await
                        .unwrap_or(Err(()))
                } else {
                    s.credit.acquire().await
                };
                acquired.map_err(|_| message)?;
            }
            let mut state = s.lock()?;
            let Some(event) = state.queue.pop_front() else {
                // Only the pump takes from the queue, so this does not happen; keep the credit.
                s.credit.add(1);
                continue;
            };
            let backlog = state.queue.len() as u32;
            state.target.send(s.id, event, backlog)?;
            drop(state);
            s.room.add_permits(1);
            s.partition.add_permits(1);
        }
    }
    .await;
    if let Ok(mut state) = s.state.lock() {
        if let Err(e) = result {
            tracing::debug!("output channel {:?} stopped: {e}", s.id);
            s.fail(&mut state, e);
            // A task waiting for room wakes and fails with the reason; what was queued gives
            // its partition buffers back to the channel's siblings.
            s.room.close();
            s.partition.add_permits(state.queue.len());
            state.queue.clear();
        }
        if let Target::Remote(conn, _) = &state.target {
            conn.close_channel(s.id);
        }
    }
}
