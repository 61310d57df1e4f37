//! Rows held as operator state (a broadcast operator's entries and buffered rows): one record
//! batch as an Arrow IPC stream, one list-state element.

use std::io::Cursor;

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

pub fn batch_to_ipc(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut w = StreamWriter::try_new(&mut out, &batch.schema()).map_err(|e| e.to_string())?;
    w.write(batch).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    drop(w);
    Ok(out)
}

/// The batches of an element `batch_to_ipc` wrote (several when it was written in parts).
pub fn batches_from_ipc(bytes: &[u8]) -> Result<Vec<RecordBatch>, String> {
    let reader =
        StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| format!("unreadable rows in state: {e}"))?;
    reader
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("unreadable rows in state: {e}"))
}
