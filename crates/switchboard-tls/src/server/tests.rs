use std::path::Path;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::testing::TestPki;
use crate::{ServerTls, TlsError, TlsFiles, client_config, client_config_with_identity};

/// Serves `tls` on a loopback port: every connection echoes what it reads.
async fn echo_server(tls: ServerTls) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = tls.acceptor();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else { return };
                let mut buf = [0u8; 1024];
                while let Ok(n @ 1..) = s.read(&mut buf).await {
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

async fn connect(
    addr: std::net::SocketAddr,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let config = client_config_with_identity(Some(ca), identity, &[]).unwrap();
    let tcp = TcpStream::connect(addr).await?;
    let mut s = TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await?;
    // TLS 1.3 reports a refused client certificate only on the first read.
    s.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    s.read_exact(&mut buf).await?;
    assert_eq!(&buf, b"ping");
    Ok(s)
}

fn peer_cert(s: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    s.get_ref().1.peer_certificates().unwrap()[0].clone()
}

async fn echoes(s: &mut TlsStream<TcpStream>) -> bool {
    let mut buf = [0u8; 5];
    s.write_all(b"hello").await.is_ok() && s.read_exact(&mut buf).await.is_ok() && &buf == b"hello"
}

#[tokio::test]
async fn a_handshake_gets_the_certificate_from_the_files() {
    let pki = TestPki::new("load");
    let issued = pki.server("server", 1);
    let tls = ServerTls::load(&issued.files(), &[]).unwrap();
    assert_eq!(tls.certificate(), issued.der);
    let addr = echo_server(tls).await;
    let s = connect(addr, &pki.ca_file(), None).await.unwrap();
    assert_eq!(peer_cert(&s), issued.der);
}

#[tokio::test]
async fn new_connections_get_a_renewed_certificate_and_open_ones_keep_working() {
    let pki = TestPki::new("renew");
    let issued = pki.server("server", 1);
    let tls = ServerTls::load(&TlsFiles { reload_interval: Duration::ZERO, ..issued.files() }, &[]).unwrap();
    let addr = echo_server(tls.clone()).await;
    let mut old = connect(addr, &pki.ca_file(), None).await.unwrap();
    assert!(!tls.reload().unwrap(), "nothing changed yet");
    let renewed = pki.renew_server(&issued, 2);
    assert!(tls.reload().unwrap());
    let new = connect(addr, &pki.ca_file(), None).await.unwrap();
    assert_eq!(peer_cert(&new), renewed.der);
    assert_eq!(peer_cert(&old), issued.der);
    assert!(echoes(&mut old).await, "the connection made before the reload still works");
}

#[tokio::test]
async fn a_broken_reload_keeps_the_current_certificate_until_the_files_are_fixed() {
    let pki = TestPki::new("broken");
    let issued = pki.server("server", 1);
    let tls = ServerTls::load(&TlsFiles { reload_interval: Duration::ZERO, ..issued.files() }, &[]).unwrap();
    let other = pki.server("other", 9);
    // Half a rotation: the new certificate with the old key.
    std::fs::copy(&other.cert, &issued.cert).unwrap();
    let err = tls.reload().unwrap_err().to_string();
    assert!(err.contains("does not fit"), "{err}");
    assert!(!tls.reload().unwrap(), "the same broken files are not tried again");
    assert_eq!(tls.certificate(), issued.der);
    let addr = echo_server(tls.clone()).await;
    assert_eq!(peer_cert(&connect(addr, &pki.ca_file(), None).await.unwrap()), issued.der);
    std::fs::copy(&other.key, &issued.key).unwrap();
    assert!(tls.reload().unwrap());
    assert_eq!(tls.certificate(), other.der);
}

#[tokio::test]
async fn the_reloader_notices_changed_files_by_itself() {
    let pki = TestPki::new("poll");
    let issued = pki.server("server", 1);
    let tls = ServerTls::load(&TlsFiles { reload_interval: Duration::from_millis(20), ..issued.files() }, &[]).unwrap();
    let renewed = pki.renew_server(&issued, 2);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while tls.certificate() != renewed.der {
        assert!(tokio::time::Instant::now() < deadline, "the new certificate was never loaded");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_secret_volume_that_swaps_a_symlink_is_followed() {
    // Kubernetes: tls.crt -> ..data/tls.crt, ..data -> ..2024_v1; an update writes ..2024_v2
    // and renames a new ..data link over the old one.
    let pki = TestPki::new("symlink");
    let (v1, v2) = (pki.server("v1", 1), pki.server("v2", 2));
    let vol = pki.dir().join("volume");
    for (dir, issued) in [("..v1", &v1), ("..v2", &v2)] {
        std::fs::create_dir_all(vol.join(dir)).unwrap();
        std::fs::copy(&issued.cert, vol.join(dir).join("tls.crt")).unwrap();
        std::fs::copy(&issued.key, vol.join(dir).join("tls.key")).unwrap();
    }
    std::os::unix::fs::symlink("..v1", vol.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/tls.crt", vol.join("tls.crt")).unwrap();
    std::os::unix::fs::symlink("..data/tls.key", vol.join("tls.key")).unwrap();
    let files = TlsFiles { reload_interval: Duration::ZERO, ..TlsFiles::new(vol.join("tls.crt"), vol.join("tls.key")) };
    let tls = ServerTls::load(&files, &[]).unwrap();
    assert_eq!(tls.certificate(), v1.der);
    std::os::unix::fs::symlink("..v2", vol.join("..data_tmp")).unwrap();
    std::fs::rename(vol.join("..data_tmp"), vol.join("..data")).unwrap();
    assert!(tls.reload().unwrap());
    assert_eq!(tls.certificate(), v2.der);
}

#[tokio::test]
async fn unusable_files_are_refused_with_the_file_named() {
    let pki = TestPki::new("errors");
    let good = pki.server("good", 1);
    let other = pki.server("other", 2);
    let garbage = pki.dir().join("garbage.pem");
    std::fs::write(&garbage, "not pem at all\n").unwrap();
    let missing = pki.dir().join("missing.pem");
    let cases: [(&str, TlsFiles, &str); 5] = [
        ("missing cert", TlsFiles::new(&missing, &good.key), "cannot read certificate file"),
        ("missing key", TlsFiles::new(&good.cert, &missing), "cannot read key file"),
        ("no certificate", TlsFiles::new(&garbage, &good.key), "holds no PEM certificate"),
        ("no key", TlsFiles::new(&good.cert, &garbage), "holds no PEM private key"),
        ("mismatch", TlsFiles::new(&good.cert, &other.key), "does not fit"),
    ];
    for (case, files, want) in cases {
        let err = ServerTls::load(&files, &[]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains(want), "{case}: {text}");
        if !matches!(err, TlsError::Config(_)) {
            assert!(text.contains(pki.dir().to_str().unwrap()), "{case} names the file: {text}");
        }
    }
    let err = ServerTls::load(&good.files().with_client_ca(&missing, true), &[]).unwrap_err().to_string();
    assert!(err.contains("cannot read client CA file") && err.contains("missing.pem"), "{err}");
}

#[tokio::test]
async fn mutual_tls_asks_for_a_client_certificate_from_the_client_ca() {
    let pki = TestPki::new("mtls");
    let strangers = TestPki::new("strangers");
    let server = pki.server("server", 1);
    let client = pki.client("backend", 2);
    let stranger = strangers.client("stranger", 3);
    for required in [true, false] {
        let tls = ServerTls::load(&server.files().with_client_ca(pki.ca_file(), required), &[]).unwrap();
        let addr = echo_server(tls).await;
        assert!(connect(addr, &pki.ca_file(), Some((&client.cert, &client.key))).await.is_ok(), "required {required}");
        let anonymous = connect(addr, &pki.ca_file(), None).await;
        assert_eq!(anonymous.is_ok(), !required, "without a certificate, required {required}");
        let refused = connect(addr, &pki.ca_file(), Some((&stranger.cert, &stranger.key))).await;
        assert!(refused.is_err(), "a certificate from another CA, required {required}");
    }
}

#[tokio::test]
async fn a_client_that_does_not_trust_the_ca_is_refused() {
    let pki = TestPki::new("trust");
    let other = TestPki::new("other");
    let tls = ServerTls::load(&pki.server("server", 1).files(), &[]).unwrap();
    let addr = echo_server(tls).await;
    let err = connect(addr, &other.ca_file(), None).await.unwrap_err().to_string();
    assert!(err.contains("UnknownIssuer") || err.contains("unknown issuer"), "{err}");
    // The plain client config helper loads the same way.
    assert!(client_config(Some(&pki.ca_file()), &[b"h2"]).unwrap().alpn_protocols == vec![b"h2".to_vec()]);
}
