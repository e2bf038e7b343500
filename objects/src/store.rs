//! [`BlockingObjectStore`]: one directory or bucket prefix, with the runtime that
//! drives its requests on the calling thread.

use crate::ObjectsError;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt, PutPayload};
use std::ops::Range;
use std::sync::Arc;
use weir_checkpoint::{CheckpointStorage, StorageConfig};

/// An object found by a listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedObject {
    /// Its name relative to the store's root, segments separated by `/`.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A local directory or an S3 bucket prefix, for callers that do not run async code
/// (connectors on their task threads).
///
/// Objects are named relative to the root the URL names. Every method blocks the
/// calling thread until its requests are done, driving them on a current-thread tokio
/// runtime the store owns: one runtime per store, no thread of its own. Do not call
/// it from inside an async runtime.
pub struct BlockingObjectStore {
    runtime: tokio::runtime::Runtime,
    store: Arc<dyn ObjectStore>,
    /// The prefix inside `store` under which the objects live.
    root: Path,
    /// The root as users see it: an absolute path or `s3://bucket/prefix`.
    location: String,
}

impl std::fmt::Debug for BlockingObjectStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingObjectStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl BlockingObjectStore {
    /// Opens the directory or bucket prefix `config.url` names (a plain path,
    /// `file:///path` or `s3://bucket/prefix`, with `config.s3`'s settings over the
    /// AWS environment). A local directory is created if missing; an S3 bucket is
    /// probed with one listing request, so a wrong endpoint, a missing bucket or bad
    /// credentials fail here.
    ///
    /// # Errors
    /// [`ObjectsError::Misconfigured`] for a bad URL or S3 settings;
    /// [`ObjectsError::Unreachable`] naming the directory or the bucket;
    /// [`ObjectsError::Runtime`] when the runtime cannot start.
    pub fn open(config: &StorageConfig) -> Result<Self, ObjectsError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| ObjectsError::Runtime {
                url: config.url.clone(),
                source,
            })?;
        // The checkpoint crate owns URL parsing and S3 client settings; only the
        // store, its root and its name are taken from it.
        let storage = runtime
            .block_on(CheckpointStorage::open(config))
            .map_err(|e| ObjectsError::opening(&config.url, e))?;
        Ok(Self {
            store: Arc::clone(storage.object_store()),
            root: storage.root().clone(),
            location: storage.location(),
            runtime,
        })
    }

    /// Where the root is: an absolute filesystem path or `s3://bucket/prefix`.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// An object as users see it: `<location>/<relative>` (the location itself for
    /// `""`).
    pub fn describe(&self, relative: &str) -> String {
        if relative.is_empty() {
            self.location.clone()
        } else {
            format!("{}/{relative}", self.location)
        }
    }

    /// The store path of `relative` (`""`: the root).
    fn path(&self, relative: &str) -> Result<Path, ObjectsError> {
        if relative.is_empty() {
            return Ok(self.root.clone());
        }
        let parsed = Path::parse(relative).map_err(|e| ObjectsError::InvalidName {
            name: relative.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(self.root.parts().chain(parsed.parts()).collect())
    }

    /// The error of `action` on `relative`.
    fn failed(
        &self,
        action: &'static str,
        relative: &str,
    ) -> impl FnOnce(object_store::Error) -> ObjectsError + '_ {
        let object = self.describe(relative);
        move |source| ObjectsError::Request {
            action,
            object,
            source,
        }
    }

    /// The size of `relative`, `None` when it does not exist.
    ///
    /// # Errors
    /// A failed request ([`ObjectsError::Request`] naming the object).
    pub fn size(&self, relative: &str) -> Result<Option<u64>, ObjectsError> {
        let path = self.path(relative)?;
        match self.runtime.block_on(self.store.head(&path)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.failed("reading", relative)(e)),
        }
    }

    /// The bytes `range` of `relative`.
    ///
    /// # Errors
    /// A missing object or a failed request (naming the object).
    pub fn get_range(&self, relative: &str, range: Range<u64>) -> Result<Bytes, ObjectsError> {
        let path = self.path(relative)?;
        self.runtime
            .block_on(self.store.get_range(&path, range))
            .map_err(self.failed("reading", relative))
    }

    /// The whole of `relative`.
    ///
    /// # Errors
    /// A missing object or a failed request (naming the object).
    pub fn get(&self, relative: &str) -> Result<Bytes, ObjectsError> {
        let path = self.path(relative)?;
        self.runtime
            .block_on(async { self.store.get(&path).await?.bytes().await })
            .map_err(self.failed("reading", relative))
    }

    /// Writes `relative` whole (replacing it if it exists); object stores never show
    /// a partially written object.
    ///
    /// # Errors
    /// A failed upload (naming the object).
    pub fn put(&self, relative: &str, bytes: Vec<u8>) -> Result<(), ObjectsError> {
        let path = self.path(relative)?;
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(self.failed("uploading", relative))
    }

    /// Deletes `relative`; `false` when it did not exist.
    ///
    /// # Errors
    /// A failed request (naming the object).
    pub fn delete(&self, relative: &str) -> Result<bool, ObjectsError> {
        let path = self.path(relative)?;
        match self.runtime.block_on(self.store.delete(&path)) {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(self.failed("deleting", relative)(e)),
        }
    }

    /// Moves `from` to `to` (a rename locally, copy and delete on S3), replacing `to`;
    /// `false` when `from` does not exist.
    ///
    /// # Errors
    /// A failed request (naming both objects).
    pub fn rename(&self, from: &str, to: &str) -> Result<bool, ObjectsError> {
        let (source, target) = (self.path(from)?, self.path(to)?);
        match self.runtime.block_on(self.store.rename(&source, &target)) {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(ObjectsError::Request {
                action: "moving",
                object: format!("{} to {}", self.describe(from), self.describe(to)),
                source: e,
            }),
        }
    }

    /// Every object under `prefix` (relative to the root; `""`: all), at any depth,
    /// sorted by name.
    ///
    /// # Errors
    /// A failed listing (naming the prefix).
    pub fn list(&self, prefix: &str) -> Result<Vec<ListedObject>, ObjectsError> {
        let path = self.path(prefix)?;
        let listed: Vec<ObjectMeta> = self
            .runtime
            .block_on(
                self.store
                    .list((!path.is_root()).then_some(&path))
                    .try_collect(),
            )
            .map_err(self.failed("listing", prefix))?;
        Ok(self.relative(listed))
    }

    /// The objects directly under the root (not those under a `/` in their name),
    /// sorted by name.
    ///
    /// # Errors
    /// A failed listing (naming the root).
    pub fn list_top_level(&self) -> Result<Vec<ListedObject>, ObjectsError> {
        let root = (!self.root.is_root()).then_some(&self.root);
        let listing = self
            .runtime
            .block_on(self.store.list_with_delimiter(root))
            .map_err(self.failed("listing", ""))?;
        Ok(self.relative(listing.objects))
    }

    /// Names relative to the root, sorted.
    fn relative(&self, listed: Vec<ObjectMeta>) -> Vec<ListedObject> {
        let mut objects: Vec<ListedObject> = listed
            .into_iter()
            .filter_map(|meta| {
                let name = Path::from_iter(meta.location.prefix_match(&self.root)?).to_string();
                Some(ListedObject {
                    name,
                    size: meta.size,
                })
            })
            .collect();
        objects.sort_by(|a, b| a.name.cmp(&b.name));
        objects
    }
}

/// Whether a name has a segment starting with `_` or `.`: a staging area or a hidden
/// file, which readers of a directory skip.
pub fn is_hidden(name: &str) -> bool {
    name.split('/')
        .any(|segment| segment.starts_with(['_', '.']))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &tempfile::TempDir) -> BlockingObjectStore {
        BlockingObjectStore::open(&StorageConfig::new(dir.path().display().to_string())).unwrap()
    }

    fn names(listed: Result<Vec<ListedObject>, ObjectsError>) -> Vec<String> {
        listed.unwrap().into_iter().map(|o| o.name).collect()
    }

    #[test]
    fn objects_round_trip_and_list_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        store.put("b.jsonl", b"2\n".to_vec()).unwrap();
        store.put("a/x.jsonl", b"1\n".to_vec()).unwrap();
        store.put("_staging/s", b"s".to_vec()).unwrap();
        assert_eq!(
            names(store.list("")),
            ["_staging/s", "a/x.jsonl", "b.jsonl"]
        );
        assert_eq!(names(store.list_top_level()), ["b.jsonl"]);
        assert_eq!(names(store.list("_staging")), ["_staging/s"]);
        assert_eq!(&store.get_range("a/x.jsonl", 0..1).unwrap()[..], b"1");
        assert_eq!(store.size("b.jsonl").unwrap(), Some(2));
        assert!(store.rename("b.jsonl", "c.jsonl").unwrap());
        assert!(!store.rename("b.jsonl", "c.jsonl").unwrap());
        assert_eq!(store.size("b.jsonl").unwrap(), None);
        assert!(store.delete("c.jsonl").unwrap());
        assert!(!store.delete("c.jsonl").unwrap());
        assert!(is_hidden("_staging/s") && is_hidden("a/.x") && !is_hidden("a/x.jsonl"));
    }

    #[test]
    fn errors_name_the_object() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let err = store.get("missing.jsonl").unwrap_err().to_string();
        assert!(
            err.contains("reading") && err.contains("missing.jsonl"),
            "{err}"
        );
        let err = BlockingObjectStore::open(&StorageConfig::new("gs://b/x")).unwrap_err();
        assert!(err.is_misconfigured(), "{err}");
    }
}
