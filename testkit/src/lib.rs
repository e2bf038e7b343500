//! weir-testkit: what weir's test crates share about the servers the test command
//! starts (`tests/services.sh start`). It depends on nothing, so any crate can take it
//! as a dev-dependency without a second copy of weir's own types.
//!
//! ```text
//!  tests/services.sh start ──exports──▶ WEIR_TEST_S3_ENDPOINT, WEIR_TEST_KAFKA_BOOTSTRAP, …
//!                                            │
//!            s3::endpoint / s3::fresh_bucket ◀┴▶ kafka::broker / kafka::python
//! ```
//!
//! A helper returns `None` (and the test skips itself, saying why) when its server is
//! not running, and fails the test instead when `WEIR_REQUIRE_SERVICES` is set, as the
//! test command sets it.
//!
//! ```
//! if let Some(endpoint) = weir_testkit::s3::endpoint() {
//!     let bucket = weir_testkit::s3::fresh_bucket(&endpoint, "doc");
//!     assert!(bucket.starts_with("doc-"));
//! }
//! ```
#![deny(missing_docs)]

pub mod kafka;
pub mod s3;
