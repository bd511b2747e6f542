//! TLS: `wss` on a dev node whose certificate is renewed while clients stay connected.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_client::{Client, ClientConfig, ClientError};
use switchboard_tests::{eventually_async, gateway_config, grpc, start_dev};
use switchboard_tls::TlsFiles;
use switchboard_tls::pki_types::{CertificateDer, ServerName};
use switchboard_tls::testing::TestPki;
use switchboard_wire::pb;
use tokio::net::TcpStream;

/// The certificate a TLS server at `addr` presents now, to a client trusting `ca`.
async fn served_certificate(addr: std::net::SocketAddr, ca: &std::path::Path) -> CertificateDer<'static> {
    let config = switchboard_tls::client_config(Some(ca), &[]).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let tls = switchboard_tls::tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().expect("a certificate")[0].clone()
}

async fn wss_client(url: &str, ca: &std::path::Path) -> Client {
    Client::connect(ClientConfig::new(url).ca_file(ca).reconnect(false)).await.expect("wss client connects")
}

async fn next_data(client: &mut Client) -> Bytes {
    tokio::time::timeout(switchboard_tests::DEADLINE, client.next_publication())
        .await
        .expect("a publication in time")
        .expect("connection open")
        .data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_delivers_and_a_renewed_certificate_reaches_new_connections_while_old_ones_keep_receiving() {
    let pki = TestPki::new("e2e-wss");
    let issued = pki.server("gateway", 1);
    let mut config = gateway_config();
    config.tls = Some(TlsFiles { reload_interval: Duration::from_millis(100), ..issued.files() });
    let node = start_dev(config).await;
    let url = format!("wss://127.0.0.1:{}/ws", node.http.port());
    let mut api = grpc(node.grpc).await;
    let publish = |data: &'static str| pb::PublishApiRequest { channel: "tls:room".into(), data: Bytes::from(data) };

    let mut old = wss_client(&url, &pki.ca_file()).await;
    old.subscribe("tls:room").await.unwrap();
    api.publish(publish("1")).await.unwrap();
    assert_eq!(next_data(&mut old).await, "1");
    assert_eq!(served_certificate(node.http, &pki.ca_file()).await, issued.der);

    let renewed = pki.renew_server(&issued, 2);
    eventually_async("new connections get the renewed certificate", || async {
        served_certificate(node.http, &pki.ca_file()).await == renewed.der
    })
    .await;
    let mut new = wss_client(&url, &pki.ca_file()).await;
    new.subscribe("tls:room").await.unwrap();
    api.publish(publish("2")).await.unwrap();
    assert_eq!(next_data(&mut new).await, "2");
    assert_eq!(next_data(&mut old).await, "2", "the connection from before the renewal still receives");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_wss_arrives_whole_and_in_order() {
    let pki = TestPki::new("e2e-burst");
    let mut config = gateway_config();
    config.tls = Some(pki.server("gateway", 1).files());
    let node = start_dev(config).await;
    let url = format!("wss://127.0.0.1:{}/ws", node.http.port());
    let mut client = wss_client(&url, &pki.ca_file()).await;
    client.subscribe("tls:burst").await.unwrap();
    // More than the socket buffers and rustls's 64 KiB hold at once: writes go partly
    // through the backlog, direct and queued.
    let payload = format!("\"{}\"", "x".repeat(8 * 1024));
    let mut api = grpc(node.grpc).await;
    let n = 300;
    let sending = tokio::spawn(async move {
        for i in 0..n {
            let data = Bytes::from(format!("[{i},{payload}]"));
            api.publish(pb::PublishApiRequest { channel: "tls:burst".into(), data }).await.unwrap();
        }
    });
    for i in 0..n {
        let data = next_data(&mut client).await;
        assert!(data.starts_with(format!("[{i},").as_bytes()), "publication {i} out of order");
    }
    sending.await.unwrap();
}

#[tokio::test]
async fn clients_that_do_not_trust_the_certificate_or_speak_plain_ws_are_refused_clearly() {
    let pki = TestPki::new("e2e-refused");
    let strangers = TestPki::new("e2e-strangers");
    let mut config = gateway_config();
    config.tls = Some(pki.server("gateway", 1).files());
    let node = start_dev(config).await;
    let port = node.http.port();
    let untrusting = Client::connect(
        ClientConfig::new(format!("wss://127.0.0.1:{port}/ws")).ca_file(strangers.ca_file()).reconnect(false),
    )
    .await;
    match untrusting {
        Err(ClientError::Tls { why, .. }) => assert!(why.contains("UnknownIssuer"), "{why}"),
        Err(e) => panic!("expected a TLS error, got {e}"),
        Ok(_) => panic!("a client trusting another CA connected"),
    }
    let plain = Client::connect(ClientConfig::new(format!("ws://127.0.0.1:{port}/ws")).reconnect(false)).await;
    assert!(matches!(plain, Err(ClientError::Handshake { .. })), "plain ws to a wss port: {:?}", plain.err());
    // The node still serves a client that does it right.
    let ok = wss_client(&format!("wss://127.0.0.1:{port}/ws"), &pki.ca_file()).await;
    ok.subscribe("tls:after").await.unwrap();
}
