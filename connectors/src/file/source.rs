//! The file reader: JSON lines or CSV (with a header) read with the declared schema. Each file
//! is one split; a directory's files (sorted, hidden and `_`-prefixed ones skipped) are the
//! splits the enumerator deals. A split's position is its file's index in that listing and
//! the number of batches already read from it. A record that does not decode fails the job
//! (a user failure: no restart), naming the file, the line, the record and the reason. Files
//! are read on tokio's blocking threads, a batch at a time.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use sluice_common::failure::{io_class, ClassedError as TaskError};

use super::FileOptions;
use crate::contract::{Source, SourcePoll, Split};
use crate::options::FileFormat;
use crate::splits::{decode_position, encode_position};

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>> + Send>;

/// Records per batch read from a file.
const BATCH_ROWS: usize = 4096;

/// The reader's state, moved onto a blocking thread for each batch.
struct Files {
    all: Vec<PathBuf>,
    /// (index into `all`, batches to skip when opened).
    files: Vec<(usize, u64)>,
    format: FileFormat,
    schema: SchemaRef,
    /// (index into `files`, its batches, batches read so far).
    current: Option<(usize, Batches, u64)>,
    next_file: usize,
}

/// The files of `path`: itself, or a directory's visible files in name order.
pub(crate) fn list_files(path: &Path) -> Result<Vec<PathBuf>, TaskError> {
    let failed = |e: std::io::Error| TaskError::new(io_class(&e), format!("file source {}: {e}", path.display()));
    let meta = std::fs::metadata(path).map_err(failed)?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(failed)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.') && !n.starts_with('_'))
        })
        .collect();
    files.sort();
    Ok(files)
}

pub(crate) struct FileSource {
    /// `None` only while a batch is being read (or after that read was cancelled).
    files: Option<Files>,
}

impl FileSource {
    /// A reader with no splits yet (`add_splits` gives them).
    pub(crate) fn new(options: &FileOptions, schema: SchemaRef) -> Result<FileSource, TaskError> {
        Ok(FileSource {
            files: Some(Files {
                all: list_files(&options.path)?,
                files: Vec::new(),
                format: options.format,
                schema,
                current: None,
                next_file: 0,
            }),
        })
    }
}

impl Files {
    fn open(&self, path: &Path) -> Result<Batches, String> {
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        self.reader(BufReader::new(file), BATCH_ROWS, true)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Batches of `rows` records decoded from `input` with the declared schema (`header`: the
    /// input starts with the CSV header).
    fn reader<R: std::io::BufRead + Send + 'static>(
        &self,
        input: R,
        rows: usize,
        header: bool,
    ) -> Result<Batches, arrow::error::ArrowError> {
        Ok(match self.format {
            FileFormat::Json => Box::new(
                arrow::json::ReaderBuilder::new(self.schema.clone())
                    .with_batch_size(rows)
                    .build(input)?,
            ),
            FileFormat::Csv => Box::new(
                arrow::csv::ReaderBuilder::new(self.schema.clone())
                    .with_header(header)
                    .with_batch_size(rows)
                    .build(input)?,
            ),
        })
    }

    /// A record of batch `batch` of `path` did not decode: find it by decoding that batch's
    /// records one by one, and fail as the user's (every attempt would fail the same way)
    /// with the file, the line, the record and the decoder's reason.
    fn bad_record(&self, path: &Path, batch: u64, error: &arrow::error::ArrowError) -> TaskError {
        let whole = || TaskError::user(format!("{}: {error}", path.display()));
        let Ok(text) = std::fs::read_to_string(path) else {
            return whole();
        };
        let header = usize::from(self.format == FileFormat::Csv);
        // (1-based line number, text) of each record; JSON lines skip blank lines.
        let records = text
            .lines()
            .enumerate()
            .skip(header)
            .filter(|(_, l)| !l.trim().is_empty())
            .skip(usize::try_from(batch).unwrap_or(usize::MAX).saturating_mul(BATCH_ROWS))
            .take(BATCH_ROWS);
        for (n, line) in records {
            let one = std::io::Cursor::new(format!("{line}\n").into_bytes());
            let failed = match self.reader(one, 1, false) {
                Ok(mut r) => r.next().and_then(Result::err),
                Err(e) => Some(e),
            };
            if let Some(e) = failed {
                return TaskError::user(format!(
                    "{}, line {}: cannot read record {line:?}: {e}",
                    path.display(),
                    n + 1
                ));
            }
        }
        whole()
    }
}

impl Files {
    fn poll(&mut self) -> Result<SourcePoll, TaskError> {
        loop {
            if let Some((i, batches, read)) = &mut self.current {
                match batches.next() {
                    Some(Ok(b)) => {
                        *read += 1;
                        return Ok(SourcePoll::Batch(b, *i));
                    }
                    Some(Err(e)) => {
                        let (file, batch) = (self.files[*i].0, *read);
                        return Err(self.bad_record(&self.all[file], batch, &e));
                    }
                    None => self.current = None,
                }
            }
            if self.next_file >= self.files.len() {
                return Ok(SourcePoll::Finished);
            }
            let i = self.next_file;
            self.next_file += 1;
            let (file, skip) = self.files[i];
            let mut batches = self.open(&self.all[file])?;
            for read in 0..skip {
                if let Some(Err(e)) = batches.next() {
                    return Err(self.bad_record(&self.all[file], read, &e));
                }
            }
            self.current = Some((i, batches, skip));
        }
    }
}

#[async_trait]
impl Source for FileSource {
    async fn next_batch(&mut self) -> Result<SourcePoll, TaskError> {
        let mut files = self
            .files
            .take()
            .ok_or_else(|| TaskError::internal("file source: an earlier read was cancelled"))?;
        let (files, polled) = tokio::task::spawn_blocking(move || {
            let polled = files.poll();
            (files, polled)
        })
        .await
        .map_err(|e| TaskError::internal(format!("file source: the reading thread failed: {e}")))?;
        self.files = Some(files);
        polled
    }

    fn split_count(&self) -> usize {
        self.files.as_ref().map_or(0, |f| f.files.len())
    }

    fn split_finished(&self, i: usize) -> bool {
        self.files
            .as_ref()
            .is_none_or(|f| i < f.next_file && f.current.as_ref().is_none_or(|(c, _, _)| *c != i))
    }

    fn snapshot_splits(&self) -> Vec<Split> {
        let Some(f) = &self.files else {
            return Vec::new();
        };
        (0..f.files.len())
            .filter_map(|i| match &f.current {
                Some((c, _, read)) if *c == i => Some(encode_position(f.files[i].0 as u64, *read)),
                _ if i >= f.next_file => Some(encode_position(f.files[i].0 as u64, f.files[i].1)),
                _ => None,
            })
            .collect()
    }

    fn add_splits(&mut self, splits: Vec<Split>) -> Result<(), TaskError> {
        let f = self
            .files
            .as_mut()
            .ok_or_else(|| TaskError::internal("file source: an earlier read was cancelled"))?;
        for e in &splits {
            let (file, skip) = decode_position(e)?;
            let file = usize::try_from(file).map_err(|e| TaskError::internal(e.to_string()))?;
            if file >= f.all.len() {
                return Err(TaskError::config(format!(
                    "file split {file} does not exist: the source now lists {} files",
                    f.all.len()
                )));
            }
            f.files.push((file, skip));
        }
        Ok(())
    }
}
