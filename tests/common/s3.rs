//! The test S3 server (see `weir_testkit::s3`) and the settings that reach it with
//! the fixed test credentials.

use weir::checkpoint::S3Options;
// Each test file uses some of these.
#[allow(unused_imports)]
pub use weir_testkit::s3::{create_bucket, endpoint, env, fresh_bucket};

/// Settings that reach the test server with fixed test credentials, never the machine's.
pub fn options(endpoint: &str) -> S3Options {
    S3Options {
        endpoint: Some(endpoint.to_owned()),
        allow_http: true,
        access_key_id: Some(weir_testkit::s3::ACCESS_KEY_ID.into()),
        secret_access_key: Some(weir_testkit::s3::SECRET_ACCESS_KEY.into()),
        region: Some(weir_testkit::s3::REGION.into()),
        ..S3Options::default()
    }
}
