//! The binary itself: `dev` and the client tools as a user runs them, their messages and
//! their exit statuses (0 ok, 1 runtime failure, 64 usage error).

pub(crate) mod kit;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use kit::{DevNode, Running, closed_port, root, run, run_shell, silent_port};
use switchboard_tests::binary;

#[test]
fn sub_prints_what_pub_sends_through_a_dev_node() {
    // Namespace `t` keeps history (the default is live-only): publications carry offsets.
    let config = kit::config_file("[channels.namespaces.t]\nhistory_size = 100\n");
    let node = DevNode::start(&["--config", config.to_str().unwrap()]);
    assert!(node.banner.contains(&format!("http://127.0.0.1:{}/", node.http)), "{}", node.banner);
    assert!(node.banner.contains(&node.ws()), "{}", node.banner);
    let mut sub = Running::start(&["sub", "--url", &node.ws(), "--count", "2", "t:a", "t:b"]);
    node.wait_presence("t:a", 1);
    node.wait_presence("t:b", 1);
    let publish = |channel: &str, data: &str| {
        let out = run(&["pub", "--grpc", &node.grpc_url(), channel, data]);
        assert_eq!(out.code, Some(0), "pub failed: {}", out.stderr);
        serde_json::from_str::<serde_json::Value>(&out.stdout).unwrap()
    };
    let ack = publish("t:a", r#"{"text":"hi"}"#);
    assert_eq!(ack["offset"], 1);
    publish("t:b", "[1,2]");
    let line = || serde_json::from_str::<serde_json::Value>(&sub.stdout.recv_timeout(kit::LIMIT).unwrap()).unwrap();
    let (first, second) = (line(), line());
    assert_eq!(first["channel"], "t:a");
    assert_eq!(first["data"], serde_json::json!({"text": "hi"}));
    assert_eq!(first["offset"], 1);
    assert_eq!(first["epoch"], ack["epoch"]);
    assert_eq!(second["data"], serde_json::json!([1, 2]));
    assert_eq!(sub.exit_code(), Some(0), "sub exits 0 after --count publications");
}

#[test]
fn the_dev_banner_commands_work_as_printed_from_the_workspace_root() {
    let mut node = DevNode::start(&[]);
    let bin = binary().canonicalize().unwrap();
    let shown = bin.strip_prefix(root()).map(|p| p.display().to_string()).unwrap_or_else(|_| bin.display().to_string());
    let sub = node.banner_line("subscribe:");
    let publish = node.banner_line("publish:");
    assert_eq!(sub, format!("{shown} sub --url ws://127.0.0.1:{}/ws chat:lobby", node.http));
    assert_eq!(publish, format!("{shown} pub --grpc 127.0.0.1:{} chat:lobby '{{\"text\":\"hi\"}}'", node.grpc));
    let out = run_shell(&format!("{sub} --count 0"));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let out = run_shell(&publish);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let ack: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    // Live-only by default: delivered, not stored, so no position.
    assert_eq!((ack["channel"].as_str(), ack.get("offset"), ack.get("epoch")), (Some("chat:lobby"), None, None));
}

#[test]
fn dev_logs_carry_no_colour_when_stderr_is_not_a_terminal() {
    let node = DevNode::start(&[]);
    let deadline = std::time::Instant::now() + kit::LIMIT;
    while !node.log().contains("control replica started") {
        assert!(std::time::Instant::now() < deadline, "no start-up log line:\n{}", node.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!node.log().contains("\x1b["), "ANSI escapes in a piped log:\n{:?}", node.log());
}

#[test]
fn bad_flags_exit_64_and_help_lists_every_command() {
    let out = run(&["dev", "--listen", "not-an-address"]);
    assert_eq!(out.code, Some(64), "{}", out.stderr);
    assert_eq!(run(&["dev", "--ping-interval", "soon"]).code, Some(64));
    let help = run(&["--help"]);
    assert_eq!(help.code, Some(0));
    for cmd in ["dev", "sub", "pub", "history", "history-remove", "sessions", "presence", "send", "disconnect"] {
        assert!(help.stdout.contains(cmd), "--help lacks {cmd}");
    }
    let dev_help = run(&["dev", "--help"]).stdout;
    for flag in ["--listen", "--grpc-listen", "--max-message-size", "--max-queue-bytes", "SWITCHBOARD_LISTEN"] {
        assert!(dev_help.contains(flag), "dev --help lacks {flag}");
    }
    for cmd in ["sub", "pub", "history", "history-remove", "sessions", "presence", "send", "disconnect"] {
        let help = run(&[cmd, "--help"]).stdout;
        assert!(help.contains("--timeout") && help.contains("SWITCHBOARD_TIMEOUT"), "{cmd} --help lacks --timeout");
    }
    let send_help = run(&["send", "--help"]).stdout;
    assert!(send_help.contains(r#"{"sent":true}"#) && send_help.contains("no one counts"), "{send_help}");
}

#[test]
fn an_invalid_control_setting_exits_64() {
    let out =
        run(&["control", "--nats", "nats://127.0.0.1:1", "--grpc-listen", "127.0.0.1:0", "--replica-id", "bad id"]);
    assert_eq!(out.code, Some(64), "{}", out.stderr);
}

/// What a tool can tell before contacting a server exits 64; an unreachable server exits 1,
/// at once, saying `connection refused` once with the address.
#[test]
fn exit_statuses_follow_the_documented_table() {
    let grpc = format!("127.0.0.1:{}", closed_port());
    let ws = format!("ws://127.0.0.1:{}/ws", closed_port());
    let cases: [(&[&str], i32, &str); 12] = [
        (&["pub", "--grpc", &grpc, "a b", "1"], 64, "invalid channel \"a b\": channel name has a character"),
        (&["pub", "--grpc", &grpc, "a:b", "not json"], 64, "DATA must be one JSON value"),
        (&["sub", "--url", &ws, "ok:a", "ns:"], 64, "invalid channel \"ns:\": channel name part is empty"),
        (&["presence", "--grpc", &grpc, ""], 64, "invalid channel \"\": channel name is empty"),
        (&["send", "--grpc", &grpc, "--user", "u", "{"], 64, "DATA must be one JSON value"),
        (&["disconnect", "--grpc", &grpc, "--user", "u", "--code", "1000"], 64, "--code 1000 is outside 4000..=4999"),
        (
            &["pub", "--grpc", "https://127.0.0.1:1", "--ca", "/nonexistent/ca.pem", "a:b", "1"],
            64,
            "cannot read CA file",
        ),
        (&["sub", "--url", "http://127.0.0.1:1/ws", "a:b"], 64, "only ws:// and wss:// URLs"),
        (&["pub", "--timeout", "soon", "a:b", "1"], 64, "not a duration"),
        (&["pub", "--grpc", &grpc, "a:b", "1"], 1, &format!("cannot connect to http://{grpc}: connection refused")),
        (&["sessions", "--grpc", &grpc], 1, &format!("cannot connect to http://{grpc}: connection refused")),
        (&["sub", "--url", &ws, "a:b"], 1, &format!("cannot connect to {ws}: connection refused")),
    ];
    for (args, code, message) in cases {
        let out = run(args);
        assert_eq!(out.code, Some(code), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(message), "{args:?}: {:?} lacks {message:?}", out.stderr);
        assert_eq!(out.stderr.matches("refused").count(), usize::from(code == 1), "{args:?}: {}", out.stderr);
        assert!(out.took < Duration::from_secs(3), "{args:?} took {:?}", out.took);
    }
}

/// Against a server that accepts and never answers, every tool gives up at its --timeout.
#[test]
fn every_tool_gives_up_on_a_silent_server_within_its_timeout() {
    let port = silent_port();
    let grpc = format!("127.0.0.1:{port}");
    let ws = format!("ws://127.0.0.1:{port}/ws");
    let cases: [&[&str]; 9] = [
        &["pub", "--grpc", &grpc, "a:b", "1"],
        &["pub", "--grpc", &grpc, "--stream", "a:b"],
        &["history", "--grpc", &grpc, "a:b"],
        &["history-remove", "--grpc", &grpc, "a:b"],
        &["sessions", "--grpc", &grpc],
        &["presence", "--grpc", &grpc, "a:b"],
        &["send", "--grpc", &grpc, "--session", "s", "1"],
        &["disconnect", "--grpc", &grpc, "--user", "u"],
        &["sub", "--url", &ws, "a:b"],
    ];
    for args in cases {
        let out = run(&[args, &["--timeout", "1s"]].concat());
        let url = if args[0] == "sub" { ws.clone() } else { format!("http://{grpc}") };
        assert_eq!(out.code, Some(1), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(&format!("no answer from {url} within 1s (is ")), "{args:?}: {}", out.stderr);
        assert!(out.took < Duration::from_secs(3), "{args:?} took {:?}", out.took);
    }
}

/// A tool pointed at the wrong port or path says what answered there, in one line.
#[test]
fn a_wrong_port_or_path_is_named() {
    let node = DevNode::start(&[]);
    let nats = switchboard_tests::nats::NatsServer::start();
    let (http, grpc, nats) = (node.http, node.grpc, nats.port());
    let cases: [(&[&str], String); 5] = [
        (
            &["sub", "--url", &format!("ws://127.0.0.1:{grpc}/ws"), "a:b"],
            format!("ws://127.0.0.1:{grpc}/ws did not upgrade to WebSocket: got HTTP/2 frames (is this the gRPC port?"),
        ),
        (
            &["sub", "--url", &format!("ws://127.0.0.1:{http}/wss"), "a:b"],
            format!("404 Not Found at ws://127.0.0.1:{http}/wss: the WebSocket endpoint is /ws"),
        ),
        (
            &["sub", "--url", &format!("ws://127.0.0.1:{nats}/ws"), "a:b"],
            "got a NATS greeting (is this the NATS port?".into(),
        ),
        (
            &["pub", "--grpc", &format!("127.0.0.1:{http}"), "a:b", "1"],
            format!("http://127.0.0.1:{http} answered HTTP/1.1, not gRPC (is this the WebSocket port?"),
        ),
        (
            &["pub", "--grpc", &format!("127.0.0.1:{nats}"), "a:b", "1"],
            format!("http://127.0.0.1:{nats} greeted as a NATS server, not gRPC (is this the NATS port?"),
        ),
    ];
    for (args, message) in cases {
        let out = run(args);
        assert_eq!(out.code, Some(1), "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(&message), "{args:?}: {:?} lacks {message:?}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{args:?}: {}", out.stderr);
    }
}

#[test]
fn a_rejected_token_is_reported_with_its_close_code_and_not_retried() {
    let node = DevNode::start(&["--token-secret", "s3cret"]);
    let out = run(&["sub", "--url", &node.ws(), "--token", "not-a-jwt", "a:b"]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let expected = format!(
        "switchboard: {} closed the session: 4501 unauthorized (the connect token was rejected; not retrying)\n",
        node.ws()
    );
    assert_eq!(out.stderr, expected);
    assert!(out.took < Duration::from_secs(2), "not retried: took {:?}", out.took);
}

#[test]
fn sub_reports_disconnects_in_words_and_stops_on_a_code_that_says_not_to_reconnect() {
    let node = DevNode::start(&[]);
    let mut sub = Running::start(&["sub", "--url", &node.ws(), "d:x"]);
    let first = node.wait_presence("d:x", 1)[0]["session"].as_str().unwrap().to_owned();
    let out = run(&["disconnect", "--grpc", &node.grpc_url(), "--session", &first]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(sub.stderr_line("disconnected"), "disconnected: 4005 disconnected, reconnecting");
    let deadline = std::time::Instant::now() + kit::LIMIT;
    let second = loop {
        let now = node.presence("d:x");
        if let Some(s) = now.first().and_then(|s| s["session"].as_str()).filter(|s| *s != first) {
            break s.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "sub never came back");
        std::thread::sleep(Duration::from_millis(50));
    };
    let out =
        run(&["disconnect", "--grpc", &node.grpc_url(), "--session", &second, "--code", "4503", "--reason", "bye"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let line = sub.stderr_line("closed the session");
    assert_eq!(
        line,
        format!(
            "switchboard: {} closed the session: 4503 bye (disconnected by a backend, which asked the client not to reconnect; not retrying)",
            node.ws()
        )
    );
    assert_eq!(sub.exit_code(), Some(1));
}

#[test]
fn send_counts_sessions_for_a_session_and_leaves_the_count_out_for_a_user() {
    let node = DevNode::start(&[]);
    let _sub = Running::start(&["sub", "--url", &node.ws(), "s:x"]);
    let session = node.wait_presence("s:x", 1)[0]["session"].as_str().unwrap().to_owned();
    let cases =
        [("--session", session.as_str(), r#"{"sent":true,"sessions":1}"#), ("--user", "alice", r#"{"sent":true}"#)];
    for (flag, target, printed) in cases {
        let out = run(&["send", "--grpc", &node.grpc_url(), flag, target, r#"{"n":1}"#]);
        assert_eq!(out.code, Some(0), "{flag}: {}", out.stderr);
        assert_eq!(out.stdout.trim(), printed, "{flag}");
    }
}

/// `pub` retries UNAVAILABLE within its --timeout: a server that refuses the first two
/// calls gets the third; one that always refuses is reported after the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pub_retries_unavailable_within_its_timeout() {
    use switchboard_wire::pb::switchboard_api_server::SwitchboardApiServer;
    let node = switchboard_tests::start_dev(switchboard_tests::gateway_config()).await;
    let cases = [
        (2, "5s", Some(0), "\"offset\":1"),
        (usize::MAX, "1s", Some(1), "publish failed: UNAVAILABLE: warming up (still after 1s)"),
    ];
    for (refusals, timeout, code, output) in cases {
        let left = Arc::new(AtomicUsize::new(refusals));
        let counter = left.clone();
        let server = SwitchboardApiServer::with_interceptor(node.control.api(), move |req| {
            match counter.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
                Ok(_) => Err(tonic::Status::unavailable("warming up")),
                Err(_) => Ok(req),
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let serving = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(server)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        let grpc = addr.to_string();
        let out =
            tokio::task::spawn_blocking(move || run(&["pub", "--grpc", &grpc, "--timeout", timeout, "chat:x", "1"]))
                .await
                .unwrap();
        serving.abort();
        assert_eq!(out.code, code, "{refusals} refusals: {}", out.stderr);
        assert!(format!("{}{}", out.stdout, out.stderr).contains(output), "{refusals} refusals: {out:?}");
        if refusals != usize::MAX {
            assert_eq!(left.load(Ordering::SeqCst), 0, "both refusals were met");
        }
    }
}

#[test]
fn sub_prints_joins_and_leaves_and_presence_shows_the_token_info() {
    use switchboard_tests::procs::{SECRET, token_with_info};
    let config = kit::config_file("[channels.namespaces.room]\npresence = true\njoin_leave = true\n");
    let node = DevNode::start(&["--config", config.to_str().unwrap(), "--token-secret", SECRET]);
    let line =
        |r: &Running| serde_json::from_str::<serde_json::Value>(&r.stdout.recv_timeout(kit::LIMIT).unwrap()).unwrap();
    let watcher = Running::start(&["sub", "--url", &node.ws(), "room:1"]);
    let own = line(&watcher);
    assert_eq!((&own["join"]["channel"], &own["join"]["client"]["user"]), (&"room:1".into(), &"".into()), "{own}");
    assert!(own["join"]["client"].get("info").is_none(), "no info without a token: {own}");
    let token = token_with_info("alice", Some(serde_json::json!({"name": "Alice"})));
    let alice = Running::start(&["sub", "--url", &node.ws(), "--token", &token, "room:1"]);
    let joined = line(&watcher);
    let client = &joined["join"]["client"];
    assert_eq!(
        (&client["user"], &client["info"]),
        (&"alice".into(), &serde_json::json!({"name": "Alice"})),
        "{joined}"
    );
    let sessions = node.wait_presence("room:1", 2);
    let shown = sessions.iter().find(|s| s["user"] == "alice").expect("alice listed");
    assert_eq!(shown["info"], serde_json::json!({"name": "Alice"}), "the presence tool shows info");
    drop(alice);
    let left = line(&watcher);
    assert_eq!(left["leave"]["client"]["session"], client["session"], "killing alice's sub ends her session: {left}");
}

/// `dev` reads the gRPC API's keys, key file and TLS from the config file as `control`
/// does (a file with `control.api_keys` once left dev's API open); a flag wins over the file.
#[test]
fn dev_serves_its_api_with_the_keys_and_tls_of_the_config_file() {
    let pki = switchboard_tls::testing::TestPki::new("e2e-dev-api");
    let issued = pki.server("dev", 1);
    let ca = pki.ca_file();
    let ca = ca.to_str().unwrap();
    let (file_key, flag_key) = ("a-key-from-the-file-0123", "a-key-from-the-flag-0123");
    let config = kit::config_file(&format!(
        "[control]\napi_keys = [\"{file_key}\"]\n[control.tls]\ncert = {:?}\nkey = {:?}\n",
        issued.cert.to_str().unwrap(),
        issued.key.to_str().unwrap()
    ));
    let config = config.to_str().unwrap();
    let publish = |grpc: &str, key: Option<&str>| {
        let mut args = vec!["pub", "--grpc", grpc, "--ca", ca, "--timeout", "5s", "t:x", "1"];
        if let Some(key) = key {
            args.extend(["--api-key", key]);
        }
        run(&args)
    };
    let mut node = DevNode::start(&["--config", config]);
    let grpc = node.banner_line("grpc:");
    assert_eq!(grpc, format!("https://127.0.0.1:{}", node.grpc), "[control.tls] serves the API over TLS");
    let out = publish(&grpc, None);
    assert_eq!(out.code, Some(1), "no key: {}", out.stderr);
    assert!(out.stderr.contains("UNAUTHENTICATED"), "{}", out.stderr);
    let out = publish(&grpc, Some(file_key));
    assert_eq!(out.code, Some(0), "the file's key: {}", out.stderr);
    drop(node);

    // --api-keys wins over control.api_keys; a key file works as for control.
    let mut node = DevNode::start(&["--config", config, "--api-keys", flag_key]);
    let grpc = node.banner_line("grpc:");
    assert_eq!(publish(&grpc, Some(file_key)).code, Some(1), "the file's key is replaced by the flag's");
    assert_eq!(publish(&grpc, Some(flag_key)).code, Some(0));
    drop(node);
    let keys = kit::config_file(&format!("# rotated in\n{flag_key}\n"));
    let with_file = kit::config_file(&format!("[control]\napi_keys_file = {:?}\n", keys.to_str().unwrap()));
    let node = DevNode::start(&["--config", with_file.to_str().unwrap()]);
    assert_eq!(run(&["pub", "--grpc", &node.grpc_url(), "--timeout", "5s", "t:x", "1"]).code, Some(1));
    let out = run(&["pub", "--grpc", &node.grpc_url(), "--api-key", flag_key, "--timeout", "5s", "t:x", "1"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

/// `config check dev` runs exactly what `dev` checks before it starts: what one refuses
/// (exit 64, same reason), the other refuses too.
#[test]
fn config_check_dev_refuses_what_dev_refuses() {
    let closed = kit::config_file("[control]\nallow_unauthenticated_api = false\n");
    let half_tls = kit::config_file("[gateway.tls]\ncert = \"/etc/switchboard/tls.crt\"\n");
    let cases: [(Vec<&str>, &str); 3] = [
        (vec!["--api-keys", "short"], "shorter than 16"),
        (vec!["--config", closed.to_str().unwrap()], "the gRPC API needs API keys"),
        (vec!["--config", half_tls.to_str().unwrap()], "gateway.tls.key: missing"),
    ];
    for (args, why) in cases {
        let port = format!("127.0.0.1:{}", closed_port());
        let listen: Vec<&str> = vec!["--listen", &port, "--grpc-listen", "127.0.0.1:0"];
        let dev: Vec<&str> = ["dev"].into_iter().chain(listen.iter().copied()).chain(args.iter().copied()).collect();
        let check: Vec<&str> = ["config", "check"].into_iter().chain(dev.iter().copied()).collect();
        for argv in [&dev, &check] {
            let out = run(argv);
            assert_eq!(out.code, Some(64), "{argv:?}: {}", out.stderr);
            assert!(out.stderr.contains(why), "{argv:?} says {why:?}: {}", out.stderr);
        }
    }
    // And what dev accepts, check accepts, saying whether each listener has TLS.
    let out = run(&["config", "check", "dev", "--api-keys", "a-long-enough-key-0123"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let summary: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!((&summary["gateway"]["tls"]["on"], &summary["grpc_tls"]["on"]), (&false.into(), &false.into()));
    assert_eq!(summary["api_keys"], true);
}

/// `switchboard token --config` signs with the file's key and takes its `auth.issuer` and
/// `auth.audience`: the token connects to a node of the same file (it was refused with
/// 4501 when the gateway checked an issuer the token lacked).
#[test]
fn a_token_minted_from_a_config_file_connects_to_a_node_of_that_file() {
    let config = kit::config_file(
        "[auth]\nallow_anonymous = false\nissuer = \"https://auth.example\"\naudience = \"switchboard\"\n\
         [[auth.keys]]\nhmac_secret = \"a-secret-for-the-test\"\n",
    );
    let config = config.to_str().unwrap();
    let node = DevNode::start(&["--config", config]);
    let mint = |extra: &[&str]| {
        let args: Vec<&str> = ["token", "--config", config, "--user", "alice"].iter().chain(extra).copied().collect();
        let out = run(&args);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        out.stdout.trim().to_owned()
    };
    let connects = |token: &str| run(&["sub", "--url", &node.ws(), "--token", token, "--count", "0", "a:b"]);
    let out = connects(&mint(&[]));
    assert_eq!(out.code, Some(0), "the configured issuer and audience: {}", out.stderr);
    for other in [&["--iss", "https://other.example"][..], &["--aud", "another-app"]] {
        let out = connects(&mint(other));
        assert_eq!(out.code, Some(1), "{other:?}: {}", out.stderr);
        assert!(out.stderr.contains("4501"), "{other:?}: {}", out.stderr);
    }
}

#[test]
fn token_keys_come_from_environment_variables_as_pem_or_jwk() {
    let testdata = root().join("crates/switchboard-gateway/src/auth/testdata");
    let read = |name: &str| std::fs::read_to_string(testdata.join(name)).unwrap();
    let (ec_pub, rsa_jwk) = (read("ec.pub"), read("rsa.jwk.json"));
    let config = kit::config_file(
        "[auth]\nallow_anonymous = false\n\
         [[auth.keys]]\nkid = \"ec\"\npublic_key_env = \"SB_TEST_EC_PUB\"\n\
         [[auth.keys]]\nkid = \"rsa\"\njwk_env = \"SB_TEST_RSA_JWK\"\n",
    );
    let config = config.to_str().unwrap();
    // An unset variable is named, before anything starts.
    let out = run(&["config", "check", "dev", "--config", config]);
    assert_eq!(out.code, Some(64), "{}", out.stderr);
    assert!(out.stderr.contains("environment variable SB_TEST_EC_PUB is not set"), "{}", out.stderr);
    let node =
        DevNode::start_with_env(&["--config", config], &[("SB_TEST_EC_PUB", &ec_pub), ("SB_TEST_RSA_JWK", &rsa_jwk)]);
    for (key, kid) in [("ec.pem", "ec"), ("rsa.pem", "rsa")] {
        let key = testdata.join(key);
        let out = run(&["token", "--user", "erin", "--private-key", key.to_str().unwrap(), "--kid", kid]);
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        let out = run(&["sub", "--url", &node.ws(), "--token", out.stdout.trim(), "--count", "0", "a:b"]);
        assert_eq!(out.code, Some(0), "a token checked by the {kid} key from the environment: {}", out.stderr);
    }
}
