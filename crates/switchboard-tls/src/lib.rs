//! TLS for Switchboard's listeners and clients: rustls with the `ring` provider, keys and
//! certificates from PEM files.
//!
//! Servers: [`ServerTls::load`] reads a certificate chain and its private key (and, for
//! mutual TLS, a bundle of client CAs) and builds a rustls `ServerConfig` whose certificate
//! resolver hands out the current certificate. Every [`TlsFiles::reload_interval`] the files
//! are read again; when their contents changed, every handshake from then on gets the new
//! certificate, while open connections keep the keys they negotiated. A reload that fails
//! (a missing file, a key that does not match the certificate) keeps the current
//! certificate and is logged once, until the files change again.
//!
//! Contents are compared, not modification times: a Kubernetes secret volume replaces its
//! files by swapping a `..data` symlink, and cert-manager may rewrite a file within the
//! same second. The files are a few KiB; reading them every 10 s costs nothing.
//!
//! Clients: [`client_config`] trusts a CA bundle from a PEM file, or the system's roots.
//!
//! Architecture invariant: this crate knows files, certificates and rustls; it knows
//! nothing of WebSocket, gRPC or NATS, and opens no connection of its own.

mod client;
mod pem;
mod server;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use client::{client_config, client_config_with_identity, system_roots};
pub use pem::{load_certs, load_key, load_roots};
pub use rustls;
pub use rustls_pki_types as pki_types;
pub use server::ServerTls;
pub use tokio_rustls;

/// How often [`ServerTls`] checks its files for changes, by default.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// Where a TLS server's certificate, key and (for mutual TLS) client CAs are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, PEM: the server's certificate first, then intermediates.
    pub cert: PathBuf,
    /// The private key of the first certificate, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// CA certificates, PEM, that client certificates must chain to (mutual TLS). Unset:
    /// clients are not asked for a certificate. Default unset.
    pub client_ca: Option<PathBuf>,
    /// With `client_ca`: whether a client must present a certificate (true), or may connect
    /// without one and authenticate otherwise (false). Default true.
    pub client_cert_required: bool,
    /// How often the files are read again to pick up a new certificate; zero: never.
    /// Default 10 s.
    pub reload_interval: Duration,
}

impl TlsFiles {
    /// A certificate and key, no client authentication, the default reload interval.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        TlsFiles {
            cert: cert.into(),
            key: key.into(),
            client_ca: None,
            client_cert_required: true,
            reload_interval: DEFAULT_RELOAD_INTERVAL,
        }
    }

    /// Asks clients for a certificate that chains to the CAs in `path`.
    pub fn with_client_ca(mut self, path: impl Into<PathBuf>, required: bool) -> Self {
        self.client_ca = Some(path.into());
        self.client_cert_required = required;
        self
    }
}

/// Why TLS could not be set up. Each names the file it is about, if any.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {why}", path.display())]
    Read { what: &'static str, path: PathBuf, why: String },
    /// A file was read but holds nothing usable.
    #[error("{what} {}: {why}", path.display())]
    Invalid { what: &'static str, path: PathBuf, why: String },
    /// The pieces do not fit together (a key that does not match its certificate, a CA
    /// bundle rustls refuses).
    #[error("{0}")]
    Config(String),
}

/// The crypto provider every config of this crate uses: rustls's `ring` provider (the one
/// async-nats brings in too; aws-lc-rs is not built).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider())).clone()
}
