//! `file` source: JSON lines or CSV (with a header) read with the declared schema. Each file
//! is one split; a directory's files (sorted, hidden and `_`-prefixed ones skipped) are dealt
//! round robin over the subtasks. A split's position is its file's index in that listing and
//! the number of batches already read from it. A record that does not decode fails the job
//! (a user failure: no restart), naming the file, the line, the record and the reason.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use sluice_common::job::connectors::{FileFormat, FileSourceOptions};

use super::{assigned_splits, decode_position, encode_position, SourcePoll, SourceReader};
use crate::error::TaskError;

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>> + Send>;

/// Records per batch read from a file.
const BATCH_ROWS: usize = 4096;

pub struct FileSource {
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
pub fn list_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("file source {}: {e}", path.display()))?;
    if meta.is_file() {
        return Ok(vec![path.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("file source {}: {e}", path.display()))?
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

impl FileSource {
    pub fn new(
        options: &FileSourceOptions,
        schema: SchemaRef,
        parallelism: u32,
        subtask: u32,
    ) -> Result<FileSource, String> {
        let all = list_files(&options.path)?;
        let files = assigned_splits(all.len() as u32, parallelism, subtask)
            .into_iter()
            .map(|i| (i as usize, 0))
            .collect();
        Ok(FileSource {
            all,
            files,
            format: options.format,
            schema,
            current: None,
            next_file: 0,
        })
    }

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

impl SourceReader for FileSource {
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

    fn split_count(&self) -> usize {
        self.files.len()
    }

    fn split_finished(&self, i: usize) -> bool {
        i < self.next_file && self.current.as_ref().is_none_or(|(c, _, _)| *c != i)
    }

    fn snapshot(&self) -> Vec<Vec<u8>> {
        (0..self.files.len())
            .filter_map(|i| match &self.current {
                Some((c, _, read)) if *c == i => Some(encode_position(self.files[i].0 as u64, *read)),
                _ if i >= self.next_file => Some(encode_position(self.files[i].0 as u64, self.files[i].1)),
                _ => None,
            })
            .collect()
    }

    fn restore(&mut self, elements: &[Vec<u8>]) -> Result<(), String> {
        let mut files = Vec::new();
        for e in elements {
            let (file, skip) = decode_position(e)?;
            let file = usize::try_from(file).map_err(|e| e.to_string())?;
            if file >= self.all.len() {
                return Err(format!(
                    "restored file split {file} does not exist: the source now lists {} files",
                    self.all.len()
                ));
            }
            files.push((file, skip));
        }
        self.files = files;
        self.current = None;
        self.next_file = 0;
        Ok(())
    }
}
