//! NATS with TLS and credentials: a real `nats-server` that verifies client certificates,
//! or checks a password, a token or an nkey; a wrong credential fails at once, saying so.

use std::sync::Arc;
use std::time::{Duration, Instant};

use switchboard_bus::subjects::Address;
use switchboard_bus::{Message, Messages, NatsAuth, NatsBus, NatsConfig, NatsTls, NoDelivery};
use switchboard_tests::nats::NatsServer;
use switchboard_tls::testing::TestPki;

fn config(server: &NatsServer, tls: NatsTls, auth: NatsAuth) -> NatsConfig {
    let mut config = NatsConfig::new(vec![server.url()], "security-test");
    config.connect_timeout = Duration::from_secs(3);
    config.tls = tls;
    config.auth = auth;
    config
}

async fn connect(config: NatsConfig) -> Result<NatsBus, String> {
    NatsBus::connect(config, Arc::new(NoDelivery)).await.map_err(|e| e.to_string())
}

/// A request from one node answered by another: both connections carry traffic.
async fn round_trip(config: NatsConfig) {
    let (a, b) = (connect(config.clone()).await.unwrap(), connect(config).await.unwrap());
    let at = Address::Replica(Arc::from("echo"));
    let mut inbox = a.listen(&at, None).await.unwrap();
    tokio::spawn(async move {
        while let Some(m) = inbox.next().await {
            let reply = m.reply.expect("a request");
            a.reply(&reply, Message::new(m.message.payload)).await.unwrap();
        }
    });
    let answer = b.request(&at, Message::new("ping"), Duration::from_secs(5)).await.unwrap();
    assert_eq!(answer.payload, "ping");
}

fn tls_block(pki: &TestPki, verify: bool) -> String {
    let server = pki.server("nats", 1);
    format!(
        "tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  ca_file: \"{}\"\n  verify: {verify}\n  timeout: 2\n}}",
        server.cert.display(),
        server.key.display(),
        pki.ca_file().display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_client_certificate_reaches_a_server_that_verifies_clients() {
    let pki = TestPki::new("nats-mtls");
    let server = NatsServer::start_with(&tls_block(&pki, true));
    let client = pki.client("gateway", 2);
    let tls = NatsTls { ca: Some(pki.ca_file()), cert: Some(client.cert), key: Some(client.key), require: true };
    round_trip(config(&server, tls, NatsAuth::None)).await;
    // Without the client certificate the server refuses the handshake.
    let err = connect(config(&server, NatsTls { ca: Some(pki.ca_file()), ..NatsTls::default() }, NatsAuth::None))
        .await
        .err()
        .expect("no connection without a client certificate");
    assert!(err.contains(&server.url()), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_an_unknown_ca_is_refused_with_the_reason() {
    let pki = TestPki::new("nats-tls");
    let strangers = TestPki::new("nats-strangers");
    let server = NatsServer::start_with(&tls_block(&pki, false));
    round_trip(config(&server, NatsTls { ca: Some(pki.ca_file()), ..NatsTls::default() }, NatsAuth::None)).await;
    let err = connect(config(&server, NatsTls { ca: Some(strangers.ca_file()), ..NatsTls::default() }, NatsAuth::None))
        .await
        .err()
        .expect("a server the CA did not sign");
    assert!(err.contains(&server.url()) && err.contains("UnknownIssuer"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passwords_tokens_and_nkeys_are_checked_and_a_wrong_one_fails_at_once() {
    let seed = nkeys::KeyPair::new_user();
    let public = seed.public_key();
    let seed = seed.seed().unwrap();
    let cases: [(String, NatsAuth, NatsAuth); 3] = [
        (
            "authorization {\n  user: sb\n  password: s3cret-pass\n}".into(),
            NatsAuth::UserPassword { user: "sb".into(), password: "s3cret-pass".into() },
            NatsAuth::UserPassword { user: "sb".into(), password: "wrong".into() },
        ),
        (
            "authorization {\n  token: t0ken-for-tests\n}".into(),
            NatsAuth::Token("t0ken-for-tests".into()),
            NatsAuth::Token("wrong".into()),
        ),
        (
            format!("authorization {{\n  users: [ {{ nkey: {public} }} ]\n}}"),
            NatsAuth::NkeySeed(seed),
            NatsAuth::NkeySeed(nkeys::KeyPair::new_user().seed().unwrap()),
        ),
    ];
    for (block, right, wrong) in cases {
        let server = NatsServer::start_with(&block);
        round_trip(config(&server, NatsTls::default(), right)).await;
        let started = Instant::now();
        let err = connect(config(&server, NatsTls::default(), wrong.clone())).await.err().expect("wrong credentials");
        assert!(err.contains("authorization violation") && err.contains(&server.url()), "{wrong:?}: {err}");
        assert!(started.elapsed() < Duration::from_secs(2), "{wrong:?} took {:?}", started.elapsed());
        let none = connect(config(&server, NatsTls::default(), NatsAuth::None)).await.err().expect("no credentials");
        assert!(none.contains("authorization violation"), "{none}");
    }
}

#[test]
fn unusable_tls_files_and_seeds_are_refused_before_connecting() {
    let pki = TestPki::new("nats-files");
    let client = pki.client("c", 1);
    let other = pki.client("other", 2);
    let missing = pki.dir().join("missing.pem");
    let base = NatsConfig::new(vec!["nats://127.0.0.1:4222".into()], "files");
    let cases: [(NatsTls, NatsAuth, &str); 5] = [
        (NatsTls { ca: Some(missing.clone()), ..NatsTls::default() }, NatsAuth::None, "missing.pem"),
        (NatsTls { cert: Some(client.cert.clone()), ..NatsTls::default() }, NatsAuth::None, "needs its key"),
        (
            NatsTls { cert: Some(client.cert.clone()), key: Some(other.key.clone()), ..NatsTls::default() },
            NatsAuth::None,
            "does not fit",
        ),
        (NatsTls::default(), NatsAuth::NkeySeed("not-a-seed".into()), "nkey seed"),
        (NatsTls::default(), NatsAuth::CredsFile(missing.clone()), "cannot read nats creds file"),
    ];
    for (tls, auth, want) in cases {
        let config = NatsConfig { tls, auth, ..base.clone() };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains(want), "{err}");
    }
}
