//! Static verification keys, from the configuration.

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};

use super::VerifyKey;

/// One configured key.
#[derive(Clone)]
pub struct Key {
    /// Tokens whose header names this `kid` are checked against this key only; a key
    /// without a `kid` serves tokens without one.
    pub kid: Option<String>,
    pub material: KeyMaterial,
}

/// A key's material, as the configuration gives it (files and environment variables are
/// read by the binary).
#[derive(Clone)]
pub enum KeyMaterial {
    /// An HMAC secret (HS256/384/512).
    Hmac(Vec<u8>),
    /// A public key in PEM (`BEGIN PUBLIC KEY` RSA, EC P-256/P-384 or Ed25519, or `BEGIN
    /// RSA PUBLIC KEY`).
    Pem(String),
    /// A public key as one JWK (JSON). A JWK that carries `alg` verifies only tokens of
    /// that algorithm.
    Jwk(String),
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match &self.material {
            KeyMaterial::Hmac(_) => "hmac secret",
            KeyMaterial::Pem(_) => "pem",
            KeyMaterial::Jwk(_) => "jwk",
        };
        // Never the secret itself.
        write!(f, "Key {{ kid: {:?}, {kind} }}", self.kid)
    }
}

impl Key {
    pub(super) fn verify_key(&self) -> Result<VerifyKey, String> {
        let name = self.kid.as_deref().unwrap_or("(no kid)");
        let (key, alg) = match &self.material {
            KeyMaterial::Hmac(secret) if secret.is_empty() => {
                return Err(format!("key {name}: the hmac secret is empty"));
            }
            KeyMaterial::Hmac(secret) => (DecodingKey::from_secret(secret), None),
            KeyMaterial::Pem(pem) => (pem_key(pem).map_err(|e| format!("key {name}: {e}"))?, None),
            KeyMaterial::Jwk(json) => {
                let jwk: Jwk = serde_json::from_str(json).map_err(|e| format!("key {name}: not a jwk: {e}"))?;
                jwk_key(&jwk).map_err(|e| format!("key {name}: {e}"))?
            }
        };
        Ok(VerifyKey { kid: self.kid.clone(), key, alg })
    }
}

/// A JWK's key and the algorithm its `alg` member pins it to, if any.
pub(super) fn jwk_key(jwk: &Jwk) -> Result<(DecodingKey, Option<Algorithm>), String> {
    let alg = match &jwk.common.key_algorithm {
        None => None,
        Some(a) => Some(Algorithm::try_from(*a).map_err(|_| format!("its alg {a} is not a signature algorithm"))?),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    if let Some(a) = alg
        && a.family() != key.family()
    {
        return Err(format!("its alg {a:?} does not fit its key type"));
    }
    Ok((key, alg))
}

/// A public key from PEM, whichever family it is.
fn pem_key(pem: &str) -> Result<DecodingKey, String> {
    let bytes = pem.as_bytes();
    if pem.contains("PRIVATE KEY") {
        return Err("a private key: configure the public key (the gateway only verifies)".into());
    }
    DecodingKey::from_rsa_pem(bytes)
        .or_else(|_| DecodingKey::from_ec_pem(bytes))
        .or_else(|_| DecodingKey::from_ed_pem(bytes))
        .map_err(|e| format!("not an RSA, EC or Ed25519 public key in PEM: {e}"))
}
