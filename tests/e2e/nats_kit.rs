//! The test kit's own `nats-server` wrappers: a single node that can be killed and restarted,
//! and a routed cluster that survives losing a node. Speaks the NATS text protocol by hand
//! (no client library) so these tests check the kit, not a client.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use switchboard_tests::nats::{NatsCluster, NatsServer, read_info};

/// A raw NATS protocol connection.
struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    /// Connects, reads INFO, sends CONNECT and waits for the PONG to a PING.
    fn connect(port: u16) -> (Raw, serde_json::Value) {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connects");
        stream.set_read_timeout(Some(Duration::from_millis(250))).unwrap();
        let mut raw = Raw { writer: stream.try_clone().unwrap(), reader: BufReader::new(stream) };
        let info = raw.line().expect("INFO line");
        let info: serde_json::Value =
            serde_json::from_str(info.strip_prefix("INFO ").unwrap_or_else(|| panic!("not INFO: {info:?}"))).unwrap();
        raw.send("CONNECT {\"verbose\":false,\"pedantic\":false,\"protocol\":1}\r\nPING\r\n");
        raw.expect("PONG");
        (raw, info)
    }

    fn send(&mut self, s: &str) {
        self.writer.write_all(s.as_bytes()).unwrap();
    }

    /// The next protocol line, or None if nothing arrives within the read timeout.
    fn line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) => panic!("connection closed"),
            Ok(_) => Some(line.trim_end().to_owned()),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => None,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// Reads lines (answering PINGs) until one equals `want`.
    fn expect(&mut self, want: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            match self.line().as_deref() {
                Some(l) if l == want => return,
                Some("PING") => self.send("PONG\r\n"),
                Some(l) if l.starts_with("-ERR") => panic!("server error: {l}"),
                _ => {}
            }
        }
        panic!("no {want:?} within 10s");
    }
}

fn refuses(port: u16) -> bool {
    matches!(TcpStream::connect(("127.0.0.1", port)), Err(e) if e.kind() == ErrorKind::ConnectionRefused)
}

/// Subscribes on node `sub` and publishes on node `publ` until the message crosses (interest
/// takes a moment to propagate over the routes).
fn message_crosses(cluster: &NatsCluster, sub: usize, publ: usize, subject: &str) {
    let (mut s, _) = Raw::connect(cluster.node(sub).port());
    s.send(&format!("SUB {subject} 1\r\nPING\r\n"));
    s.expect("PONG");
    let (mut p, _) = Raw::connect(cluster.node(publ).port());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        p.send(&format!("PUB {subject} 2\r\nhi\r\n"));
        if let Some(line) = s.line() {
            assert_eq!(line, format!("MSG {subject} 1 2"), "unexpected line on the subscriber");
            assert_eq!(s.line().as_deref(), Some("hi"));
            return;
        }
        assert!(Instant::now() < deadline, "a message on {subject} never crossed from node {publ} to node {sub}");
    }
}

#[test]
fn single_server_greets_dies_and_comes_back_on_the_same_port() {
    let mut nats = NatsServer::start();
    let port = nats.port();
    assert_eq!(nats.url(), format!("nats://127.0.0.1:{port}"));

    let (mut c, info) = Raw::connect(port);
    assert_eq!(info["port"], port);
    assert_eq!(info["jetstream"], true, "JetStream is enabled: {info}");
    c.send("SUB kit.echo 1\r\nPUB kit.echo 2\r\nhi\r\n");
    c.expect("MSG kit.echo 1 2");
    drop(c);

    nats.kill();
    assert!(refuses(port), "port {port} still accepts after kill()");

    nats.restart();
    let info = read_info(port).expect("INFO after restart");
    assert_eq!(info["port"], port);
    let (mut c, _) = Raw::connect(port);
    c.send("PING\r\n");
    c.expect("PONG");

    let dir = nats.dir().to_owned();
    assert!(dir.join("nats.log").is_file(), "the log is captured");
    drop(nats);
    assert!(!dir.exists(), "drop removes {}", dir.display());
}

#[test]
fn three_node_cluster_routes_and_survives_losing_a_node() {
    let mut cluster = NatsCluster::start(3);
    assert_eq!(cluster.urls().len(), 3);
    for i in 0..3 {
        assert_eq!(cluster.url(i), format!("nats://127.0.0.1:{}", cluster.node(i).port()));
        assert_eq!(cluster.node(i).num_routes().unwrap(), 2, "node {i} is routed to the other two");
        let info = read_info(cluster.node(i).port()).unwrap();
        assert_eq!(info["server_name"], format!("sb-n{i}"));
        assert_eq!(info["cluster"], "sb");
    }
    message_crosses(&cluster, 0, 2, "kit.before");

    cluster.kill(1);
    assert!(refuses(cluster.node(1).port()), "node 1 still accepts after kill(1)");
    for i in [0, 2] {
        let (mut c, _) = Raw::connect(cluster.node(i).port());
        c.send("PING\r\n");
        c.expect("PONG");
    }
    cluster.wait_routes();
    message_crosses(&cluster, 2, 0, "kit.after");
}
