//! The API over a socket with API keys, TLS and mutual TLS: who gets through, and that
//! health stays open.

use std::net::SocketAddr;

use switchboard_bus::MemoryBroker;
use switchboard_tls::TlsFiles;
use switchboard_tls::testing::TestPki;
use switchboard_wire::pb::{self, switchboard_api_client::SwitchboardApiClient};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use super::*;
use crate::{ApiKeys, StartError};

const KEY: &str = "first-key-0123456789abcdef";
const NEXT_KEY: &str = "second-key-0123456789abcdef";

/// Serves a fresh replica with `config`; the server ends with the test.
async fn serve(config: ControlConfig) -> (Control, SocketAddr) {
    let broker = MemoryBroker::new();
    let control = replica_with(&broker, config).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = control.clone();
    tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });
    (control, addr)
}

/// `Info` with `key` as bearer (or none): its status code.
async fn info(channel: Channel, key: Option<&str>) -> Result<(), Code> {
    let mut req = tonic::Request::new(pb::InfoRequest {});
    if let Some(key) = key {
        req.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
    }
    SwitchboardApiClient::new(channel).info(req).await.map(drop).map_err(|s| s.code())
}

async fn healthy(channel: Channel) -> bool {
    HealthClient::new(channel).check(HealthCheckRequest { service: String::new() }).await.is_ok()
}

async fn plain(addr: SocketAddr) -> Channel {
    Channel::from_shared(format!("http://{addr}")).unwrap().connect().await.unwrap()
}

async fn tls(addr: SocketAddr, pki: &TestPki, identity: Option<(&std::path::Path, &std::path::Path)>) -> Channel {
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(std::fs::read(pki.ca_file()).unwrap()))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        config = config.identity(Identity::from_pem(std::fs::read(cert).unwrap(), std::fs::read(key).unwrap()));
    }
    Channel::from_shared(format!("https://{addr}")).unwrap().tls_config(config).unwrap().connect().await.unwrap()
}

#[tokio::test]
async fn api_keys_guard_the_api_and_health_stays_open() {
    let config = ControlConfig { api_keys: ApiKeys::new([KEY, NEXT_KEY]), ..config("c1") };
    let (_control, addr) = serve(config).await;
    let channel = plain(addr).await;
    let cases: [(Option<&str>, Result<(), Code>); 4] = [
        (None, Err(Code::Unauthenticated)),
        (Some("wrong-key-0123456789abcdef"), Err(Code::Unauthenticated)),
        (Some(KEY), Ok(())),
        (Some(NEXT_KEY), Ok(())),
    ];
    for (key, want) in cases {
        assert_eq!(info(channel.clone(), key).await, want, "key {key:?}");
    }
    assert!(healthy(channel).await, "health needs no key");
}

/// The history calls and `PublishStream` are behind the same keys as every other method.
#[tokio::test]
async fn the_history_calls_and_publish_stream_need_a_key_too() {
    let config = ControlConfig { api_keys: ApiKeys::new([KEY]), ..config("c1") };
    let (_control, addr) = serve(config).await;
    let mut api = SwitchboardApiClient::new(plain(addr).await);
    let history = pb::HistoryApiRequest { channel: "h:x".into(), ..Default::default() };
    let remove = pb::HistoryRemoveApiRequest { channel: "h:x".into() };
    let stream =
        tokio_stream::iter(vec![pb::PublishStreamRequest { id: 1, channel: "h:x".into(), ..Default::default() }]);
    let codes = [
        api.history(history).await.map(drop).map_err(|s| s.code()),
        api.history_remove(remove).await.map(drop).map_err(|s| s.code()),
        api.publish_stream(stream).await.map(drop).map_err(|s| s.code()),
    ];
    assert_eq!(codes, [Err(Code::Unauthenticated); 3]);
}

#[tokio::test]
async fn tls_serves_the_api_and_a_verified_client_certificate_stands_in_for_a_key() {
    let pki = TestPki::new("grpc");
    let server = pki.server("control", 1);
    let backend = pki.client("backend", 2);
    let files = server.files().with_client_ca(pki.ca_file(), false);
    let config = ControlConfig { tls: Some(files), api_keys: ApiKeys::new([KEY]), ..config("c1") };
    assert!(config.is_authenticated());
    let (_control, addr) = serve(config).await;
    let anonymous = tls(addr, &pki, None).await;
    assert!(healthy(anonymous.clone()).await);
    assert_eq!(info(anonymous.clone(), None).await, Err(Code::Unauthenticated));
    assert_eq!(info(anonymous, Some(KEY)).await, Ok(()));
    let with_cert = tls(addr, &pki, Some((&backend.cert, &backend.key))).await;
    assert_eq!(info(with_cert, None).await, Ok(()), "the client certificate authenticates");
}

#[tokio::test]
async fn a_renewed_grpc_certificate_reaches_new_connections() {
    let pki = TestPki::new("grpc-renew");
    let server = pki.server("control", 1);
    let files = TlsFiles { reload_interval: Duration::from_millis(50), ..server.files() };
    let (_control, addr) = serve(ControlConfig { tls: Some(files), ..config("c1") }).await;
    let old = tls(addr, &pki, None).await;
    assert_eq!(info(old.clone(), None).await, Ok(()), "no keys, no client CA: open");
    let renewed = pki.renew_server(&server, 2);
    let served = || async {
        let config = switchboard_tls::client_config(Some(&pki.ca_file()), &[b"h2"]).unwrap();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = switchboard_tls::pki_types::ServerName::try_from("localhost").unwrap();
        let connector = switchboard_tls::tokio_rustls::TlsConnector::from(Arc::new(config));
        let stream = connector.connect(name, tcp).await.unwrap();
        let (_, conn) = stream.get_ref();
        assert_eq!(conn.alpn_protocol(), Some(&b"h2"[..]));
        conn.peer_certificates().unwrap()[0].clone()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while served().await != renewed.der {
        assert!(Instant::now() < deadline, "the renewed certificate never reached a new connection");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(info(old, None).await, Ok(()), "the connection from before keeps working");
}

#[tokio::test]
async fn reflection_can_be_turned_off() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::{ServerReflectionRequest, server_reflection_request::MessageRequest};
    let (_control, addr) = serve(ControlConfig { reflection: false, ..config("c1") }).await;
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let got = ServerReflectionClient::new(plain(addr).await).server_reflection_info(tokio_stream::once(req)).await;
    assert_eq!(got.map(drop).map_err(|s| s.code()), Err(Code::Unimplemented));
}

#[test]
fn unusable_tls_files_and_keys_are_config_errors_naming_the_setting() {
    let missing = std::env::temp_dir().join("sb-no-such-cert.pem");
    let cases: [(ControlConfig, &str); 3] = [
        (ControlConfig { tls: Some(TlsFiles::new(&missing, &missing)), ..config("c1") }, "sb-no-such-cert.pem"),
        (ControlConfig { api_keys: ApiKeys::new(["short"]), ..config("c1") }, "api_keys"),
        (ControlConfig { api_keys: ApiKeys::default().with_file(&missing), ..config("c1") }, "api keys file"),
    ];
    for (config, want) in cases {
        let err = config.validate().unwrap_err();
        assert!(matches!(err, StartError::Config(_)) && err.to_string().contains(want), "{err}");
    }
}
