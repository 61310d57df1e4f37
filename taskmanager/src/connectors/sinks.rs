//! Sinks: `print` (JSON lines on the taskmanager's stdout, prefixed `N> ` with the 1-based
//! subtask as Flink prints), `blackhole` (discards), and `file` (JSON lines or CSV).
//!
//! The file sink writes hidden `.inprogress` part files and commits them by renaming. Part files
//! are named `part-<attempt epoch hex>-<subtask>-<n>`, so no attempt of any job overwrites another
//! one's output in a shared directory. Without checkpoints a subtask has one part file, committed
//! when it finishes. With checkpoints (and savepoints) it is
//! exactly-once by two-phase commit: at a barrier the open part file is flushed, synced and
//! becomes pending for that checkpoint (its names are operator state); when the checkpoint
//! completes its pending files are committed; on restore the pending files of the restored
//! checkpoint are committed (they were durable before it completed) and every other
//! in-progress file of an earlier attempt is deleted (its rows will be produced again). With
//! final checkpoints (Flink's FLIP-147, on whenever the job checkpoints) the end of input
//! commits nothing: the last part file is committed by the checkpoint that covers the end of
//! input, so a failure in the finishing phase replays it instead of committing it twice.

use crate::error::TaskError;
use crate::operators::OperatorContext;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use sluice_common::job::connectors::{FileFormat, FileSinkOptions};
use sluice_common::proto::checkpoint::RedistributionMode;

use crate::operators::Operator;
use crate::state::snapshot::{OperatorRestoreData, OperatorSnapshot};

const PENDING_STATE: &str = "file-sink-pending";

fn json_lines(batch: &RecordBatch) -> Result<Vec<u8>, String> {
    let mut buf = Vec::new();
    let mut w = arrow::json::LineDelimitedWriter::new(&mut buf);
    w.write(batch).map_err(|e| e.to_string())?;
    w.finish().map_err(|e| e.to_string())?;
    drop(w);
    Ok(buf)
}

pub struct PrintSink {
    prefix: String,
}

impl PrintSink {
    pub fn new(subtask: u32) -> Self {
        PrintSink {
            prefix: format!("{}> ", subtask + 1),
        }
    }
}

impl Operator for PrintSink {
    fn process(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        _ctx: &OperatorContext,
        _out: &mut Vec<RecordBatch>,
    ) -> Result<(), TaskError> {
        let text = json_lines(&batch)?;
        let mut stdout = std::io::stdout().lock();
        for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            stdout.write_all(self.prefix.as_bytes()).map_err(|e| e.to_string())?;
            stdout.write_all(line).map_err(|e| e.to_string())?;
            stdout.write_all(b"\n").map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

pub struct Blackhole;

impl Operator for Blackhole {
    fn process(
        &mut self,
        _input: usize,
        _batch: RecordBatch,
        _ctx: &OperatorContext,
        _out: &mut Vec<RecordBatch>,
    ) -> Result<(), TaskError> {
        Ok(())
    }
}

enum Writer {
    Json(arrow::json::LineDelimitedWriter<BufWriter<File>>),
    Csv(Box<arrow::csv::Writer<BufWriter<File>>>),
}

pub struct FileSink {
    dir: PathBuf,
    format: FileFormat,
    subtask: u32,
    open: Option<(Writer, PathBuf)>,
    /// The job attempt's epoch: part files are `part-<attempt>-<subtask>-<n>`.
    attempt: u64,
    counter: u64,
    /// (checkpoint id, in-progress file, committed name) waiting for their checkpoint.
    pending: Vec<(u64, PathBuf, PathBuf)>,
    /// Final checkpoints: at the end of input nothing is committed; the open part file becomes
    /// pending at the final checkpoint's snapshot and is committed when that completes.
    final_checkpoint: bool,
}

/// An I/O error on the sink's path, classed: a path that cannot be written is the setting's
/// fault (the job fails at once), anything else may pass.
fn io_err(path: &Path, e: std::io::Error) -> TaskError {
    TaskError::new(crate::error::io_class(&e), format!("file sink {}: {e}", path.display()))
}

/// Commits a pending file; one already committed (a retried commit) is fine.
fn commit(from: &Path, to: &Path) -> Result<(), String> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(_) if !from.exists() && to.exists() => Ok(()),
        Err(e) => Err(format!(
            "file sink: committing {} → {}: {e}",
            from.display(),
            to.display()
        )),
    }
}

fn encode_pending(from: &Path, to: &Path) -> Vec<u8> {
    format!("{}\n{}", from.display(), to.display()).into_bytes()
}

fn decode_pending(e: &[u8]) -> Result<(PathBuf, PathBuf), String> {
    let s = std::str::from_utf8(e).map_err(|e| format!("file sink state: {e}"))?;
    let (a, b) = s.split_once('\n').ok_or("file sink state: malformed pending entry")?;
    Ok((PathBuf::from(a), PathBuf::from(b)))
}

impl FileSink {
    /// `attempt` is the job attempt's epoch, unique across the cluster's jobs and attempts.
    pub fn new(
        options: &FileSinkOptions,
        subtask: u32,
        parallelism: u32,
        attempt: u64,
        restore: Option<&OperatorRestoreData>,
        final_checkpoint: bool,
    ) -> Result<Self, String> {
        let sink = FileSink {
            dir: options.path.clone(),
            format: options.format,
            subtask,
            open: None,
            attempt,
            counter: 0,
            pending: Vec::new(),
            final_checkpoint,
        };
        if let Some(r) = restore {
            sink.recover(r, parallelism).map_err(|e| e.message)?;
        }
        Ok(sink)
    }

    /// Commits this subtask's share of the restored pending files; subtask 0 deletes the
    /// in-progress files of earlier attempts that no checkpoint made pending.
    fn recover(&self, r: &OperatorRestoreData, parallelism: u32) -> Result<(), TaskError> {
        let entries = r
            .lists
            .list(PENDING_STATE)
            .unwrap_or_default()
            .iter()
            .map(|e| decode_pending(e))
            .collect::<Result<Vec<_>, _>>()?;
        for (i, (from, to)) in entries.iter().enumerate() {
            if i as u32 % parallelism == self.subtask {
                commit(from, to)?;
            }
        }
        if self.subtask != 0 {
            return Ok(());
        }
        let Ok(listing) = std::fs::read_dir(&self.dir) else {
            return Ok(());
        };
        let mine = format!(".part-{:x}-", self.attempt);
        for entry in listing.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let stale = name.starts_with(".part-")
                && name.ends_with(".inprogress")
                && !name.starts_with(&mine)
                && !entries.iter().any(|(from, _)| *from == path);
            if stale {
                std::fs::remove_file(&path).map_err(|e| io_err(&path, e))?;
            }
        }
        Ok(())
    }

    fn extension(&self) -> &'static str {
        match self.format {
            FileFormat::Json => "json",
            FileFormat::Csv => "csv",
        }
    }

    /// The committed name of the open part file.
    fn part_name(&self) -> String {
        format!(
            "part-{:x}-{}-{}.{}",
            self.attempt,
            self.subtask,
            self.counter,
            self.extension()
        )
    }

    fn writer(&mut self) -> Result<&mut Writer, TaskError> {
        if self.open.is_none() {
            std::fs::create_dir_all(&self.dir).map_err(|e| io_err(&self.dir, e))?;
            let path = self.dir.join(format!(".{}.inprogress", self.part_name()));
            let file = File::create(&path).map_err(|e| io_err(&path, e))?;
            let buf = BufWriter::with_capacity(256 << 10, file);
            let w = match self.format {
                FileFormat::Json => Writer::Json(arrow::json::LineDelimitedWriter::new(buf)),
                FileFormat::Csv => Writer::Csv(Box::new(arrow::csv::WriterBuilder::new().with_header(true).build(buf))),
            };
            self.open = Some((w, path));
        }
        self.open.as_mut().map(|(w, _)| w).ok_or_else(|| {
            TaskError::new(
                sluice_common::failure::FailureClass::Internal,
                "file sink writer missing",
            )
        })
    }
}

impl FileSink {
    /// Flushes, syncs and closes the open part file; it becomes pending for `checkpoint_id`.
    fn close_part(&mut self, checkpoint_id: u64) -> Result<(), TaskError> {
        let target = self.dir.join(self.part_name());
        let Some((writer, path)) = self.open.take() else {
            return Ok(());
        };
        let mut buf = match writer {
            Writer::Json(mut w) => {
                w.finish().map_err(|e| e.to_string())?;
                w.into_inner()
            }
            Writer::Csv(w) => (*w).into_inner(),
        };
        buf.flush().map_err(|e| io_err(&path, e))?;
        buf.get_ref().sync_all().map_err(|e| io_err(&path, e))?;
        self.pending.push((checkpoint_id, path, target));
        self.counter += 1;
        Ok(())
    }
}

impl Operator for FileSink {
    fn process(
        &mut self,
        _input: usize,
        batch: RecordBatch,
        _ctx: &OperatorContext,
        _out: &mut Vec<RecordBatch>,
    ) -> Result<(), TaskError> {
        match self.writer()? {
            Writer::Json(w) => w.write(&batch).map_err(|e| e.to_string().into()),
            Writer::Csv(w) => w.write(&batch).map_err(|e| e.to_string().into()),
        }
    }

    /// End of input without final checkpoints: the open part file and every pending one are
    /// committed. With them, nothing happens here (see `final_checkpoint`).
    fn finish(&mut self, _out: &mut Vec<RecordBatch>) -> Result<(), TaskError> {
        if self.final_checkpoint {
            return Ok(());
        }
        self.close_part(u64::MAX)?;
        for (_, from, to) in std::mem::take(&mut self.pending) {
            commit(&from, &to)?;
        }
        Ok(())
    }

    fn snapshot(&mut self, checkpoint_id: u64, _savepoint: bool) -> Result<OperatorSnapshot, TaskError> {
        self.close_part(checkpoint_id)?;
        let mut snap = OperatorSnapshot::default();
        snap.list(
            PENDING_STATE,
            RedistributionMode::Union,
            self.pending
                .iter()
                .map(|(_, from, to)| encode_pending(from, to))
                .collect(),
        );
        Ok(snap)
    }

    fn notify_checkpoint_complete(&mut self, checkpoint_id: u64) -> Result<(), TaskError> {
        let (done, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(c, _, _)| *c <= checkpoint_id);
        self.pending = rest;
        for (_, from, to) in done {
            commit(&from, &to)?;
        }
        Ok(())
    }
}
