//! The TLS socket against a real rustls client over loopback.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use switchboard_tls::pki_types::ServerName;
use switchboard_tls::testing::TestPki;
use switchboard_tls::tokio_rustls::{TlsAcceptor, TlsConnector, client};
use switchboard_tls::{ServerTls, client_config};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Socket;

/// A server socket and the client's end, after the handshake; `early` is what the client
/// sends right away, and the server reads `consumed` bytes of it through tokio-rustls
/// before taking the connection over (as hyper does before an upgrade).
async fn pair(early: &[u8], consumed: usize) -> (Socket, client::TlsStream<TcpStream>, Vec<u8>) {
    let pki = TestPki::new("socket");
    let tls = ServerTls::load(&pki.server("server", 1).files(), &[]).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connector = TlsConnector::from(Arc::new(client_config(Some(&pki.ca_file()), &[]).unwrap()));
    let early = early.to_vec();
    let client = tokio::spawn(async move {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut s = connector.connect(ServerName::try_from("localhost").unwrap(), tcp).await.unwrap();
        s.write_all(&early).await.unwrap();
        s
    });
    let (tcp, _) = listener.accept().await.unwrap();
    let mut server = TlsAcceptor::from(tls.config()).accept(tcp).await.unwrap();
    let client = client.await.unwrap();
    let mut head = vec![0; consumed];
    server.read_exact(&mut head).await.unwrap();
    let (tcp, conn) = server.into_inner();
    (Socket::tls(tcp, conn), client, head)
}

/// Reads from `socket` until `want` bytes came, or the end.
async fn read_n(socket: &Socket, want: usize) -> (Vec<u8>, bool) {
    let mut buf = BytesMut::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while buf.len() < want {
        tokio::time::timeout_at(deadline, socket.readable()).await.expect("readable in time").unwrap();
        match socket.try_read_buf(&mut buf) {
            Ok(0) => return (buf.to_vec(), true),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return (buf.to_vec(), true),
        }
    }
    (buf.to_vec(), false)
}

#[tokio::test]
async fn plaintext_goes_both_ways_without_blocking() {
    let (socket, mut client, _) = pair(b"", 0).await;
    assert_eq!(socket.try_write(b"hello").unwrap(), 5);
    let mut got = [0u8; 5];
    client.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello");
    client.write_all(b"from the client").await.unwrap();
    assert_eq!(read_n(&socket, 15).await, (b"from the client".to_vec(), false));
    let mut buf = BytesMut::new();
    let nothing = socket.try_read_buf(&mut buf).unwrap_err();
    assert_eq!(nothing.kind(), std::io::ErrorKind::WouldBlock, "nothing more to read is WouldBlock, not the end");
}

#[tokio::test]
async fn what_the_upgrade_left_in_rustls_is_read_first() {
    let (socket, _client, head) = pair(b"GET / HTTP/1.1\r\n\r\n\x81\x05hello", 18).await;
    assert_eq!(head, b"GET / HTTP/1.1\r\n\r\n");
    let (rest, ended) = read_n(&socket, 7).await;
    assert_eq!((rest.as_slice(), ended), (&b"\x81\x05hello"[..], false));
}

#[tokio::test]
async fn a_backlog_waits_for_the_reader_and_nothing_overtakes_it() {
    let (socket, mut client, _) = pair(b"", 0).await;
    let socket = Arc::new(socket);
    // The client reads nothing: fill the TCP buffers from another thread, as the hub's
    // direct writes would, until the socket takes nothing more.
    let writer = socket.clone();
    let written = tokio::task::spawn_blocking(move || {
        let mut sent: Vec<u8> = Vec::new();
        let mut n = 0u32;
        loop {
            let chunk: Vec<u8> = (0..16 * 1024).map(|i| (n as usize + i) as u8).collect();
            match writer.try_write(&chunk) {
                Ok(k) => sent.extend_from_slice(&chunk[..k]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return sent,
                Err(e) => panic!("write failed: {e}"),
            }
            n += 1;
        }
    })
    .await
    .unwrap();
    assert!(socket.has_backlog(), "the last records did not fit the TCP socket");
    assert_eq!(socket.try_write(b"x").unwrap_err().kind(), std::io::ErrorKind::WouldBlock, "no write passes a backlog");
    // A session would poll the backlog beside everything else; here it is all it does.
    let flusher = socket.clone();
    let flushing = tokio::spawn(async move {
        let failed = std::future::poll_fn(|cx| match flusher.poll_backlog(cx) {
            std::task::Poll::Pending if !flusher.has_backlog() => std::task::Poll::Ready(None),
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(e) => std::task::Poll::Ready(Some(e)),
        })
        .await;
        assert!(failed.is_none(), "backlog failed: {failed:?}");
    });
    let mut got = vec![0u8; written.len()];
    client.read_exact(&mut got).await.unwrap();
    assert!(got == written, "every byte reported written arrived, in order");
    tokio::time::timeout(Duration::from_secs(5), flushing).await.unwrap().unwrap();
    assert!(!socket.has_backlog());
    assert_eq!(socket.try_write(b"after").unwrap(), 5);
    let mut after = [0u8; 5];
    client.read_exact(&mut after).await.unwrap();
    assert_eq!(&after, b"after");
}

#[tokio::test]
async fn a_write_that_leaves_a_backlog_wakes_the_waiting_flusher() {
    let (socket, mut client, _) = pair(b"", 0).await;
    let socket = Arc::new(socket);
    // The flusher waits first, with nothing to send (as an idle session does).
    let flusher = socket.clone();
    let flushed = tokio::spawn(async move {
        let failed =
            tokio::time::timeout(Duration::from_secs(10), std::future::poll_fn(|cx| flusher.poll_backlog(cx))).await;
        assert!(failed.is_err(), "poll_backlog is only ready on an error");
    });
    tokio::task::yield_now().await;
    let mut sent = 0;
    while !socket.has_backlog() {
        match socket.try_write(&[7u8; 32 * 1024]) {
            Ok(n) => sent += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    // Nobody but the woken flusher sends the backlog once the client reads.
    let mut got = vec![0u8; sent];
    tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
        .await
        .expect("the backlog arrives")
        .unwrap();
    assert!(got.iter().all(|b| *b == 7));
    flushed.abort();
}

#[tokio::test]
async fn the_end_of_the_stream_is_read_after_the_last_plaintext() {
    // A clean close: data, then close_notify.
    let (socket, mut client, _) = pair(b"", 0).await;
    client.write_all(b"bye").await.unwrap();
    client.shutdown().await.unwrap();
    let (got, ended) = read_n(&socket, 1024).await;
    assert_eq!((got.as_slice(), ended), (&b"bye"[..], true));
    // A truncation: the TCP connection dropped without close_notify.
    let (socket, mut client, _) = pair(b"", 0).await;
    client.write_all(b"cut").await.unwrap();
    client.flush().await.unwrap();
    drop(client);
    let (got, ended) = read_n(&socket, 1024).await;
    assert_eq!((got.as_slice(), ended), (&b"cut"[..], true));
}
