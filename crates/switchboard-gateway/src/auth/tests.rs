use jsonwebtoken::{EncodingKey, Header};

use super::*;

const RSA_PRIVATE: &str = include_str!("testdata/rsa.pem");
const RSA_PUBLIC: &str = include_str!("testdata/rsa.pub");
const EC_PRIVATE: &str = include_str!("testdata/ec.pem");
const EC_PUBLIC: &str = include_str!("testdata/ec.pub");
const ED_PRIVATE: &str = include_str!("testdata/ed.pem");
const ED_PUBLIC: &str = include_str!("testdata/ed.pub");

fn later() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 600
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: serde_json::Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn claims(sub: &str) -> serde_json::Value {
    serde_json::json!({"sub": sub, "exp": later()})
}

fn key(kid: Option<&str>, material: KeyMaterial) -> Key {
    Key { kid: kid.map(str::to_owned), material }
}

fn verifier(keys: Vec<Key>) -> Verifier {
    Verifier::new(AuthConfig { keys, ..AuthConfig::default() }).unwrap()
}

#[tokio::test]
async fn every_configured_algorithm_verifies_and_yields_the_user() {
    let hmac = EncodingKey::from_secret(b"s3cret");
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let ed = EncodingKey::from_ed_pem(ED_PRIVATE.as_bytes()).unwrap();
    let v = verifier(vec![
        key(None, KeyMaterial::Hmac(b"s3cret".to_vec())),
        key(None, KeyMaterial::Pem(RSA_PUBLIC.into())),
        key(None, KeyMaterial::Pem(EC_PUBLIC.into())),
        key(None, KeyMaterial::Pem(ED_PUBLIC.into())),
    ]);
    let cases = [
        (Algorithm::HS256, &hmac),
        (Algorithm::HS384, &hmac),
        (Algorithm::HS512, &hmac),
        (Algorithm::RS256, &rsa),
        (Algorithm::RS384, &rsa),
        (Algorithm::RS512, &rsa),
        (Algorithm::PS256, &rsa),
        (Algorithm::ES256, &ec),
        (Algorithm::EdDSA, &ed),
    ];
    for (alg, k) in cases {
        let got = v.verify(&sign(alg, None, k, claims("alice"))).await;
        assert_eq!(got.map(|c| c.user).map_err(|e| e.to_string()), Ok("alice".to_owned()), "{alg:?}");
    }
}

#[tokio::test]
async fn keys_are_chosen_by_kid_and_rotation_keeps_both_working() {
    let (old, new) = (EncodingKey::from_secret(b"old"), EncodingKey::from_secret(b"new"));
    let v = verifier(vec![
        key(Some("k1"), KeyMaterial::Hmac(b"old".to_vec())),
        key(Some("k2"), KeyMaterial::Hmac(b"new".to_vec())),
    ]);
    assert!(v.verify(&sign(Algorithm::HS256, Some("k1"), &old, claims("a"))).await.is_ok());
    assert!(v.verify(&sign(Algorithm::HS256, Some("k2"), &new, claims("a"))).await.is_ok());
    // Signed with k2's secret but naming k1: checked against k1 only.
    assert!(matches!(
        v.verify(&sign(Algorithm::HS256, Some("k1"), &new, claims("a"))).await,
        Err(TokenError::Invalid(_))
    ));
    assert!(matches!(
        v.verify(&sign(Algorithm::HS256, Some("k9"), &new, claims("a"))).await,
        Err(TokenError::UnknownKey(Some(_)))
    ));
}

#[tokio::test]
async fn tokens_that_choose_their_own_algorithm_or_break_the_rules_are_refused() {
    let rsa_only = verifier(vec![key(None, KeyMaterial::Pem(RSA_PUBLIC.into()))]);
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    // The classic confusion: HS256 "signed" with the RSA public key as the HMAC secret.
    let confused = sign(Algorithm::HS256, None, &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()), claims("mallory"));
    // alg: none, by hand.
    let b64 = |s: &str| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    };
    let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), b64(&claims("mallory").to_string()));
    let hs_only = Verifier::new(AuthConfig {
        keys: vec![key(None, KeyMaterial::Hmac(b"s".to_vec()))],
        algorithms: vec![Algorithm::HS256],
        ..AuthConfig::default()
    })
    .unwrap();
    let hs512 = sign(Algorithm::HS512, None, &EncodingKey::from_secret(b"s"), claims("a"));
    let hs = EncodingKey::from_secret(b"s");
    let cases: Vec<(&str, &Verifier, String, &str)> = vec![
        ("hs256 with the rsa public key", &rsa_only, confused, "algorithm"),
        ("alg none", &rsa_only, none, "malformed"),
        ("an algorithm not configured", &hs_only, hs512, "algorithm"),
        (
            "expired",
            &rsa_only,
            sign(Algorithm::RS256, None, &rsa, serde_json::json!({"sub": "a", "exp": 1000})),
            "expired",
        ),
        ("no exp", &rsa_only, sign(Algorithm::RS256, None, &rsa, serde_json::json!({"sub": "a"})), "invalid"),
        ("empty sub", &hs_only, sign(Algorithm::HS256, None, &hs, claims("")), "no_subject"),
        (
            "not yet valid",
            &hs_only,
            sign(Algorithm::HS256, None, &hs, serde_json::json!({"sub": "a", "exp": later(), "nbf": later()})),
            "invalid",
        ),
        ("garbage", &hs_only, "garbage".into(), "malformed"),
        ("empty", &hs_only, String::new(), "missing"),
    ];
    for (what, v, token, reason) in cases {
        let err = v.verify(&token).await.expect_err(what);
        assert_eq!(err.reason(), reason, "{what}: {err}");
        assert!(TokenError::REASONS.contains(&reason), "{reason} is in the closed list");
    }
}

#[tokio::test]
async fn issuer_and_audience_are_checked_when_configured() {
    let hs = EncodingKey::from_secret(b"s");
    let v = Verifier::new(AuthConfig {
        keys: vec![key(None, KeyMaterial::Hmac(b"s".to_vec()))],
        issuer: Some("https://auth.example".into()),
        audience: Some("switchboard".into()),
        ..AuthConfig::default()
    })
    .unwrap();
    let with = |iss: &str, aud: &str| {
        sign(Algorithm::HS256, None, &hs, serde_json::json!({"sub": "a", "exp": later(), "iss": iss, "aud": aud}))
    };
    assert!(v.verify(&with("https://auth.example", "switchboard")).await.is_ok());
    assert!(v.verify(&with("https://evil.example", "switchboard")).await.is_err());
    assert!(v.verify(&with("https://auth.example", "other-app")).await.is_err());
    // A configured claim is required: a token without it is refused.
    let without = |claim: &str| {
        let mut claims =
            serde_json::json!({"sub": "a", "exp": later(), "iss": "https://auth.example", "aud": "switchboard"});
        claims.as_object_mut().unwrap().remove(claim);
        sign(Algorithm::HS256, None, &hs, claims)
    };
    assert!(v.verify(&without("iss")).await.is_err(), "a token without iss");
    assert!(v.verify(&without("aud")).await.is_err(), "a token without aud");
    // Without an audience configured, a token's aud is not checked.
    let open = verifier(vec![key(None, KeyMaterial::Hmac(b"s".to_vec()))]);
    assert!(open.verify(&with("x", "anything")).await.is_ok());
}

#[tokio::test]
async fn grants_and_info_come_from_the_claims() {
    let hs = EncodingKey::from_secret(b"s");
    let v = verifier(vec![key(None, KeyMaterial::Hmac(b"s".to_vec()))]);
    let token = sign(
        Algorithm::HS256,
        None,
        &hs,
        serde_json::json!({"sub": "a", "exp": later(), "channels": {"subscribe": ["chat:*"], "publish": ["chat:lobby"]}, "info": {"name": "Alice"}}),
    );
    let c = v.verify(&token).await.unwrap();
    assert_eq!(c.grants.subscribe, ["chat:*"]);
    assert_eq!(c.grants.publish, ["chat:lobby"]);
    assert_eq!(c.info.as_deref(), Some(&br#"{"name":"Alice"}"#[..]));
}

#[test]
fn bad_keys_are_refused_with_their_kid_named() {
    let cases = [
        key(Some("k1"), KeyMaterial::Hmac(Vec::new())),
        key(Some("k2"), KeyMaterial::Pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n".into())),
        key(Some("k3"), KeyMaterial::Pem(RSA_PRIVATE.into())),
        key(Some("k4"), KeyMaterial::Jwk("{}".into())),
    ];
    for k in cases {
        let kid = k.kid.clone().unwrap();
        let err = Verifier::new(AuthConfig { keys: vec![k], ..AuthConfig::default() }).err().expect(&kid);
        assert!(err.contains(&kid), "{err}");
    }
}
