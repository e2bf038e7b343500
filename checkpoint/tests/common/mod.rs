//! Test backends: a fresh temporary directory, or a fresh bucket on the S3-compatible
//! server named by `WEIR_TEST_S3_ENDPOINT` (see `tests/services.sh`).

use std::time::Duration;
use weir_checkpoint::{CheckpointStorage, S3Options, StorageConfig};

/// A checkpoint storage under test, with a savepoint directory on the same backend.
pub struct TestStore {
    /// Opened on `config`.
    pub storage: CheckpointStorage,
    /// The checkpoint root.
    pub config: StorageConfig,
    /// A directory for savepoints.
    pub savepoints: StorageConfig,
    /// Which backend, for messages.
    pub backend: &'static str,
    _dir: Option<tempfile::TempDir>,
}

/// A storage in a fresh temporary directory (`file://` URL).
pub async fn file_store() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().join("checkpoints");
    let config = StorageConfig::new(format!("file://{}", root.display()));
    let savepoints = StorageConfig::new(dir.path().join("savepoints").display().to_string());
    let storage = CheckpointStorage::open(&config)
        .await
        .expect("open file storage");
    TestStore {
        storage,
        config,
        savepoints,
        backend: "file",
        _dir: Some(dir),
    }
}

/// Options for the test S3 server: fixed test credentials (never the machine's AWS
/// credentials or instance metadata), path-style, plain http, few retries.
pub fn s3_options(endpoint: &str) -> S3Options {
    S3Options {
        endpoint: Some(endpoint.to_owned()),
        region: Some(weir_testkit::s3::REGION.into()),
        access_key_id: Some(weir_testkit::s3::ACCESS_KEY_ID.into()),
        secret_access_key: Some(weir_testkit::s3::SECRET_ACCESS_KEY.into()),
        allow_http: true,
        max_retries: Some(2),
        retry_timeout: Some(Duration::from_secs(10)),
    }
}

/// A storage in a fresh bucket of the test S3 server, or `None` (printing
/// "skipped: WEIR_TEST_S3_ENDPOINT not set") when no server is configured.
pub async fn s3_store() -> Option<TestStore> {
    let endpoint = weir_testkit::s3::endpoint()?;
    let bucket = weir_testkit::s3::fresh_bucket(&endpoint, "weir-test");
    let options = s3_options(&endpoint);
    let config = StorageConfig::new(format!("s3://{bucket}/checkpoints")).with_s3(options);
    let savepoints = config.with_url(format!("s3://{bucket}/savepoints"));
    let storage = CheckpointStorage::open(&config)
        .await
        .expect("open s3 storage");
    Some(TestStore {
        storage,
        config,
        savepoints,
        backend: "s3",
        _dir: None,
    })
}

/// Runs each named scenario `async fn name(store: TestStore)` against both backends:
/// `name::file` and `name::s3`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn file() {
                super::$name(crate::common::file_store().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn s3() {
                if let Some(store) = crate::common::s3_store().await {
                    super::$name(store).await;
                }
            }
        }
    )*};
}
