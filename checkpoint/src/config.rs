//! Where checkpoint storage lives and how to reach it: URLs and S3 settings.
//!
//! Supported URLs: a plain filesystem path (relative or absolute), `file:///abs/path`,
//! and `s3://bucket/prefix` (S3 or any S3-compatible store, see [`S3Options`]).

use crate::CheckpointError;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::RetryConfig;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// The default checkpoint root: `./weir-data/checkpoints`, relative to the working
/// directory, created on first use.
pub const DEFAULT_ROOT: &str = "./weir-data/checkpoints";

/// Where checkpoints (or savepoints) are stored, and how to reach that place.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StorageConfig {
    /// The root: a plain path (relative or absolute), `file:///absolute/path`, or
    /// `s3://bucket/prefix`.
    pub url: String,
    /// Settings for `s3://` URLs; ignored for the filesystem.
    pub s3: S3Options,
    /// For the filesystem: fsync files and directories before a write returns, so a
    /// completed checkpoint survives a machine crash (object stores already promise
    /// this). On by default.
    pub fsync: bool,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self::new(DEFAULT_ROOT)
    }
}

impl StorageConfig {
    /// A configuration for `url` with default S3 options and fsync on.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            s3: S3Options::default(),
            fsync: true,
        }
    }

    /// Replaces the S3 options.
    pub fn with_s3(mut self, s3: S3Options) -> Self {
        self.s3 = s3;
        self
    }

    /// The filesystem path `url` names, or `None` for an object-store URL
    /// (`s3://...`); for tools that treat a single local file differently from a
    /// directory.
    ///
    /// # Errors
    /// [`CheckpointError::Misconfigured`] for a URL [`CheckpointStorage::open`]
    /// would reject.
    ///
    /// [`CheckpointStorage::open`]: crate::CheckpointStorage::open
    pub fn local_path(&self) -> Result<Option<PathBuf>, CheckpointError> {
        Ok(match parse_target(&self.url)? {
            Target::Local(path) => Some(path),
            Target::S3 { .. } => None,
        })
    }

    /// The same settings for another URL (e.g. a savepoint directory on the same store).
    pub fn with_url(&self, url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            ..self.clone()
        }
    }
}

/// Explicit settings for S3 and S3-compatible stores.
///
/// The standard AWS environment (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
/// `AWS_REGION`, `AWS_ENDPOINT`, ...) is read first when a storage is opened; every
/// field set here overrides it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct S3Options {
    /// Endpoint of an S3-compatible store, e.g. `http://127.0.0.1:9000`. When set,
    /// requests use path-style addressing (`<endpoint>/<bucket>/<key>`).
    pub endpoint: Option<String>,
    /// The region (default `us-east-1`).
    pub region: Option<String>,
    /// Access key id.
    pub access_key_id: Option<String>,
    /// Secret access key.
    pub secret_access_key: Option<String>,
    /// Allow plain `http://` endpoints (test servers on loopback).
    pub allow_http: bool,
    /// Retries of a failed request (object_store's default: 10).
    pub max_retries: Option<usize>,
    /// Give up retrying a request after this long (object_store's default: 3 minutes).
    pub retry_timeout: Option<Duration>,
}

impl fmt::Debug for S3Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("allow_http", &self.allow_http)
            .field("max_retries", &self.max_retries)
            .field("retry_timeout", &self.retry_timeout)
            .finish()
    }
}

/// A storage location, parsed from a URL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A directory of the local filesystem.
    Local(PathBuf),
    /// A bucket and a prefix inside it.
    S3 {
        /// The bucket.
        bucket: String,
        /// The prefix (possibly the root).
        prefix: Path,
    },
}

const SUPPORTED: &str =
    "supported are a plain filesystem path, file:///absolute/path and s3://bucket/prefix";

/// Parses a storage URL (see [`StorageConfig::url`]).
pub(crate) fn parse_target(url: &str) -> Result<Target, CheckpointError> {
    let misconfigured = |reason: String| CheckpointError::Misconfigured {
        url: url.to_owned(),
        reason,
    };
    if url.trim().is_empty() {
        return Err(misconfigured(format!("the URL is empty; {SUPPORTED}")));
    }
    let Some((scheme, _)) = url.split_once("://") else {
        return Ok(Target::Local(PathBuf::from(url)));
    };
    let parsed = url::Url::parse(url).map_err(|e| misconfigured(format!("not a URL: {e}")))?;
    match scheme.to_ascii_lowercase().as_str() {
        "file" => {
            if parsed
                .host_str()
                .is_some_and(|h| !h.is_empty() && h != "localhost")
            {
                return Err(misconfigured(
                    "a file:// URL must not name a host; use file:///absolute/path".into(),
                ));
            }
            let path = parsed
                .to_file_path()
                .map_err(|()| misconfigured("not an absolute file path".into()))?;
            Ok(Target::Local(path))
        }
        "s3" | "s3a" => {
            let bucket = parsed
                .host_str()
                .filter(|b| !b.is_empty())
                .ok_or_else(|| misconfigured("no bucket name: use s3://bucket/prefix".into()))?
                .to_owned();
            let prefix = Path::from_url_path(parsed.path())
                .map_err(|e| misconfigured(format!("invalid prefix: {e}")))?;
            Ok(Target::S3 { bucket, prefix })
        }
        other => Err(misconfigured(format!(
            "unsupported scheme `{other}`; {SUPPORTED}"
        ))),
    }
}

/// Makes ring the process's TLS crypto provider, unless the application installed
/// one first. weir builds rustls with ring alone (see the workspace's Cargo.toml) and
/// without a provider of reqwest's own, so every HTTP client (reqwest) — S3 here, the
/// job server's client — needs one installed before it is built; this is idempotent.
pub fn install_tls_provider() {
    // An `Err` means a provider is installed already: that one is kept.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Builds the S3 client for `bucket`: the AWS environment, overridden by `options`.
pub(crate) fn build_s3(
    url: &str,
    bucket: &str,
    options: &S3Options,
) -> Result<object_store::aws::AmazonS3, CheckpointError> {
    install_tls_provider();
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(endpoint) = &options.endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_virtual_hosted_style_request(false);
    }
    if let Some(region) = &options.region {
        builder = builder.with_region(region);
    }
    if let Some(key) = &options.access_key_id {
        builder = builder.with_access_key_id(key);
    }
    if let Some(secret) = &options.secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    if options.allow_http {
        builder = builder.with_allow_http(true);
    }
    if options.max_retries.is_some() || options.retry_timeout.is_some() {
        let mut retry = RetryConfig::default();
        if let Some(max_retries) = options.max_retries {
            retry.max_retries = max_retries;
        }
        if let Some(timeout) = options.retry_timeout {
            retry.retry_timeout = timeout;
        }
        builder = builder.with_retry(retry);
    }
    builder.build().map_err(|e| CheckpointError::Misconfigured {
        url: url.to_owned(),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_to_targets() {
        assert_eq!(
            parse_target("./weir-data/checkpoints").unwrap(),
            Target::Local(PathBuf::from("./weir-data/checkpoints"))
        );
        assert_eq!(
            parse_target("file:///tmp/chk").unwrap(),
            Target::Local(PathBuf::from("/tmp/chk"))
        );
        assert_eq!(
            parse_target("s3://bucket/a/b").unwrap(),
            Target::S3 {
                bucket: "bucket".into(),
                prefix: Path::from("a/b")
            }
        );
        assert_eq!(
            parse_target("s3://bucket").unwrap(),
            Target::S3 {
                bucket: "bucket".into(),
                prefix: Path::ROOT
            }
        );
    }

    #[test]
    fn bad_urls_are_misconfigured_with_a_useful_message() {
        for (url, needle) in [
            ("gs://bucket/x", "unsupported scheme `gs`"),
            ("", "empty"),
            ("s3:///x", "no bucket"),
            ("file://host/x", "must not name a host"),
        ] {
            let err = parse_target(url).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, CheckpointError::Misconfigured { .. }),
                "{url}: {message}"
            );
            assert!(message.contains(needle), "{url}: {message}");
        }
        let message = parse_target("hdfs://nn/x").unwrap_err().to_string();
        assert!(
            message.contains("hdfs://nn/x") && message.contains("s3://bucket/prefix"),
            "{message}"
        );
    }

    #[test]
    fn secrets_are_not_printed() {
        let options = S3Options {
            secret_access_key: Some("hunter2".into()),
            ..S3Options::default()
        };
        assert!(!format!("{options:?}").contains("hunter2"));
    }
}
