//! Who may call `SwitchboardApi`: backends with an API key (`authorization: Bearer <key>`),
//! or with a client certificate the gRPC listener's client CA verified (mutual TLS).
//!
//! - [`ApiKeys`] is the setting: keys given directly (flags, env, config file) and a file
//!   of keys, one per line, as a mounted Kubernetes secret holds them. Several keys are
//!   valid at once, so a key is rotated by adding the new one, moving the backends over,
//!   and removing the old one.
//! - [`KeyRing`] holds the SHA-256 digests of the keys in force and re-reads the file every
//!   [`ApiKeys::reload_interval`]. A file that cannot be read or holds no key keeps the keys
//!   loaded before, and is logged once.
//! - [`Authenticated`] wraps the API's tonic service (and only it: health and reflection
//!   stay open) and answers `UNAUTHENTICATED` before the call reaches the API, counted in
//!   `switchboard_control_api_requests_total{code="UNAUTHENTICATED"}`.
//!
//! A presented key is hashed and compared with every digest in constant time (`subtle`),
//! all of them, so neither the time nor the position of a match says anything about a key.
//! With neither keys nor a client CA configured, the API is open.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{Either, Ready, ready};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tonic::Status;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::server::NamedService;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

use crate::metrics;

/// The shortest API key accepted, in bytes: anything shorter is guessable.
pub const MIN_API_KEY_LEN: usize = 16;

/// The API keys a replica accepts (see the module documentation).
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeys {
    keys: Vec<String>,
    file: Option<PathBuf>,
    /// How often `file` is read again. Default 10 s.
    pub reload_interval: Duration,
}

impl std::fmt::Debug for ApiKeys {
    /// Never the keys themselves: a config is logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys").field("keys", &self.keys.len()).field("file", &self.file).finish()
    }
}

impl Default for ApiKeys {
    fn default() -> Self {
        ApiKeys { keys: Vec::new(), file: None, reload_interval: Duration::from_secs(10) }
    }
}

/// The status of a call without a valid key.
fn unauthenticated(why: &str) -> Status {
    Status::unauthenticated(why.to_owned())
}

// === impl ApiKeys ===

impl ApiKeys {
    /// These keys (surrounding whitespace trimmed, empty ones dropped).
    pub fn new<S: AsRef<str>>(keys: impl IntoIterator<Item = S>) -> Self {
        let keys = keys.into_iter().map(|k| k.as_ref().trim().to_owned()).filter(|k| !k.is_empty()).collect();
        ApiKeys { keys, ..ApiKeys::default() }
    }

    /// Also accepts the keys in `path`, one per line (`#` comments and blank lines are
    /// skipped), re-read when it changes.
    pub fn with_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.file = Some(path.into());
        self
    }

    /// Whether no key is configured at all (no keys and no file).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty() && self.file.is_none()
    }

    /// The keys file, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Checks every key, and that the file can be read and holds keys; the message names
    /// the setting (never a key).
    pub fn validate(&self) -> Result<(), String> {
        for key in &self.keys {
            check_key(key).map_err(|why| format!("api_keys: {why}"))?;
        }
        if let Some(path) = &self.file {
            read_keys_file(path)?;
        }
        if self.file.is_some() && self.reload_interval.is_zero() {
            return Err("api_keys reload_interval must be positive".into());
        }
        Ok(())
    }
}

fn check_key(key: &str) -> Result<(), String> {
    if key.len() < MIN_API_KEY_LEN {
        return Err(format!("a key is shorter than {MIN_API_KEY_LEN} characters"));
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("a key has a character that is not printable ASCII (it travels in a header)".into());
    }
    Ok(())
}

/// The keys in a keys file: one per line, `#` comments and blank lines skipped.
pub fn read_keys_file(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        let e = e.to_string();
        format!("cannot read api keys file {}: {}", path.display(), e.split(" (os error").next().unwrap_or_default())
    })?;
    let keys: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_owned).collect();
    if keys.is_empty() {
        return Err(format!("api keys file {} holds no key", path.display()));
    }
    for key in &keys {
        check_key(key).map_err(|why| format!("api keys file {}: {why}", path.display()))?;
    }
    Ok(keys)
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The digests of the keys in force (see the module documentation).
pub(crate) struct KeyRing {
    fixed: Vec<[u8; 32]>,
    file: Option<PathBuf>,
    from_file: RwLock<Vec<[u8; 32]>>,
    /// The file's contents when last read, and the last failure logged.
    last: Mutex<(Option<String>, Option<String>)>,
}

// === impl KeyRing ===

impl KeyRing {
    /// Loads the keys (the file must be readable: see [`ApiKeys::validate`]) and, with a
    /// file and inside a tokio runtime, starts re-reading it.
    pub(crate) fn load(config: &ApiKeys) -> Result<Arc<KeyRing>, String> {
        let ring = Arc::new(KeyRing {
            fixed: config.keys.iter().map(|k| digest(k)).collect(),
            file: config.file.clone(),
            from_file: RwLock::new(Vec::new()),
            last: Mutex::new((None, None)),
        });
        if let Some(path) = &config.file {
            let keys = read_keys_file(path)?;
            *ring.from_file.write().unwrap_or_else(|p| p.into_inner()) = keys.iter().map(|k| digest(k)).collect();
            ring.last.lock().unwrap_or_else(|p| p.into_inner()).0 = std::fs::read_to_string(path).ok();
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(run_reloader(Arc::downgrade(&ring), config.reload_interval));
            }
        }
        Ok(ring)
    }

    /// Whether no key is configured.
    pub(crate) fn is_empty(&self) -> bool {
        self.fixed.is_empty() && self.file.is_none()
    }

    /// Whether `key` is one of the keys in force; compares with every one in constant time.
    pub(crate) fn accepts(&self, key: &str) -> bool {
        let presented = digest(key);
        let from_file = self.from_file.read().unwrap_or_else(|p| p.into_inner());
        let mut found = subtle::Choice::from(0);
        for known in self.fixed.iter().chain(from_file.iter()) {
            found |= known.ct_eq(&presented);
        }
        found.into()
    }

    /// Re-reads the file; a change is applied and logged, a failure kept out and logged once.
    fn reload(&self) {
        let Some(path) = &self.file else { return };
        let text = std::fs::read_to_string(path).ok();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if text.is_some() && text == last.0 {
            return;
        }
        match read_keys_file(path) {
            Ok(keys) => {
                *self.from_file.write().unwrap_or_else(|p| p.into_inner()) = keys.iter().map(|k| digest(k)).collect();
                tracing::info!(file = %path.display(), keys = keys.len(), "reloaded the api keys");
                *last = (text, None);
            }
            Err(why) => {
                if last.1.as_deref() != Some(why.as_str()) {
                    tracing::warn!(error = %why, "cannot reload the api keys; keeping the current ones");
                    last.1 = Some(why);
                }
            }
        }
    }
}

async fn run_reloader(ring: Weak<KeyRing>, interval: Duration) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(ring) = ring.upgrade() else { return };
        ring.reload();
    }
}

/// The policy: which calls may reach the API.
pub(crate) struct ApiAuth {
    keys: Arc<KeyRing>,
    /// The listener verifies client certificates (mutual TLS): a call on a connection with
    /// one needs no key.
    client_certs: bool,
}

impl ApiAuth {
    pub(crate) fn new(keys: Arc<KeyRing>, client_certs: bool) -> Self {
        ApiAuth { keys, client_certs }
    }

    /// Whether the API is open to anyone who reaches the port.
    pub(crate) fn is_open(&self) -> bool {
        self.keys.is_empty() && !self.client_certs
    }

    fn check(&self, headers: &http::HeaderMap, extensions: &http::Extensions) -> Result<(), Status> {
        if self.is_open() {
            return Ok(());
        }
        if self.client_certs {
            let tls = extensions.get::<TlsConnectInfo<TcpConnectInfo>>();
            if tls.and_then(|t| t.peer_certs()).is_some_and(|certs| !certs.is_empty()) {
                return Ok(());
            }
        }
        let Some(value) = headers.get(http::header::AUTHORIZATION) else {
            return Err(unauthenticated("this API needs `authorization: Bearer <api key>` metadata"));
        };
        let key = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
        match key {
            Some(key) if self.keys.accepts(key.trim()) => Ok(()),
            Some(_) => Err(unauthenticated("the API key is not valid")),
            None => Err(unauthenticated("the authorization metadata must be `Bearer <api key>`")),
        }
    }
}

/// The API's service behind the [`ApiAuth`] check.
#[derive(Clone)]
pub(crate) struct Authenticated<S> {
    inner: S,
    auth: Arc<ApiAuth>,
}

impl<S> Authenticated<S> {
    pub(crate) fn new(inner: S, auth: Arc<ApiAuth>) -> Self {
        Authenticated { inner, auth }
    }
}

impl<S: NamedService> NamedService for Authenticated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Authenticated<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<Body>, Error = Infallible>,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Either<S::Future, Ready<Result<http::Response<Body>, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        match self.auth.check(req.headers(), req.extensions()) {
            Ok(()) => Either::Left(self.inner.call(req)),
            Err(status) => {
                metrics::api_request(
                    method_name(req.uri().path()),
                    tonic::Code::Unauthenticated,
                    std::time::Duration::ZERO,
                );
                Either::Right(ready(Ok(status.into_http())))
            }
        }
    }
}

/// `/switchboard.v1.SwitchboardApi/Publish` → `Publish`; anything else is `unknown`.
fn method_name(path: &str) -> &'static str {
    let last = path.rsplit('/').next().unwrap_or_default();
    metrics::METHODS.iter().find(|m| **m == last).copied().unwrap_or("unknown")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(keys: &[&str]) -> Arc<KeyRing> {
        KeyRing::load(&ApiKeys::new(keys.iter().copied())).unwrap()
    }

    fn headers(auth: Option<&str>) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        if let Some(a) = auth {
            h.insert(http::header::AUTHORIZATION, a.parse().unwrap());
        }
        h
    }

    #[test]
    fn calls_need_one_of_the_keys_in_force() {
        let (old, new) = ("old-key-0123456789abcdef", "new-key-0123456789abcdef");
        let auth = ApiAuth::new(ring(&[old, new]), false);
        let cases: [(Option<String>, Result<(), &str>); 6] = [
            (Some(format!("Bearer {old}")), Ok(())),
            (Some(format!("Bearer {new}")), Ok(())),
            (Some(format!("bearer {new}")), Ok(())),
            (Some("Bearer wrong-key-0123456789abcdef".into()), Err("not valid")),
            (Some(format!("Basic {old}")), Err("must be `Bearer")),
            (None, Err("needs `authorization: Bearer")),
        ];
        for (header, want) in cases {
            let got = auth.check(&headers(header.as_deref()), &http::Extensions::new());
            match (got, want) {
                (Ok(()), Ok(())) => {}
                (Err(status), Err(want)) => {
                    assert_eq!(status.code(), tonic::Code::Unauthenticated);
                    assert!(status.message().contains(want), "{header:?}: {}", status.message());
                }
                (got, want) => panic!("{header:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn without_keys_or_client_certificates_the_api_is_open() {
        let auth = ApiAuth::new(ring(&[]), false);
        assert!(auth.is_open());
        assert!(auth.check(&headers(None), &http::Extensions::new()).is_ok());
        assert!(!ApiAuth::new(ring(&[]), true).is_open(), "a client CA alone closes it");
    }

    #[test]
    fn bad_keys_are_refused_without_being_shown() {
        let secret = "tiny-k3y";
        let err = ApiKeys::new([secret]).validate().unwrap_err();
        assert!(err.contains("shorter than 16") && !err.contains(secret), "{err}");
        let err = ApiKeys::new(["a key with spaces in it!"]).validate().unwrap_err();
        assert!(err.contains("printable ASCII"), "{err}");
        let debug = format!("{:?}", ApiKeys::new(["secret-0123456789abcdef"]));
        assert!(!debug.contains("secret"), "{debug}");
    }

    #[test]
    fn a_keys_file_is_reread_and_a_broken_one_keeps_the_keys() {
        let dir = std::env::temp_dir().join(format!("sb-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys");
        std::fs::write(&path, "# backends\nfirst-key-0123456789abcdef\n\n").unwrap();
        let ring = KeyRing::load(&ApiKeys::default().with_file(&path)).unwrap();
        assert!(ring.accepts("first-key-0123456789abcdef"));
        std::fs::write(&path, "first-key-0123456789abcdef\nsecond-key-0123456789abcdef\n").unwrap();
        ring.reload();
        assert!(ring.accepts("second-key-0123456789abcdef"), "an added key works after a reload");
        std::fs::write(&path, "# emptied by mistake\n").unwrap();
        ring.reload();
        assert!(ring.accepts("second-key-0123456789abcdef"), "an empty file keeps the keys in force");
        std::fs::write(&path, "second-key-0123456789abcdef\n").unwrap();
        ring.reload();
        assert!(!ring.accepts("first-key-0123456789abcdef"), "a removed key stops working");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn methods_are_named_from_a_closed_list() {
        assert_eq!(method_name("/switchboard.v1.SwitchboardApi/Publish"), "Publish");
        assert_eq!(method_name("/switchboard.v1.SwitchboardApi/Nope"), "unknown");
    }
}
