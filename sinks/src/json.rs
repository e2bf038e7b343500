//! [`JsonLinesSink`] and [`StdoutJsonSink`]: one JSON object per line.

use serde::Serialize;
use std::io::{self, Stdout, Write};
use std::marker::PhantomData;
use weir_dataflow::{DataflowError, Result, Sink, SubtaskInfo};

/// Lines are handed to the writer in chunks of about this many bytes (always whole
/// lines), and at the end of every batch.
const CHUNK_BYTES: usize = 256 * 1024;

/// Writes each record as one line of JSON to a [`Write`]. Lines are serialized
/// into a buffer and handed to the writer as whole lines, one `write_all` per chunk,
/// followed by a `flush` at the end of every batch and at the end of input; so
/// writers shared by several subtasks (such as stdout, which locks per call) never
/// see a line split.
///
/// Errors name the sink: [`DataflowError::Io`] when the writer fails (a closed pipe
/// says so), [`DataflowError::Operator`] when a record cannot be represented as JSON
/// (for example a map with non-string keys).
pub struct JsonLinesSink<W, T> {
    writer: W,
    buffer: Vec<u8>,
    operator: String,
    subtask: usize,
    _records: PhantomData<fn(T)>,
}

impl<W: Write + Send + 'static, T: Serialize + Send + 'static> JsonLinesSink<W, T> {
    /// A sink named `operator` (subtask `subtask`, for errors) writing to `writer`.
    pub fn new(operator: impl Into<String>, subtask: usize, writer: W) -> Self {
        Self {
            writer,
            buffer: Vec::with_capacity(CHUNK_BYTES),
            operator: operator.into(),
            subtask,
            _records: PhantomData,
        }
    }

    /// A factory for [`weir_dataflow::Stream::sink`]: each subtask writes to the
    /// writer `make_writer` returns for it.
    pub fn factory<F>(make_writer: F) -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static
    where
        F: Fn(&SubtaskInfo) -> W + Send + Sync + 'static,
    {
        move |info: &SubtaskInfo| Self::new(info.operator.clone(), info.index, make_writer(info))
    }

    /// The writer.
    pub fn get_ref(&self) -> &W {
        &self.writer
    }

    /// The writer, after writing out what is buffered.
    ///
    /// # Errors
    /// [`DataflowError::Io`] if writing or flushing fails.
    pub fn into_inner(mut self) -> Result<W> {
        self.write_out()?;
        Ok(self.writer)
    }

    /// Hands the buffered lines to the writer and flushes it.
    fn write_out(&mut self) -> Result<()> {
        if !self.buffer.is_empty() {
            self.writer
                .write_all(&self.buffer)
                .map_err(|e| self.io_error(e))?;
            self.buffer.clear();
        }
        self.writer.flush().map_err(|e| self.io_error(e))
    }

    fn io_error(&self, error: io::Error) -> DataflowError {
        if error.kind() == io::ErrorKind::BrokenPipe {
            let context = "the output was closed by its reader (broken pipe)";
            DataflowError::io(self.operator.as_str(), context, error)
        } else {
            DataflowError::Io {
                operator: self.operator.clone(),
                source: error,
            }
        }
    }
}

impl<W: Write + Send + 'static, T: Serialize + Send + 'static> Sink for JsonLinesSink<W, T> {
    type In = T;

    /// # Errors
    /// [`DataflowError::Io`] if the writer fails; [`DataflowError::Operator`] if a
    /// record cannot be serialized. The batch is drained either way.
    fn write_batch(&mut self, batch: &mut Vec<T>) -> Result<()> {
        let mut records = batch.drain(..);
        for record in records.by_ref() {
            let line_start = self.buffer.len();
            if let Err(e) = serde_json::to_writer(&mut self.buffer, &record) {
                self.buffer.truncate(line_start);
                return Err(DataflowError::operator_caused(
                    self.operator.as_str(),
                    self.subtask,
                    "cannot write a record as JSON",
                    e,
                ));
            }
            self.buffer.push(b'\n');
            if self.buffer.len() >= CHUNK_BYTES {
                self.writer
                    .write_all(&self.buffer)
                    .map_err(|e| self.io_error(e))?;
                self.buffer.clear();
            }
        }
        drop(records);
        self.write_out()
    }

    fn finish(&mut self) -> Result<()> {
        self.write_out()
    }
}

/// Writes each record as one line of JSON to standard output: a [`JsonLinesSink`]
/// over [`std::io::stdout`]. Whole lines reach stdout in chunks under its lock, so
/// the lines of parallel subtasks interleave but are never split; output is flushed
/// at the end of every batch. A closed stdout (for example `weir … | head`) fails
/// the job with a [`DataflowError::Io`] that says the pipe was closed.
pub struct StdoutJsonSink<T>(JsonLinesSink<Stdout, T>);

impl<T: Serialize + Send + 'static> StdoutJsonSink<T> {
    /// A factory for [`weir_dataflow::Stream::sink`].
    pub fn factory() -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static {
        |info: &SubtaskInfo| {
            Self(JsonLinesSink::new(
                info.operator.clone(),
                info.index,
                io::stdout(),
            ))
        }
    }
}

impl<T: Serialize + Send + 'static> Sink for StdoutJsonSink<T> {
    type In = T;

    /// # Errors
    /// As [`JsonLinesSink`].
    fn write_batch(&mut self, batch: &mut Vec<T>) -> Result<()> {
        self.0.write_batch(batch)
    }

    fn finish(&mut self) -> Result<()> {
        self.0.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    struct Row {
        id: u32,
        name: &'static str,
    }

    /// A writer that fails like a pipe whose reader has gone.
    struct ClosedPipe;

    impl Write for ClosedPipe {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::Error::from(io::ErrorKind::BrokenPipe))
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn writes_one_json_object_per_line() {
        let mut sink = JsonLinesSink::new("out", 0, Vec::new());
        let mut batch = vec![
            Row {
                id: 1,
                name: "a\"b",
            },
            Row { id: 2, name: "c" },
        ];
        sink.write_batch(&mut batch).unwrap();
        assert!(batch.is_empty());
        sink.write_batch(&mut vec![Row { id: 3, name: "" }])
            .unwrap();
        sink.finish().unwrap();
        let text = String::from_utf8(sink.into_inner().unwrap()).unwrap();
        assert_eq!(
            text,
            "{\"id\":1,\"name\":\"a\\\"b\"}\n{\"id\":2,\"name\":\"c\"}\n{\"id\":3,\"name\":\"\"}\n"
        );
    }

    #[test]
    fn large_batches_are_written_in_whole_lines() {
        let mut sink = JsonLinesSink::new("out", 0, Vec::new());
        let mut batch: Vec<u64> = (0..100_000).collect();
        sink.write_batch(&mut batch).unwrap();
        let text = String::from_utf8(sink.get_ref().clone()).unwrap();
        let lines: Vec<u64> = text.lines().map(|l| l.parse().unwrap()).collect();
        assert_eq!(lines, (0..100_000).collect::<Vec<_>>());
    }

    #[test]
    fn broken_pipe_is_a_clear_error() {
        let mut sink = JsonLinesSink::new("stdout-json", 1, ClosedPipe);
        let err = sink.write_batch(&mut vec![1, 2, 3]).unwrap_err();
        match &err {
            DataflowError::Io { operator, source } => {
                assert_eq!(operator, "stdout-json");
                assert_eq!(source.kind(), io::ErrorKind::BrokenPipe);
            }
            other => panic!("expected an I/O error, got {other:?}"),
        }
        assert!(err.to_string().contains("broken pipe"), "{err}");
    }

    #[test]
    fn unserializable_record_is_an_operator_error() {
        let mut sink = JsonLinesSink::new("out", 2, Vec::new());
        let bad = BTreeMap::from([((1, 2), "tuple keys are not JSON")]);
        let err = sink.write_batch(&mut vec![bad]).unwrap_err();
        assert!(
            matches!(err, DataflowError::Operator { subtask: 2, .. }),
            "{err}"
        );
        assert!(sink.get_ref().is_empty());
    }
}
