//! The test S3 server (moto, started by `tests/services.sh start`): its endpoint,
//! fresh buckets, and the fixed test credentials.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The environment variable naming the test S3 endpoint, e.g. `http://127.0.0.1:9000`.
pub const ENDPOINT_VAR: &str = "WEIR_TEST_S3_ENDPOINT";
/// The test server's access key id (the server accepts any).
pub const ACCESS_KEY_ID: &str = "test";
/// The test server's secret access key (the server accepts any).
pub const SECRET_ACCESS_KEY: &str = "test";
/// The region the tests name.
pub const REGION: &str = "us-east-1";

/// The test S3 server's endpoint; `None` (the test is skipped, saying so) when
/// `WEIR_TEST_S3_ENDPOINT` is not set, a failure when `WEIR_REQUIRE_SERVICES` is.
pub fn endpoint() -> Option<String> {
    match std::env::var(ENDPOINT_VAR) {
        Ok(endpoint) if !endpoint.is_empty() => Some(endpoint),
        _ => {
            assert!(
                std::env::var_os("WEIR_REQUIRE_SERVICES").is_none(),
                "{ENDPOINT_VAR} is not set but WEIR_REQUIRE_SERVICES is: the test command must start the S3 server"
            );
            println!("skipped: {ENDPOINT_VAR} not set");
            None
        }
    }
}

/// A bucket name no other test, or earlier run, uses: `<prefix>-<pid>-<nanos>-<n>`.
pub fn fresh_bucket_name(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{prefix}-{}-{nanos}-{n}", std::process::id())
}

/// Creates a bucket no other test uses ([`fresh_bucket_name`]); returns its name.
pub fn fresh_bucket(endpoint: &str, prefix: &str) -> String {
    let bucket = fresh_bucket_name(prefix);
    create_bucket(endpoint, &bucket);
    bucket
}

/// Creates `bucket` with a bare `PUT /<bucket>` (the test server needs no signature).
///
/// # Panics
/// When `endpoint` is not `http://host:port`, or the server does not answer 200.
pub fn create_bucket(endpoint: &str, bucket: &str) {
    let address = endpoint
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("{ENDPOINT_VAR} `{endpoint}` is not http://host:port"))
        .trim_end_matches('/');
    let mut stream = TcpStream::connect(address)
        .unwrap_or_else(|e| panic!("cannot connect to test S3 server {endpoint}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        stream,
        "PUT /{bucket} HTTP/1.1\r\nHost: {address}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
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

/// The standard AWS environment for a child process (the binary has no S3 flags):
/// the test server and the fixed test credentials, never the machine's.
pub fn env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID.into()),
        ("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY.into()),
        ("AWS_REGION", REGION.into()),
    ]
}
