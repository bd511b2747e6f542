//! Connect tokens: JWTs whose `sub` is the user, checked against keys from the
//! configuration (HMAC secrets, RSA/EC/Ed25519 public keys as PEM or JWK, several at once
//! selected by `kid`) and, optionally, a JWKS URL that is fetched, cached, refreshed on an
//! unknown `kid` (at most once per `jwks_min_refresh`) and kept when a refresh fails.
//!
//! The accepted algorithms come from the configuration, never from the token: a token's
//! `alg` must be one of `algorithms` (by default every algorithm of the configured keys'
//! families) and a key is tried only for algorithms of its own family, so `alg: none`, an
//! HS256 token "signed" with an RSA public key, or an algorithm no key was configured for
//! are refused before any signature check.
//!
//! Claims: `sub` (the user, required, at most `max_user_id_len` bytes), `exp` (required),
//! `nbf`, `iss` and `aud` (checked when configured), `channels` (the capabilities the token
//! grants: patterns per operation, see [`Grants`]) and `info` (any JSON, shown in presence).

mod grants;
mod jwks;
mod keys;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::value::RawValue;

pub use grants::{Grants, pattern_matches};
pub use keys::{Key, KeyMaterial};

/// How connect tokens are checked. No keys and no JWKS URL: tokens are not checked at all
/// and every session is anonymous (only allowed with `allow_anonymous`).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Whether a session may connect without a token (user `""`). Default false; on in
    /// `switchboard dev`.
    pub allow_anonymous: bool,
    /// Algorithms a token may be signed with. Empty (the default): every algorithm of the
    /// configured keys' families (HS256/384/512, RS256/384/512 and PS256/384/512, ES256/384,
    /// EdDSA).
    pub algorithms: Vec<Algorithm>,
    /// Static keys; a token with a `kid` is checked only against the keys with that `kid`.
    pub keys: Vec<Key>,
    /// A JWKS document (`{"keys":[…]}`) to fetch keys from, `http://` or `https://`. A
    /// key with `alg` verifies only tokens of that algorithm.
    pub jwks_url: Option<String>,
    /// CA certificates (PEM) an `https://` JWKS URL's server must chain to, instead of the
    /// system's roots (a private identity provider). Default unset: the system's roots.
    pub jwks_ca: Option<std::path::PathBuf>,
    /// A token with an unknown `kid` refetches the JWKS at most this often. Default 10 s.
    pub jwks_min_refresh: Duration,
    /// The JWKS is refetched this often in any case. Default 5 min.
    pub jwks_max_age: Duration,
    /// Required `iss`, when set.
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's audiences), when set.
    pub audience: Option<String>,
    /// Leeway for `exp` and `nbf`. Default 5 s.
    pub leeway: Duration,
    /// Also take the token from this query parameter of the upgrade URL (`/ws?token=…`).
    /// Default unset: tokens in URLs end up in access logs.
    pub query_param: Option<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            allow_anonymous: false,
            algorithms: Vec::new(),
            keys: Vec::new(),
            jwks_url: None,
            jwks_ca: None,
            jwks_min_refresh: Duration::from_secs(10),
            jwks_max_age: Duration::from_secs(300),
            issuer: None,
            audience: None,
            leeway: Duration::from_secs(5),
            query_param: None,
        }
    }
}

impl AuthConfig {
    /// Whether tokens are checked at all.
    pub fn checks_tokens(&self) -> bool {
        !self.keys.is_empty() || self.jwks_url.is_some()
    }

    /// HS256 tokens signed with one shared secret (the `--token-secret` shorthand).
    pub fn hmac(secret: &str) -> Self {
        AuthConfig {
            keys: vec![Key { kid: None, material: KeyMaterial::Hmac(secret.as_bytes().to_vec()) }],
            ..AuthConfig::default()
        }
    }
}

/// What a verified token says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Claims {
    /// The user (`sub`).
    pub user: String,
    /// `exp`, Unix seconds (0 for an anonymous session).
    pub expires_at: u64,
    /// The channel capabilities the token grants.
    pub grants: Grants,
    /// The `info` claim as JSON text, if any.
    pub info: Option<Bytes>,
}

/// Why a token was refused. `reason` is the bounded label for metrics.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TokenError {
    #[error("no token")]
    Missing,
    #[error("not a jwt: {0}")]
    Malformed(String),
    #[error("algorithm {0:?} is not accepted")]
    Algorithm(Algorithm),
    #[error("no key for this token (kid {0:?})")]
    UnknownKey(Option<String>),
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("token has an empty sub claim")]
    NoSubject,
}

impl TokenError {
    /// Every value [`TokenError::reason`] returns.
    pub const REASONS: &[&str] =
        &["missing", "malformed", "algorithm", "unknown_key", "expired", "invalid", "no_subject"];

    /// A short label, one of a closed set: [`TokenError::REASONS`].
    pub fn reason(&self) -> &'static str {
        match self {
            TokenError::Missing => "missing",
            TokenError::Malformed(_) => "malformed",
            TokenError::Algorithm(_) => "algorithm",
            TokenError::UnknownKey(_) => "unknown_key",
            TokenError::Expired => "expired",
            TokenError::Invalid(_) => "invalid",
            TokenError::NoSubject => "no_subject",
        }
    }
}

#[derive(Deserialize)]
struct RawClaims {
    sub: String,
    exp: u64,
    #[serde(default)]
    channels: Grants,
    #[serde(default)]
    info: Option<Box<RawValue>>,
}

/// One key tokens are checked against: configured or from the JWKS.
pub(crate) struct VerifyKey {
    kid: Option<String>,
    key: DecodingKey,
    /// A JWK's `alg`: the only algorithm this key verifies.
    alg: Option<Algorithm>,
}

/// Checks tokens against the configured keys. Cheap to share.
pub struct Verifier {
    config: AuthConfig,
    algorithms: Vec<Algorithm>,
    keys: Vec<VerifyKey>,
    jwks: Option<Arc<jwks::Jwks>>,
}

// === impl Verifier ===

impl Verifier {
    /// Loads the configured keys (a bad key is an error naming it) and, with a JWKS URL,
    /// starts fetching it in the background.
    pub fn new(config: AuthConfig) -> Result<Self, String> {
        let keys = config.keys.iter().map(Key::verify_key).collect::<Result<Vec<_>, String>>()?;
        let roots = jwks_roots(&config)?;
        let algorithms = if config.algorithms.is_empty() {
            let mut families: Vec<_> = keys.iter().map(|k| k.key.family()).collect();
            if config.jwks_url.is_some() {
                families.extend([
                    jsonwebtoken::AlgorithmFamily::Rsa,
                    jsonwebtoken::AlgorithmFamily::Ec,
                    jsonwebtoken::AlgorithmFamily::Ed,
                ]);
            }
            let mut algs: Vec<Algorithm> = families.iter().flat_map(|f| f.algorithms().iter().copied()).collect();
            algs.sort_by_key(|a| format!("{a:?}"));
            algs.dedup();
            algs
        } else {
            config.algorithms.clone()
        };
        let jwks = config
            .jwks_url
            .as_ref()
            .map(|url| jwks::Jwks::start(url.clone(), roots, config.jwks_min_refresh, config.jwks_max_age));
        Ok(Verifier { config, algorithms, keys, jwks })
    }

    /// Checks that every configured key loads (without starting anything).
    pub fn check(config: &AuthConfig) -> Result<(), String> {
        config.keys.iter().try_for_each(|k| k.verify_key().map(drop))?;
        jwks_roots(config).map(drop)
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    /// Verifies `token` and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        if token.is_empty() {
            return Err(TokenError::Missing);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| TokenError::Malformed(e.to_string()))?;
        if !self.algorithms.contains(&header.alg) {
            return Err(TokenError::Algorithm(header.alg));
        }
        let mut result = self.try_keys(token, header.alg, header.kid.as_deref());
        if let (Err(TokenError::UnknownKey(_)), Some(jwks)) = (&result, &self.jwks) {
            // A key rotated in since the last fetch: fetch again (rate-limited), once.
            if jwks.refresh_for_unknown_kid().await {
                result = self.try_keys(token, header.alg, header.kid.as_deref());
            }
        }
        result
    }

    fn try_keys(&self, token: &str, alg: Algorithm, kid: Option<&str>) -> Result<Claims, TokenError> {
        let fetched = self.jwks.as_ref().map(|j| j.keys()).unwrap_or_default();
        // A key pinned to another algorithm (a JWK's `alg`) is no candidate: when it was
        // the only one, the token's algorithm is what is wrong.
        let mut pinned_elsewhere = false;
        let candidates = self
            .keys
            .iter()
            .chain(fetched.iter())
            .filter(|k| k.key.family() == alg.family() && (kid.is_none() || k.kid.as_deref() == kid))
            .filter(|k| {
                let fits = k.alg.is_none_or(|a| a == alg);
                pinned_elsewhere |= !fits;
                fits
            })
            .map(|k| &k.key)
            .collect::<Vec<_>>();
        let mut validation = Validation::new(alg);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        // jsonwebtoken checks `iss` and `aud` only when the token has them: a configured
        // issuer or audience must also be required, or a token without the claim passes.
        let mut required = vec!["exp", "sub"];
        match &self.config.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.config.issuer {
            validation.set_issuer(&[iss]);
            required.push("iss");
        }
        validation.set_required_spec_claims(&required);
        let mut last = None;
        if candidates.is_empty() && pinned_elsewhere {
            return Err(TokenError::Algorithm(alg));
        }
        for key in candidates {
            match jsonwebtoken::decode::<RawClaims>(token, key, &validation) {
                Ok(data) => {
                    let c = data.claims;
                    if c.sub.is_empty() {
                        return Err(TokenError::NoSubject);
                    }
                    let info = c.info.map(|raw| Bytes::copy_from_slice(raw.get().as_bytes()));
                    return Ok(Claims { user: c.sub, expires_at: c.exp, grants: c.channels, info });
                }
                Err(e) => {
                    last = Some(match e.kind() {
                        jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                        _ => TokenError::Invalid(e.to_string()),
                    })
                }
            }
        }
        Err(last.unwrap_or_else(|| TokenError::UnknownKey(kid.map(str::to_owned))))
    }
}

/// The roots an `https://` JWKS URL is verified with.
fn jwks_roots(config: &AuthConfig) -> Result<rustls::RootCertStore, String> {
    match &config.jwks_ca {
        Some(path) => switchboard_tls::load_roots(path).map_err(|e| format!("auth.jwks_ca: {e}")),
        None if config.jwks_url.as_deref().is_some_and(|u| u.starts_with("https://")) => Ok(jwks::system_roots()),
        None => Ok(rustls::RootCertStore::empty()),
    }
}

#[cfg(test)]
mod tests;
