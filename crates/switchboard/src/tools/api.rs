//! The gRPC API as the client tools call it: `host:port` or a URL, a deadline on every call
//! with UNAVAILABLE retried within it, and failures said once, in a person's words.

use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use anyhow::anyhow;
use switchboard_wire::pb::{self, switchboard_api_client::SwitchboardApiClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use super::{human, no_answer};
use crate::UsageError;
use crate::cli::GrpcArgs;

pub(super) type ApiClient = SwitchboardApiClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <key>` to every call, when `--api-key` is given.
#[derive(Clone)]
pub(super) struct Bearer(Option<AsciiMetadataValue>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = &self.0 {
            req.metadata_mut().insert("authorization", value.clone());
        }
        Ok(req)
    }
}

/// What `--timeout` expires on: the server the tools expect at a gRPC address.
const EXPECTED: &str = "a control replica";

/// A connected API client and the tool's deadline for each call.
pub(super) struct Api {
    url: String,
    timeout: Duration,
    client: ApiClient,
    /// No `--cert` was given: a TLS connection the server ends may want one.
    without_cert: bool,
}

// === impl Api ===

impl Api {
    /// Connects to `--grpc` within `--timeout`.
    pub(super) async fn connect(args: &GrpcArgs) -> anyhow::Result<Api> {
        let (url, timeout) = (grpc_url(&args.grpc)?, args.timeout);
        let bearer = match &args.api_key {
            None => None,
            Some(key) => Some(
                MetadataValue::try_from(format!("Bearer {}", key.trim()))
                    .map_err(|_| UsageError("--api-key must be printable ASCII".into()))?,
            ),
        };
        let mut endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| UsageError(format!("invalid --grpc {:?}: {}", args.grpc, chain(&e))))?
            .connect_timeout(timeout)
            .timeout(timeout);
        if url.starts_with("https://") {
            endpoint = endpoint
                .tls_config(tls_config(args)?)
                .map_err(|e| UsageError(format!("tls for --grpc {:?}: {}", args.grpc, chain(&e))))?;
        }
        let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => return Err(transport_error(&url, timeout, &e).await),
            Err(_) => return Err(no_answer(&url, timeout, EXPECTED)),
        };
        let client = SwitchboardApiClient::with_interceptor(channel, Bearer(bearer));
        Ok(Api { url, timeout, client, without_cert: args.cert.is_none() })
    }

    /// Calls `f` until it answers, fails with anything but a server's UNAVAILABLE, or
    /// `--timeout` passes; `what` names the call in the error.
    pub(super) async fn call<T, Fut>(&self, what: &str, mut f: impl FnMut(ApiClient) -> Fut) -> anyhow::Result<T>
    where
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let deadline = Instant::now() + self.timeout;
        let mut delay = Duration::from_millis(50);
        let mut retried = false;
        loop {
            let status = match tokio::time::timeout_at(deadline, f(self.client.clone())).await {
                Ok(Ok(reply)) => return Ok(reply.into_inner()),
                Ok(Err(status)) => status,
                Err(_) => return Err(no_answer(&self.url, self.timeout, EXPECTED)),
            };
            // A status the server sent has no source; one with a source is the transport's.
            if let Some(source) = status.source() {
                return Err(self.transport_error(source).await);
            }
            if status.code() == Code::Unavailable && Instant::now() + delay < deadline {
                tracing::debug!(message = status.message(), "{what}: UNAVAILABLE, retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
                retried = true;
                continue;
            }
            let still = if retried { format!(" (still after {})", human(self.timeout)) } else { String::new() };
            return Err(failed(what, status.code(), status.message(), &still));
        }
    }

    /// Opens a `PublishStream` (UNAVAILABLE retried within `--timeout`, as [`Api::call`]):
    /// the requests go through the sender, at most `queue` waiting.
    pub(super) async fn publish_stream(
        &self,
        queue: usize,
    ) -> anyhow::Result<(mpsc::Sender<pb::PublishStreamRequest>, tonic::Streaming<pb::PublishStreamReply>)> {
        let sender = std::sync::Mutex::new(None);
        let replies = self
            .call("publish stream", |mut c| {
                // A fresh request stream for each attempt: a refused one took nothing.
                let (tx, rx) = mpsc::channel(queue);
                *sender.lock().unwrap_or_else(|p| p.into_inner()) = Some(tx);
                async move { c.publish_stream(ReceiverStream::new(rx)).await }
            })
            .await?;
        let tx = sender.into_inner().unwrap_or_else(|p| p.into_inner()).expect("set by the call");
        Ok((tx, replies))
    }

    /// A status that ended a stream, said as [`Api::call`] says a failed call.
    pub(super) async fn stream_error(&self, what: &str, status: Status) -> anyhow::Error {
        match status.source() {
            Some(source) => self.transport_error(source).await,
            None => failed(what, status.code(), status.message(), ""),
        }
    }

    /// [`transport_error`], with a hint when a server that verifies clients may have ended
    /// the TLS connection of a tool that gave no certificate: with the alert, or by just
    /// closing it (TLS 1.3 checks the client's certificate after the client's handshake).
    async fn transport_error(&self, source: &(dyn StdError + 'static)) -> anyhow::Error {
        let e = transport_error(&self.url, self.timeout, source).await;
        let text = e.to_string();
        let ended = ["CertificateRequired", "closed", "broken pipe", "not ready"].iter().any(|t| text.contains(t));
        if self.url.starts_with("https://") && self.without_cert && ended {
            return anyhow!("{e} (if the API verifies clients, give a certificate with --cert and --key)");
        }
        e
    }

    /// The expiry of `--timeout` while waiting for an answer.
    pub(super) fn no_answer(&self) -> anyhow::Error {
        no_answer(&self.url, self.timeout, EXPECTED)
    }

    pub(super) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// `what failed: CODE: message`, with a hint for a missing API key.
pub(super) fn failed(what: &str, code: Code, message: &str, still: &str) -> anyhow::Error {
    let hint =
        if code == Code::Unauthenticated { " (give the API key with --api-key or SWITCHBOARD_API_KEY)" } else { "" };
    anyhow!("{what} failed: {}: {message}{still}{hint}", switchboard_control::metrics::code_name(code))
}

/// TLS for an `https://` API: the CAs of `--ca`, or the system's roots; and the client
/// certificate of `--cert` and `--key`, if given.
fn tls_config(args: &GrpcArgs) -> Result<ClientTlsConfig, UsageError> {
    let read = |flag: &str, path: &std::path::Path| {
        std::fs::read(path).map_err(|e| UsageError(format!("{flag}: {}: {e}", path.display())))
    };
    let tls = match &args.ca {
        Some(path) => {
            // Parsed here too, so a bad file is named as such rather than as a handshake error.
            switchboard_tls::load_roots(path).map_err(|e| UsageError(format!("--ca: {e}")))?;
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--ca", path)?))
        }
        None => ClientTlsConfig::new().with_native_roots(),
    };
    Ok(match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => tls.identity(Identity::from_pem(read("--cert", cert)?, read("--key", key)?)),
        _ => tls,
    })
}

/// `--grpc` as a URL: `host:port` becomes `http://host:port`, as grpcurl takes it.
fn grpc_url(s: &str) -> Result<String, UsageError> {
    let url = if s.contains("://") { s.to_owned() } else { format!("http://{s}") };
    match url.parse::<hyper::Uri>() {
        Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => Ok(url),
        Ok(_) => {
            Err(UsageError(format!("invalid --grpc {s:?}: expected host:port, http://host:port or https://host:port")))
        }
        Err(e) => Err(UsageError(format!("invalid --grpc {s:?}: {e}"))),
    }
}

/// A transport failure: a timeout, no connection, or something that is not a gRPC server.
async fn transport_error(url: &str, timeout: Duration, e: &(dyn StdError + 'static)) -> anyhow::Error {
    let mut connect_failed = false;
    let mut innermost = e;
    let mut source = Some(e);
    while let Some(e) = source {
        if e.downcast_ref::<tonic::TimeoutExpired>().is_some() {
            return no_answer(url, timeout, EXPECTED);
        }
        connect_failed |= e.downcast_ref::<tonic::ConnectError>().is_some();
        innermost = e;
        source = e.source();
    }
    if connect_failed {
        let why = match innermost.downcast_ref::<std::io::Error>() {
            Some(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            _ => innermost.to_string(),
        };
        let why = why.split(" (os error").next().unwrap_or_default();
        return anyhow!("cannot connect to {url}: {why}");
    }
    // Connected, but the answer was not HTTP/2: ask the address what it is.
    match what_answers(url, timeout.min(Duration::from_secs(1))).await {
        Some(Found::Http1) => anyhow!(
            "{url} answered HTTP/1.1, not gRPC (is this the WebSocket port? the gRPC API is at http://127.0.0.1:50051 by default)"
        ),
        Some(Found::Nats) => anyhow!(
            "{url} greeted as a NATS server, not gRPC (is this the NATS port? the gRPC API is at http://127.0.0.1:50051 by default)"
        ),
        None => anyhow!("{url}: {}", chain(e)),
    }
}

/// What a failed gRPC address turned out to be.
enum Found {
    Http1,
    Nats,
}

/// Asks the address in HTTP/1.1 and looks at the first bytes of the answer.
async fn what_answers(url: &str, within: Duration) -> Option<Found> {
    let uri: hyper::Uri = url.parse().ok()?;
    let (host, port) = (uri.host()?.to_owned(), uri.port_u16().unwrap_or(80));
    let probe = async move {
        let mut s = tokio::net::TcpStream::connect((host.as_str(), port)).await.ok()?;
        let request = format!("GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.ok()?;
        let mut head = [0u8; 5];
        s.read_exact(&mut head).await.ok()?;
        match &head {
            b"HTTP/" => Some(Found::Http1),
            b"INFO " => Some(Found::Nats),
            _ => None,
        }
    };
    tokio::time::timeout(within, probe).await.ok().flatten()
}

/// An error and its sources joined by `: `, each message once (hyper and tonic repeat
/// their sources' messages in their own).
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(e);
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.retain(|p| !text.contains(p.as_str()));
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_addresses_are_taken_as_urls_or_host_port() {
        let cases = [
            ("127.0.0.1:50051", Ok("http://127.0.0.1:50051")),
            ("http://127.0.0.1:50051", Ok("http://127.0.0.1:50051")),
            ("localhost:50051", Ok("http://localhost:50051")),
            ("https://127.0.0.1:50051", Ok("https://127.0.0.1:50051")),
            ("ws://127.0.0.1:8080/ws", Err("expected host:port")),
            ("not a url", Err("invalid --grpc")),
        ];
        for (input, expected) in cases {
            match (grpc_url(input), expected) {
                (Ok(url), Ok(want)) => assert_eq!(url, want, "{input}"),
                (Err(e), Err(want)) => assert!(e.0.contains(want), "{input}: {}", e.0),
                (got, want) => panic!("{input}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn an_error_chain_says_each_message_once() {
        #[derive(Debug)]
        struct E(&'static str, Option<Box<E>>);
        impl std::fmt::Display for E {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.0)
            }
        }
        impl StdError for E {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                self.1.as_deref().map(|e| e as _)
            }
        }
        let repeated = E("invalid URL, scheme is missing", Some(Box::new(E("invalid URL, scheme is missing", None))));
        assert_eq!(chain(&repeated), "invalid URL, scheme is missing");
        let nested =
            E("transport error", Some(Box::new(E("tcp connect error: refused", Some(Box::new(E("refused", None)))))));
        assert_eq!(chain(&nested), "transport error: tcp connect error: refused");
    }

    #[test]
    fn status_codes_have_their_canonical_names() {
        let cases = [(Code::Unavailable, "UNAVAILABLE"), (Code::InvalidArgument, "INVALID_ARGUMENT"), (Code::Ok, "OK")];
        for (code, name) in cases {
            assert_eq!(switchboard_control::metrics::code_name(code), name);
        }
    }
}
