//! The `_metadata` file: `SLUICECK`, a `u32` format version, a `u64` payload length, the
//! protobuf `CheckpointMetadata`, and the XXH64 (seed 0) of the payload, all little-endian.
//! A torn or altered file fails to decode with a reason, and recovery moves on to an older
//! checkpoint.

use bytes::Bytes;
use prost::Message;
use twox_hash::XxHash64;

use crate::proto::checkpoint::CheckpointMetadata;

const MAGIC: &[u8; 8] = b"SLUICECK";
const VERSION: u32 = 1;
const HEADER: usize = 8 + 4 + 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("not a Sluice checkpoint metadata file (bad magic)")]
    Magic,
    #[error("metadata format version {0} is not supported (this build reads {VERSION})")]
    Version(u32),
    #[error("metadata is truncated: {0} bytes, expected {1}")]
    Truncated(usize, usize),
    #[error("metadata checksum mismatch: stored {stored:016x}, computed {computed:016x}")]
    Checksum { stored: u64, computed: u64 },
    #[error("metadata does not decode: {0}")]
    Decode(String),
}

pub fn encode_metadata(m: &CheckpointMetadata) -> Bytes {
    let payload = m.encode_to_vec();
    let mut out = Vec::with_capacity(HEADER + payload.len() + 8);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&payload);
    out.extend_from_slice(&XxHash64::oneshot(0, &payload).to_le_bytes());
    Bytes::from(out)
}

pub fn decode_metadata(bytes: &[u8]) -> Result<CheckpointMetadata, MetadataError> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(MetadataError::Magic);
    }
    let version = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    if version != VERSION {
        return Err(MetadataError::Version(version));
    }
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[12..20]);
    let len = usize::try_from(u64::from_le_bytes(len)).unwrap_or(usize::MAX);
    let expected = HEADER.saturating_add(len).saturating_add(8);
    if bytes.len() != expected {
        return Err(MetadataError::Truncated(bytes.len(), expected));
    }
    let payload = &bytes[HEADER..HEADER + len];
    let mut stored = [0u8; 8];
    stored.copy_from_slice(&bytes[HEADER + len..]);
    let stored = u64::from_le_bytes(stored);
    let computed = XxHash64::oneshot(0, payload);
    if stored != computed {
        return Err(MetadataError::Checksum { stored, computed });
    }
    CheckpointMetadata::decode(payload).map_err(|e| MetadataError::Decode(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::checkpoint::{EnumeratorState, OperatorState, StateHandle, SubtaskState};

    fn sample() -> CheckpointMetadata {
        CheckpointMetadata {
            job_id: "0123".into(),
            checkpoint_id: 42,
            timestamp_ms: 1767225600000,
            max_parallelism: 128,
            savepoint: false,
            operators: vec![OperatorState {
                uid: "per-user-v1".into(),
                parallelism: 2,
                subtasks: vec![SubtaskState {
                    subtask: 0,
                    keyed: vec![StateHandle {
                        path: "chk-42/per-user-v1-0".into(),
                        size: 10,
                        key_group_start: 0,
                        key_group_end: 63,
                        key_group_offsets: vec![0; 64],
                        shared: false,
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
            }],
            enumerators: vec![EnumeratorState {
                uid: "source-v1".into(),
                state: vec![1, 0, 0, 0, 0],
            }],
        }
    }

    #[test]
    fn round_trip() {
        let m = sample();
        assert_eq!(decode_metadata(&encode_metadata(&m)).unwrap(), m);
    }

    #[test]
    fn damage_is_detected() {
        let good = encode_metadata(&sample()).to_vec();
        let mut flipped = good.clone();
        let mid = flipped.len() / 2;
        flipped[mid] ^= 0x40;
        assert!(matches!(
            decode_metadata(&flipped),
            Err(MetadataError::Checksum { .. }) | Err(MetadataError::Decode(_))
        ));
        assert!(matches!(
            decode_metadata(&good[..good.len() - 3]),
            Err(MetadataError::Truncated(..))
        ));
        assert_eq!(decode_metadata(b"hello"), Err(MetadataError::Magic));
        let mut v2 = good;
        v2[8] = 2;
        assert_eq!(decode_metadata(&v2), Err(MetadataError::Version(2)));
    }
}
