//! A JWKS document fetched over HTTP(S) (verified with the system's roots, or the CA
//! certificates of `auth.jwks_ca`), cached, refreshed every `max_age` and, for a
//! token whose `kid` is unknown, at most once per `min_refresh`. A failed fetch keeps the
//! keys of the last good one.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::Request;
use hyper_util::rt::TokioIo;
use jsonwebtoken::jwk::JwkSet;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest JWKS document accepted.
const MAX_BODY: usize = 1 << 20;

use super::VerifyKey;

pub(super) type FetchedKeys = Arc<Vec<VerifyKey>>;

pub(super) struct Jwks {
    url: String,
    /// How `https://` URLs are verified: the system's roots, or `auth.jwks_ca`.
    tls: tokio_rustls::TlsConnector,
    min_refresh: Duration,
    keys: RwLock<FetchedKeys>,
    /// When the last fetch was attempted.
    attempted: Mutex<Option<Instant>>,
    /// Held while fetching, so concurrent refreshes make one request.
    fetching: tokio::sync::Mutex<()>,
}

impl Jwks {
    /// Starts fetching `url` now and every `max_age`, trusting `roots` for `https://`.
    pub(super) fn start(
        url: String,
        roots: rustls::RootCertStore,
        min_refresh: Duration,
        max_age: Duration,
    ) -> Arc<Jwks> {
        let jwks = Arc::new(Jwks {
            url,
            tls: tls_connector(roots),
            min_refresh,
            keys: RwLock::new(Arc::new(Vec::new())),
            attempted: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
        });
        let weak = Arc::downgrade(&jwks);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(max_age);
            loop {
                tick.tick().await;
                let Some(jwks) = weak.upgrade() else { return };
                let _guard = jwks.fetching.lock().await;
                jwks.fetch().await;
            }
        });
        jwks
    }

    pub(super) fn keys(&self) -> FetchedKeys {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Refetches for a token whose key is unknown, unless the last attempt was less than
    /// `min_refresh` ago. True when keys may have changed since the caller looked.
    pub(super) async fn refresh_for_unknown_kid(&self) -> bool {
        let seen = *self.attempted.lock().unwrap_or_else(|p| p.into_inner());
        let _guard = self.fetching.lock().await;
        let now = *self.attempted.lock().unwrap_or_else(|p| p.into_inner());
        if now != seen {
            // Someone fetched while this one waited.
            return true;
        }
        if now.is_some_and(|t| t.elapsed() < self.min_refresh) {
            return false;
        }
        self.fetch().await
    }

    /// One fetch; keeps the old keys when it fails. Call with `fetching` held.
    async fn fetch(&self) -> bool {
        *self.attempted.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
        match tokio::time::timeout(FETCH_TIMEOUT, get(&self.url, &self.tls))
            .await
            .unwrap_or_else(|_| Err("timed out".into()))
        {
            Ok(body) => match parse(&body) {
                Ok(keys) => {
                    tracing::debug!(url = %self.url, keys = keys.len(), "jwks fetched");
                    *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
                    true
                }
                Err(e) => {
                    tracing::warn!(url = %self.url, error = %e, "jwks not usable; keeping the previous keys");
                    false
                }
            },
            Err(e) => {
                tracing::warn!(url = %self.url, error = %e, "jwks fetch failed; keeping the previous keys");
                false
            }
        }
    }
}

/// The keys of a JWKS document; keys it cannot use are skipped. A key with `alg`
/// verifies only tokens of that algorithm.
fn parse(body: &[u8]) -> Result<Vec<VerifyKey>, String> {
    let set: JwkSet = serde_json::from_slice(body).map_err(|e| format!("not a jwks document: {e}"))?;
    Ok(set
        .keys
        .iter()
        .filter_map(|jwk| match super::keys::jwk_key(jwk) {
            Ok((key, alg)) => Some(VerifyKey { kid: jwk.common.key_id.clone(), key, alg }),
            Err(e) => {
                tracing::debug!(kid = ?jwk.common.key_id, error = %e, "jwks key skipped");
                None
            }
        })
        .collect())
}

/// `GET url`, over TLS for `https://`, returning the body of a 200.
async fn get(url: &str, tls: &tokio_rustls::TlsConnector) -> Result<Bytes, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let host = uri.host().ok_or("no host")?.to_owned();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("only http:// and https:// urls".into()),
    };
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port)).await.map_err(|e| e.to_string())?;
    let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
    if https {
        let tls = tls.connect(rustls_host(&host)?, tcp).await.map_err(|e| e.to_string())?;
        request(tls, &host, &path).await
    } else {
        request(tcp, &host, &path).await
    }
}

async fn request<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    io: S,
    host: &str,
    path: &str,
) -> Result<Bytes, String> {
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(io)).await.map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let req = Request::get(path)
        .header(hyper::header::HOST, host)
        .header(hyper::header::ACCEPT, "application/json")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if !resp.status().is_success() {
        return Err(format!("http status {}", resp.status()));
    }
    let body = Limited::new(resp.into_body(), MAX_BODY).collect().await.map_err(|e| e.to_string())?;
    Ok(body.to_bytes())
}

/// The system's CA roots.
pub(super) fn system_roots() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    roots
}

fn tls_connector(roots: rustls::RootCertStore) -> tokio_rustls::TlsConnector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

fn rustls_host(host: &str) -> Result<rustls::pki_types::ServerName<'static>, String> {
    rustls::pki_types::ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())
}
