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

/// An EC or Ed25519 key pair drawn now: the signing key and the public key in PEM.
fn generated(alg: &'static rcgen::SignatureAlgorithm) -> (EncodingKey, String) {
    let pair = rcgen::KeyPair::generate_for(alg).unwrap();
    let private = pair.serialize_pem();
    let signing = if alg == &rcgen::PKCS_ED25519 {
        EncodingKey::from_ed_pem(private.as_bytes())
    } else {
        EncodingKey::from_ec_pem(private.as_bytes())
    };
    (signing.unwrap(), pair.public_key_pem())
}

#[tokio::test]
async fn every_algorithm_is_accepted_with_its_key_and_refused_when_another_is_configured() {
    use Algorithm::*;
    let hmac = (EncodingKey::from_secret(b"s3cret"), KeyMaterial::Hmac(b"s3cret".to_vec()));
    let rsa = || (EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(), KeyMaterial::Pem(RSA_PUBLIC.into()));
    let pem = |(signing, public): (EncodingKey, String)| (signing, KeyMaterial::Pem(public));
    let p256 = pem(generated(&rcgen::PKCS_ECDSA_P256_SHA256));
    let p384 = pem(generated(&rcgen::PKCS_ECDSA_P384_SHA384));
    let ed = pem(generated(&rcgen::PKCS_ED25519));
    // (algorithm, its key, another algorithm the verifier accepts instead)
    let cases = [
        (HS256, hmac.clone(), HS384),
        (HS384, hmac.clone(), HS512),
        (HS512, hmac.clone(), HS256),
        (RS256, rsa(), RS384),
        (RS384, rsa(), RS512),
        (RS512, rsa(), PS512),
        (PS256, rsa(), RS256),
        (PS384, rsa(), PS256),
        (PS512, rsa(), PS384),
        (ES256, p256, ES384),
        (ES384, p384, ES256),
        (EdDSA, ed, ES256),
    ];
    for (alg, (signing, public), other) in cases {
        let token = sign(alg, None, &signing, claims("alice"));
        let only = |algorithms| {
            Verifier::new(AuthConfig { keys: vec![key(None, public.clone())], algorithms, ..AuthConfig::default() })
                .unwrap()
        };
        let got = only(vec![alg]).verify(&token).await;
        assert_eq!(got.map(|c| c.user).map_err(|e| e.to_string()), Ok("alice".to_owned()), "{alg:?}");
        let got = only(vec![other]).verify(&token).await.map(|c| c.user);
        assert_eq!(got.as_ref().map_err(TokenError::reason), Err("algorithm"), "{alg:?} under {other:?}: {got:?}");
    }
}

#[tokio::test]
async fn a_jwk_with_alg_verifies_only_that_algorithm() {
    let jwk: serde_json::Value = serde_json::from_str(include_str!("testdata/rsa.jwk.json")).unwrap();
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let with_alg = |alg: Option<&str>| {
        let mut jwk = jwk.clone();
        let o = jwk.as_object_mut().unwrap();
        o.remove("alg");
        if let Some(a) = alg {
            o.insert("alg".into(), a.into());
        }
        verifier(vec![key(Some("rsa-1"), KeyMaterial::Jwk(jwk.to_string()))])
    };
    let pinned = with_alg(Some("RS256"));
    let free = with_alg(None);
    for alg in [Algorithm::RS256, Algorithm::RS384, Algorithm::PS256, Algorithm::PS512] {
        let token = sign(alg, Some("rsa-1"), &rsa, claims("alice"));
        assert!(free.verify(&token).await.is_ok(), "{alg:?} with a jwk without alg");
        let got = pinned.verify(&token).await.map(|c| c.user);
        if alg == Algorithm::RS256 {
            assert_eq!(got.map_err(|e| e.to_string()), Ok("alice".to_owned()));
        } else {
            assert_eq!(got.map_err(|e| e.reason()), Err("algorithm"), "{alg:?} with a jwk pinned to RS256");
        }
    }
    // An alg that is not a signature algorithm, or of another family, is refused at load.
    for (alg, why) in [("RSA-OAEP", "not a signature algorithm"), ("ES256", "does not fit")] {
        let mut jwk = jwk.clone();
        jwk["alg"] = alg.into();
        let err = Verifier::new(AuthConfig {
            keys: vec![key(Some("k"), KeyMaterial::Jwk(jwk.to_string()))],
            ..AuthConfig::default()
        })
        .err()
        .expect(alg);
        assert!(err.contains(why) && err.contains("k"), "{alg}: {err}");
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
        serde_json::json!({"sub": "a", "exp": later(), "channels": {"subscribe": ["chat:*"], "publish": ["chat:lobby"], "presence": ["room:*"], "history": ["room:1"]}, "info": {"name": "Alice"}}),
    );
    let c = v.verify(&token).await.unwrap();
    assert_eq!(c.grants.subscribe, ["chat:*"]);
    assert_eq!(c.grants.publish, ["chat:lobby"]);
    assert_eq!(c.grants.presence, ["room:*"]);
    assert_eq!(c.grants.history, ["room:1"]);
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
