//! The test S3 server (moto, started by `tests/services.sh start`): its endpoint,
//! fresh buckets, settings with fixed test credentials.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use weir::checkpoint::S3Options;

/// The test S3 server's endpoint; `None` (the test is skipped, saying so) when
/// `WEIR_TEST_S3_ENDPOINT` is not set, a failure when `WEIR_REQUIRE_SERVICES` is.
pub fn endpoint() -> Option<String> {
    match std::env::var("WEIR_TEST_S3_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => Some(endpoint),
        _ => {
            assert!(
                std::env::var_os("WEIR_REQUIRE_SERVICES").is_none(),
                "WEIR_TEST_S3_ENDPOINT is not set but WEIR_REQUIRE_SERVICES is: the test command must start the S3 server"
            );
            println!("skipped: WEIR_TEST_S3_ENDPOINT not set");
            None
        }
    }
}

/// Creates a bucket no other test uses (`<prefix>-<pid>-<nanos>-<n>`); returns its name.
pub fn fresh_bucket(endpoint: &str, prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let bucket = format!("{prefix}-{}-{nanos}-{n}", std::process::id());
    create_bucket(endpoint, &bucket);
    bucket
}

/// Creates a bucket with a bare `PUT /<bucket>` (the test server needs no signature).
pub fn create_bucket(endpoint: &str, bucket: &str) {
    let address = endpoint
        .strip_prefix("http://")
        .unwrap_or_else(|| panic!("WEIR_TEST_S3_ENDPOINT `{endpoint}` is not http://host:port"))
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

/// Settings that reach the test server with fixed test credentials, never the machine's.
pub fn options(endpoint: &str) -> S3Options {
    S3Options {
        endpoint: Some(endpoint.to_owned()),
        allow_http: true,
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        region: Some("us-east-1".into()),
        ..S3Options::default()
    }
}

/// The standard AWS environment for a child process (the binary has no S3 flags):
/// the test server, fixed test credentials.
pub fn env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", endpoint.to_owned()),
        ("AWS_ALLOW_HTTP", "true".into()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}
