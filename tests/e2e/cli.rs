//! The binary itself: `dev`, `sub` and `pub` as a user runs them.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use switchboard_tests::{binary, free_port};

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} never opened");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sub_prints_what_pub_sends_through_a_dev_node() {
    let (http, grpc) = (free_port(), free_port());
    let bin = binary();
    let dev = Command::new(&bin)
        .args(["dev", "--listen", &format!("127.0.0.1:{http}"), "--grpc-listen", &format!("127.0.0.1:{grpc}")])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut dev = Kill(dev);
    let mut banner = String::new();
    let mut out = BufReader::new(dev.0.stdout.take().unwrap());
    while !banner.contains("grpc:") {
        out.read_line(&mut banner).unwrap();
    }
    assert!(banner.contains(&format!("http://127.0.0.1:{http}/")), "{banner}");
    assert!(banner.contains(&format!("ws://127.0.0.1:{http}/ws")), "{banner}");
    wait_for_port(grpc);

    let sub = Command::new(&bin)
        .args(["sub", "--url", &format!("ws://127.0.0.1:{http}/ws"), "--count", "2", "t:a", "t:b"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut sub = Kill(sub);
    // The subscriber is ready once its session shows up in the gateway's metrics-free view:
    // poll by publishing until the first line arrives.
    let mut lines = BufReader::new(sub.0.stdout.take().unwrap()).lines();
    let publish = |channel: &str, data: &str| {
        let out = Command::new(&bin)
            .args(["pub", "--grpc", &format!("http://127.0.0.1:{grpc}"), channel, data])
            .output()
            .unwrap();
        assert!(out.status.success(), "pub failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    // The subscriber prints nothing until a publication: wait until the registry shows it
    // subscribed to both channels.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let presence = |ch: &str| {
            let out = Command::new(&bin)
                .args(["presence", "--grpc", &format!("http://127.0.0.1:{grpc}"), ch])
                .output()
                .unwrap();
            !out.stdout.is_empty()
        };
        if presence("t:a") && presence("t:b") {
            break;
        }
        assert!(Instant::now() < deadline, "the subscriber never showed up in presence");
        std::thread::sleep(Duration::from_millis(50));
    }
    let ack = publish("t:a", r#"{"text":"hi"}"#);
    assert_eq!(ack["offset"], 1);
    publish("t:b", "[1,2]");
    let first: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let second: serde_json::Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    assert_eq!(first["channel"], "t:a");
    assert_eq!(first["data"], serde_json::json!({"text": "hi"}));
    assert_eq!(first["offset"], 1);
    assert_eq!(first["epoch"], ack["epoch"]);
    assert_eq!(second["data"], serde_json::json!([1, 2]));
    let status = sub.0.wait().unwrap();
    assert!(status.success(), "sub exits 0 after --count publications");
}

#[test]
fn bad_flags_exit_64_and_help_lists_every_command() {
    let bin = binary();
    let out = Command::new(&bin).args(["dev", "--listen", "not-an-address"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new(&bin).args(["dev", "--ping-interval", "soon"]).output().unwrap();
    assert_eq!(out.status.code(), Some(64));
    let help = Command::new(&bin).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for cmd in ["dev", "sub", "pub"] {
        assert!(help.contains(cmd), "--help lacks {cmd}");
    }
    let dev_help =
        String::from_utf8_lossy(&Command::new(&bin).args(["dev", "--help"]).output().unwrap().stdout).into_owned();
    for flag in ["--listen", "--grpc-listen", "--max-message-size", "--max-queue-bytes", "SWITCHBOARD_LISTEN"] {
        assert!(dev_help.contains(flag), "dev --help lacks {flag}");
    }
}

#[test]
fn an_invalid_control_setting_exits_64() {
    let out = Command::new(binary())
        .args(["control", "--nats", "nats://127.0.0.1:1", "--grpc-listen", "127.0.0.1:0", "--replica-id", "bad id"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn pub_rejects_data_that_is_not_json_before_sending() {
    let out = Command::new(binary()).args(["pub", "--grpc", "http://127.0.0.1:1", "a:b", "not json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("JSON"));
}
