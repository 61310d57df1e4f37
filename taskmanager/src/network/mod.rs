//! The data plane (DESIGN §5): a `NetworkBufferPool` of network-memory / segment-size buffers,
//! credit-based channels that are either local (no socket, same credit rules) or multiplexed
//! over one TCP connection per taskmanager pair, input gates, and partitioning record writers.

mod buffer_pool;
pub(crate) mod credit;
mod event;
mod frame;
mod gate;
mod ipc;
mod output_queue;
mod transport;
mod writer;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;

pub(crate) use buffer_pool::{gate_required, partition_required, NetworkBufferPool, Reservation};
pub(crate) use event::{Barrier, ChannelId, GateKey, StreamEvent};
pub(crate) use gate::{CreditSink, GateShared, InputGate};
pub(crate) use output_queue::OutputChannel;
pub(crate) use transport::Connection;
pub(crate) use writer::{RecordWriter, WriterPartition};

use credit::SenderCredit;
use output_queue::Target;

/// Gates of the tasks deployed here, found by (epoch, input edge, consumer subtask).
#[derive(Default)]
pub(crate) struct GateRegistry {
    map: Mutex<HashMap<(u64, u32, u32), Arc<GateShared>>>,
    changed: Notify,
}

impl GateRegistry {
    pub(crate) fn register(&self, gate: Arc<GateShared>, edges: &[u32]) {
        if let Ok(mut map) = self.map.lock() {
            for e in edges {
                map.insert((gate.key.epoch, *e, gate.key.subtask), gate.clone());
            }
        }
        self.changed.notify_waiters();
    }

    pub(crate) fn unregister(&self, key: GateKey, edges: &[u32]) {
        if let Ok(mut map) = self.map.lock() {
            for e in edges {
                map.remove(&(key.epoch, *e, key.subtask));
            }
        }
    }

    fn get(&self, epoch: u64, edge: u32, to: u32) -> Option<Arc<GateShared>> {
        self.map.lock().ok()?.get(&(epoch, edge, to)).cloned()
    }

    /// The gate consuming `edge` at subtask `to`, waiting (bounded) until it is deployed.
    pub(crate) async fn wait_for_edge(
        &self,
        epoch: u64,
        edge: u32,
        to: u32,
        timeout: Duration,
    ) -> Option<Arc<GateShared>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.changed.notified();
            if let Some(g) = self.get(epoch, edge, to) {
                return Some(g);
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }
}

/// Local senders get credit straight from the gate.
struct LocalCreditSink(Arc<SenderCredit>);

impl CreditSink for LocalCreditSink {
    fn grant(&self, credit: u32) {
        self.0.add(credit);
    }
}

/// Network settings and shared state of one taskmanager.
pub(crate) struct NetworkEnvironment {
    pub pool: Arc<NetworkBufferPool>,
    pub gates: Arc<GateRegistry>,
    /// `host:port` of this taskmanager's data port, to recognise local channels.
    pub local_address: String,
    pub buffers_per_channel: u32,
    pub floating_per_gate: u32,
    /// Buffers a producer may queue on one channel before it is back-pressured.
    pub max_buffers_per_channel: u32,
    connections: tokio::sync::Mutex<HashMap<String, Arc<Connection>>>,
}

/// How long a producer waits for a consumer on the same taskmanager to be deployed.
const LOCAL_GATE_WAIT: Duration = Duration::from_secs(60);

impl NetworkEnvironment {
    pub(crate) fn new(
        pool: Arc<NetworkBufferPool>,
        local_address: String,
        buffers_per_channel: u32,
        floating_per_gate: u32,
        max_buffers_per_channel: u32,
    ) -> Arc<Self> {
        Arc::new(NetworkEnvironment {
            pool,
            gates: Arc::default(),
            local_address,
            buffers_per_channel,
            floating_per_gate,
            max_buffers_per_channel,
            connections: tokio::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Drops every pooled connection to other taskmanagers, so later channels open fresh
    /// ones. After a network partition a pooled connection may look open while its peer can
    /// no longer be reached through it.
    pub(crate) async fn forget_connections(&self) -> usize {
        let mut conns = self.connections.lock().await;
        let n = conns.len();
        conns.clear();
        n
    }

    /// Serves the data port.
    pub(crate) fn serve(self: &Arc<Self>, listener: TcpListener) {
        tokio::spawn(transport::serve(listener, self.gates.clone()));
    }

    async fn connection(&self, address: &str) -> Result<Arc<Connection>, String> {
        let mut conns = self.connections.lock().await;
        if let Some(c) = conns.get(address).filter(|c| c.is_open()) {
            return Ok(c.clone());
        }
        let c = Connection::connect(address).await?;
        conns.insert(address.to_string(), c.clone());
        Ok(c)
    }

    /// Opens the channel `id` to the consumer at `address` (this taskmanager or another); its
    /// producer may queue up to max-buffers-per-channel buffers and events on it, within the
    /// buffers of its partition (`partition`, shared by the partition's channels).
    pub(crate) async fn open_channel(
        &self,
        id: ChannelId,
        address: &str,
        partition: Arc<tokio::sync::Semaphore>,
    ) -> Result<OutputChannel, String> {
        let max_queued = self.max_buffers_per_channel as usize;
        let credit = Arc::new(SenderCredit::default());
        if address == self.local_address {
            let gate = self
                .gates
                .wait_for_edge(id.epoch, id.edge, id.to, LOCAL_GATE_WAIT)
                .await
                .ok_or_else(|| format!("local consumer of channel {id:?} was not deployed in time"))?;
            let ch = gate
                .channel_index(id.edge, id.from)
                .ok_or_else(|| format!("channel {id:?} does not belong to its gate"))?;
            gate.attach(ch, Arc::new(LocalCreditSink(credit.clone())))?;
            Ok(OutputChannel::new(
                id,
                credit,
                Target::Local(gate, ch),
                max_queued,
                partition,
            ))
        } else {
            let conn = self.connection(address).await?;
            conn.open(id, credit.clone())?;
            Ok(OutputChannel::new(
                id,
                credit,
                Target::Remote(conn, Box::default()),
                max_queued,
                partition,
            ))
        }
    }
}

#[cfg(test)]
mod tests;
