//! TLS: `wss` on a dev node whose certificate is renewed while clients stay connected.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use switchboard_client::{Client, ClientConfig, ClientError};
use switchboard_tests::{eventually, gateway_config, grpc, start_dev};
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
    let publish = |data: &'static str| pb::PublishApiRequest {
        channel: "tls:room".into(),
        data: Bytes::from(data),
        ..Default::default()
    };

    let mut old = wss_client(&url, &pki.ca_file()).await;
    old.subscribe("tls:room").await.unwrap();
    api.publish(publish("1")).await.unwrap();
    assert_eq!(next_data(&mut old).await, "1");
    assert_eq!(served_certificate(node.http, &pki.ca_file()).await, issued.der);

    let renewed = pki.renew_server(&issued, 2);
    eventually("new connections get the renewed certificate", || async {
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
            api.publish(pb::PublishApiRequest { channel: "tls:burst".into(), data, ..Default::default() })
                .await
                .unwrap();
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

// --- the binary, as an operator runs it ---

/// Runs `switchboard ARGS` to its exit (at most 20 s): status and stderr.
fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    use std::process::{Command, Stdio};
    let mut child = Command::new(switchboard_tests::binary())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
            return (status.code(), err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("switchboard {args:?} still ran after 20s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_open_api_and_unusable_tls_files_are_refused_before_anything_starts() {
    let missing = std::env::temp_dir().join("sb-e2e-missing.pem");
    let missing = missing.to_str().unwrap();
    let nats = "nats://127.0.0.1:1";
    let cases: [(&[&str], &str); 6] = [
        (&["control", "--nats", nats, "--grpc-listen", "127.0.0.1:0"], "--allow-unauthenticated-api"),
        (&["control", "--nats", nats, "--api-keys", "too-short"], "shorter than 16"),
        (
            &["control", "--nats", nats, "--allow-unauthenticated-api", "--tls-cert", missing, "--tls-key", missing],
            missing,
        ),
        (&["gateway", "--nats", nats, "--tls-cert", missing, "--tls-key", missing], missing),
        (&["dev", "--tls-cert", missing, "--tls-key", missing], missing),
        (&["gateway", "--nats", nats, "--nats-tls-ca", missing], missing),
    ];
    for (args, want) in cases {
        let (code, err) = run_to_exit(args);
        assert_eq!(code, Some(64), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?} says {want:?}: {err}");
    }
}

#[test]
fn a_wrong_nats_password_ends_start_up_at_once_saying_so() {
    let nats =
        switchboard_tests::nats::NatsServer::start_with("authorization {\n  user: sb\n  password: right-password\n}");
    let url = nats.url();
    let started = std::time::Instant::now();
    let (code, err) = run_to_exit(&[
        "gateway",
        "--allow-anonymous",
        "--nats",
        &url,
        "--listen",
        "127.0.0.1:0",
        "--nats-user",
        "sb",
        "--nats-password",
        "wrong",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains(&url) && err.contains("refused the credentials (authorization violation)"), "{err}");
    assert!(!err.contains("is nats-server running"), "no hint about a missing server: {err}");
    assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
}

#[test]
fn the_tools_reach_a_cluster_over_https_and_wss_with_an_api_key() {
    use std::io::BufRead;
    use switchboard_tests::procs;
    let pki = TestPki::new("e2e-tools");
    let (grpc_cert, ws_cert) = (pki.server("control", 1), pki.server("gateway", 2));
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let (ca, grpc_crt, grpc_key, ws_crt, ws_key) =
        (path(&pki.ca_file()), path(&grpc_cert.cert), path(&grpc_cert.key), path(&ws_cert.cert), path(&ws_cert.key));
    let nats = switchboard_tests::nats::NatsServer::start();
    let control = procs::control("c1", &[nats.url()], &["--tls-cert", &grpc_crt, "--tls-key", &grpc_key]);
    let gateway = procs::gateway("g1", &[nats.url()], &["--tls-cert", &ws_crt, "--tls-key", &ws_key]);
    let grpc = format!("https://127.0.0.1:{}", control.port);
    let publish = |key: &str| {
        run_to_exit(&["pub", "--grpc", &grpc, "--ca", &ca, "--api-key", key, "--timeout", "10s", "tools:x", "1"])
    };
    let (code, err) = publish(switchboard_tests::API_KEY);
    assert_eq!(code, Some(0), "{err}");
    let (code, err) = publish("not-the-key-0123456789");
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("UNAUTHENTICATED") && err.contains("--api-key"), "{err}");

    let url = format!("wss://127.0.0.1:{}/ws", gateway.port);
    let token = procs::token("tool-user");
    let mut sub = std::process::Command::new(switchboard_tests::binary())
        .args(["sub", "--url", &url, "--ca", &ca, "--token", &token, "--count", "1", "tools:x"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = sub.stdout.take().unwrap();
    // The child's stdout, read on a thread of its own: a blocking receiver is what it wants.
    #[allow(clippy::disallowed_methods)]
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // Publish until the subscription is up and the line arrives.
    let deadline = std::time::Instant::now() + switchboard_tests::DEADLINE;
    let line = loop {
        assert_eq!(publish(switchboard_tests::API_KEY).0, Some(0));
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(300)) {
            break line;
        }
        assert!(std::time::Instant::now() < deadline, "sub over wss printed nothing");
    };
    assert!(line.contains("\"channel\":\"tools:x\""), "{line}");
    let _ = sub.wait();
}

#[test]
fn the_tools_authenticate_to_a_mutual_tls_api_with_a_client_certificate() {
    use switchboard_tests::procs;
    let pki = TestPki::new("e2e-tools-mtls");
    let (server, backend) = (pki.server("control", 1), pki.client("backend", 2));
    let path = |p: &std::path::Path| p.to_str().unwrap().to_owned();
    let ca = path(&pki.ca_file());
    let nats = switchboard_tests::nats::NatsServer::start();
    let tls = ["--tls-cert", &path(&server.cert), "--tls-key", &path(&server.key), "--tls-client-ca", &ca];
    let control = procs::control("c1", &[nats.url()], &tls);
    let grpc = format!("https://127.0.0.1:{}", control.port);
    let base = ["pub", "--grpc", &grpc, "--ca", &ca, "--timeout", "10s"];
    let with = |extra: &[&str]| {
        let args: Vec<&str> = base.iter().chain(extra).chain(&["mtls:x", "1"]).copied().collect();
        run_to_exit(&args)
    };
    // The certificate alone authenticates the backend: no API key.
    let (code, err) = with(&["--cert", &path(&backend.cert), "--key", &path(&backend.key)]);
    assert_eq!(code, Some(0), "{err}");
    // Without one the server refuses the handshake, and the tool says so.
    let (code, err) = with(&[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--cert and --key"), "{err}");
    // --cert without --key is a usage error, before any connection.
    let (code, err) = with(&["--cert", &path(&backend.cert)]);
    assert_eq!(code, Some(64), "{err}");
}

/// Measures what an idle session costs the server with and without TLS: a `switchboard
/// dev` process each, 1,000 connected and subscribed sessions, VmRSS before and after.
/// Not a pass/fail test (`cargo test -p switchboard-tests --test e2e idle_session_memory
/// -- --ignored --nocapture`); docs/architecture.md records its figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run by hand"]
async fn idle_session_memory_with_and_without_tls() {
    const WARM: usize = 100;
    const N: usize = 1000;
    let pki = TestPki::new("e2e-rss");
    let cert = pki.server("gateway", 1);
    for tls in [false, true] {
        let (http, grpc) = (switchboard_tests::free_port(), switchboard_tests::free_port());
        let (listen, grpc_listen) = (format!("127.0.0.1:{http}"), format!("127.0.0.1:{grpc}"));
        let mut args = vec!["dev", "--no-page", "--listen", &listen, "--grpc-listen", &grpc_listen, "--log", "warn"];
        let (crt, key) = (cert.cert.to_str().unwrap(), cert.key.to_str().unwrap());
        if tls {
            args.extend(["--tls-cert", crt, "--tls-key", key]);
        }
        let mut child = std::process::Command::new(switchboard_tests::binary())
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let addr: std::net::SocketAddr = listen.parse().unwrap();
        eventually("dev listens", || async { TcpStream::connect(addr).await.is_ok() }).await;
        let url = format!("{}://127.0.0.1:{http}/ws", if tls { "wss" } else { "ws" });
        let rss = || {
            let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
            let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().to_owned();
            line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap()
        };
        let mut clients = Vec::new();
        let open = |n: usize| {
            let url = url.clone();
            let ca = pki.ca_file();
            async move {
                let mut v = Vec::new();
                for i in 0..n {
                    let c = Client::connect(ClientConfig::new(&url).ca_file(&ca).reconnect(false)).await.unwrap();
                    c.subscribe(&format!("idle:c{}", i % 10)).await.unwrap();
                    v.push(c);
                }
                v
            }
        };
        clients.extend(open(WARM).await);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let before = rss();
        clients.extend(open(N).await);
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = rss();
        println!(
            "{}: VmRSS {before} KiB with {WARM} sessions, {after} KiB with {}: {:.2} KiB per idle session",
            if tls { "wss" } else { "ws" },
            WARM + N,
            (after - before) as f64 / N as f64
        );
        drop(clients);
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Half a TLS pair (a certificate without its key, a key without its certificate, a
/// client CA alone) in a file, a flag or the environment is refused with the key and the
/// reason, exit 64; it used to leave TLS silently off.
#[test]
fn half_a_tls_pair_is_refused_rather_than_serving_plain() {
    let n = std::sync::atomic::AtomicUsize::new(0);
    let file = |text: &str| {
        let n = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("sb-e2e-half-tls-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (cert, key, ca) = ("cert = \"/x/tls.crt\"\n", "key = \"/x/tls.key\"\n", "client_ca = \"/x/ca.crt\"\n");
    let nats = "nats://127.0.0.1:1";
    let gateway = ["gateway", "--nats", nats, "--allow-anonymous", "--config"];
    let control = ["control", "--nats", nats, "--allow-unauthenticated-api", "--config"];
    let cases: Vec<(Vec<&str>, String, &str)> = vec![
        (gateway.to_vec(), file(&format!("[gateway.tls]\n{cert}")), "gateway.tls.key: missing"),
        (gateway.to_vec(), file(&format!("[gateway.tls]\n{key}")), "gateway.tls.cert: missing"),
        (gateway.to_vec(), file(&format!("[gateway.tls]\n{ca}")), "gateway.tls.client_ca: set without cert and key"),
        (control.to_vec(), file(&format!("[control.tls]\n{cert}")), "control.tls.key: missing"),
        (
            control.to_vec(),
            file(&format!("[control.tls]\n{cert}{key}client_cert_optional = true\n")),
            "control.tls.client_cert_optional: true without client_ca",
        ),
        (control.to_vec(), file(&format!("[control.tls]\n{ca}")), "control.tls.client_ca"),
        (vec!["dev", "--config"], file(&format!("[control.tls]\n{key}")), "control.tls.cert: missing"),
        (gateway.to_vec(), file("[nats]\ntls_cert = \"/x/c.crt\"\n"), "nats.tls_key: missing"),
        (gateway.to_vec(), file("[nats]\ntls_key = \"/x/c.key\"\n"), "nats.tls_cert: missing"),
    ];
    for (args, path, why) in &cases {
        let argv: Vec<&str> = args.iter().copied().chain([path.as_str()]).collect();
        let (code, err) = run_to_exit(&argv);
        assert_eq!(code, Some(64), "{argv:?}: {err}");
        assert!(err.contains(why), "{argv:?} says {why:?}: {err}");
    }
    // The flags: clap refuses half a pair (exit 64); so does the code, for the environment.
    for (args, why) in [
        (&["gateway", "--nats", nats, "--allow-anonymous", "--tls-cert", "/x/tls.crt"][..], "--tls-key"),
        (&["control", "--nats", nats, "--allow-unauthenticated-api", "--tls-key", "/x/tls.key"], "--tls-cert"),
        (&["gateway", "--nats", nats, "--allow-anonymous", "--nats-tls-cert", "/x/c.crt"], "--nats-tls-key"),
    ] {
        let (code, err) = run_to_exit(args);
        assert_eq!(code, Some(64), "{args:?}: {err}");
        assert!(err.contains(why), "{args:?}: {err}");
    }
    let out = std::process::Command::new(switchboard_tests::binary())
        .args(["config", "check", "gateway", "--nats", nats, "--allow-anonymous"])
        .env("SWITCHBOARD_TLS_CERT", "/x/tls.crt")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "SWITCHBOARD_TLS_CERT alone: {err}");
    assert!(err.contains("--tls-key"), "{err}");
}

/// `config check` says, per listener, whether it serves TLS.
#[test]
fn config_check_says_which_listeners_serve_tls() {
    let pki = TestPki::new("e2e-check-tls");
    let issued = pki.server("any", 1);
    let (cert, key, ca) = (issued.cert.to_str().unwrap(), issued.key.to_str().unwrap(), pki.ca_file());
    let config = std::env::temp_dir().join(format!("sb-e2e-check-tls-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        format!("[control.tls]\ncert = {cert:?}\nkey = {key:?}\nclient_ca = {:?}\n", ca.to_str().unwrap()),
    )
    .unwrap();
    let check = |args: &[&str]| {
        let out = std::process::Command::new(switchboard_tests::binary()).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let config = config.to_str().unwrap();
    let dev = check(&["config", "check", "dev", "--config", config, "--tls-cert", cert, "--tls-key", key]);
    assert_eq!(dev["gateway"]["tls"]["on"], true, "{dev}");
    assert_eq!(dev["grpc_tls"]["on"], true, "{dev}");
    assert_eq!(dev["grpc_tls"]["client_cert_required"], true, "{dev}");
    let control = check(&["config", "check", "control", "--nats", "nats://x:4222", "--config", config]);
    assert_eq!(control["grpc_tls"]["on"], true, "mutual TLS stands in for an API key: {control}");
    let gateway = check(&["config", "check", "gateway", "--nats", "nats://x:4222", "--allow-anonymous"]);
    assert_eq!(
        (&gateway["gateway"]["tls"]["on"], &gateway["nats"]["tls"]),
        (&false.into(), &"when the server asks".into())
    );
}
