//! The file sink: JSON lines or CSV part files, exactly-once by two-phase commit.
//!
//! It writes hidden `.inprogress` part files and commits them by renaming. Part files are
//! named `part-<attempt epoch hex>-<subtask>-<n>`, so no attempt of any job overwrites another
//! one's output in a shared directory. At a barrier (pre-commit) the open part file is flushed,
//! synced and closed; its committable is the pair of names (in-progress, committed), kept in
//! the checkpoint; when the checkpoint completes it is committed by renaming. On recovery the
//! committables of the restored checkpoint are committed (they were durable before it
//! completed) and every other in-progress file of an earlier attempt is deleted (its rows will
//! be produced again). Without checkpoints the runtime pre-commits and commits at the end of
//! input; with final checkpoints (FLIP-147) the last part file is committed by the checkpoint
//! that covers the end of input. Syncs and renames run on tokio's blocking threads.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use sluice_common::failure::{io_class, ClassedError as TaskError};

use super::FileOptions;
use crate::contract::{Committable, Sink};
use crate::options::FileFormat;

enum Writer {
    Json(arrow::json::LineDelimitedWriter<BufWriter<File>>),
    Csv(Box<arrow::csv::Writer<BufWriter<File>>>),
}

pub(crate) struct FileSink {
    dir: PathBuf,
    format: FileFormat,
    subtask: u32,
    open: Option<(Writer, PathBuf)>,
    /// The job attempt's epoch: part files are `part-<attempt>-<subtask>-<n>`.
    attempt: u64,
    counter: u64,
}

/// An I/O error on the sink's path, classed: a path that cannot be written is the setting's
/// fault (the job fails at once), anything else may pass.
fn io_err(path: &Path, e: std::io::Error) -> TaskError {
    TaskError::new(io_class(&e), format!("file sink {}: {e}", path.display()))
}

/// Commits a pending file; one already committed (a retried commit) is fine.
fn commit(from: &Path, to: &Path) -> Result<(), TaskError> {
    match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(_) if !from.exists() && to.exists() => Ok(()),
        Err(e) => Err(TaskError::new(
            io_class(&e),
            format!("file sink: committing {} → {}: {e}", from.display(), to.display()),
        )),
    }
}

fn encode_pending(from: &Path, to: &Path) -> Vec<u8> {
    format!("{}\n{}", from.display(), to.display()).into_bytes()
}

fn decode_pending(e: &[u8]) -> Result<(PathBuf, PathBuf), TaskError> {
    let s = std::str::from_utf8(e).map_err(|e| TaskError::internal(format!("file sink state: {e}")))?;
    let (a, b) = s
        .split_once('\n')
        .ok_or_else(|| TaskError::internal("file sink state: malformed pending entry"))?;
    Ok((PathBuf::from(a), PathBuf::from(b)))
}

impl FileSink {
    /// `attempt` is the job attempt's epoch, unique across the cluster's jobs and attempts.
    pub(crate) fn new(options: &FileOptions, subtask: u32, attempt: u64) -> Self {
        FileSink {
            dir: options.path.clone(),
            format: options.format,
            subtask,
            open: None,
            attempt,
            counter: 0,
        }
    }

    /// Subtask 0 deletes the in-progress files of earlier attempts that no restored
    /// committable names.
    fn remove_stale(dir: &Path, attempt: u64, restored: &[(PathBuf, PathBuf)]) -> Result<(), TaskError> {
        let Ok(listing) = std::fs::read_dir(dir) else {
            return Ok(());
        };
        let mine = format!(".part-{attempt:x}-");
        for entry in listing.flatten() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().to_string();
            let stale = name.starts_with(".part-")
                && name.ends_with(".inprogress")
                && !name.starts_with(&mine)
                && !restored.iter().any(|(from, _)| *from == path);
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
        self.open
            .as_mut()
            .map(|(w, _)| w)
            .ok_or_else(|| TaskError::internal("file sink writer missing"))
    }
}

impl FileSink {
    /// Flushes, syncs and closes the open part file: its committable, if one was open.
    async fn close_part(&mut self) -> Result<Option<Committable>, TaskError> {
        let target = self.dir.join(self.part_name());
        let Some((writer, path)) = self.open.take() else {
            return Ok(None);
        };
        let closing = path.clone();
        tokio::task::spawn_blocking(move || -> Result<(), TaskError> {
            let mut buf = match writer {
                Writer::Json(mut w) => {
                    w.finish().map_err(|e| io_err(&closing, std::io::Error::other(e)))?;
                    w.into_inner()
                }
                Writer::Csv(w) => (*w).into_inner(),
            };
            buf.flush().map_err(|e| io_err(&closing, e))?;
            buf.get_ref().sync_all().map_err(|e| io_err(&closing, e))
        })
        .await
        .map_err(|e| TaskError::internal(format!("file sink: the syncing thread failed: {e}")))??;
        self.counter += 1;
        Ok(Some(encode_pending(&path, &target)))
    }
}

/// Commits pending files on a blocking thread.
async fn commit_all(committables: Vec<Committable>) -> Result<(), TaskError> {
    if committables.is_empty() {
        return Ok(());
    }
    tokio::task::spawn_blocking(move || {
        committables.iter().try_for_each(|c| {
            let (from, to) = decode_pending(c)?;
            commit(&from, &to)
        })
    })
    .await
    .map_err(|e| TaskError::internal(format!("file sink: the committing thread failed: {e}")))?
}

#[async_trait]
impl Sink for FileSink {
    async fn write(&mut self, batch: RecordBatch) -> Result<(), TaskError> {
        let path = self.dir.clone();
        let failed = |e: arrow::error::ArrowError| io_err(&path, std::io::Error::other(e));
        match self.writer()? {
            Writer::Json(w) => w.write(&batch).map_err(failed),
            Writer::Csv(w) => w.write(&batch).map_err(failed),
        }
    }

    async fn pre_commit(&mut self, _checkpoint_id: u64) -> Result<Vec<Committable>, TaskError> {
        Ok(self.close_part().await?.into_iter().collect())
    }

    async fn commit(&mut self, committables: Vec<Committable>) -> Result<(), TaskError> {
        commit_all(committables).await
    }

    async fn recover(&mut self, mine: Vec<Committable>, all: &[Committable]) -> Result<(), TaskError> {
        commit_all(mine).await?;
        if self.subtask != 0 {
            return Ok(());
        }
        let restored = all.iter().map(|c| decode_pending(c)).collect::<Result<Vec<_>, _>>()?;
        let (dir, attempt) = (self.dir.clone(), self.attempt);
        tokio::task::spawn_blocking(move || FileSink::remove_stale(&dir, attempt, &restored))
            .await
            .map_err(|e| TaskError::internal(format!("file sink: the recovery thread failed: {e}")))?
    }
}
