//! Record batches to and from Arrow IPC bytes for the wire.

use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use arrow::record_batch::RecordBatch;

pub fn encode(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(batch.get_array_memory_size() + 512);
    let mut w = StreamWriter::try_new(&mut buf, &batch.schema()).map_err(|e| e.to_string())?;
    w.write(batch).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    drop(w);
    Ok(buf)
}

pub fn decode(bytes: &[u8]) -> Result<RecordBatch, String> {
    let mut r = StreamReader::try_new(bytes, None).map_err(|e| format!("bad IPC data: {e}"))?;
    match r.next() {
        Some(Ok(b)) => Ok(b),
        Some(Err(e)) => Err(format!("bad IPC data: {e}")),
        None => Err("IPC message holds no batch".into()),
    }
}
