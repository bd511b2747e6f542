//! Connect tokens built to get in: every way a token can be wrong closes the session with
//! `4501` (or hits a size bound first), whichever way it arrives, and the accepted
//! algorithms come from the configuration, never from the token.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use switchboard_gateway::GatewayConfig;
use switchboard_gateway::auth::{AuthConfig, Key, KeyMaterial};
use switchboard_tests::{RawWs, Received, gateway_config, start_dev_metered};

use super::{KEY, raw_http, upgrade_request};

const RSA_PRIVATE: &str = include_str!("../../../crates/switchboard-gateway/src/auth/testdata/rsa.pem");
const RSA_PUBLIC: &str = include_str!("../../../crates/switchboard-gateway/src/auth/testdata/rsa.pub");
const EC_PRIVATE: &str = include_str!("../../../crates/switchboard-gateway/src/auth/testdata/ec.pem");
const SECRET: &[u8] = b"hostile-suite-secret";
const ISSUER: &str = "https://issuer.test/";
const AUDIENCE: &str = "switchboard";

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &serde_json::Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

/// A token with whatever header and claims, and no signature at all.
fn unsigned(header: serde_json::Value, claims: &serde_json::Value) -> String {
    format!("{}.{}.", B64.encode(header.to_string()), B64.encode(claims.to_string()))
}

/// Where a token travels.
#[derive(Debug, Clone, Copy)]
enum Via {
    /// In the `connect` command.
    Connect,
    /// In `Authorization: Bearer` on the upgrade request.
    Bearer,
    /// In `/ws?token=…`, which this gateway is not configured to read.
    Query,
}

/// What becomes of the session.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Want {
    /// Connected as this user.
    User(String),
    /// Closed with this code.
    Closed(u16),
}

/// Upgrades and connects with `token` sent `via`.
async fn attempt(addr: SocketAddr, via: Via, token: &str) -> Want {
    let bearer = format!("Bearer {token}");
    let mut ws = match via {
        Via::Connect => RawWs::connect(addr, None).await,
        Via::Bearer => RawWs::connect_with(addr, "/ws", &[("Authorization", &bearer)]).await,
        Via::Query => RawWs::connect_with(addr, &format!("/ws?token={token}"), &[]).await,
    };
    let connect = match via {
        Via::Connect => serde_json::json!({"id": 1, "connect": {"token": token}}),
        _ => serde_json::json!({"id": 1, "connect": {}}),
    };
    ws.text(&connect.to_string()).await;
    match ws.recv().await {
        Received::Text(t) => {
            let reply: serde_json::Value = serde_json::from_str(&t).unwrap();
            Want::User(reply["connect"]["user"].as_str().unwrap_or_else(|| panic!("{reply}")).to_owned())
        }
        Received::Close(code, _) => Want::Closed(code),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn every_bad_token_closes_with_4501() {
    let (node, metrics) = start_dev_metered(GatewayConfig {
        auth: AuthConfig {
            keys: vec![
                Key { kid: Some("rsa-1".into()), material: KeyMaterial::Pem(RSA_PUBLIC.into()) },
                Key { kid: Some("hs-1".into()), material: KeyMaterial::Hmac(SECRET.to_vec()) },
            ],
            algorithms: vec![Algorithm::RS256, Algorithm::HS256],
            issuer: Some(ISSUER.into()),
            audience: Some(AUDIENCE.into()),
            ..AuthConfig::default()
        },
        ..gateway_config()
    })
    .await;
    let bystander = {
        let mut config = switchboard_client::ClientConfig::new(switchboard_tests::ws_url(node.http)).reconnect(false);
        config.token = sign(Algorithm::HS256, Some("hs-1"), &EncodingKey::from_secret(SECRET), &claims("bystander"));
        switchboard_client::Client::connect(config).await.unwrap()
    };
    let rsa = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
    let hmac = EncodingKey::from_secret(SECRET);
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    let good = claims("alice");
    let with = |patch: serde_json::Value| {
        let mut c = claims("alice");
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        c
    };
    let rs = |c: &serde_json::Value| sign(Algorithm::RS256, Some("rsa-1"), &rsa, c);
    let valid = rs(&good);
    // One signature byte changed (in the middle: the last character holds padding bits).
    let tampered = {
        let at = valid.rfind('.').unwrap() + 10;
        let flipped = if &valid[at..at + 1] == "A" { "B" } else { "A" };
        format!("{}{flipped}{}", &valid[..at], &valid[at + 1..])
    };
    let megabyte = "a".repeat(1 << 20);
    let refused = Want::Closed(4501);
    let cases: Vec<(&str, Via, String, Want)> = vec![
        ("a valid RS256 token", Via::Connect, valid.clone(), Want::User("alice".into())),
        (
            "a valid HS256 token",
            Via::Connect,
            sign(Algorithm::HS256, Some("hs-1"), &hmac, &good),
            Want::User("alice".into()),
        ),
        ("a valid token in Authorization", Via::Bearer, valid.clone(), Want::User("alice".into())),
        (
            "a sub of 256 bytes",
            Via::Connect,
            rs(&with(serde_json::json!({"sub": "s".repeat(256)}))),
            Want::User("s".repeat(256)),
        ),
        // Algorithms come from the configuration.
        ("alg none", Via::Connect, unsigned(serde_json::json!({"alg": "none", "typ": "JWT"}), &good), refused.clone()),
        (
            "alg None naming a key",
            Via::Connect,
            unsigned(serde_json::json!({"alg": "None", "kid": "rsa-1"}), &good),
            refused.clone(),
        ),
        (
            "HS256 signed with the RSA public key",
            Via::Connect,
            sign(Algorithm::HS256, Some("rsa-1"), &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()), &good),
            refused.clone(),
        ),
        (
            "HS256 signed with the RSA public key, no kid",
            Via::Connect,
            sign(Algorithm::HS256, None, &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()), &good),
            refused.clone(),
        ),
        (
            "RS384, an algorithm not configured",
            Via::Connect,
            sign(Algorithm::RS384, Some("rsa-1"), &rsa, &good),
            refused.clone(),
        ),
        ("ES256, with no EC key configured", Via::Connect, sign(Algorithm::ES256, None, &ec, &good), refused.clone()),
        ("RS256 naming the HMAC key", Via::Connect, sign(Algorithm::RS256, Some("hs-1"), &rsa, &good), refused.clone()),
        ("an unknown kid", Via::Connect, sign(Algorithm::RS256, Some("rsa-9"), &rsa, &good), refused.clone()),
        ("a tampered signature", Via::Connect, tampered, refused.clone()),
        // Claims.
        ("expired a minute ago", Via::Connect, rs(&with(serde_json::json!({"exp": now() - 60}))), refused.clone()),
        ("no exp", Via::Connect, rs(&with(serde_json::json!({"exp": null}))), refused.clone()),
        ("an exp that is a string", Via::Connect, rs(&with(serde_json::json!({"exp": "tomorrow"}))), refused.clone()),
        (
            "not valid for ten minutes yet",
            Via::Connect,
            rs(&with(serde_json::json!({"nbf": now() + 600}))),
            refused.clone(),
        ),
        ("a wrong issuer", Via::Connect, rs(&with(serde_json::json!({"iss": "https://evil.test/"}))), refused.clone()),
        ("no issuer", Via::Connect, rs(&with(serde_json::json!({"iss": null}))), refused.clone()),
        ("a wrong audience", Via::Connect, rs(&with(serde_json::json!({"aud": "someone-else"}))), refused.clone()),
        ("no audience", Via::Connect, rs(&with(serde_json::json!({"aud": null}))), refused.clone()),
        ("an empty sub", Via::Connect, rs(&with(serde_json::json!({"sub": ""}))), refused.clone()),
        ("no sub", Via::Connect, rs(&with(serde_json::json!({"sub": null}))), refused.clone()),
        ("a sub that is a number", Via::Connect, rs(&with(serde_json::json!({"sub": 42}))), refused.clone()),
        ("a sub of 257 bytes", Via::Connect, rs(&with(serde_json::json!({"sub": "s".repeat(257)}))), refused.clone()),
        // Not tokens.
        ("no token", Via::Connect, String::new(), refused.clone()),
        ("garbage", Via::Connect, "x.y.z".into(), refused.clone()),
        ("not even dots", Via::Connect, "garbage".into(), refused.clone()),
        ("a header that is not JSON", Via::Connect, format!("{}.e30.", B64.encode("{not json")), refused.clone()),
        ("a bad token in Authorization", Via::Bearer, "x.y.z".into(), refused.clone()),
        ("a valid token in a query parameter nobody configured", Via::Query, valid.clone(), refused.clone()),
        ("a token of 1 MiB in connect (over --max-message-size)", Via::Connect, megabyte.clone(), Want::Closed(1009)),
    ];
    // Every 4501 is counted under `token`, but the sub of 257 bytes (`user_id`).
    let refusals = cases.iter().filter(|(_, _, _, want)| *want == refused).count() as u64 - 1;
    for (what, via, token, want) in cases {
        let got = attempt(node.http, via, &token).await;
        assert_eq!(got, want, "{what}");
    }
    metrics.expect_limit_hits("token", refusals).await;
    metrics.expect_limit_hits("user_id", 1).await;
    // In a header, a token of 1 MiB never gets past the request-head bound.
    let request = upgrade_request(KEY, &format!("Authorization: Bearer {megabyte}\r\n"));
    let got = raw_http(node.http, request.as_bytes()).await;
    assert!(got.starts_with("HTTP/1.1 431"), "a token of 1 MiB in Authorization: {:?}", got.lines().next());

    // A refresh is checked as strictly, and a refused one leaves the session as it was.
    let mut ws = RawWs::connect(node.http, None).await;
    ws.text(&serde_json::json!({"id": 1, "connect": {"token": valid}}).to_string()).await;
    assert_eq!(ws.json().await["connect"]["user"], "alice");
    let bob = rs(&claims("bob"));
    let none = unsigned(serde_json::json!({"alg": "none"}), &good);
    let expired = rs(&with(serde_json::json!({"exp": now() - 60})));
    for (id, (what, token)) in
        [("another user", bob), ("alg none", none), ("expired", expired), ("garbage", "x".into())]
            .into_iter()
            .enumerate()
    {
        ws.text(&serde_json::json!({"id": id + 2, "refresh": {"token": token}}).to_string()).await;
        assert_eq!(ws.json().await["error"]["code"], 103, "a refresh with {what}");
    }
    // Each refused refresh token too (another user's valid token is not a bad token).
    metrics.expect_limit_hits("token", refusals + 3).await;
    ws.text(r#"{"id":9,"ping":{}}"#).await;
    assert_eq!(ws.json().await["ping"], serde_json::json!({}), "the session goes on");
    bystander.ping().await.expect("the bystander is unaffected");
}

/// Valid claims for `user`, with the configured issuer and audience.
fn claims(user: &str) -> serde_json::Value {
    serde_json::json!({"sub": user, "exp": now() + 600, "iss": ISSUER, "aud": AUDIENCE})
}
