//! The configuration file's structure: TOML, every key optional, unknown keys refused.
//! The doc comments here are the schema's descriptions (`switchboard config schema`) and
//! the commented example (`deploy/switchboard.example.toml`, printed by `config init`)
//! repeats them.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};

/// A Switchboard configuration file. Flags and `SWITCHBOARD_…` environment variables
/// override what it says; what neither says takes the default.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The WebSocket edge (`switchboard gateway`, and the gateway inside `switchboard dev`).
    pub gateway: Option<GatewaySection>,
    /// How connect tokens are checked.
    pub auth: Option<AuthSection>,
    /// Who may subscribe and publish, per channel namespace.
    pub channels: Option<ChannelsSection>,
    /// A control replica (`switchboard control`), and the gRPC API of `switchboard dev`
    /// (its `grpc_listen`, `tls`, `api_keys`, `api_keys_file`, `reflection` and
    /// `allow_unauthenticated_api`, which defaults to true in `dev`).
    pub control: Option<ControlSection>,
    /// How to reach NATS (`gateway` and `control`; `dev` has no NATS).
    pub nats: Option<NatsSection>,
    /// What every role logs, and how.
    pub log: Option<LogSection>,
}

#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GatewaySection {
    /// HTTP and WebSocket listen address. Default "127.0.0.1:8080".
    pub listen: Option<String>,
    /// Also serve /metrics, /healthz and /readyz on this address. Default unset (only on `listen`).
    pub admin_listen: Option<String>,
    /// This node's id, the prefix of its session ids ([A-Za-z0-9_-]). Default: random.
    pub node_id: Option<String>,
    /// Serve the demo page at `/`. Default false for `gateway`, true for `dev`.
    pub page: Option<bool>,
    /// Largest client message, bytes; larger ones close the session with 1009. Default 65536.
    #[schemars(range(min = 1))]
    pub max_message_size: Option<usize>,
    /// Bytes queued to one session before it is closed as a slow consumer (4002). Default 1048576.
    #[schemars(range(min = 1))]
    pub max_queue_bytes: Option<usize>,
    /// Channels one session may subscribe to. Default 512.
    pub max_subscriptions: Option<usize>,
    /// Concurrent connections on this node (HTTP 503 beyond). Default 100000.
    pub max_connections: Option<usize>,
    /// Time for the HTTP upgrade, then for the connect command (close 4003). Default "10s".
    pub handshake_timeout: Option<Dur>,
    /// Interval between server pings. Default "25s".
    pub ping_interval: Option<Dur>,
    /// Time after a server ping within which the client must send something (else 4004). Default "10s".
    pub pong_timeout: Option<Dur>,
    /// Window over which sessions are asked to reconnect when the node drains. Default "5s".
    pub drain_window: Option<Dur>,
    /// Whether clients may publish at all; when true the channel rules decide. Default true.
    pub client_publish: Option<bool>,
    /// Time a client `rpc` waits for a backend's reply (error 112 beyond). Default "5s".
    pub rpc_timeout: Option<Dur>,
    /// Time a client `presence` or `presence_stats` waits for a control replica's answer (error 110 beyond). Default "5s".
    pub presence_timeout: Option<Dur>,
    /// Most `rpc` commands one session may have waiting (error 109 beyond). Default 16.
    pub max_pending_rpcs: Option<usize>,
    /// Most commands one session may have waiting on the bus, at least 1; at the limit the session stops reading until one completes. Default 256.
    #[schemars(range(min = 1))]
    pub max_pending_commands: Option<usize>,
    /// Most publications a subscribe with `recover` replays, at least 1; further behind it answers `recovered: false`. Default 10000.
    #[schemars(range(min = 1))]
    pub max_recovery: Option<usize>,
    /// Longest user id (a token's `sub`) in bytes, 1 to 256; longer ones are refused (4501). Default 256.
    #[schemars(range(min = 1, max = 256))]
    pub max_user_id_len: Option<usize>,
    /// Most bytes of an HTTP request head, at least 8192; longer ones get 431. Default 16384.
    #[schemars(range(min = 8192))]
    pub max_header_bytes: Option<usize>,
    /// WebSocket connections from one client IP (IPv6: one /64) on this node; beyond: HTTP
    /// 429. 0: no limit. Default 1000.
    pub max_connections_per_ip: Option<usize>,
    /// Sessions of one user on this node; a connect beyond closes with 4007. 0: no limit. Default 100.
    pub max_connections_per_user: Option<usize>,
    /// WebSocket upgrades per second from one client IP, on average; beyond: HTTP 429. 0: no limit. Default 50.
    pub connect_rate_per_ip: Option<u32>,
    /// Upgrades one client IP may make at once before `connect_rate_per_ip` applies. Default 100.
    #[schemars(range(min = 1))]
    pub connect_burst_per_ip: Option<u32>,
    /// Client messages per second per session, on average; beyond: error 109, and close 4008
    /// past twice the rate. 0: no limit. Default 100.
    pub max_messages_per_sec: Option<u32>,
    /// Client messages one session may send at once before `max_messages_per_sec` applies. Default 200.
    #[schemars(range(min = 1))]
    pub message_burst: Option<u32>,
    /// Client payload bytes per second per session, on average; beyond: error 109, and close
    /// 4008 past twice the rate. 0: no limit. Default 1048576.
    pub max_bytes_per_sec: Option<u64>,
    /// Client payload bytes one session may send at once (at least `max_message_size`). Default 2097152.
    pub bytes_burst: Option<u64>,
    /// Longest channel name a client may subscribe or publish to, 1 to 255 bytes (error 104). Default 255.
    #[schemars(range(min = 1, max = 255))]
    pub max_channel_len: Option<usize>,
    /// Origins allowed to open a WebSocket: "https://app.example.com", "https://*.example.com"
    /// or "*"; others get HTTP 403; a request without Origin passes. Empty: any. Default [].
    pub allowed_origins: Option<Vec<String>>,
    /// Proxies (IPs or CIDRs) whose Forwarded / X-Forwarded-For header names the client; []
    /// trusts none. Default ["127.0.0.0/8", "::1"].
    pub trusted_proxies: Option<Vec<String>>,
    /// Serve `wss` (TLS) on the WebSocket listener. Default: plain `ws`.
    pub tls: Option<TlsSection>,
}

/// TLS on a listener: PEM files, re-read when they change.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// The certificate chain (PEM). Required with `key`: one without the other is refused.
    pub cert: Option<String>,
    /// Its private key (PEM). Required with `cert`.
    pub key: Option<String>,
    /// CA certificates (PEM) client certificates must chain to (mutual TLS); needs `cert`
    /// and `key`. Default unset.
    pub client_ca: Option<String>,
    /// With `client_ca`: let clients without a certificate connect (they then need another
    /// credential). Default false.
    pub client_cert_optional: Option<bool>,
    /// How often the files are checked for changes. Default "10s".
    pub reload_interval: Option<Dur>,
}

#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Whether sessions may connect without a token (user ""). `switchboard gateway`
    /// refuses to start with no keys unless this is true. Default false (true in `dev`).
    pub allow_anonymous: Option<bool>,
    /// Algorithms a token may be signed with (HS256, HS384, HS512, RS256, RS384, RS512,
    /// PS256, PS384, PS512, ES256, ES384, EdDSA). Default: every algorithm of the keys' families.
    pub algorithms: Option<Vec<String>>,
    /// Keys that verify tokens; a token naming a `kid` is checked against that key only.
    pub keys: Option<Vec<KeySection>>,
    /// A JWKS document to fetch keys from (http:// or https://); a key with `alg` verifies
    /// only tokens of that algorithm. Default unset.
    pub jwks_url: Option<String>,
    /// CA certificates (PEM) an https:// `jwks_url` must chain to, instead of the system's
    /// roots (a private identity provider). Default unset: the system's roots.
    pub jwks_ca: Option<String>,
    /// A token with an unknown `kid` refetches the JWKS at most this often. Default "10s".
    pub jwks_min_refresh: Option<Dur>,
    /// The JWKS is refetched this often in any case. Default "5m".
    pub jwks_max_age: Option<Dur>,
    /// Required `iss` claim. Default unset (not checked).
    pub issuer: Option<String>,
    /// Required `aud` claim. Default unset (not checked).
    pub audience: Option<String>,
    /// Leeway for `exp` and `nbf`. Default "5s".
    pub leeway: Option<Dur>,
    /// Also read the token from this query parameter of the upgrade URL; tokens in URLs end
    /// up in access logs. Default unset.
    pub query_param: Option<String>,
}

/// One verification key: give exactly one of the sources.
#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct KeySection {
    /// The `kid` tokens name this key by; unset: the key serves tokens without a `kid`.
    pub kid: Option<String>,
    /// An HMAC secret, inline (prefer `hmac_secret_env` or `hmac_secret_file`).
    pub hmac_secret: Option<String>,
    /// The environment variable holding an HMAC secret.
    pub hmac_secret_env: Option<String>,
    /// A file holding an HMAC secret (trailing newline ignored).
    pub hmac_secret_file: Option<String>,
    /// A PEM public key (RSA, EC P-256/P-384 or Ed25519), inline.
    pub public_key_pem: Option<String>,
    /// The environment variable holding a PEM public key.
    pub public_key_env: Option<String>,
    /// A file holding a PEM public key.
    pub public_key_file: Option<String>,
    /// A public key as one JWK, inline JSON.
    pub jwk: Option<String>,
    /// The environment variable holding one JWK.
    pub jwk_env: Option<String>,
    /// A file holding one JWK.
    pub jwk_file: Option<String>,
}

#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelsSection {
    /// What channels of a namespace not listed under `namespaces` get: "default" (the
    /// `default` rules) or "refuse" (error 103). Default "default".
    pub unknown_namespaces: Option<UnknownNamespaces>,
    /// Rules for channels without a namespace (and, with "default", of unlisted ones).
    pub default: Option<NamespaceSection>,
    /// Rules by namespace: the part of a channel name before `:`.
    pub namespaces: Option<BTreeMap<String, NamespaceSection>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum UnknownNamespaces {
    Default,
    Refuse,
}

#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSection {
    /// Who may subscribe: "nobody", "anyone", "authenticated" or "granted" (the token's
    /// `channels.subscribe` patterns match). Default "anyone".
    pub subscribe: Option<Access>,
    /// Who may publish from a client, with the same choices. Default "anyone".
    pub publish: Option<Access>,
    /// Publications kept per channel for recovery and `history` (0: none, live-only
    /// delivery). On NATS, one JetStream stream per namespace with history. Default 0.
    #[schemars(range(max = 100000))]
    pub history_size: Option<u32>,
    /// How long publications are kept, at least "1s". Default "1h".
    pub history_ttl: Option<Dur>,
    /// Whether clients that may subscribe may ask who is subscribed to a channel
    /// (`presence`, `presence_stats`; error 114 otherwise). Default false.
    pub presence: Option<bool>,
    /// Whether subscribers get `join` and `leave` pushes when sessions subscribe to or
    /// leave a channel, across gateways (live only, never in history). Default false.
    pub join_leave: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    Nobody,
    Anyone,
    Authenticated,
    Granted,
}

#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ControlSection {
    /// gRPC (backend API) listen address. Default "127.0.0.1:50051".
    pub grpc_listen: Option<String>,
    /// The address others should use to reach this replica's gRPC API. Default: the listen address.
    pub advertise_addr: Option<String>,
    /// This replica's id ([A-Za-z0-9_-]). Default: random.
    pub replica_id: Option<String>,
    /// A gateway silent this long has its sessions dropped, at most "15s". Default "10s".
    pub gateway_lease: Option<Dur>,
    /// A control replica silent this long leaves the hash ring. Default "3s".
    pub replica_lease: Option<Dur>,
    /// Time allowed for a query to another replica or a command to a gateway. Default "2s".
    pub query_timeout: Option<Dur>,
    /// Serve /metrics, /healthz and /readyz on this address. Default unset (not served).
    pub metrics_listen: Option<String>,
    /// TLS on the gRPC listener (`client_ca`: mutual TLS). Default: plain.
    pub tls: Option<TlsSection>,
    /// API keys backends send as `authorization: Bearer <key>` (prefer `api_keys_file`).
    pub api_keys: Option<Vec<String>>,
    /// A file of API keys, one per line, re-read when it changes (a mounted secret).
    pub api_keys_file: Option<String>,
    /// Serve the API with neither API keys nor mutual TLS. Default false: refused (true in
    /// `dev`, which then warns).
    pub allow_unauthenticated_api: Option<bool>,
    /// Serve gRPC server reflection. Default true.
    pub reflection: Option<bool>,
    /// Moving sessions from loaded gateways to the others after a membership change.
    pub balance: Option<BalanceSection>,
}

#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BalanceSection {
    /// Balance sessions across gateways: the control replica owning shard 0 asks gateways
    /// above the mean to close some sessions with 4009, so their clients reconnect through
    /// the load balancer. Default true.
    pub enabled: Option<bool>,
    /// How often the deciding replica compares the gateways' sessions. Default "5s".
    pub interval: Option<Dur>,
    /// A gateway is out of balance when its sessions differ from the mean by more than this
    /// percentage of the mean (and by `min_difference`). Default 10.
    #[schemars(range(min = 1, max = 100))]
    pub tolerance_percent: Option<u32>,
    /// ... and by at least this many sessions, so small clusters do not churn. Default 10.
    pub min_difference: Option<u32>,
    /// The most of a gateway's sessions one round asks to move, in percent. Default 25.
    #[schemars(range(min = 1, max = 100))]
    pub max_share_percent: Option<u32>,
    /// A gateway spreads the closes of one round over this window; no round follows within
    /// it. Default "10s".
    pub window: Option<Dur>,
    /// Rounds wait while a gateway is younger than this (not yet in the load balancer's
    /// rotation, or still filling after a drain). Default "15s".
    pub warmup: Option<Dur>,
}

#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NatsSection {
    /// NATS server URLs (any one is enough; the rest are for failover). Required by
    /// `gateway` and `control`, here or with --nats.
    pub urls: Option<Vec<String>>,
    /// Prefix of every NATS subject. Default "sb".
    pub subject_prefix: Option<String>,
    /// Time to wait for the first connection at start-up, then exit 1. Default "10s".
    pub connect_timeout: Option<Dur>,
    /// Interval between liveness round trips to the server, at least "100ms". Default "2s".
    pub ping_interval: Option<Dur>,
    /// Round trips in a row without an answer before the connection counts as dead. Default 2.
    #[schemars(range(min = 1))]
    pub max_missed_pongs: Option<u32>,
    /// Replicas of each history stream (JetStream): 1 for a single server, 3 in a cluster.
    /// Default 1.
    #[schemars(range(min = 1, max = 5))]
    pub history_replicas: Option<usize>,
    /// CA certificates (PEM) of the NATS servers; implies TLS.
    pub tls_ca: Option<String>,
    /// Client certificate (PEM) for servers that verify clients; implies TLS; needs `tls_key`.
    pub tls_cert: Option<String>,
    /// Private key (PEM) of `tls_cert`.
    pub tls_key: Option<String>,
    /// Refuse servers that do not offer TLS. Default false.
    pub require_tls: Option<bool>,
    /// NATS user name (with `password`). Give one credential at most: user and password,
    /// token, nkey seed file or creds file.
    pub user: Option<String>,
    /// NATS password of `user` (prefer SWITCHBOARD_NATS_PASSWORD).
    pub password: Option<String>,
    /// NATS authorization token (prefer SWITCHBOARD_NATS_TOKEN).
    pub token: Option<String>,
    /// A file holding the nkey seed this node signs in with.
    pub nkey_seed_file: Option<String>,
    /// A NATS credentials file (`.creds`).
    pub creds: Option<String>,
}

/// A duration: `"250ms"`, `"10s"`, `"2m"`, `"1h"`, or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Secs(s) => Ok(Dur(Duration::from_secs(s))),
            Raw::Text(t) => switchboard_bench::parse_duration(&t).map(Dur).map_err(serde::de::Error::custom),
        }
    }
}

impl JsonSchema for Dur {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A duration: \"250ms\", \"10s\", \"2m\", \"1h\", or a number of seconds.",
            "anyOf": [
                {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?(ms|s|m|h)?$"},
                {"type": "integer", "minimum": 0}
            ]
        })
    }
}

#[derive(Debug, Default, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogSection {
    /// Log filter (tracing `EnvFilter` syntax), e.g. "info,switchboard_gateway=debug".
    /// `--log` and `SWITCHBOARD_LOG` win over it; it wins over `RUST_LOG`. Default "info,async_nats=warn".
    pub level: Option<String>,
    /// Log line format on stderr: "text" or "json". Default "text".
    pub format: Option<crate::telemetry::LogFormat>,
}
