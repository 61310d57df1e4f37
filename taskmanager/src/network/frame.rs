//! The data-plane wire format. Every frame: `u32` length of the rest, `u8` kind, the channel
//! (`u64` epoch, `u32` edge, `u32` from, `u32` to), then the payload. Sender → receiver: OPEN,
//! DATA_STREAM (`u32` backlog + the Arrow IPC schema message and one record-batch message:
//! it starts the channel's IPC stream), DATA (`u32` backlog + one IPC record-batch message of
//! that stream), WATERMARK (`u32` backlog + `i64`), IDLE (`u32` backlog +
//! `u8`), END (`u32` backlog), BACKLOG (`u32`), BARRIER (`u32` backlog, `u64` id, `u64`
//! timestamp, `u8` flags: 1 savepoint, 2 stop; then the target URL in UTF-8). Receiver →
//! sender: CREDIT (`u32`).

use arrow::buffer::Buffer;

use super::event::ChannelId;

pub(super) const OPEN: u8 = 1;
pub(super) const DATA: u8 = 2;
pub(super) const WATERMARK: u8 = 3;
pub(super) const IDLE: u8 = 4;
pub(super) const END: u8 = 5;
pub(super) const BACKLOG: u8 = 6;
pub(super) const CREDIT: u8 = 7;
pub(super) const BARRIER: u8 = 8;
pub(super) const DATA_STREAM: u8 = 9;

pub(super) const HEADER: usize = 1 + 8 + 4 + 4 + 4;
/// Frames larger than this are refused as corrupt.
pub(super) const MAX_FRAME: usize = 256 << 20;

/// A frame to write: its head (length, header, small payload) and then, for data, the batch's
/// IPC buffers, written with vectored I/O so the batch's bytes are not copied into the frame.
pub(super) struct OutFrame {
    pub head: Vec<u8>,
    pub body: Vec<Buffer>,
}

impl OutFrame {
    /// The frame's bytes in order.
    pub(super) fn slices(&self) -> impl Iterator<Item = &[u8]> {
        std::iter::once(self.head.as_slice()).chain(self.body.iter().map(|b| b.as_slice()))
    }
}

/// A frame whose payload is `payload` followed by the bytes of `body`.
pub(super) fn encode_with(kind: u8, id: ChannelId, payload: &[u8], body: Vec<Buffer>) -> OutFrame {
    let len = HEADER + payload.len() + body.iter().map(|b| b.len()).sum::<usize>();
    let mut head = Vec::with_capacity(4 + HEADER + payload.len());
    head.extend_from_slice(&(len as u32).to_le_bytes());
    head.push(kind);
    head.extend_from_slice(&id.epoch.to_le_bytes());
    head.extend_from_slice(&id.edge.to_le_bytes());
    head.extend_from_slice(&id.from.to_le_bytes());
    head.extend_from_slice(&id.to.to_le_bytes());
    head.extend_from_slice(payload);
    OutFrame { head, body }
}

pub(super) fn encode(kind: u8, id: ChannelId, payload: &[u8]) -> OutFrame {
    encode_with(kind, id, payload, Vec::new())
}

/// Splits a frame body (after the length) into kind, channel and payload.
pub(super) fn decode(body: &[u8]) -> Result<(u8, ChannelId, &[u8]), String> {
    if body.len() < HEADER {
        return Err(format!("frame of {} bytes is shorter than its header", body.len()));
    }
    let u32_at = |i: usize| u32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
    let mut epoch = [0u8; 8];
    epoch.copy_from_slice(&body[1..9]);
    let id = ChannelId {
        epoch: u64::from_le_bytes(epoch),
        edge: u32_at(9),
        from: u32_at(13),
        to: u32_at(17),
    };
    Ok((body[0], id, &body[HEADER..]))
}

pub(super) fn read_u32(payload: &[u8]) -> Result<(u32, &[u8]), String> {
    if payload.len() < 4 {
        return Err("frame payload too short".into());
    }
    Ok((
        u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]),
        &payload[4..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let id = ChannelId {
            epoch: 7,
            edge: 1,
            from: 2,
            to: 3,
        };
        let f: Vec<u8> = encode_with(DATA, id, b"x", vec![Buffer::from_vec(b"yz".to_vec())])
            .slices()
            .flatten()
            .copied()
            .collect();
        let len = u32::from_le_bytes([f[0], f[1], f[2], f[3]]) as usize;
        assert_eq!(len, f.len() - 4);
        let (kind, got, payload) = decode(&f[4..]).unwrap();
        assert_eq!((kind, got, payload), (DATA, id, &b"xyz"[..]));
        assert!(decode(&f[4..8]).is_err());
    }
}
