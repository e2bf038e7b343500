//! Test backends: a fresh temporary directory, or a fresh bucket on the S3-compatible
//! server named by `WEIR_TEST_S3_ENDPOINT` (see `tests/services.sh`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use weir_checkpoint::{CheckpointStorage, S3Options, StorageConfig};

/// The environment variable naming the test S3 endpoint, e.g. `http://127.0.0.1:9000`.
pub const S3_ENDPOINT_VAR: &str = "WEIR_TEST_S3_ENDPOINT";

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
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        allow_http: true,
        max_retries: Some(2),
        retry_timeout: Some(Duration::from_secs(10)),
    }
}

/// The test S3 endpoint, or `None` after printing why the test is skipped.
pub fn s3_endpoint() -> Option<String> {
    match std::env::var(S3_ENDPOINT_VAR) {
        Ok(endpoint) if !endpoint.is_empty() => Some(endpoint),
        _ => {
            assert!(
                std::env::var_os("WEIR_REQUIRE_SERVICES").is_none(),
                "{S3_ENDPOINT_VAR} is not set but WEIR_REQUIRE_SERVICES is: the test command must start the S3 server"
            );
            println!("skipped: {S3_ENDPOINT_VAR} not set");
            None
        }
    }
}

/// A storage in a fresh bucket of the test S3 server, or `None` (printing
/// "skipped: WEIR_TEST_S3_ENDPOINT not set") when no server is configured.
pub async fn s3_store() -> Option<TestStore> {
    let endpoint = s3_endpoint()?;
    let bucket = fresh_bucket_name();
    create_bucket(&endpoint, &bucket);
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

/// A bucket name no other test (or earlier run) uses.
pub fn fresh_bucket_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "weir-test-{}-{}-{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a bucket with a bare `PUT /<bucket>` (the test server needs no signature).
pub fn create_bucket(endpoint: &str, bucket: &str) {
    let url = url::Url::parse(endpoint).expect("WEIR_TEST_S3_ENDPOINT is a URL");
    let host = url.host_str().expect("endpoint host");
    let port = url.port_or_known_default().expect("endpoint port");
    let mut stream = TcpStream::connect((host, port))
        .unwrap_or_else(|e| panic!("cannot connect to test S3 server {endpoint}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .expect("send bucket creation");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read bucket creation response");
    let status = response.lines().next().unwrap_or_default();
    assert!(
        status.contains(" 200"),
        "creating bucket {bucket} on {endpoint} failed: {status}"
    );
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
