//! A TLS server's configuration that follows its files: [`ServerTls`].
//!
//! The certificate goes through a resolver ([`Resolver`]) that every handshake asks for
//! the current `CertifiedKey`; a reload swaps it under a short write lock. A change of the
//! client CA bundle needs a new client verifier, hence a new `ServerConfig`: callers take
//! [`ServerTls::config`] (or [`ServerTls::acceptor`]) per accepted connection, so the next
//! handshake uses it. Neither touches an open connection.
//!
//! The reload task holds only a weak reference: it ends when the last [`ServerTls`] is
//! dropped.

use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, Weak};

use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::CertificateDer;
use tokio_rustls::TlsAcceptor;

use crate::{TlsError, TlsFiles, pem, provider};

/// A rustls server configuration built from [`TlsFiles`], reloaded when they change.
/// Cheap to clone.
#[derive(Clone)]
pub struct ServerTls {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").field("files", &self.inner.files).finish_non_exhaustive()
    }
}

struct Inner {
    files: TlsFiles,
    alpn: Vec<Vec<u8>>,
    resolver: Arc<Resolver>,
    config: RwLock<Arc<ServerConfig>>,
    state: Mutex<State>,
}

/// What the last check found.
struct State {
    /// The contents in use.
    loaded: Contents,
    /// Contents that failed to load, not tried again until they change.
    rejected: Option<Contents>,
    /// The last failure logged, so a failure is logged once.
    failure: Option<String>,
}

/// The bytes of the files, compared to tell whether anything changed.
#[derive(PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

/// Hands every handshake the current certificate.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

// === impl ServerTls ===

impl ServerTls {
    /// Reads the files and builds the configuration, offering `alpn` (e.g. `h2` for gRPC,
    /// `http/1.1` for WebSocket). Inside a tokio runtime, and unless the interval is zero,
    /// also starts checking the files every `files.reload_interval`.
    pub fn load(files: &TlsFiles, alpn: &[&[u8]]) -> Result<ServerTls, TlsError> {
        let contents = read_contents(files)?;
        let key = certified_key(files, &contents)?;
        let roots = client_roots(files, &contents)?;
        let resolver = Arc::new(Resolver { current: RwLock::new(Arc::new(key)) });
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.to_vec()).collect();
        let config = build_config(files, roots, resolver.clone(), &alpn)?;
        let inner = Arc::new(Inner {
            files: files.clone(),
            alpn,
            resolver,
            config: RwLock::new(config),
            state: Mutex::new(State { loaded: contents, rejected: None, failure: None }),
        });
        if !files.reload_interval.is_zero()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(run_reloader(Arc::downgrade(&inner)));
        }
        Ok(ServerTls { inner })
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.inner.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// An acceptor for the next connection (the current configuration).
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config())
    }

    /// The files this configuration follows.
    pub fn files(&self) -> &TlsFiles {
        &self.inner.files
    }

    /// The certificate handshakes get now (the first of the chain).
    pub fn certificate(&self) -> CertificateDer<'static> {
        let current = self.inner.resolver.current.read().unwrap_or_else(|p| p.into_inner()).clone();
        current.cert[0].clone()
    }

    /// Reads the files now: `Ok(true)` when new contents were loaded, `Ok(false)` when
    /// nothing changed (or the same broken contents are still there), an error when the
    /// new contents cannot be used (the current ones stay).
    pub fn reload(&self) -> Result<bool, TlsError> {
        self.inner.reload()
    }
}

impl Inner {
    fn reload(&self) -> Result<bool, TlsError> {
        let files = &self.files;
        let contents = read_contents(files)?;
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if contents == state.loaded {
            state.rejected = None;
            return Ok(false);
        }
        if state.rejected.as_ref() == Some(&contents) {
            return Ok(false);
        }
        let built = certified_key(files, &contents).and_then(|key| {
            let roots = client_roots(files, &contents)?;
            let config = if contents.client_ca != state.loaded.client_ca {
                Some(build_config(files, roots, self.resolver.clone(), &self.alpn)?)
            } else {
                None
            };
            Ok((key, config))
        });
        let (key, config) = match built {
            Ok(b) => b,
            Err(e) => {
                state.rejected = Some(contents);
                return Err(e);
            }
        };
        *self.resolver.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        if let Some(config) = config {
            *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        }
        state.loaded = contents;
        state.rejected = None;
        state.failure = None;
        Ok(true)
    }

    /// One periodic check, logged: a new certificate at info, a failure at warn once.
    fn check(&self) {
        let cert = self.files.cert.display();
        match self.reload() {
            Ok(true) => tracing::info!(%cert, "reloaded the TLS certificate; new connections use it"),
            Ok(false) => {}
            Err(e) => {
                let text = e.to_string();
                let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if state.failure.as_deref() != Some(text.as_str()) {
                    tracing::warn!(%cert, error = %text, "cannot reload the TLS certificate; keeping the current one");
                    state.failure = Some(text);
                }
            }
        }
    }
}

async fn run_reloader(inner: Weak<Inner>) {
    let Some(interval) = inner.upgrade().map(|i| i.files.reload_interval) else { return };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        // A few KiB from local files (tmpfs for a Kubernetes secret): cheap enough to read
        // on the runtime's thread.
        inner.check();
    }
}

fn read_contents(files: &TlsFiles) -> Result<Contents, TlsError> {
    Ok(Contents {
        cert: pem::read("certificate file", &files.cert)?,
        key: pem::read("key file", &files.key)?,
        client_ca: files.client_ca.as_deref().map(|p| pem::read("client CA file", p)).transpose()?,
    })
}

fn certified_key(files: &TlsFiles, contents: &Contents) -> Result<CertifiedKey, TlsError> {
    let chain = pem::certs("certificate file", &files.cert, &contents.cert)?;
    let key = pem::key(&files.key, &contents.key)?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| {
        TlsError::Config(format!(
            "key file {} does not fit certificate file {}: {e}",
            files.key.display(),
            files.cert.display()
        ))
    })
}

fn client_roots(files: &TlsFiles, contents: &Contents) -> Result<Option<RootCertStore>, TlsError> {
    match (&files.client_ca, &contents.client_ca) {
        (Some(path), Some(pem)) => pem::roots("client CA file", path, pem).map(Some),
        _ => Ok(None),
    }
}

fn build_config(
    files: &TlsFiles,
    roots: Option<RootCertStore>,
    resolver: Arc<Resolver>,
    alpn: &[Vec<u8>],
) -> Result<Arc<ServerConfig>, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(format!("tls protocol versions: {e}")))?;
    let builder = match roots {
        None => builder.with_no_client_auth(),
        Some(roots) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider());
            let verifier = if files.client_cert_required { verifier } else { verifier.allow_unauthenticated() };
            let verifier = verifier.build().map_err(|e| {
                let path = files.client_ca.as_deref().unwrap_or(Path::new(""));
                TlsError::Config(format!("client CA file {}: {e}", path.display()))
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = alpn.to_vec();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests;
