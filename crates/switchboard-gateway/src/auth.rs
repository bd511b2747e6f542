//! Connect tokens: HS256 JWTs whose `sub` claim is the user and whose `exp` is required.
//! (RS256/ES256/EdDSA, key rotation and JWKS arrive with the authentication work.)

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

#[derive(Deserialize)]
struct Claims {
    sub: String,
}

/// Why a token was refused.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no token")]
    Missing,
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("token has an empty sub claim")]
    NoSubject,
}

/// Verifies `token` against `secret` and returns its user.
pub fn verify(secret: &str, token: &str) -> Result<String, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    let mut validation = Validation::new(Algorithm::HS256);
    validation.leeway = 5;
    validation.validate_nbf = true;
    // No audience is configured, so a token's `aud` claim is not checked.
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret.as_bytes()), &validation)?;
    if data.claims.sub.is_empty() {
        return Err(TokenError::NoSubject);
    }
    Ok(data.claims.sub)
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::{EncodingKey, Header};

    use super::*;

    fn token(secret: &str, claims: serde_json::Value) -> String {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &EncodingKey::from_secret(secret.as_bytes()))
            .unwrap()
    }

    #[test]
    fn tokens_are_checked_for_signature_expiry_and_subject() {
        let later =
            (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600) as i64;
        assert_eq!(verify("s", &token("s", serde_json::json!({"sub": "alice", "exp": later}))).unwrap(), "alice");
        let with_aud = token("s", serde_json::json!({"sub": "bob", "exp": later, "aud": "app"}));
        assert_eq!(verify("s", &with_aud).unwrap(), "bob", "an audience is not required to match anything");
        let cases = [
            ("", "missing"),
            ("garbage", "not a jwt"),
            (&*token("other", serde_json::json!({"sub": "alice", "exp": later})), "wrong secret"),
            (&*token("s", serde_json::json!({"sub": "alice", "exp": 1000})), "expired"),
            (&*token("s", serde_json::json!({"sub": "alice"})), "no exp"),
            (&*token("s", serde_json::json!({"sub": "", "exp": later})), "empty sub"),
            (&*token("s", serde_json::json!({"sub": "alice", "exp": later, "nbf": later})), "not yet valid"),
        ];
        for (t, why) in cases {
            assert!(verify("s", t).is_err(), "{why}");
        }
    }
}
