//! `file` source: JSON lines or CSV (with a header) read with the declared schema. Each file
//! is one split; a directory's files (sorted, hidden and `_`-prefixed ones skipped) are dealt
//! round robin over the subtasks.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use sluice_common::job::connectors::{FileFormat, FileSourceOptions};

use super::{assigned_splits, SourcePoll, SourceReader};

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>> + Send>;

pub struct FileSource {
    files: Vec<PathBuf>,
    format: FileFormat,
    schema: SchemaRef,
    current: Option<(usize, Batches)>,
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
            .map(|i| all[i as usize].clone())
            .collect();
        Ok(FileSource {
            files,
            format: options.format,
            schema,
            current: None,
            next_file: 0,
        })
    }

    fn open(&self, path: &Path) -> Result<Batches, String> {
        let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let reader = BufReader::new(file);
        Ok(match self.format {
            FileFormat::Json => Box::new(
                arrow::json::ReaderBuilder::new(self.schema.clone())
                    .with_batch_size(4096)
                    .build(reader)
                    .map_err(|e| format!("{}: {e}", path.display()))?,
            ),
            FileFormat::Csv => Box::new(
                arrow::csv::ReaderBuilder::new(self.schema.clone())
                    .with_header(true)
                    .with_batch_size(4096)
                    .build(reader)
                    .map_err(|e| format!("{}: {e}", path.display()))?,
            ),
        })
    }
}

impl SourceReader for FileSource {
    fn poll(&mut self) -> Result<SourcePoll, String> {
        loop {
            if let Some((i, batches)) = &mut self.current {
                match batches.next() {
                    Some(Ok(b)) => return Ok(SourcePoll::Batch(b, *i)),
                    Some(Err(e)) => return Err(format!("{}: {e}", self.files[*i].display())),
                    None => self.current = None,
                }
            }
            if self.next_file >= self.files.len() {
                return Ok(SourcePoll::Finished);
            }
            let i = self.next_file;
            self.next_file += 1;
            self.current = Some((i, self.open(&self.files[i])?));
        }
    }

    fn split_count(&self) -> usize {
        self.files.len()
    }

    fn split_finished(&self, i: usize) -> bool {
        i < self.next_file && self.current.as_ref().is_none_or(|(c, _)| *c != i)
    }
}
