//! A client of the job server's REST API, for `weir submit`, `weir list`, `weir
//! status`, `weir savepoint`, `weir stop` and `weir cancel`.
//!
//! ```no_run
//! # async fn example() -> Result<(), weir_server::client::ClientError> {
//! use weir_server::client::ServerClient;
//! let client = ServerClient::new("http://127.0.0.1:8081", None)?;
//! let jobs = client.get("/jobs").await?;
//! println!("{jobs}");
//! # Ok(()) }
//! ```

use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Why a request to the server failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server URL is not an http:// or https:// URL.
    #[error("server URL `{url}`: expected http://host:port or https://host:port")]
    BadUrl {
        /// As given.
        url: String,
    },
    /// The HTTP client cannot start: the authority of `WEIR_TLS_CA` cannot be used,
    /// or the TLS stack refused its settings.
    #[error("{0}")]
    Tls(String),
    /// No answer.
    #[error("no weir server answers at {url} ({source}): is `weir serve` running there?")]
    Unreachable {
        /// The request URL.
        url: String,
        /// What failed.
        source: reqwest::Error,
    },
    /// The server answered with an error.
    #[error("{method} {path}: the server answered {status}: {message}{}", problems_text(.problems))]
    Refused {
        /// The request method.
        method: String,
        /// The request path.
        path: String,
        /// The HTTP status.
        status: StatusCode,
        /// The server's message.
        message: String,
        /// Every problem of a bad submission.
        problems: Vec<String>,
    },
    /// The answer is not JSON.
    #[error("{path}: the server's answer is not JSON: {message}")]
    BadAnswer {
        /// The request path.
        path: String,
        /// Why.
        message: String,
    },
}

fn problems_text(problems: &[String]) -> String {
    problems.iter().map(|p| format!("\n  {p}")).collect()
}

/// A client of one server.
#[derive(Clone, Debug)]
pub struct ServerClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

impl ServerClient {
    /// A client of the server at `base` (e.g. `http://127.0.0.1:8081`), sending
    /// `token` as a bearer token if given. Over HTTPS it trusts the system's
    /// certificate authorities, or the PEM file named by the environment variable
    /// `WEIR_TLS_CA` (a cluster's own authority) if set.
    ///
    /// # Errors
    /// [`ClientError::BadUrl`]; [`ClientError::Tls`] for an unusable `WEIR_TLS_CA`.
    pub fn new(base: &str, token: Option<String>) -> Result<Self, ClientError> {
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(ClientError::BadUrl { url: base.into() });
        }
        weir_checkpoint::install_tls_provider();
        let mut http = reqwest::Client::builder();
        if let Some(ca) = std::env::var_os("WEIR_TLS_CA") {
            let tls = weir_net::tls::ClientTls::load(std::path::Path::new(&ca))
                .map_err(|e| ClientError::Tls(format!("WEIR_TLS_CA: {e}")))?;
            http = http.tls_backend_preconfigured(rustls::ClientConfig::clone(&tls.config()));
        }
        let http = http
            .build()
            .map_err(|e| ClientError::Tls(format!("cannot start the HTTP client: {e}")))?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            token,
            http,
        })
    }

    /// Sends a request; returns the JSON answer of a success.
    ///
    /// # Errors
    /// [`ClientError::Unreachable`], [`ClientError::Refused`] (with the server's
    /// message and problems), [`ClientError::BadAnswer`].
    ///
    /// # Cancel safety
    /// Cancel-safe, but a cancelled request may still have been carried out.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.http.request(method.clone(), &url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|source| ClientError::Unreachable { url, source })?;
        let json: Value = serde_json::from_str(&text).map_err(|e| ClientError::BadAnswer {
            path: path.into(),
            message: format!("{e} (status {status}, body {text:?})"),
        })?;
        if status.is_success() {
            return Ok(json);
        }
        Err(ClientError::Refused {
            method: method.to_string(),
            path: path.into(),
            status,
            message: json["error"].as_str().unwrap_or(&text).to_string(),
            problems: json["problems"]
                .as_array()
                .map(|list| {
                    list.iter()
                        .filter_map(|p| p.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// `GET path`.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.request(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.request(Method::POST, path, Some(body)).await
    }

    /// `DELETE path`.
    ///
    /// # Errors
    /// As [`request`](Self::request).
    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.request(Method::DELETE, path, None).await
    }
}
