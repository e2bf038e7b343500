//! Optional TLS (rustls) for a cluster's connections: the data plane between
//! workers, and the control plane (HTTPS) between workers and the coordinator.
//!
//! TLS encrypts; the shared secret still authenticates (the HMAC challenge runs
//! inside the TLS session). Every process is given PEM files: its certificate chain
//! and private key (a process that accepts connections), and the certificate
//! authority that signed the others' (a process that dials). A dialled peer's
//! certificate must name the host it is dialled by (an IP address or a DNS name in
//! its subject alternative names), as HTTPS checks.

use crate::NetError;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::path::Path;
use std::sync::Arc;

/// What a process that dials trusts: the cluster's certificate authority.
#[derive(Clone, Debug)]
pub struct ClientTls {
    config: Arc<rustls::ClientConfig>,
}

/// What a process that accepts connections presents: its certificate and key.
#[derive(Clone, Debug)]
pub struct ServerTls {
    config: Arc<rustls::ServerConfig>,
}

/// A worker's data plane with TLS: it both accepts and dials.
#[derive(Clone, Debug)]
pub struct DataPlaneTls {
    /// Presented to the workers that dial this one.
    pub server: ServerTls,
    /// Checks the workers this one dials.
    pub client: ClientTls,
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn invalid(what: &Path, kind: &str, why: impl std::fmt::Display) -> NetError {
    NetError::Invalid(format!(
        "TLS: {} is not a usable {kind}: {why}",
        what.display()
    ))
}

impl ClientTls {
    /// Trusts the certificates of the PEM file `ca` (one or more certificate
    /// authorities).
    ///
    /// # Errors
    /// [`NetError::Invalid`] naming the file: unreadable, or no certificate in it.
    pub fn load(ca: &Path) -> Result<Self, NetError> {
        let kind = "PEM file of certificate authorities";
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(ca)
            .map_err(|e| invalid(ca, kind, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(ca, kind, e))?;
        if certs.is_empty() {
            return Err(invalid(ca, kind, "it holds no CERTIFICATE block"));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| invalid(ca, kind, e))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(ca, kind, e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The rustls configuration, e.g. for an HTTPS client.
    pub fn config(&self) -> Arc<rustls::ClientConfig> {
        self.config.clone()
    }

    /// A connector dialling with this configuration.
    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.config.clone())
    }
}

impl ServerTls {
    /// Presents the certificate chain of the PEM file `cert` with the private key of
    /// the PEM file `key`.
    ///
    /// # Errors
    /// [`NetError::Invalid`] naming the file: unreadable, no certificate or key in
    /// it, or a key that does not match the certificate.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, NetError> {
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(|e| invalid(cert, "PEM certificate chain", e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(cert, "PEM certificate chain", e))?;
        if chain.is_empty() {
            return Err(invalid(
                cert,
                "PEM certificate chain",
                "it holds no CERTIFICATE block",
            ));
        }
        let private =
            PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, "PEM private key", e))?;
        let config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid(cert, "PEM certificate chain", e))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| {
                NetError::Invalid(format!(
                    "TLS: the certificate {} and the key {} do not go together: {e}",
                    cert.display(),
                    key.display()
                ))
            })?;
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The rustls configuration, e.g. for an HTTPS server.
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// An acceptor presenting this certificate.
    pub fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        tokio_rustls::TlsAcceptor::from(self.config.clone())
    }
}

/// The name a dialled peer's certificate must carry: the host of `addr`
/// (`host:port`, `[v6]:port`), an IP address or a DNS name.
pub(crate) fn server_name(addr: &str) -> Result<ServerName<'static>, NetError> {
    let host = match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() => host,
        _ => addr,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| {
        NetError::Invalid(format!(
            "TLS: `{host}` (of {addr}) is neither an IP address nor a DNS name: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_checked_is_the_host_of_the_address() {
        assert_eq!(
            server_name("10.0.0.7:6124").unwrap(),
            ServerName::try_from("10.0.0.7").unwrap()
        );
        assert_eq!(
            server_name("[::1]:6124").unwrap(),
            ServerName::try_from("::1").unwrap()
        );
        assert_eq!(
            server_name("weir-worker-0.weir-worker:6124").unwrap(),
            ServerName::try_from("weir-worker-0.weir-worker").unwrap()
        );
        assert!(server_name("not a host:1").is_err());
    }
}
