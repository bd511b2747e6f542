//! Connect tokens and channel permissions on a real node: algorithms, keys by `kid`, a
//! JWKS URL, tokens from the upgrade request, expiry and refresh, and who may subscribe
//! and publish where.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use switchboard_gateway::GatewayConfig;
use switchboard_gateway::auth::{AuthConfig, Key, KeyMaterial};
use switchboard_gateway::permissions::{Access, ChannelRules, NamespaceRules, UnknownNamespaces};
use switchboard_tests::{RawWs, gateway_config, start_dev, start_dev_metered};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const RSA_PRIVATE: &str = include_str!("../../crates/switchboard-gateway/src/auth/testdata/rsa.pem");
const RSA_PUBLIC: &str = include_str!("../../crates/switchboard-gateway/src/auth/testdata/rsa.pub");
const RSA_JWK: &str = include_str!("../../crates/switchboard-gateway/src/auth/testdata/rsa.jwk.json");
const EC_PRIVATE: &str = include_str!("../../crates/switchboard-gateway/src/auth/testdata/ec.pem");
const EC_PUBLIC: &str = include_str!("../../crates/switchboard-gateway/src/auth/testdata/ec.pub");

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn token(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: serde_json::Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, &claims, key).unwrap()
}

fn rsa() -> EncodingKey {
    EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap()
}

fn rules() -> ChannelRules {
    let ns = |subscribe, publish| NamespaceRules { subscribe, publish, ..Default::default() };
    ChannelRules {
        default: ns(Access::Anyone, Access::Nobody),
        namespaces: HashMap::from([
            ("chat".into(), ns(Access::Authenticated, Access::Granted)),
            ("vip".into(), ns(Access::Granted, Access::Nobody)),
            ("notes".into(), ns(Access::Authenticated, Access::Authenticated)),
        ]),
        unknown_namespaces: UnknownNamespaces::Refuse,
    }
}

fn config(keys: Vec<Key>) -> GatewayConfig {
    GatewayConfig {
        auth: AuthConfig { keys, leeway: Duration::ZERO, ..AuthConfig::default() },
        channels: rules(),
        ..gateway_config()
    }
}

/// Connects with `token` in `connect`; the reply or the close.
async fn connect(addr: SocketAddr, token: &str) -> (RawWs, serde_json::Value) {
    let mut ws = RawWs::connect(addr, None).await;
    ws.text(&serde_json::json!({"id": 1, "connect": {"token": token}}).to_string()).await;
    let reply = match ws.recv().await {
        switchboard_tests::Received::Text(t) => serde_json::from_str(&t).unwrap(),
        switchboard_tests::Received::Close(code, _) => serde_json::json!({"closed": code}),
        other => panic!("{other:?}"),
    };
    (ws, reply)
}

async fn command(ws: &mut RawWs, id: u32, cmd: serde_json::Value) -> serde_json::Value {
    let mut frame = cmd;
    frame["id"] = id.into();
    ws.text(&frame.to_string()).await;
    loop {
        let reply = ws.json().await;
        if reply["id"] == id {
            return reply;
        }
    }
}

#[tokio::test]
async fn tokens_are_verified_with_the_configured_keys_and_grant_what_they_say() {
    let node = start_dev(config(vec![
        Key { kid: Some("rsa-1".into()), material: KeyMaterial::Pem(RSA_PUBLIC.into()) },
        Key { kid: Some("ec-1".into()), material: KeyMaterial::Pem(EC_PUBLIC.into()) },
        Key { kid: Some("hs-1".into()), material: KeyMaterial::Hmac(b"shared".to_vec()) },
    ]))
    .await;
    let exp = now() + 600;
    let claims = serde_json::json!({
        "sub": "alice", "exp": exp,
        "channels": {"subscribe": ["vip:gold-*"], "publish": ["chat:lobby"]},
    });
    let ec = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap();
    // Refusals close with 4501, whatever is wrong.
    let rsa_public_as_secret = EncodingKey::from_secret(RSA_PUBLIC.as_bytes());
    for (what, t) in [
        ("no token", String::new()),
        ("garbage", "x.y.z".into()),
        (
            "hs256 signed with the rsa public key",
            token(Algorithm::HS256, Some("rsa-1"), &rsa_public_as_secret, claims.clone()),
        ),
        ("an unknown kid", token(Algorithm::RS256, Some("rsa-9"), &rsa(), claims.clone())),
        (
            "expired",
            token(Algorithm::RS256, Some("rsa-1"), &rsa(), serde_json::json!({"sub": "alice", "exp": now() - 10})),
        ),
        ("the wrong key for the kid", token(Algorithm::ES256, Some("rsa-1"), &ec, claims.clone())),
    ] {
        let (_, reply) = connect(node.http, &t).await;
        assert_eq!(reply["closed"], 4501, "{what}: {reply}");
    }
    for (alg, kid, key) in [
        (Algorithm::RS256, "rsa-1", rsa()),
        (Algorithm::ES256, "ec-1", ec.clone()),
        (Algorithm::HS256, "hs-1", EncodingKey::from_secret(b"shared")),
    ] {
        let (_, reply) = connect(node.http, &token(alg, Some(kid), &key, claims.clone())).await;
        assert_eq!(reply["connect"]["user"], "alice", "{alg:?}: {reply}");
        assert_eq!(reply["connect"]["expires_at"], exp, "{alg:?}");
    }

    let (alice, _) = connect(node.http, &token(Algorithm::RS256, Some("rsa-1"), &rsa(), claims.clone())).await;
    let bob_claims = serde_json::json!({"sub": "bob", "exp": exp});
    let (bob, _) = connect(node.http, &token(Algorithm::RS256, Some("rsa-1"), &rsa(), bob_claims)).await;
    let sub = |c: &str| serde_json::json!({"subscribe": {"channel": c}});
    let publish = |c: &str| serde_json::json!({"publish": {"channel": c, "data": 1}});
    let (a, b) = (0, 1);
    let cases: Vec<(&str, usize, serde_json::Value, Option<u32>)> = vec![
        ("anyone subscribes to a channel without namespace", a, sub("lobby"), None),
        ("nobody publishes on it", a, publish("lobby"), Some(103)),
        ("authenticated users subscribe to chat", b, sub("chat:lobby"), None),
        ("the token grants alice publishing on chat:lobby", a, publish("chat:lobby"), None),
        ("not bob", b, publish("chat:lobby"), Some(103)),
        ("nor chat:other to alice", a, publish("chat:other"), Some(103)),
        ("vip:gold-1 is granted to alice", a, sub("vip:gold-1"), None),
        ("vip:silver is not", a, sub("vip:silver"), Some(103)),
        ("bob has no vip grant", b, sub("vip:gold-1"), Some(103)),
        ("an unknown namespace is refused", a, sub("nowhere:x"), Some(103)),
        ("a personal channel to its user", a, sub("notes:#alice"), None),
        ("not to another", b, sub("notes:#alice"), Some(103)),
        ("a shared one to each listed", b, sub("notes:pair#alice,bob"), None),
    ];
    let mut sessions = [alice, bob];
    for (i, (what, who, cmd, want)) in cases.into_iter().enumerate() {
        let reply = command(&mut sessions[who], 10 + i as u32, cmd).await;
        let got = reply["error"]["code"].as_u64().map(|c| c as u32);
        assert_eq!(got, want, "{what}: {reply}");
    }
}

#[tokio::test]
async fn a_token_may_come_with_the_upgrade_request() {
    let mut c = config(vec![Key { kid: None, material: KeyMaterial::Hmac(b"s".to_vec()) }]);
    c.auth.query_param = Some("token".into());
    let node = start_dev(c).await;
    let t = token(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(b"s"),
        serde_json::json!({"sub": "carol", "exp": now() + 60}),
    );
    let bearer = format!("Bearer {t}");
    for (what, path, headers) in [
        ("an Authorization header", "/ws".to_owned(), vec![("Authorization", bearer.as_str())]),
        ("a query parameter", format!("/ws?token={t}"), vec![]),
    ] {
        let mut ws = RawWs::connect_with(node.http, &path, &headers).await;
        ws.text(r#"{"id":1,"connect":{}}"#).await;
        assert_eq!(ws.json().await["connect"]["user"], "carol", "{what}");
    }
}

#[tokio::test]
async fn a_session_refreshes_its_token_or_is_closed_with_4006_at_expiry() {
    let (node, metrics) =
        start_dev_metered(config(vec![Key { kid: None, material: KeyMaterial::Hmac(b"s".to_vec()) }])).await;
    let key = EncodingKey::from_secret(b"s");
    let soon = |sub: &str, secs: u64| {
        token(Algorithm::HS256, None, &key, serde_json::json!({"sub": sub, "exp": now() + secs}))
    };
    let (mut keeps, reply) = connect(node.http, &soon("dave", 2)).await;
    assert!(reply["connect"]["expires_at"].as_u64().unwrap() <= now() + 2);
    let (mut lapses, _) = connect(node.http, &soon("erin", 2)).await;
    // A refresh for another user is refused, and the session keeps its old token.
    let reply = command(&mut keeps, 2, serde_json::json!({"refresh": {"token": soon("mallory", 60)}})).await;
    assert_eq!(reply["error"]["code"], 103, "{reply}");
    let later = now() + 60;
    let reply = command(&mut keeps, 3, serde_json::json!({"refresh": {"token": soon("dave", 60)}})).await;
    assert_eq!(reply["refresh"]["expires_at"], later, "{reply}");
    let started = Instant::now();
    lapses.expect_close(4006).await;
    assert!(started.elapsed() < Duration::from_secs(4), "closed at expiry, not later");
    metrics.expect_limit_hits("token_expired", 1).await;
    // A window, not a wait for a condition: half a second past the old token's expiry
    // (plus leeway, as erin's close shows), the refreshed session must still be open.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(command(&mut keeps, 4, serde_json::json!({"ping": {}})).await["ping"], serde_json::json!({}));
}

/// Serves `body` as the JWKS at `/jwks` until dropped; counts the requests.
async fn jwks_server(
    body: std::sync::Arc<std::sync::Mutex<String>>,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = hits.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let (body, hits) = (body.clone(), counted.clone());
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let body = body.lock().unwrap().clone();
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            });
        }
    });
    (addr, hits)
}

#[tokio::test]
async fn keys_from_a_jwks_url_are_fetched_and_refreshed_for_an_unknown_kid() {
    let body = std::sync::Arc::new(std::sync::Mutex::new(r#"{"keys":[]}"#.to_owned()));
    let (jwks, hits) = jwks_server(body.clone()).await;
    let mut c = config(Vec::new());
    c.auth.jwks_url = Some(format!("http://{jwks}/jwks"));
    c.auth.jwks_min_refresh = Duration::from_millis(300);
    let node = start_dev(c).await;
    let t = token(Algorithm::RS256, Some("rsa-1"), &rsa(), serde_json::json!({"sub": "frank", "exp": now() + 60}));
    let (_, reply) = connect(node.http, &t).await;
    assert_eq!(reply["closed"], 4501, "the key is not published yet: {reply}");
    // The key is rotated in: the next unknown kid fetches again (after the rate limit).
    *body.lock().unwrap() = format!(r#"{{"keys":[{}]}}"#, RSA_JWK.trim());
    switchboard_tests::eventually("the rotated key is fetched", async || {
        connect(node.http, &t).await.1["connect"]["user"] == "frank"
    })
    .await;
    // The server goes bad: the keys already fetched are kept.
    *body.lock().unwrap() = "not json".into();
    let unknown =
        token(Algorithm::RS256, Some("rsa-2"), &rsa(), serde_json::json!({"sub": "frank", "exp": now() + 60}));
    let fetched_good = hits.load(std::sync::atomic::Ordering::SeqCst);
    switchboard_tests::eventually("an unknown kid fetches the bad JWKS", async || {
        let (_, reply) = connect(node.http, &unknown).await;
        assert_eq!(reply["closed"], 4501);
        hits.load(std::sync::atomic::Ordering::SeqCst) > fetched_good
    })
    .await;
    let (_, reply) = connect(node.http, &t).await;
    assert_eq!(reply["connect"]["user"], "frank", "the last good keys are kept: {reply}");
    // Unknown kids in a burst fetch at most once per min_refresh.
    let before = hits.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..10 {
        let (_, reply) = connect(node.http, &unknown).await;
        assert_eq!(reply["closed"], 4501);
    }
    let fetched = hits.load(std::sync::atomic::Ordering::SeqCst) - before;
    assert!(fetched <= 2, "{fetched} fetches for 10 unknown kids in a burst");
}

/// A token's `channels.presence` / `channels.history` open a channel's presence / history
/// to a session that may not subscribe to it (a moderator's dashboard); without the grant,
/// or for another channel, it stays refused, and the grant never opens subscribing.
#[tokio::test]
async fn a_presence_or_history_grant_reads_a_channel_its_session_may_not_subscribe_to() {
    let secret = EncodingKey::from_secret(b"s");
    let mut c = config(vec![Key { kid: None, material: KeyMaterial::Hmac(b"s".to_vec()) }]);
    // `staff`: presence on, no client may subscribe; `hroom`: history kept (see
    // `switchboard_tests::namespaces`), subscribing granted only.
    let staff = NamespaceRules { subscribe: Access::Nobody, presence: true, ..Default::default() };
    let hroom = NamespaceRules { subscribe: Access::Granted, presence: true, ..Default::default() };
    c.channels.namespaces.extend([("staff".to_owned(), staff), ("hroom".to_owned(), hroom)]);
    let node = start_dev(c).await;
    let mint = |sub: &str, channels: serde_json::Value| {
        token(
            Algorithm::HS256,
            None,
            &secret,
            serde_json::json!({"sub": sub, "exp": now() + 600, "channels": channels}),
        )
    };
    // A member of hroom:1 (granted) is what presence will show.
    let (mut member, _) = connect(node.http, &mint("member", serde_json::json!({"subscribe": ["hroom:*"]}))).await;
    assert!(command(&mut member, 2, serde_json::json!({"subscribe": {"channel": "hroom:1"}})).await["error"].is_null());
    let grants = serde_json::json!({"presence": ["staff:*", "hroom:*"], "history": ["hroom:1"]});
    let (moderator, reply) = connect(node.http, &mint("moderator", grants)).await;
    assert_eq!(reply["connect"]["user"], "moderator", "{reply}");
    let (nobody, _) = connect(node.http, &mint("nobody", serde_json::json!({}))).await;

    let presence = |c: &str| serde_json::json!({"presence": {"channel": c}});
    let stats = |c: &str| serde_json::json!({"presence_stats": {"channel": c}});
    let history = |c: &str| serde_json::json!({"history": {"channel": c}});
    let sub = |c: &str| serde_json::json!({"subscribe": {"channel": c}});
    let (m, n) = (0, 1);
    let cases: Vec<(&str, usize, serde_json::Value, Option<u32>)> = vec![
        ("the presence grant reads staff:room", m, presence("staff:room"), None),
        ("and its stats", m, stats("staff:room"), None),
        ("but does not subscribe there", m, sub("staff:room"), Some(103)),
        ("without the grant, presence stays refused", n, presence("staff:room"), Some(103)),
        ("the history grant reads hroom:1", m, history("hroom:1"), None),
        ("not hroom:2 (another channel)", m, history("hroom:2"), Some(103)),
        ("the presence grant does not read history", m, history("staff:room"), Some(103)),
        ("nor subscribes to hroom:1", m, sub("hroom:1"), Some(103)),
        ("without the grant, history stays refused", n, history("hroom:1"), Some(103)),
    ];
    let mut sessions = [moderator, nobody];
    for (i, (what, who, cmd, want)) in cases.into_iter().enumerate() {
        let reply = command(&mut sessions[who], 10 + i as u32, cmd).await;
        let got = reply["error"]["code"].as_u64().map(|c| c as u32);
        assert_eq!(got, want, "{what}: {reply}");
    }
    let [mut moderator, _] = sessions;
    // The presence the grant reads is the real one: the member is in it.
    switchboard_tests::eventually("the member shows in hroom:1's presence", async || {
        let reply = command(&mut moderator, 99, presence("hroom:1")).await;
        reply["presence"]["clients"].as_array().is_some_and(|c| c.iter().any(|s| s["user"] == "member"))
    })
    .await;
}

/// Serves `body` at `/jwks` over TLS with `issued`'s certificate until dropped.
async fn https_jwks_server(issued: &switchboard_tls::testing::Issued, body: String) -> SocketAddr {
    let files = switchboard_tls::TlsFiles::new(&issued.cert, &issued.key);
    let acceptor = switchboard_tls::ServerTls::load(&files, &[b"http/1.1"]).unwrap().acceptor();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else { return };
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

/// An `https://` JWKS of a private identity provider is trusted with `auth.jwks_ca`;
/// without it (the system's roots) its keys are never fetched.
#[tokio::test]
async fn a_jwks_url_of_a_private_ca_is_trusted_with_jwks_ca() {
    let pki = switchboard_tls::testing::TestPki::new("e2e-jwks-ca");
    let server = https_jwks_server(&pki.server("127.0.0.1", 1), format!(r#"{{"keys":[{}]}}"#, RSA_JWK.trim())).await;
    let t = token(Algorithm::RS256, Some("rsa-1"), &rsa(), serde_json::json!({"sub": "grace", "exp": now() + 60}));
    let node_with = |ca: Option<std::path::PathBuf>| {
        let mut c = config(Vec::new());
        c.auth.jwks_url = Some(format!("https://127.0.0.1:{}/jwks", server.port()));
        c.auth.jwks_ca = ca;
        c.auth.jwks_min_refresh = Duration::from_millis(100);
        start_dev(c)
    };
    let trusted = node_with(Some(pki.ca_file())).await;
    switchboard_tests::eventually("the key is fetched over https", async || {
        connect(trusted.http, &t).await.1["connect"]["user"] == "grace"
    })
    .await;
    // The system's roots do not know the test CA: several refetches later, still refused.
    // Windows, not waits for a condition: each connect asks for a refetch of the unknown key,
    // and 150 ms apart (over jwks_min_refresh) each of the three gets one, which fails.
    let untrusted = node_with(None).await;
    for _ in 0..3 {
        let (_, reply) = connect(untrusted.http, &t).await;
        assert_eq!(reply["closed"], 4501, "{reply}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// A backend's server-side `Subscribe` is not checked against the channel rules (the
/// backend decided): it puts a session on a channel its client could not subscribe to,
/// and the session receives the channel's publications there.
#[tokio::test]
async fn a_backend_subscribe_bypasses_the_channel_rules() {
    use switchboard_wire::pb;
    let node = start_dev(config(vec![Key { kid: None, material: KeyMaterial::Hmac(b"s".to_vec()) }])).await;
    let t = token(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(b"s"),
        serde_json::json!({"sub": "heidi", "exp": now() + 600}),
    );
    let (mut ws, reply) = connect(node.http, &t).await;
    let session = reply["connect"]["session"].as_str().expect("a session id").to_owned();
    // `vip` is granted-only and heidi's token grants nothing.
    let refused = command(&mut ws, 2, serde_json::json!({"subscribe": {"channel": "vip:backstage"}})).await;
    assert_eq!(refused["error"]["code"], 103, "{refused}");
    let mut api = switchboard_tests::grpc(node.grpc).await;
    let target = Some(pb::server_subscribe_request::Target::Session(session));
    api.subscribe(pb::ServerSubscribeRequest { target, channel: "vip:backstage".into() }).await.unwrap();
    let pushed = ws.json().await;
    assert_eq!(pushed["subscribed"]["channel"], "vip:backstage", "{pushed}");
    let publish = pb::PublishApiRequest {
        channel: "vip:backstage".into(),
        data: bytes::Bytes::from_static(b"{\"n\":1}"),
        ..Default::default()
    };
    api.publish(publish).await.unwrap();
    let delivered = ws.json().await;
    assert_eq!(delivered["pub"]["channel"], "vip:backstage", "{delivered}");
    assert_eq!(delivered["pub"]["data"], serde_json::json!({"n": 1}));
}
