//! The file reader: JSON lines or CSV (with a header) read with the declared schema. Each file
//! is one split; a directory's files (sorted, hidden and `_`-prefixed ones skipped) are the
//! splits the enumerator deals. A split names its file by path and says how many batches were
//! already read from it. A record that does not decode fails the job (a user failure: no
//! restart), naming the file, the line, the record and the reason. Files are read on tokio's
//! blocking threads, a batch at a time. A monitored source (unbounded) waits for more files
//! when it has read every file it was given.

use std::fs::File;
use std::io::BufReader;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use sluice_common::failure::{io_class, ClassedError as TaskError};

use super::FileOptions;
use crate::contract::{Source, SourcePoll, Split};
use crate::options::FileFormat;
use crate::splits::decode_position;

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>> + Send>;

/// Records per batch read from a file.
const BATCH_ROWS: usize = 4096;

/// How long a monitored source that has read every file waits before it looks again.
const MONITOR_WAIT: Duration = Duration::from_millis(100);

/// What starts a split that names its file: then the batches read (`u64`, little-endian) and
/// the path's bytes. Splits from before were two `u64`s: the file's index in the listing and
/// the batches read.
const SPLIT_MAGIC: &[u8; 4] = b"sfs1";

/// The split of `file`, `read` batches into it.
pub(crate) fn file_split(file: &Path, read: u64) -> Split {
    let mut v = SPLIT_MAGIC.to_vec();
    v.extend_from_slice(&read.to_le_bytes());
    v.extend_from_slice(file.as_os_str().as_bytes());
    v
}

/// The file and batches read of a split `file_split` made; `None` for any other bytes.
fn read_file_split(split: &[u8]) -> Option<(PathBuf, u64)> {
    let rest = split.strip_prefix(SPLIT_MAGIC.as_slice())?;
    let (read, path) = rest.split_first_chunk::<8>()?;
    Some((
        PathBuf::from(std::ffi::OsStr::from_bytes(path)),
        u64::from_le_bytes(*read),
    ))
}

/// The reader's state, moved onto a blocking thread for each batch.
struct Files {
    /// The source's path (to resolve splits that name their file by its index in a listing).
    root: PathBuf,
    /// (file, batches to skip when opened).
    files: Vec<(PathBuf, u64)>,
    format: FileFormat,
    schema: SchemaRef,
    /// (index into `files`, its batches, batches read so far).
    current: Option<(usize, Batches, u64)>,
    next_file: usize,
    /// Unbounded: having read every file is a wait for more, not the end.
    monitored: bool,
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
                root: options.path.clone(),
                files: Vec::new(),
                format: options.format,
                schema,
                current: None,
                next_file: 0,
                monitored: options.monitor_interval.is_some(),
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
                        let (i, batch) = (*i, *read);
                        return Err(self.bad_record(&self.files[i].0, batch, &e));
                    }
                    None => self.current = None,
                }
            }
            if self.next_file >= self.files.len() {
                return Ok(match self.monitored {
                    true => SourcePoll::Wait(MONITOR_WAIT),
                    false => SourcePoll::Finished,
                });
            }
            let i = self.next_file;
            self.next_file += 1;
            let (file, skip) = &self.files[i];
            let mut batches = self.open(file)?;
            for read in 0..*skip {
                if let Some(Err(e)) = batches.next() {
                    return Err(self.bad_record(file, read, &e));
                }
            }
            self.current = Some((i, batches, *skip));
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
                Some((c, _, read)) if *c == i => Some(file_split(&f.files[i].0, *read)),
                _ if i >= f.next_file => Some(file_split(&f.files[i].0, f.files[i].1)),
                _ => None,
            })
            .collect()
    }

    fn add_splits(&mut self, splits: Vec<Split>) -> Result<(), TaskError> {
        let f = self
            .files
            .as_mut()
            .ok_or_else(|| TaskError::internal("file source: an earlier read was cancelled"))?;
        let mut listing = None;
        for e in &splits {
            let split = match read_file_split(e) {
                Some(split) => split,
                None => {
                    // A split by index into the listing (checkpoints from before path-named
                    // splits): the listing now must still hold that file.
                    let (file, skip) = decode_position(e)?;
                    let all = match &listing {
                        Some(all) => all,
                        None => listing.insert(list_files(&f.root)?),
                    };
                    let path = usize::try_from(file).ok().and_then(|i| all.get(i)).ok_or_else(|| {
                        TaskError::config(format!(
                            "file split {file} does not exist: {} now lists {} files",
                            f.root.display(),
                            all.len()
                        ))
                    })?;
                    (path.clone(), skip)
                }
            };
            f.files.push(split);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::datatypes::{DataType, Field, Schema};

    use super::*;
    use crate::splits::encode_position;

    fn source(dir: &Path, monitor: Option<Duration>) -> FileSource {
        let options = FileOptions {
            path: dir.to_path_buf(),
            format: FileFormat::Json,
            monitor_interval: monitor,
        };
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, true)]));
        FileSource::new(&options, schema).unwrap()
    }

    fn rows(s: &mut FileSource, rt: &tokio::runtime::Runtime) -> (usize, SourcePoll) {
        let mut n = 0;
        for _ in 0..100 {
            match rt.block_on(s.next_batch()).unwrap() {
                SourcePoll::Batch(b, _) => n += b.num_rows(),
                other => return (n, other),
            }
        }
        panic!("the source kept producing batches")
    }

    #[test]
    fn splits_name_their_file_and_old_index_splits_still_resolve() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), "{\"n\": 1}\n{\"n\": 2}\n").unwrap();
        std::fs::write(dir.path().join("b.json"), "{\"n\": 3}\n").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut s = source(dir.path(), None);
        s.add_splits(vec![
            file_split(&dir.path().join("b.json"), 0),
            encode_position(0, 0), // a.json by its index
        ])
        .unwrap();
        assert_eq!(s.snapshot_splits()[0], file_split(&dir.path().join("b.json"), 0));
        assert_eq!(s.snapshot_splits()[1], file_split(&dir.path().join("a.json"), 0));
        let (n, end) = rows(&mut s, &rt);
        assert_eq!(n, 3);
        assert!(matches!(end, SourcePoll::Finished));
        let err = source(dir.path(), None)
            .add_splits(vec![encode_position(5, 0)])
            .unwrap_err();
        assert!(err.message.contains("file split 5 does not exist"), "{err}");
    }

    #[test]
    fn a_monitored_source_waits_for_more_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), "{\"n\": 1}\n").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut s = source(dir.path(), Some(Duration::from_secs(1)));
        s.add_splits(vec![file_split(&dir.path().join("a.json"), 0)]).unwrap();
        let (n, next) = rows(&mut s, &rt);
        assert_eq!(n, 1);
        assert!(matches!(next, SourcePoll::Wait(_)));
        std::fs::write(dir.path().join("b.json"), "{\"n\": 2}\n{\"n\": 3}\n").unwrap();
        s.add_splits(vec![file_split(&dir.path().join("b.json"), 0)]).unwrap();
        assert_eq!(s.split_count(), 2);
        let (n, next) = rows(&mut s, &rt);
        assert_eq!(n, 2);
        assert!(matches!(next, SourcePoll::Wait(_)));
    }
}
