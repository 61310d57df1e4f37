//! TCP between taskmanagers: one connection per (sender TM, receiver TM) pair, all channels
//! multiplexed on it. The sending side opens channels and ships frames against credit; the
//! receiving side hands buffers to the right input gate and writes credit back on the same
//! connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::io::IoSlice;

use arrow::buffer::{Buffer, MutableBuffer};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::credit::SenderCredit;
use super::event::{Barrier, ChannelId, StreamEvent};
use super::frame::{self, OutFrame};
use super::gate::{CreditSink, GateShared};
use super::ipc::{ChannelDecoder, ChannelEncoder};
use super::GateRegistry;

/// The receive buffer of a data connection.
const READ_BUFFER: usize = 256 << 10;

/// How long an OPEN waits for its consumer task to be deployed.
const GATE_WAIT: Duration = Duration::from_secs(60);

/// Bytes in front of a frame's body in its receive buffer, so that the IPC bytes of a data
/// frame (after the header and the backlog) start 64-byte aligned and decode without a copy.
const FRONT_PAD: usize = 64 - (frame::HEADER + 4);

/// Control frames (OPEN, BACKLOG, WATERMARK, IDLE, END, BARRIER) carry a few bytes and a
/// checkpoint URL at most: a larger one is refused as corrupt.
const MAX_CONTROL_FRAME: usize = 64 << 10;

/// Reads one frame's body (after its length) into an aligned buffer. Its header is read first
/// and `admit` decides from it (kind, channel, length) whether the body may be read at all, so
/// a peer cannot make this taskmanager buffer what it announces.
async fn read_frame(
    reader: &mut BufReader<OwnedReadHalf>,
    admit: impl Fn(u8, &ChannelId, usize) -> Result<(), String>,
) -> Result<Option<Buffer>, String> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.to_string()),
    }
    let len = u32::from_le_bytes(len) as usize;
    if !(frame::HEADER..=frame::MAX_FRAME).contains(&len) {
        return Err(format!("frame of {len} bytes is outside the protocol's limits"));
    }
    let mut header = [0u8; frame::HEADER];
    reader.read_exact(&mut header).await.map_err(|e| e.to_string())?;
    let (kind, id, _) = frame::decode(&header)?;
    admit(kind, &id, len)?;
    let mut body = MutableBuffer::with_capacity(FRONT_PAD + len);
    body.extend_zeros(FRONT_PAD);
    body.extend_from_slice(&header);
    let mut left = len - frame::HEADER;
    while left > 0 {
        let available = reader.fill_buf().await.map_err(|e| e.to_string())?;
        if available.is_empty() {
            return Err(format!("connection closed inside a frame of {len} bytes"));
        }
        let n = available.len().min(left);
        body.extend_from_slice(&available[..n]);
        reader.consume(n);
        left -= n;
    }
    Ok(Some(Buffer::from(body).slice(FRONT_PAD)))
}

/// Whether a frame's body may be read: data only on a channel this side attached to a deployed
/// task's gate (an OPEN of the current job epoch), control frames only small.
fn admit_frame(routes: &Routes, kind: u8, id: &ChannelId, len: usize) -> Result<(), String> {
    match kind {
        frame::DATA | frame::DATA_STREAM => {
            if routes.lock().map(|r| r.contains_key(id)).unwrap_or(false) {
                Ok(())
            } else {
                Err(format!(
                    "refused a data frame of {len} bytes for channel {id:?}, which no deployed task opened"
                ))
            }
        }
        _ if len > MAX_CONTROL_FRAME => Err(format!(
            "refused a control frame (kind {kind}) of {len} bytes for channel {id:?}: at most {MAX_CONTROL_FRAME} bytes"
        )),
        _ => Ok(()),
    }
}

/// Writes queued frames with vectored writes (a batch's buffers go to the socket as they are),
/// gathering what is queued into each write, until the queue closes or `stop` fires (then
/// the socket is shut so the peer sees the end).
async fn write_frames(
    mut half: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<OutFrame>,
    stop: Arc<tokio::sync::Notify>,
) {
    let mut queued = Vec::new();
    loop {
        let f = tokio::select! {
            f = rx.recv() => f,
            _ = stop.notified() => None,
        };
        let Some(f) = f else {
            let _ = half.shutdown().await;
            return;
        };
        queued.push(f);
        while queued.len() < WRITE_GATHER {
            match rx.try_recv() {
                Ok(f) => queued.push(f),
                Err(_) => break,
            }
        }
        if write_all_vectored(&mut half, &queued).await.is_err() {
            return;
        }
        queued.clear();
    }
}

/// Frames gathered into one vectored write at most.
const WRITE_GATHER: usize = 64;

async fn write_all_vectored(half: &mut OwnedWriteHalf, frames: &[OutFrame]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = frames
        .iter()
        .flat_map(|f| f.slices())
        .filter(|s| !s.is_empty())
        .map(IoSlice::new)
        .collect();
    let mut rest = &mut slices[..];
    while !rest.is_empty() {
        let n = half.write_vectored(rest).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut rest, n);
    }
    Ok(())
}

/// Sends CREDIT frames for one channel back to its remote sender.
struct RemoteCreditSink {
    id: ChannelId,
    writer: mpsc::UnboundedSender<OutFrame>,
}

impl CreditSink for RemoteCreditSink {
    fn grant(&self, credit: u32) {
        let _ = self
            .writer
            .send(frame::encode(frame::CREDIT, self.id, &credit.to_le_bytes()));
    }
}

/// Accepts connections from sending taskmanagers.
pub(super) async fn serve(listener: TcpListener, gates: Arc<GateRegistry>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                let gates = gates.clone();
                tokio::spawn(async move {
                    if let Err(e) = receive(stream, gates).await {
                        tracing::warn!("data connection from {peer} failed: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("data port accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Open channels of a connection: their gate and channel index; removed at END.
type Routes = Arc<Mutex<HashMap<ChannelId, (Arc<GateShared>, usize)>>>;

async fn receive(stream: TcpStream, gates: Arc<GateRegistry>) -> Result<(), String> {
    let (read, write) = stream.into_split();
    let (writer, rx) = mpsc::unbounded_channel();
    let stop = Arc::new(tokio::sync::Notify::new());
    tokio::spawn(write_frames(write, rx, stop.clone()));
    let routes: Routes = Arc::default();
    let result = receive_frames(read, &gates, &routes, &writer).await;
    // Whatever ended the connection, close the socket; channels still open (no END yet) lost
    // their producer, and their consumers are told.
    stop.notify_one();
    let reason = match &result {
        Ok(()) => sluice_common::failure::PRODUCER_GONE.to_string(),
        Err(e) => format!("data connection failed: {e}"),
    };
    if let Ok(r) = routes.lock() {
        for (gate, ch) in r.values() {
            gate.fail(*ch, reason.clone());
        }
    }
    result
}

async fn receive_frames(
    read: OwnedReadHalf,
    gates: &Arc<GateRegistry>,
    routes: &Routes,
    writer: &mpsc::UnboundedSender<OutFrame>,
) -> Result<(), String> {
    let mut reader = BufReader::with_capacity(READ_BUFFER, read);
    // Each channel's IPC stream; dropped at its END.
    let mut decoders: HashMap<ChannelId, ChannelDecoder> = HashMap::new();
    while let Some(body) = read_frame(&mut reader, |kind, id, len| admit_frame(routes, kind, id, len)).await? {
        let (kind, id, payload) = frame::decode(&body)?;
        if kind == frame::OPEN {
            let (gates, routes, writer) = (gates.clone(), routes.clone(), writer.clone());
            tokio::spawn(async move {
                match gates.wait_for_edge(id.epoch, id.edge, id.to, GATE_WAIT).await {
                    Some(gate) => match gate.channel_index(id.edge, id.from) {
                        Some(ch) => {
                            if let Ok(mut r) = routes.lock() {
                                r.insert(id, (gate.clone(), ch));
                            }
                            let _ = gate.attach(ch, Arc::new(RemoteCreditSink { id, writer }));
                        }
                        None => {
                            tracing::warn!("channel {id:?} does not belong to gate {:?}", gate.key)
                        }
                    },
                    None => tracing::warn!("no consumer for channel {id:?} appeared within {GATE_WAIT:?}"),
                }
            });
            continue;
        }
        let route = routes.lock().ok().and_then(|r| r.get(&id).cloned());
        let Some((gate, ch)) = route else {
            if kind == frame::BACKLOG {
                // The sender announced demand before its channel was attached here; the
                // exclusive credit granted on attach answers it.
                continue;
            }
            return Err(format!("frame for unopened channel {id:?}"));
        };
        let result = match kind {
            frame::BACKLOG => gate.backlog(ch, frame::read_u32(payload)?.0),
            frame::DATA | frame::DATA_STREAM | frame::WATERMARK | frame::IDLE | frame::END | frame::BARRIER => {
                let (backlog, rest) = frame::read_u32(payload)?;
                let event = match kind {
                    frame::DATA | frame::DATA_STREAM => {
                        let ipc = body.slice(frame::HEADER + 4);
                        let batch = decoders
                            .entry(id)
                            .or_default()
                            .decode(ipc, kind == frame::DATA_STREAM)?;
                        StreamEvent::Batch(batch)
                    }
                    frame::WATERMARK => {
                        let bytes: [u8; 8] = rest
                            .get(..8)
                            .and_then(|b| b.try_into().ok())
                            .ok_or("short watermark frame")?;
                        StreamEvent::Watermark(i64::from_le_bytes(bytes))
                    }
                    frame::IDLE => StreamEvent::Idle(rest.first().copied().unwrap_or(0) != 0),
                    frame::BARRIER => StreamEvent::Barrier(decode_barrier(rest)?),
                    _ => {
                        if let Ok(mut r) = routes.lock() {
                            r.remove(&id);
                        }
                        decoders.remove(&id);
                        StreamEvent::EndOfPartition
                    }
                };
                gate.deliver(ch, event, backlog)
            }
            other => Err(format!("unexpected frame kind {other} from a sender")),
        };
        if let Err(e) = result {
            tracing::debug!("dropping frame for {id:?}: {e}");
        }
    }
    Ok(())
}

/// A barrier's frame payload: id, timestamp, flags (savepoint, stop, prepare), target URL.
fn encode_barrier(b: &Barrier, payload: &mut Vec<u8>) {
    payload.extend_from_slice(&b.id.to_le_bytes());
    payload.extend_from_slice(&b.timestamp_ms.to_le_bytes());
    payload.push(u8::from(b.savepoint) | (u8::from(b.stop) << 1) | (u8::from(b.prepare) << 2));
    payload.extend_from_slice(b.target_url.as_bytes());
}

fn decode_barrier(rest: &[u8]) -> Result<Barrier, String> {
    if rest.len() < 17 {
        return Err("short barrier frame".into());
    }
    let u64_at = |i: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&rest[i..i + 8]);
        u64::from_le_bytes(b)
    };
    let flags = rest[16];
    let target = std::str::from_utf8(&rest[17..]).map_err(|e| format!("barrier target: {e}"))?;
    Ok(Barrier {
        id: u64_at(0),
        timestamp_ms: u64_at(8),
        savepoint: flags & 1 != 0,
        stop: flags & 2 != 0,
        prepare: flags & 4 != 0,
        target_url: target.into(),
    })
}

/// The sending side of one connection to a remote taskmanager.
pub(crate) struct Connection {
    peer: String,
    writer: mpsc::UnboundedSender<OutFrame>,
    credits: Arc<Mutex<HashMap<ChannelId, Arc<SenderCredit>>>>,
}

impl Connection {
    pub(crate) async fn connect(address: &str) -> Result<Arc<Connection>, String> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|e| format!("cannot connect to the data port {address}: {e}"))?;
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let (writer, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_frames(write, rx, Arc::new(tokio::sync::Notify::new())));
        let credits: Arc<Mutex<HashMap<ChannelId, Arc<SenderCredit>>>> = Arc::default();
        let reader_credits = credits.clone();
        let peer = address.to_string();
        tokio::spawn(async move {
            let mut reader = BufReader::new(read);
            // Only CREDIT frames come back, small ones.
            let only_credit = |kind: u8, id: &ChannelId, len: usize| match kind {
                frame::CREDIT if len <= MAX_CONTROL_FRAME => Ok(()),
                _ => Err(format!(
                    "unexpected frame (kind {kind}, {len} bytes) for {id:?} from a receiver"
                )),
            };
            loop {
                match read_frame(&mut reader, only_credit).await {
                    Ok(Some(body)) => {
                        let Ok((kind, id, payload)) = frame::decode(&body) else {
                            break;
                        };
                        if kind == frame::CREDIT {
                            if let (Ok((n, _)), Ok(map)) = (frame::read_u32(payload), reader_credits.lock()) {
                                if let Some(c) = map.get(&id) {
                                    c.add(n);
                                }
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("data connection to {peer} failed: {e}");
                        break;
                    }
                }
            }
            // The receiver is gone: fail every sender waiting on this connection.
            if let Ok(map) = reader_credits.lock() {
                for c in map.values() {
                    c.close();
                }
            }
        });
        Ok(Arc::new(Connection {
            peer: address.to_string(),
            writer,
            credits,
        }))
    }

    /// The receiving taskmanager's data address.
    pub(crate) fn peer(&self) -> &str {
        &self.peer
    }

    pub(crate) fn is_open(&self) -> bool {
        !self.writer.is_closed()
    }

    /// Opens a channel; credit for it will arrive on `credit`.
    pub(crate) fn open(&self, id: ChannelId, credit: Arc<SenderCredit>) -> Result<(), String> {
        if let Ok(mut map) = self.credits.lock() {
            map.insert(id, credit);
        }
        self.writer
            .send(frame::encode(frame::OPEN, id, &[]))
            .map_err(|_| "data connection closed".to_string())
    }

    pub(crate) fn close_channel(&self, id: ChannelId) {
        if let Ok(mut map) = self.credits.lock() {
            map.remove(&id);
        }
    }

    pub(crate) fn send_backlog(&self, id: ChannelId, backlog: u32) -> Result<(), String> {
        self.writer
            .send(frame::encode(frame::BACKLOG, id, &backlog.to_le_bytes()))
            .map_err(|_| "data connection closed".to_string())
    }

    /// Ships one buffer or event (its credit already taken); a batch goes on the channel's
    /// IPC stream `encoder`.
    pub(crate) fn send_event(
        &self,
        id: ChannelId,
        event: &StreamEvent,
        backlog: u32,
        encoder: &mut ChannelEncoder,
    ) -> Result<(), String> {
        let mut payload = backlog.to_le_bytes().to_vec();
        let kind = match event {
            StreamEvent::Batch(b) => {
                let (starts, buffers) = encoder.encode(b)?;
                let kind = if starts { frame::DATA_STREAM } else { frame::DATA };
                return self
                    .writer
                    .send(frame::encode_with(kind, id, &payload, buffers))
                    .map_err(|_| "data connection closed".to_string());
            }
            StreamEvent::Watermark(w) => {
                payload.extend_from_slice(&w.to_le_bytes());
                frame::WATERMARK
            }
            StreamEvent::Idle(idle) => {
                payload.push(u8::from(*idle));
                frame::IDLE
            }
            StreamEvent::Barrier(b) => {
                encode_barrier(b, &mut payload);
                frame::BARRIER
            }
            StreamEvent::EndOfPartition => frame::END,
            StreamEvent::Broken(_) => return Err("a broken-channel marker is not sent".into()),
        };
        self.writer
            .send(frame::encode(kind, id, &payload))
            .map_err(|_| "data connection closed".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_barrier_round_trips_with_every_flag() {
        for flags in 0u8..8 {
            let b = Barrier {
                id: 42,
                timestamp_ms: 7,
                savepoint: flags & 1 != 0,
                stop: flags & 2 != 0,
                prepare: flags & 4 != 0,
                target_url: "s3://b/job/chk-42".into(),
            };
            let mut payload = Vec::new();
            encode_barrier(&b, &mut payload);
            assert_eq!(decode_barrier(&payload).unwrap(), b);
        }
        assert!(decode_barrier(&[0; 5]).is_err(), "a short frame is an error");
    }
}
