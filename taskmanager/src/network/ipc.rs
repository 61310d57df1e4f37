//! Record batches to and from Arrow IPC for the wire. Each remote channel is one Arrow IPC
//! stream: the frame that starts it (`frame::DATA_STREAM`) carries the schema message before
//! its record batch, later frames (`frame::DATA`) only record-batch messages. So the schema is
//! encoded and parsed once per channel rather than once per buffer. Encoding shares the
//! batch's own buffers (they are written with vectored I/O, not copied); decoding slices the
//! received frame, which is copy-free when the frame's IPC bytes are aligned (`transport`
//! reads them 64-byte aligned).

use std::sync::Arc;

use arrow::buffer::Buffer;
use arrow::datatypes::SchemaRef;
use arrow::ipc::reader::StreamDecoder;
use arrow::ipc::writer::StreamEncoder;
use arrow::record_batch::RecordBatch;

/// The sending end of one channel's IPC stream.
#[derive(Default)]
pub(crate) struct ChannelEncoder {
    stream: Option<(SchemaRef, StreamEncoder)>,
}

impl ChannelEncoder {
    /// The IPC bytes of `batch`, as buffers to write in order, and whether they start a new
    /// stream (the first batch, or one whose schema differs from the stream's).
    pub(crate) fn encode(&mut self, batch: &RecordBatch) -> Result<(bool, Vec<Buffer>), String> {
        let schema = batch.schema();
        let fresh = !matches!(&self.stream, Some((s, _)) if Arc::ptr_eq(s, &schema) || **s == *schema);
        if fresh {
            let encoder = StreamEncoder::try_new(&schema).map_err(|e| format!("cannot encode batch: {e}"))?;
            self.stream = Some((schema, encoder));
        }
        let Some((_, encoder)) = self.stream.as_mut() else {
            return Err("no IPC stream".into());
        };
        let buffers = encoder.encode(batch).map_err(|e| format!("cannot encode batch: {e}"))?;
        Ok((fresh, buffers))
    }
}

/// The receiving end of one channel's IPC stream.
#[derive(Default)]
pub(super) struct ChannelDecoder {
    stream: Option<StreamDecoder>,
}

impl ChannelDecoder {
    /// Decodes the one batch a frame carries; `starts_stream` for a `DATA_STREAM` frame.
    pub(super) fn decode(&mut self, mut bytes: Buffer, starts_stream: bool) -> Result<RecordBatch, String> {
        if starts_stream {
            self.stream = Some(StreamDecoder::new());
        }
        let Some(decoder) = self.stream.as_mut() else {
            return Err("bad IPC data: a batch arrived before its stream's schema".into());
        };
        match decoder.decode(&mut bytes) {
            Ok(Some(batch)) if bytes.is_empty() => Ok(batch),
            Ok(Some(_)) => Err(format!("bad IPC data: {} bytes after the batch", bytes.len())),
            Ok(None) => Err("bad IPC data: the frame holds no complete batch".into()),
            Err(e) => Err(format!("bad IPC data: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    fn concat(buffers: &[Buffer]) -> Buffer {
        let mut out = Vec::new();
        for b in buffers {
            out.extend_from_slice(b.as_slice());
        }
        Buffer::from_vec(out)
    }

    fn batch(names: &[&str], start: i64) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("k", DataType::Int64, false),
            Field::new("s", DataType::Utf8, false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from_iter_values(start..start + names.len() as i64)),
                Arc::new(StringArray::from(names.to_vec())),
            ],
        )
        .unwrap()
    }

    #[test]
    fn schema_once_per_stream_and_sliced_batches_round_trip() {
        let mut enc = ChannelEncoder::default();
        let mut dec = ChannelDecoder::default();
        let whole = batch(&["a", "bb", "ccc", "dddd"], 10);
        let (first, b1) = enc.encode(&whole.slice(0, 2)).unwrap();
        let (second, b2) = enc.encode(&whole.slice(2, 2)).unwrap();
        assert!(first && !second);
        let (one, two) = (concat(&b1), concat(&b2));
        assert!(two.len() < one.len(), "the schema is sent once");
        assert_eq!(dec.decode(one, true).unwrap(), whole.slice(0, 2));
        assert_eq!(dec.decode(two, false).unwrap(), whole.slice(2, 2));
        // A batch whose schema differs starts a new stream.
        let other = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new("x", DataType::Int64, true)])),
            vec![Arc::new(Int64Array::from(vec![Some(1), None]))],
        )
        .unwrap();
        let (fresh, b3) = enc.encode(&other).unwrap();
        assert!(fresh);
        assert_eq!(dec.decode(concat(&b3), true).unwrap(), other);
    }

    #[test]
    fn bad_frames_are_errors() {
        let mut enc = ChannelEncoder::default();
        let (_, b) = enc.encode(&batch(&["a"], 0)).unwrap();
        let (_, later) = enc.encode(&batch(&["b"], 1)).unwrap();
        let bytes = concat(&b);
        assert!(ChannelDecoder::default()
            .decode(concat(&later), false)
            .unwrap_err()
            .contains("before its stream's schema"));
        let cut = bytes.slice_with_length(0, bytes.len() - 8);
        assert!(ChannelDecoder::default().decode(cut, true).is_err());
        let mut junk = vec![0xffu8; 64];
        junk[4..8].copy_from_slice(&16u32.to_le_bytes());
        assert!(ChannelDecoder::default().decode(Buffer::from_vec(junk), true).is_err());
    }
}
