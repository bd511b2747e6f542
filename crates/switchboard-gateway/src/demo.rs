//! The chat example (`examples/chat`) and the SDK build it runs on (`clients/js/dist`),
//! embedded and served under `/chat/` with the demo page; and the demo token endpoint
//! `GET /demo/token?user=NAME`, which only `switchboard dev --demo-tokens` turns on.
//!
//! Architecture invariant: this file is the only place Rust reads `clients/js` or
//! `examples/`, and it reads only built files (a Node test fails when the committed SDK
//! build differs from a fresh `tsc` build), so building the binary needs no Node.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

/// Connect tokens minted for the demo: any user name gets one, signed with `secret`. For
/// trying the chat only, since anyone who reaches the port may be anyone; `switchboard
/// gateway` never sets it.
#[derive(Clone)]
pub struct DemoTokens {
    /// The HMAC (HS256) secret; the gateway's `auth.keys` must hold it too.
    pub secret: Vec<u8>,
    /// How long a minted token is valid. Default 10 minutes.
    pub ttl: Duration,
}

impl std::fmt::Debug for DemoTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoTokens").field("secret", &"<redacted>").field("ttl", &self.ttl).finish()
    }
}

/// Longest user name `/demo/token` mints for.
const MAX_DEMO_USER: usize = 32;

/// The embedded files under `/chat/`: path, content type, body.
const FILES: &[(&str, &str, &str)] = &[
    ("/chat/", "text/html; charset=utf-8", include_str!("../../../examples/chat/index.html")),
    ("/chat/chat.js", "text/javascript; charset=utf-8", include_str!("../../../examples/chat/chat.js")),
    ("/chat/sdk/index.js", "text/javascript; charset=utf-8", include_str!("../../../clients/js/dist/index.js")),
    ("/chat/sdk/codes.js", "text/javascript; charset=utf-8", include_str!("../../../clients/js/dist/codes.js")),
];

type Body = Full<Bytes>;

/// The embedded chat file at `path` (`/chat` is `/chat/`), if there is one.
pub(crate) fn chat_file(path: &str) -> Option<Response<Body>> {
    let path = if path == "/chat" { "/chat/" } else { path };
    let (_, ctype, body) = FILES.iter().find(|(p, _, _)| *p == path)?;
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    Some(r)
}

/// `GET /demo/token?user=NAME`: `{"token":…,"user":…,"expires_at":…}`, a token for `NAME`
/// (1 to 32 of `[A-Za-z0-9_-]`) whose `info` claim is `{"name": NAME}`; `400` otherwise.
pub(crate) fn token(demo: &DemoTokens, query: Option<&str>) -> Response<Body> {
    let user = query.unwrap_or("").split('&').find_map(|kv| kv.strip_prefix("user=")).unwrap_or("");
    let valid = !user.is_empty()
        && user.len() <= MAX_DEMO_USER
        && user.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid {
        return json(
            StatusCode::BAD_REQUEST,
            format!("{{\"error\":\"user must be 1 to {MAX_DEMO_USER} of A-Z a-z 0-9 _ -\"}}"),
        );
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let exp = now + demo.ttl.as_secs().max(1);
    let claims = serde_json::json!({"sub": user, "iat": now, "exp": exp, "info": {"name": user}});
    let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    match jsonwebtoken::encode(&header, &claims, &jsonwebtoken::EncodingKey::from_secret(&demo.secret)) {
        Ok(token) => {
            json(StatusCode::OK, serde_json::json!({"token": token, "user": user, "expires_at": exp}).to_string())
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot mint a demo token");
            json(StatusCode::INTERNAL_SERVER_ERROR, "{\"error\":\"cannot mint a token\"}".into())
        }
    }
}

fn json(status: StatusCode, body: String) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}
