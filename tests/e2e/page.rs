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
        ("(code >= 4000 && code < 4500)", "a code not in the table reconnects only in 4000–4499 (and 1006, 1011)"),
        ("Math.random()", "reconnects are jittered"),
        ("ev.code", "the close code is shown"),
        ("ev.reason", "the close reason is shown"),
    ];
    for (needle, why) in cases {
        assert!(body.contains(needle), "page lacks {needle:?}: {why}");
    }
}

/// `code → (reason, reconnect)` of the page's `CLOSE_CODES` and of the table under
/// "## Close codes" in docs/protocol.md.
type CloseTable = std::collections::BTreeMap<u16, (String, bool)>;

fn page_close_codes(page: &str) -> CloseTable {
    let start = page.find("const CLOSE_CODES = {").expect("the page has CLOSE_CODES");
    let block = &page[start..];
    let block = &block[block.find('{').unwrap() + 1..block.find("};").unwrap()];
    // Entries read `4501: ["unauthorized", false]`.
    block
        .split("],")
        .filter_map(|entry| {
            let (code, rest) = entry.split_once(": [")?;
            let (reason, reconnect) = rest.trim_end_matches([']', ',', ' ', '\n']).rsplit_once(", ")?;
            Some((code.trim().parse().unwrap(), (reason.trim_matches('"').to_owned(), reconnect == "true")))
        })
        .collect()
}

fn protocol_close_codes() -> CloseTable {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md");
    let doc = std::fs::read_to_string(path).unwrap();
    let section = &doc[doc.find("\n## Close codes").expect("protocol.md has its close code table")..];
    section
        .lines()
        .skip(1)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|row| {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let code = cells.get(1)?.parse().ok()?;
            Some((code, (cells[2].to_owned(), cells[3] == "yes")))
        })
        .collect()
}

#[tokio::test]
async fn the_pages_close_code_table_is_protocol_mds() {
    let node = start_dev(gateway_config()).await;
    let (_, _, body) = get(node.http, "/").await;
    let (page, doc) = (page_close_codes(&body), protocol_close_codes());
    assert!(doc.len() >= 19 && doc.contains_key(&4009), "protocol.md's table was read: {doc:?}");
    assert_eq!(page, doc, "the demo page's CLOSE_CODES against docs/protocol.md's close code table");
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

#[tokio::test]
async fn the_chat_example_and_the_sdk_build_it_runs_on_are_served_with_the_page() {
    let node = start_dev(gateway_config()).await;
    let cases = [
        // (path, content type, what the body must contain)
        ("/chat/", "text/html", "<script type=\"module\" src=\"/chat/chat.js\">"),
        ("/chat", "text/html", "<script type=\"module\" src=\"/chat/chat.js\">"),
        ("/chat/chat.js", "text/javascript", "from \"./sdk/index.js\""),
        ("/chat/sdk/index.js", "text/javascript", "switchboard.v1.json"),
        ("/chat/sdk/codes.js", "text/javascript", "export function shouldReconnect"),
    ];
    for (path, ctype, needle) in cases {
        let (status, got, body) = get(node.http, path).await;
        assert_eq!(status, 200, "{path}");
        assert!(got.starts_with(ctype), "{path}: {got}");
        assert!(body.contains(needle), "{path} lacks {needle:?}");
    }
    // The SDK is served exactly as committed in clients/js/dist (which a Node test keeps fresh).
    let sdk = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../clients/js/dist/index.js")).unwrap();
    assert_eq!(get(node.http, "/chat/sdk/index.js").await.2, sdk);
    assert_eq!(get(node.http, "/chat/nope.js").await.0, 404);
    assert!(get(node.http, "/").await.2.contains("href=\"/chat/\""), "the demo page links to the chat");

    let off = start_dev(switchboard_gateway::GatewayConfig { serve_page: false, ..gateway_config() }).await;
    assert_eq!(get(off.http, "/chat/").await.0, 404);
    assert_eq!(get(off.http, "/chat/sdk/index.js").await.0, 404);
}

#[tokio::test]
async fn demo_tokens_are_minted_only_when_configured_and_connect_as_the_named_user() {
    use base64::Engine as _;
    let node = start_dev(gateway_config()).await;
    assert_eq!(get(node.http, "/demo/token?user=alice").await.0, 404, "no demo tokens unless configured");

    let secret = b"demo-test-secret".to_vec();
    let config = switchboard_gateway::GatewayConfig {
        demo_tokens: Some(switchboard_gateway::demo::DemoTokens { secret, ttl: std::time::Duration::from_secs(600) }),
        auth: switchboard_gateway::auth::AuthConfig::hmac("demo-test-secret"),
        ..gateway_config()
    };
    let node = start_dev(config).await;
    for bad in [
        "/demo/token",
        "/demo/token?user=",
        "/demo/token?user=a%20b",
        "/demo/token?user=aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ] {
        let (status, ctype, body) = get(node.http, bad).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(ctype.starts_with("application/json") && body.contains("\"error\""), "{bad}: {body}");
    }
    let (status, ctype, body) = get(node.http, "/demo/token?user=alice").await;
    assert_eq!(status, 200, "{body}");
    assert!(ctype.starts_with("application/json"), "{ctype}");
    let reply: serde_json::Value = serde_json::from_str(&body).unwrap();
    let token = reply["token"].as_str().unwrap().to_owned();
    let claims = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    assert_eq!((claims["sub"].as_str(), claims["info"]["name"].as_str()), (Some("alice"), Some("alice")));
    assert_eq!(claims["exp"], reply["expires_at"]);
    // The gateway takes it (anonymous sessions are off here, so a bad token would be refused).
    let mut client = switchboard_client::ClientConfig::new(switchboard_tests::ws_url(node.http)).reconnect(false);
    client.token = token;
    let client = switchboard_client::Client::connect(client).await.expect("a demo token connects");
    client.ping().await.unwrap();
}
