//! The metrics of live processes: a `switchboard gateway` and a `switchboard control` on a
//! real `nats-server`, scraped on their admin ports, linted by `promtool check metrics`, and
//! compared with every metric name the Grafana dashboard and the alert rules use, so a
//! renamed metric fails here rather than in someone's dashboard. Their JSON logs carry the
//! `connect` and `grpc` spans.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bytes::Bytes;
use switchboard_tests::nats::NatsServer;
use switchboard_tests::procs::{self, Proc, user_client, wait_ready};
use switchboard_tests::{eventually, free_port, ws_url};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// `GET path` over plain HTTP/1.1: the status code and the body.
fn get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Ok((status, body))
}

fn promtool() -> PathBuf {
    let found = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("promtool")).find(|p| p.is_file()));
    found.unwrap_or_else(|| panic!("promtool is missing: run `make deps` (it installs Debian's prometheus package)"))
}

/// `promtool check metrics` on `text`: its findings, empty when it is clean.
fn promtool_findings(text: &str) -> String {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let findings = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() { findings.trim().to_owned() } else { format!("exit {}: {findings}", out.status) }
}

/// Every sample name and every `# TYPE` family in an exposition.
fn exposed(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter_map(|l| match l.strip_prefix("# TYPE ") {
            Some(t) => t.split(' ').next(),
            None if l.starts_with('#') || l.is_empty() => None,
            None => l.split(['{', ' ']).next(),
        })
        .map(str::to_owned)
        .collect()
}

/// The `switchboard_…` names a dashboard or rule file uses (all our metrics, and nothing
/// else of ours, start so).
fn used_names(text: &str) -> BTreeSet<String> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("switchboard_") {
        let before_ok = i == 0 || !rest[..i].ends_with(ident);
        let len = rest[i..].find(|c: char| !ident(c)).unwrap_or(rest.len() - i);
        if before_ok {
            names.insert(rest[i..i + len].to_owned());
        }
        rest = &rest[i + len..];
    }
    names
}

fn histograms(text: &str) -> BTreeSet<String> {
    text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" histogram")).map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_metrics_pass_promtool_and_cover_every_name_the_dashboard_and_rules_use() {
    let promtool = promtool();
    let nats = NatsServer::start();
    let urls = vec![nats.url()];
    let (control_admin, gateway_admin) = (free_port(), free_port());
    let control =
        procs::control("c1", &urls, &["--admin-listen", &format!("127.0.0.1:{control_admin}"), "--log-format", "json"]);
    let gateway_admin_arg = format!("127.0.0.1:{gateway_admin}");
    let gateway = procs::gateway(
        "g1",
        &urls,
        &["--admin-listen", &gateway_admin_arg, "--log-format", "json", "--log", "info,switchboard_gateway=debug"],
    );
    wait_ready(control.addr(), 1, 1).await;

    // Traffic that touches every family: a session that subscribes and receives, a refused
    // token, and API calls.
    let client = user_client(&gateway, "alice").await;
    client.subscribe("chat:lobby").await.unwrap();
    let mut api = switchboard_tests::grpc(control.addr()).await;
    let data = Bytes::from_static(b"{}");
    let publish = switchboard_wire::pb::PublishApiRequest {
        channel: "chat:lobby".into(),
        data: data.clone(),
        ..Default::default()
    };
    api.publish(publish.clone()).await.unwrap();
    client.publish("chat:lobby", data.clone()).await.expect("a client publish");
    let mut bad = switchboard_client::ClientConfig::new(ws_url(gateway.addr())).reconnect(false);
    bad.token = "not-a-jwt".into();
    assert!(switchboard_client::Client::connect(bad).await.is_err(), "a bad token is refused");
    // Enough publications for the sampled delivery histogram to have some.
    for _ in 0..64 {
        api.publish(publish.clone()).await.unwrap();
    }

    for (proc, port) in [(&control, control_admin), (&gateway, gateway_admin)] {
        assert_eq!(get(port, "/healthz").unwrap().0, 200, "{} /healthz on the admin port", proc.name);
        // Ready once the gateway heard a control replica's heartbeat.
        eventually(&format!("{} /readyz on the admin port", proc.name), async || {
            get(port, "/readyz").unwrap().0 == 200
        })
        .await;
    }
    let scrape = |port| get(port, "/metrics").unwrap().1;
    eventually("the sampled deliveries are recorded", async || {
        scrape(gateway_admin).contains("switchboard_gateway_delivery_duration_seconds_count{write=")
    })
    .await;
    let (control_text, gateway_text) = (scrape(control_admin), scrape(gateway_admin));
    // With an admin port, the client port (which may face the internet) keeps the probes
    // but not the metrics.
    assert_eq!(get(gateway.port, "/metrics").unwrap(), (404, "metrics are served on the admin port\n".to_owned()));
    assert_eq!(get(gateway.port, "/readyz").unwrap().0, 200, "the client port still serves /readyz");

    for (name, text) in [("control", &control_text), ("gateway", &gateway_text)] {
        assert_eq!(promtool_findings(text), "", "{} check metrics on {name}'s /metrics:\n{text}", promtool.display());
        assert!(text.contains("switchboard_build_info{"), "{name} exposes switchboard_build_info");
    }

    // The contract: what the dashboard and the rules name, the processes expose.
    let mut exposed_names = exposed(&control_text);
    exposed_names.extend(exposed(&gateway_text));
    let mut all_histograms = histograms(&control_text);
    all_histograms.extend(histograms(&gateway_text));
    for file in ["deploy/grafana/switchboard.json", "deploy/prometheus/rules.yaml"] {
        let text = std::fs::read_to_string(root().join(file)).unwrap();
        let used = used_names(&text);
        assert!(!used.is_empty(), "{file} names no metric");
        let missing: Vec<_> = used.iter().filter(|n| !exposed_names.contains(*n)).collect();
        assert!(missing.is_empty(), "{file} uses metrics no process exposes: {missing:?}");
        for name in &used {
            if let Some(base) = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)) {
                assert!(all_histograms.contains(base), "{file}: {name} belongs to {base}, which is not a histogram");
            }
        }
    }

    // JSON logs, with the spans.
    drop(client);
    let has_span = |p: &Proc, span: &str, event: &str| {
        p.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|v| v["span"]["name"] == span && v["fields"]["message"] == event)
    };
    eventually("the gateway logs its connect span as JSON", async || has_span(&gateway, "connect", "connected")).await;
    eventually("the gateway logs its subscribe span", async || has_span(&gateway, "subscribe", "subscribed")).await;
    eventually("the gateway logs its publish span", async || has_span(&gateway, "publish", "published")).await;
    eventually("control logs its grpc spans as JSON", async || has_span(&control, "grpc", "answered")).await;
}
