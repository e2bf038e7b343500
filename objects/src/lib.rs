//! weir-objects: what weir's file connectors share — access to an object store
//! (a local directory or an S3 bucket prefix) for code that does not run async, and
//! the formats of records in files.
//!
//! - [`BlockingObjectStore`]: opens a store from a URL with S3 options, then lists,
//!   reads, writes, moves and deletes objects named relative to its root. It owns the
//!   tokio runtime that drives its requests on the calling (task) thread.
//! - [`FileFormat`]: JSON lines or CSV, with [`FileFormat::encode`] for writers and
//!   [`LineDecoder`] for readers of one line at a time.
//! - [`ObjectsError`]: every failure, naming the URL, bucket or object.
//!
//! ```text
//!               weir-checkpoint (URLs, S3 settings: StorageConfig)
//!                     │
//!               weir-objects: BlockingObjectStore, FileFormat
//!                ┌────┴──────────────┐
//!  weir-sources: FileSource    weir-sinks: ObjectFileSink
//! ```
//!
//! ```
//! use weir_objects::{BlockingObjectStore, FileFormat, StorageConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let store = BlockingObjectStore::open(&StorageConfig::new(dir.path().display().to_string()))?;
//! let mut part = Vec::new();
//! FileFormat::JsonLines.encode(&[1u64, 2, 3], &mut part)?;
//! store.put("numbers.jsonl", part)?;
//!
//! let names: Vec<String> = store.list("")?.into_iter().map(|o| o.name).collect();
//! assert_eq!(names, ["numbers.jsonl"]);
//! let bytes = store.get("numbers.jsonl")?;
//! let numbers: Vec<u64> = FileFormat::JsonLines.decode_all("numbers.jsonl", &bytes)?;
//! assert_eq!(numbers, [1, 2, 3]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

mod error;
mod format;
mod store;

pub use error::ObjectsError;
pub use format::{FileFormat, LineDecoder};
pub use store::{is_hidden, BlockingObjectStore, ListedObject};
pub use weir_checkpoint::{S3Options, StorageConfig};
