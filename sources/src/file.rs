//! [`FileSource`]: JSON lines or CSV rows from one object or every object under a
//! prefix, on the local filesystem or S3, with its read position in every checkpoint.
//!
//! ```text
//!  URL ──first subtask to open lists, once per job start──▶ one object, or every object
//!      under the prefix (sorted by name; names with a segment starting with `_` or `.`
//!      are skipped) ──shared through the factory──▶ every subtask
//!  object i ──(i % parallelism == subtask)──▶ subtask ──line by line──▶ FileFormat::decode ─▶ T
//!                                          (FileSource::mapped: ─▶ RecordMap ─▶ U, per line)
//!  snapshot: per object { byte offset, line, finished } + the listing ─▶ operator state `file-positions`
//!  restore (any parallelism): each subtask takes the positions of the objects it now owns
//! ```
//!
//! The listing is taken once, in one place, when the job first starts: the subtasks a
//! factory builds share it (Flink's split enumerator), so an object a concurrent writer
//! adds while they open is read by none of them rather than shifting the assignment
//! under some (an object read twice, another never). It travels in the checkpoint: a
//! restored job reads exactly the objects its first run listed, whatever was added
//! since, so the assignment of objects to subtasks and every position stay valid. A
//! listed object that has disappeared, or shrunk below its checkpointed position, is
//! an error naming it. Objects are read sequentially, one chunk of at most
//! [`FileSourceConfig::chunk_size`] bytes at a time, so memory stays bounded whatever
//! their size. A subtask's objects are one watermark split (they are read one after
//! the other, in name order).
//!
//! Lines are records: a JSON document per line (JSON lines), or a CSV row per line
//! (quoted fields must not contain line breaks). Blank lines are skipped. A line that
//! does not decode fails the job with an error naming the object, the line number and
//! the expected type.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use weir_dataflow::state::{decode, encode};
use weir_dataflow::{
    DataflowError, OperatorContext, Result, SnapshotContext, Source, SourceOutput, SourcePoll,
    SubtaskInfo,
};
use weir_objects::{
    is_hidden, BlockingObjectStore, FileFormat, LineDecoder, ObjectsError, StorageConfig,
};

const POSITIONS: &str = "file-positions";

/// Settings of a [`FileSource`].
#[derive(Clone, Debug)]
pub struct FileSourceConfig {
    /// What to read: a file, a directory, `file:///path`, `s3://bucket/key` or
    /// `s3://bucket/prefix`, with S3 settings.
    pub storage: StorageConfig,
    /// How records are laid out.
    pub format: FileFormat,
    /// How many bytes one read request fetches (default 4 MiB).
    pub chunk_size: u64,
}

impl FileSourceConfig {
    /// Reads JSON lines from `url` with default S3 options (the AWS environment).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            storage: StorageConfig::new(url),
            format: FileFormat::JsonLines,
            chunk_size: 4 << 20,
        }
    }

    /// The same, reading `format`.
    pub fn with_format(mut self, format: FileFormat) -> Self {
        self.format = format;
        self
    }
}

/// The listing of one job start, taken by the first of its subtasks that needs it and
/// handed to the others.
#[derive(Default)]
struct JobStartListing(Mutex<Option<Vec<String>>>);

impl JobStartListing {
    /// The listing of this job start: `list`'s result if no subtask listed before
    /// (kept for the others), else the names listed then.
    ///
    /// # Errors
    /// `list`'s error; nothing is kept, so the next subtask lists again (the job fails
    /// anyway).
    fn get_or_list(&self, list: impl FnOnce() -> Result<Vec<String>>) -> Result<Vec<String>> {
        let mut listing = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(objects) = listing.as_ref() {
            return Ok(objects.clone());
        }
        let objects = list()?;
        *listing = Some(objects.clone());
        Ok(objects)
    }
}

/// Which [`JobStartListing`] each subtask a factory builds shares: one per job start.
///
/// A job start builds each subtask once, so a subtask built a second time (or at
/// another parallelism) means the job started again with the same factory; that start
/// gets a fresh listing.
#[derive(Default)]
struct ObjectEnumerator(Mutex<EnumeratorRound>);

#[derive(Default)]
struct EnumeratorRound {
    parallelism: usize,
    /// Subtasks built for this job start.
    built: BTreeSet<usize>,
    listing: Arc<JobStartListing>,
}

impl ObjectEnumerator {
    /// The listing `subtask` shares with the other subtasks of its job start.
    fn join(&self, subtask: &SubtaskInfo) -> Arc<JobStartListing> {
        let mut round = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if round.parallelism != subtask.parallelism || !round.built.insert(subtask.index) {
            *round = EnumeratorRound {
                parallelism: subtask.parallelism,
                built: BTreeSet::from([subtask.index]),
                listing: Arc::default(),
            };
        }
        round.listing.clone()
    }
}

/// How far one object has been read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
struct FilePosition {
    /// Bytes consumed (always at the start of a line).
    offset: u64,
    /// Lines consumed.
    line: u64,
    /// Whether the whole object was read.
    finished: bool,
}

/// What a subtask checkpoints.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct SourceState {
    /// Every object of the source (relative to the root, sorted), as first listed.
    objects: Vec<String>,
    /// Positions of the objects this subtask owns.
    positions: BTreeMap<String, FilePosition>,
}

/// The object being read.
struct Reading {
    /// Index into `objects`.
    index: usize,
    size: u64,
    /// Fetched bytes not consumed yet; `buffer[0]` is at `position.offset`.
    buffer: Vec<u8>,
    /// Where the next fetch starts.
    fetched_to: u64,
    decoder: LineDecoder,
}

/// What a [`FileSource`] makes of each decoded record: the record it emits, or why
/// the record does not fit (the job fails naming the object and line).
pub type RecordMap<T, U> = Arc<dyn Fn(T) -> Result<U, String> + Send + Sync>;

/// Reads files; see the module documentation. Lines decode as `T`; the source emits
/// what its [`RecordMap`] makes of them, `U` (by default the records themselves).
pub struct FileSource<T, U = T> {
    config: FileSourceConfig,
    subtask: SubtaskInfo,
    /// The listing shared with the other subtasks of this job start.
    listing: Arc<JobStartListing>,
    store: Option<BlockingObjectStore>,
    state: SourceState,
    reading: Option<Reading>,
    map: RecordMap<T, U>,
    _records: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned + Send + 'static> FileSource<T> {
    /// A factory for [`weir_dataflow::JobBuilder::source`]. The subtasks it builds for
    /// one job start share one listing of the objects to read.
    pub fn factory(
        config: FileSourceConfig,
    ) -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static {
        Self::mapped(config, Arc::new(Ok))
    }
}

impl<T: DeserializeOwned + Send + 'static, U: Send + 'static> FileSource<T, U> {
    /// [`factory`](FileSource::factory), emitting what `map` makes of each record:
    /// a record it refuses fails the job naming the object and line.
    pub fn mapped(
        config: FileSourceConfig,
        map: RecordMap<T, U>,
    ) -> impl Fn(&SubtaskInfo) -> Self + Send + Sync + 'static {
        let enumerator = ObjectEnumerator::default();
        move |info| Self {
            config: config.clone(),
            subtask: info.clone(),
            listing: enumerator.join(info),
            store: None,
            state: SourceState::default(),
            reading: None,
            map: Arc::clone(&map),
            _records: PhantomData,
        }
    }

    fn error(&self, message: impl Into<String>) -> DataflowError {
        DataflowError::operator(&self.subtask.operator, self.subtask.index, message)
    }

    /// A failure of the store, its message prefixed by `context` when given.
    fn store_error(
        &self,
        context: Option<&str>,
    ) -> impl FnOnce(ObjectsError) -> DataflowError + '_ {
        let context = context.map(str::to_owned);
        move |e| e.into_dataflow(&self.subtask, context.as_deref())
    }

    fn store(&self) -> Result<&BlockingObjectStore> {
        self.store.as_ref().ok_or_else(|| self.error("not open"))
    }

    /// An object as users see it: a filesystem path or an `s3://` URL.
    fn describe(&self, relative: &str) -> String {
        match &self.store {
            Some(store) => store.describe(relative),
            None if relative.is_empty() => self.config.storage.url.clone(),
            None => format!("{}/{relative}", self.config.storage.url),
        }
    }

    /// Opens the storage at the root object names are relative to, and names the one
    /// object to read when the URL is a local file.
    fn connect(&self) -> Result<(BlockingObjectStore, Option<String>)> {
        let url = &self.config.storage.url;
        let local = self.config.storage.local_path().map_err(|e| {
            DataflowError::operator_caused(
                &self.subtask.operator,
                self.subtask.index,
                format!("file source `{url}`"),
                e,
            )
        })?;
        // A local single file: open its directory, read that one object.
        let (storage_config, single) = match &local {
            Some(path) => {
                let meta = std::fs::metadata(path).map_err(|e| {
                    let context = format!("file source `{}`", path.display());
                    DataflowError::io(&self.subtask.operator, context, e)
                })?;
                if meta.is_file() {
                    let dir = path
                        .parent()
                        .filter(|p| !p.as_os_str().is_empty())
                        .map_or_else(|| PathBuf::from("."), PathBuf::from);
                    let name = path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    (
                        self.config.storage.with_url(dir.display().to_string()),
                        Some(name),
                    )
                } else {
                    (self.config.storage.clone(), None)
                }
            }
            None => (self.config.storage.clone(), None),
        };
        let context = format!("file source `{url}`");
        let store =
            BlockingObjectStore::open(&storage_config).map_err(self.store_error(Some(&context)))?;
        Ok((store, single))
    }

    /// The objects to read: `single`, or every object under the root, sorted, but for
    /// names with a segment starting with `_` or `.` (staging areas, hidden files).
    fn list(&self, store: &BlockingObjectStore, single: Option<String>) -> Result<Vec<String>> {
        if let Some(name) = single {
            return Ok(vec![name]);
        }
        let context = format!("file source `{}`", self.config.storage.url);
        Ok(store
            .list("")
            .map_err(self.store_error(Some(&context)))?
            .into_iter()
            .map(|object| object.name)
            .filter(|name| !is_hidden(name))
            .collect())
    }

    /// The next object this subtask owns that is not finished, from index `from`.
    fn next_object(&self, from: usize) -> Option<usize> {
        let parallelism = self.subtask.parallelism.max(1);
        (from..self.state.objects.len())
            .filter(|i| i % parallelism == self.subtask.index)
            .find(|i| {
                !self
                    .state
                    .positions
                    .get(&self.state.objects[*i])
                    .is_some_and(|p| p.finished)
            })
    }

    /// Starts reading object `index` at its position.
    fn start(&mut self, index: usize) -> Result<Reading> {
        let name = self.state.objects[index].clone();
        let position = self.state.positions.get(&name).copied().unwrap_or_default();
        let store = self.store()?;
        let Some(size) = store.size(&name).map_err(self.store_error(None))? else {
            return Err(self.error(format!(
                "{} was listed when the job started but does not exist any more",
                self.describe(&name)
            )));
        };
        if position.offset > size {
            return Err(self.error(format!(
                "{} has {size} bytes, but the checkpoint read it up to byte {}: it changed since",
                self.describe(&name),
                position.offset
            )));
        }
        let mut decoder = LineDecoder::new(self.config.format);
        if position.offset > 0 && decoder.wants_header() {
            // Resuming inside a headed CSV file: read its header line again.
            let mut header = Vec::new();
            let mut at = 0;
            while !header.contains(&b'\n') && at < size {
                let end = (at + self.config.chunk_size.max(1)).min(size);
                let chunk = store
                    .get_range(&name, at..end)
                    .map_err(self.store_error(None))?;
                header.extend_from_slice(&chunk);
                at = end;
            }
            for line in header.split(|b| *b == b'\n') {
                decoder
                    .decode::<serde::de::IgnoredAny>(line)
                    .map_err(|e| self.error(format!("{} header: {e}", self.describe(&name))))?;
                if !decoder.wants_header() {
                    break;
                }
            }
        }
        Ok(Reading {
            index,
            size,
            buffer: Vec::new(),
            fetched_to: position.offset,
            decoder,
        })
    }

    /// The next line of the object being read (without `\n`), and whether the object
    /// ended; `None` when it ended.
    fn next_line(&mut self, reading: &mut Reading) -> Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = reading.buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = reading.buffer.drain(..=end).collect();
                return Ok(Some(line));
            }
            if reading.fetched_to >= reading.size {
                if reading.buffer.is_empty() {
                    return Ok(None);
                }
                // The last line has no `\n`.
                return Ok(Some(std::mem::take(&mut reading.buffer)));
            }
            let end = (reading.fetched_to + self.config.chunk_size.max(1)).min(reading.size);
            let chunk = self
                .store()?
                .get_range(&self.state.objects[reading.index], reading.fetched_to..end)
                .map_err(self.store_error(None))?;
            reading.buffer.extend_from_slice(&chunk);
            reading.fetched_to = end;
        }
    }
}

impl<T: DeserializeOwned + Send + 'static, U: Send + 'static> Source for FileSource<T, U> {
    type Out = U;

    /// Opens the storage, then restores the positions of the objects this subtask owns
    /// (from every previous subtask after a change of parallelism), or, on a fresh
    /// start, takes the listing of this job start (listing the objects if it is the
    /// first subtask to open).
    ///
    /// # Errors
    /// A bad URL; a missing local path; an unreachable store or bucket (named); a
    /// corrupt checkpointed position.
    fn open(&mut self, cx: &mut OperatorContext) -> Result<()> {
        let mut restored: Vec<SourceState> = Vec::new();
        if let Some(bytes) = cx.restored_operator.get(POSITIONS) {
            restored.push(decode(POSITIONS, bytes)?);
        }
        for state in &cx.restored_operator_all {
            if let Some(bytes) = state.get(POSITIONS) {
                restored.push(decode(POSITIONS, bytes)?);
            }
        }
        let (store, single) = self.connect()?;
        let objects = match restored.iter().find(|s| !s.objects.is_empty()) {
            Some(state) => state.objects.clone(),
            None => self.listing.get_or_list(|| self.list(&store, single))?,
        };
        self.store = Some(store);
        let parallelism = self.subtask.parallelism.max(1);
        let mine: BTreeSet<&String> = objects
            .iter()
            .enumerate()
            .filter(|(i, _)| i % parallelism == self.subtask.index)
            .map(|(_, name)| name)
            .collect();
        let mut positions = BTreeMap::new();
        for state in &restored {
            for (name, position) in &state.positions {
                if mine.contains(name) {
                    positions.insert(name.clone(), *position);
                }
            }
        }
        self.state = SourceState { objects, positions };
        Ok(())
    }

    /// # Errors
    /// A line that does not decode (naming the object, the line and the expected
    /// type); a failed read (naming the object); an object that disappeared or shrank.
    fn poll(&mut self, out: &mut SourceOutput<U>) -> Result<SourcePoll> {
        let budget = out.batch_size().max(1);
        while out.len() < budget {
            let mut reading = match self.reading.take() {
                Some(reading) => reading,
                None => match self.next_object(0) {
                    Some(index) => self.start(index)?,
                    None => return Ok(SourcePoll::Finished),
                },
            };
            let name = self.state.objects[reading.index].clone();
            match self.next_line(&mut reading)? {
                Some(line) => {
                    let position = self.state.positions.entry(name.clone()).or_default();
                    position.offset += line.len() as u64;
                    position.line += 1;
                    let number = position.line;
                    let bare = line.strip_suffix(b"\n").unwrap_or(&line);
                    match reading
                        .decoder
                        .decode(bare)
                        .and_then(|r| r.map(&*self.map).transpose())
                    {
                        Ok(Some(record)) => out.push(record),
                        Ok(None) => {}
                        Err(e) => {
                            return Err(
                                self.error(format!("{} line {number}: {e}", self.describe(&name)))
                            )
                        }
                    }
                    self.reading = Some(reading);
                }
                None => {
                    self.state.positions.entry(name).or_default().finished = true;
                }
            }
        }
        Ok(SourcePoll::Ready)
    }

    fn snapshot(&mut self, cx: &mut SnapshotContext) -> Result<()> {
        cx.put_operator(POSITIONS, encode(POSITIONS, &self.state)?);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weir_dataflow::testing::CollectSink;
    use weir_dataflow::{JobBuilder, JobConfig, WatermarkStrategy};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Order {
        id: u64,
        item: String,
    }

    fn read_dir<T: DeserializeOwned + Send + Clone + 'static>(
        url: &str,
        format: FileFormat,
        parallelism: usize,
    ) -> Result<Vec<T>> {
        let job = JobBuilder::new(JobConfig {
            parallelism,
            batch_size: 3,
            ..JobConfig::default()
        });
        let (sink, collected) = CollectSink::new();
        job.source(
            "files",
            WatermarkStrategy::none(),
            FileSource::<T>::factory(FileSourceConfig::new(url).with_format(format)),
        )
        .sink("collect", sink);
        job.execute()?;
        Ok(collected.take())
    }

    fn info(index: usize, parallelism: usize) -> SubtaskInfo {
        weir_dataflow::testing::subtask_info("files", index, parallelism)
    }

    /// Every record `source` emits until it finishes.
    fn drain(source: &mut FileSource<u64>) -> Vec<u64> {
        let mut seen = Vec::new();
        let mut out = SourceOutput::new(4);
        loop {
            let poll = source.poll(&mut out).unwrap();
            seen.append(&mut out.take_records());
            if poll == SourcePoll::Finished {
                return seen;
            }
        }
    }

    /// A writer adds a file (sorting first, so it shifts every index) after subtask 0
    /// opened and before subtask 1 does: both still split the one listing of this job
    /// start, so each listed file is read exactly once and the late file by nobody.
    #[test]
    fn a_file_written_between_subtask_opens_does_not_make_subtasks_disagree() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.jsonl"), "1\n2\n").unwrap();
        std::fs::write(dir.path().join("d.jsonl"), "3\n4\n").unwrap();
        let factory =
            FileSource::<u64>::factory(FileSourceConfig::new(dir.path().display().to_string()));
        let mut first = factory(&info(0, 2));
        first.open(&mut OperatorContext::fresh(info(0, 2))).unwrap();
        std::fs::write(dir.path().join("a.jsonl"), "100\n").unwrap();
        let mut second = factory(&info(1, 2));
        second
            .open(&mut OperatorContext::fresh(info(1, 2)))
            .unwrap();
        let mut seen = drain(&mut first);
        seen.extend(drain(&mut second));
        seen.sort_unstable();
        assert_eq!(seen, vec![1, 2, 3, 4]);
    }

    /// A job that starts again with the same factory (it builds subtask 0 again) lists
    /// afresh: a file written since the first start is read, and every file once.
    #[test]
    fn a_job_started_again_with_the_same_factory_lists_afresh() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.jsonl"), "1\n2\n").unwrap();
        std::fs::write(dir.path().join("d.jsonl"), "3\n4\n").unwrap();
        let factory =
            FileSource::<u64>::factory(FileSourceConfig::new(dir.path().display().to_string()));
        for index in 0..2 {
            let mut source = factory(&info(index, 2));
            source
                .open(&mut OperatorContext::fresh(info(index, 2)))
                .unwrap();
        }
        std::fs::write(dir.path().join("a.jsonl"), "100\n").unwrap();
        let mut seen = Vec::new();
        for index in 0..2 {
            let mut source = factory(&info(index, 2));
            source
                .open(&mut OperatorContext::fresh(info(index, 2)))
                .unwrap();
            seen.extend(drain(&mut source));
        }
        seen.sort_unstable();
        assert_eq!(seen, vec![1, 2, 3, 4, 100]);
    }

    #[test]
    fn reads_a_directory_a_file_and_skips_staging_and_hidden_names() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("a.jsonl", "1\n2\n");
        write("b/c.jsonl", "3\n\n4"); // no final newline
        write("d.jsonl", "5\n");
        write("_staging/x.jsonl", "100\n");
        write(".hidden", "200\n");
        for parallelism in [1, 2, 3] {
            let mut all: Vec<u64> = read_dir(
                &dir.path().display().to_string(),
                FileFormat::JsonLines,
                parallelism,
            )
            .unwrap();
            all.sort_unstable();
            assert_eq!(all, vec![1, 2, 3, 4, 5], "parallelism {parallelism}");
        }
        let one: Vec<u64> = read_dir(
            &dir.path().join("b/c.jsonl").display().to_string(),
            FileFormat::JsonLines,
            2,
        )
        .unwrap();
        assert_eq!(one, vec![3, 4]);
    }

    #[test]
    fn headed_csv_is_read_by_field_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("o.csv"), "item,id\r\ntea,1\r\ncake,2\r\n").unwrap();
        let orders: Vec<Order> = read_dir(
            &dir.path().display().to_string(),
            FileFormat::Csv { header: true },
            1,
        )
        .unwrap();
        assert_eq!(
            orders,
            vec![
                Order {
                    id: 1,
                    item: "tea".into()
                },
                Order {
                    id: 2,
                    item: "cake".into()
                }
            ]
        );
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.jsonl"), "[1,2]\n[1,2]\nnot json\n").unwrap();
        let err =
            read_dir::<(u64, u64)>(&dir.path().display().to_string(), FileFormat::JsonLines, 1)
                .unwrap_err()
                .to_string();
        let object = dir.path().canonicalize().unwrap().join("a.jsonl");
        assert!(
            err.contains(&format!("{} line 3", object.display()))
                && err.contains("expected a JSON (u64, u64)"),
            "{err}"
        );
        let missing = dir.path().join("nothing-here");
        let err = read_dir::<u64>(&missing.display().to_string(), FileFormat::JsonLines, 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nothing-here"), "{err}");
    }

    /// Snapshot in the middle of a file, restore at another parallelism: every record
    /// once.
    #[test]
    fn positions_restore_at_another_parallelism() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        for f in 0..5u64 {
            let text: String = (0..10).map(|i| format!("{}\n", f * 100 + i)).collect();
            expected.extend((0..10).map(|i| f * 100 + i));
            std::fs::write(dir.path().join(format!("f{f}.jsonl")), text).unwrap();
        }
        let url = dir.path().display().to_string();
        let mut config = FileSourceConfig::new(&url);
        config.chunk_size = 7; // lines cross chunk boundaries
        let factory = FileSource::<u64>::factory(config);
        let mut seen = Vec::new();
        let mut states = Vec::new();
        for index in 0..2 {
            let mut source = factory(&info(index, 2));
            source
                .open(&mut OperatorContext::fresh(info(index, 2)))
                .unwrap();
            let mut out = SourceOutput::new(4);
            source.poll(&mut out).unwrap();
            seen.append(&mut out.take_records());
            let mut cx = SnapshotContext::new(
                weir_dataflow::CheckpointId::new(1),
                false,
                weir_dataflow::state::MaxParallelism::DEFAULT,
            );
            source.snapshot(&mut cx).unwrap();
            states.push(cx.into_snapshot().unwrap().operator);
        }
        for index in 0..3 {
            let mut source = factory(&info(index, 3));
            let mut cx = OperatorContext::fresh(info(index, 3));
            cx.restored_operator_all = states.clone();
            source.open(&mut cx).unwrap();
            let mut out = SourceOutput::new(4);
            loop {
                let poll = source.poll(&mut out).unwrap();
                seen.append(&mut out.take_records());
                if poll == SourcePoll::Finished {
                    break;
                }
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, expected);
    }
}
