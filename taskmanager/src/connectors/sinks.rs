//! Sinks: `print` (JSON lines on the taskmanager's stdout, prefixed `N> ` with the 1-based
//! subtask as Flink prints), `blackhole` (discards), and `file` (JSON lines or CSV, one part
//! file per subtask, written as `.inprogress` and renamed when the subtask finishes).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use arrow::record_batch::RecordBatch;
use sluice_common::job::connectors::{FileFormat, FileSinkOptions};

use crate::operators::Operator;

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
    fn process(&mut self, batch: RecordBatch, _out: &mut Vec<RecordBatch>) -> Result<(), String> {
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
    fn process(&mut self, _batch: RecordBatch, _out: &mut Vec<RecordBatch>) -> Result<(), String> {
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
}

impl FileSink {
    pub fn new(options: &FileSinkOptions, subtask: u32) -> Self {
        FileSink {
            dir: options.path.clone(),
            format: options.format,
            subtask,
            open: None,
        }
    }

    fn extension(&self) -> &'static str {
        match self.format {
            FileFormat::Json => "json",
            FileFormat::Csv => "csv",
        }
    }

    fn final_path(&self) -> PathBuf {
        self.dir.join(format!("part-{}-0.{}", self.subtask, self.extension()))
    }

    fn writer(&mut self) -> Result<&mut Writer, String> {
        if self.open.is_none() {
            std::fs::create_dir_all(&self.dir).map_err(|e| format!("file sink {}: {e}", self.dir.display()))?;
            let path = self
                .dir
                .join(format!(".part-{}-0.{}.inprogress", self.subtask, self.extension()));
            let file = File::create(&path).map_err(|e| format!("file sink {}: {e}", path.display()))?;
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
            .ok_or_else(|| "file sink writer missing".to_string())
    }
}

impl Operator for FileSink {
    fn process(&mut self, batch: RecordBatch, _out: &mut Vec<RecordBatch>) -> Result<(), String> {
        match self.writer()? {
            Writer::Json(w) => w.write(&batch).map_err(|e| e.to_string()),
            Writer::Csv(w) => w.write(&batch).map_err(|e| e.to_string()),
        }
    }

    /// Closes the part file and moves it to its final name.
    fn finish(&mut self, _out: &mut Vec<RecordBatch>) -> Result<(), String> {
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
        buf.flush().map_err(|e| format!("file sink {}: {e}", path.display()))?;
        buf.get_ref()
            .sync_all()
            .map_err(|e| format!("file sink {}: {e}", path.display()))?;
        let target = self.final_path();
        std::fs::rename(&path, &target).map_err(|e| format!("file sink {} → {}: {e}", path.display(), target.display()))
    }
}
