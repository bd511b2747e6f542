//! The demo page at `/` and the plain HTTP endpoints.

use switchboard_tests::{gateway_config, start_dev};

async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String, String) {
    use http_body_util::{BodyExt, Empty};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get(path).header("Host", addr.to_string()).body(Empty::<bytes::Bytes>::new()).unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let ctype = resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, ctype, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn the_page_is_served_self_contained_and_speaks_protocol_v1() {
    let node = start_dev(gateway_config()).await;
    let (status, ctype, body) = get(node.http, "/").await;
    assert_eq!(status, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    for needle in [
        "<form id=\"sub-form\"",
        "<form id=\"pub-form\"",
        "\"/ws\"",
        "switchboard.v1.json",
        "subscribe:",
        "publish:",
        "connect:",
    ] {
        assert!(body.contains(needle), "page lacks {needle:?}");
    }
    // Self-contained: no external scripts or styles.
    assert!(!body.contains("src=\"http") && !body.contains("href=\"http"), "the page loads something external");
}

#[tokio::test]
async fn the_page_handles_every_push_and_the_close_code_table_and_asks_for_no_favicon() {
    let node = start_dev(gateway_config()).await;
    let (status, _, body) = get(node.http, "/").await;
    assert_eq!(status, 200);
    let cases = [
        // (what the page must contain, why)
        ("<link rel=\"icon\" href=\"data:,\">", "an inline favicon, so the browser requests no /favicon.ico"),
        ("msg.pub", "publications are shown"),
        ("msg.message", "a backend's message push is shown"),
        ("msg.subscribed", "a backend's subscribed push is shown"),
        ("msg.unsubscribed", "a backend's unsubscribed push is shown"),
        ("not subscribed to", "publishing before subscribing says so"),
        ("code >= 4500 && code <= 4999", "a 45xx close is not reconnected"),
        ("4501: [\"unauthorized\", false]", "the close table's no-reconnect codes are known"),
        ("4001: [\"shutdown\", true]", "the close table's reconnect codes are known"),
        ("Math.random()", "reconnects are jittered"),
        ("ev.code", "the close code is shown"),
        ("ev.reason", "the close reason is shown"),
    ];
    for (needle, why) in cases {
        assert!(body.contains(needle), "page lacks {needle:?}: {why}");
    }
}

#[tokio::test]
async fn the_page_can_be_turned_off() {
    let node = start_dev(switchboard_gateway::GatewayConfig { serve_page: false, ..gateway_config() }).await;
    assert_eq!(get(node.http, "/").await.0, 404);
}

#[tokio::test]
async fn health_readiness_and_unknown_paths_answer_with_plain_statuses() {
    let node = start_dev(gateway_config()).await;
    assert_eq!(get(node.http, "/healthz").await.0, 200);
    // Ready once the control replica's first heartbeat was heard.
    let deadline = tokio::time::Instant::now() + switchboard_tests::DEADLINE;
    while get(node.http, "/readyz").await.0 != 200 {
        assert!(tokio::time::Instant::now() < deadline, "/readyz never became 200");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(get(node.http, "/nope").await.0, 404);
    assert_eq!(get(node.http, "/ws").await.0, 426, "a plain GET on /ws asks for an upgrade");
    // Without a recorder installed, /metrics says so rather than serving an empty page.
    assert_eq!(get(node.http, "/metrics").await.0, 404);
}
