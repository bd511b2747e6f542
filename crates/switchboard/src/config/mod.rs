//! The configuration file (TOML) and how it meets the flags: a flag or `SWITCHBOARD_…`
//! environment variable wins over the file, the file over the default. Every server role
//! builds its settings here, and `switchboard config check` runs exactly this code.

pub mod file;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::ArgMatches;
use clap::parser::ValueSource;
use switchboard_bus::{HistoryLimits, Namespaces, NatsConfig};
use switchboard_control::{BalanceConfig, ControlConfig};
use switchboard_gateway::GatewayConfig;
use switchboard_gateway::auth::{AuthConfig, Key, KeyMaterial};
use switchboard_gateway::demo::DemoTokens;
use switchboard_gateway::permissions::{Access, ChannelRules, NamespaceRules, UnknownNamespaces};

use crate::UsageError;
use crate::cli::security::{ControlAuthArgs, NatsSecurityArgs, TlsArgs};
use crate::cli::{BalanceArgs, ControlArgs, DevArgs, GatewayArgs, GatewayCmdArgs, NatsArgs};
use crate::telemetry::LogFormat;
use file::FileConfig;

/// The example configuration: every key with its default, commented. `config init` prints
/// it; a test keeps it parsing to the defaults and listing every key of the schema.
pub const EXAMPLE: &str = include_str!("../../../../deploy/switchboard.example.toml");

/// The arguments given on the command line or in the environment (not defaulted), by id.
#[derive(Debug, Default, Clone)]
pub struct Explicit(HashSet<String>);

impl Explicit {
    /// Collects them from the innermost subcommand's matches.
    pub fn from_matches(matches: &ArgMatches) -> Self {
        let mut m = matches;
        while let Some((_, sub)) = m.subcommand() {
            m = sub;
        }
        let ids = m
            .ids()
            .filter(|id| {
                matches!(m.value_source(id.as_str()), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
            })
            .map(|id| id.as_str().to_owned())
            .collect();
        Explicit(ids)
    }

    fn has(&self, id: &str) -> bool {
        self.0.contains(id)
    }

    /// The flag's value when it was given, else the file's, else the flag's default.
    fn pick<T>(&self, id: &str, flag: T, file: Option<T>) -> T {
        match file {
            Some(v) if !self.has(id) => v,
            _ => flag,
        }
    }
}

/// Reads and parses the configuration file, if one is given.
pub fn load(path: Option<&Path>) -> Result<FileConfig, UsageError> {
    let Some(path) = path else { return Ok(FileConfig::default()) };
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read the config file {}: {e}", path.display())))?;
    parse(&text).map_err(|e| UsageError(format!("config file {}: {e}", path.display())))
}

/// Parses configuration text; the error names the key and line.
pub fn parse(text: &str) -> Result<FileConfig, String> {
    let file: FileConfig = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())?;
    if let Some(level) = file.log.as_ref().and_then(|l| l.level.as_deref()) {
        crate::telemetry::check_log_filter(level).map_err(|e| format!("log.level: {e}: {level:?}"))?;
    }
    Ok(file)
}

/// The log filter and format: the flag (or its environment variable), else the file's
/// `[log]`, else `RUST_LOG` (the filter), else the defaults. A file that does not load is
/// left to the role to report; logging starts with the defaults meanwhile.
pub fn log_settings(flag: Option<&str>, format: Option<LogFormat>, path: Option<&Path>) -> (String, LogFormat) {
    let file = load(path).ok().and_then(|f| f.log).unwrap_or_default();
    let filter = flag
        .map(str::to_owned)
        .or(file.level)
        .or_else(|| std::env::var("RUST_LOG").ok().filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| crate::telemetry::DEFAULT_LOG_FILTER.to_owned());
    (filter, format.or(file.format).unwrap_or(LogFormat::Text))
}

/// The JSON Schema of the file.
pub fn schema() -> String {
    serde_json::to_string_pretty(&schemars::schema_for!(FileConfig)).expect("a schema serializes")
}

fn addr(key: &str, s: &str) -> Result<SocketAddr, UsageError> {
    s.parse().map_err(|e| UsageError(format!("{key}: {s:?} is not a host:port address: {e}")))
}

fn dur(d: Option<file::Dur>) -> Option<Duration> {
    d.map(|d| d.0)
}

// === the roles ===

/// `switchboard gateway`: the gateway and its NATS settings.
pub fn gateway(args: &GatewayCmdArgs, x: &Explicit) -> Result<(GatewayConfig, NatsConfig), UsageError> {
    let f = load(args.config.path.as_deref())?;
    let g = f.gateway.clone().unwrap_or_default();
    let listen = match (&g.listen, x.has("listen")) {
        (Some(l), false) => addr("gateway.listen", l)?,
        _ => args.listen,
    };
    let mut config = gateway_config(&args.gateway, listen, &f, x, false)?;
    config.serve_page = x.pick("page", args.page, g.page);
    config.tls = tls(&args.tls, g.tls.as_ref(), x, "gateway.tls")?;
    config.validate().map_err(|e| UsageError(format!("gateway: {e}")))?;
    let nats = nats_config(&args.nats, &f, x, &config.node_id)?;
    check_anonymous(&config)?;
    Ok((config, nats))
}

/// `switchboard gateway`: the admin address (`--admin-listen`, or `gateway.admin_listen`).
pub fn gateway_admin(args: &GatewayCmdArgs, x: &Explicit) -> Result<Option<SocketAddr>, UsageError> {
    let f = load(args.config.path.as_deref())?;
    match (f.gateway.and_then(|g| g.admin_listen), x.has("admin_listen")) {
        (Some(l), false) => Ok(Some(addr("gateway.admin_listen", &l)?)),
        _ => Ok(args.admin_listen),
    }
}

/// Most publications a namespace keeps per channel.
pub const MAX_HISTORY_SIZE: u32 = 100_000;
/// The age publications are kept by default, in a namespace with history.
pub const DEFAULT_HISTORY_TTL: Duration = Duration::from_secs(3600);

/// What the bus keeps per namespace (`history_size`, `history_ttl` in `[channels]`).
pub fn namespaces(f: &FileConfig) -> Result<Namespaces, UsageError> {
    let c = f.channels.clone().unwrap_or_default();
    let history = |key: &str, n: &file::NamespaceSection| -> Result<Option<HistoryLimits>, UsageError> {
        let size = n.history_size.unwrap_or(0);
        let ttl = dur(n.history_ttl).unwrap_or(DEFAULT_HISTORY_TTL);
        if size > MAX_HISTORY_SIZE {
            return Err(UsageError(format!("{key}.history_size: {size} is more than {MAX_HISTORY_SIZE}")));
        }
        if ttl < Duration::from_secs(1) {
            return Err(UsageError(format!("{key}.history_ttl: {ttl:?} is shorter than 1s")));
        }
        if size == 0 && n.history_ttl.is_some() {
            return Err(UsageError(format!("{key}.history_ttl: set, but history_size is 0 (no history)")));
        }
        Ok((size > 0).then_some(HistoryLimits { size, ttl }))
    };
    let default = match &c.default {
        Some(n) => history("channels.default", n)?,
        None => None,
    };
    let mut namespaces = std::collections::BTreeMap::new();
    for (name, n) in c.namespaces.iter().flatten() {
        let key = format!("channels.namespaces.{name}");
        if name == switchboard_bus::DEFAULT_NAMESPACE_KEY {
            return Err(UsageError(format!("{key}: \"_\" is reserved; name the namespace otherwise")));
        }
        switchboard_wire::Channel::parse(&format!("{name}:x"))
            .map_err(|_| UsageError(format!("{key}: not a namespace name (1 to 64 of A-Z a-z 0-9 _ -)")))?;
        namespaces.insert(name.clone(), history(&key, n)?);
    }
    Ok(Namespaces { default, namespaces })
}

/// `switchboard dev`: the gateway, the gRPC API (its address, keys, TLS and reflection,
/// as `control` reads them) and what is kept per namespace. Everything `dev` checks before
/// it binds is checked here, so `config check dev` refuses what `dev` would.
pub fn dev(args: &DevArgs, x: &Explicit) -> Result<crate::dev::DevConfig, UsageError> {
    let f = load(args.config.path.as_deref())?;
    let g = f.gateway.clone().unwrap_or_default();
    let listen = match (&g.listen, x.has("listen")) {
        (Some(l), false) => addr("gateway.listen", l)?,
        _ => args.listen,
    };
    let mut config = gateway_config(&args.gateway, listen, &f, x, true)?;
    config.serve_page = if x.has("no_page") { !args.no_page } else { g.page.unwrap_or(!args.no_page) };
    // A test flag only, never in a file.
    config.echo = args.test_echo_endpoint;
    config.tls = tls(&args.tls, g.tls.as_ref(), x, "gateway.tls")?;
    if args.demo_tokens {
        let secret = demo_secret()?;
        config.auth.keys.push(Key { kid: None, material: KeyMaterial::Hmac(secret.clone()) });
        config.demo_tokens = Some(DemoTokens { secret, ttl: std::time::Duration::from_secs(600) });
    }
    config.validate().map_err(|e| UsageError(format!("gateway: {e}")))?;
    check_anonymous(&config)?;
    let c = f.control.clone().unwrap_or_default();
    let grpc_listen = match (&c.grpc_listen, x.has("grpc_listen")) {
        (Some(l), false) => addr("control.grpc_listen", l)?,
        _ => args.grpc_listen,
    };
    // The --tls-… flags of `dev` are the gateway's: the gRPC API's TLS is the file's only.
    let api_tls = tls(&TlsArgs::none(), c.tls.as_ref(), &Explicit::default(), "control.tls")?;
    let api = ControlConfig { replica_id: "dev".into(), ..ControlConfig::default() };
    let api = api_security(api, &args.api, api_tls, &c, x, true)?;
    Ok(crate::dev::DevConfig {
        gateway: config,
        grpc_listen,
        api_keys: api.api_keys,
        api_tls: api.tls,
        reflection: api.reflection,
        namespaces: namespaces(&f)?,
    })
}

/// Who may call the gRPC API, for `control` and `dev` alike: API keys (flags, then
/// `control.api_keys` / `control.api_keys_file`), TLS, reflection; then the same checks
/// as at start-up, and the refusal to serve it open unless allowed (`dev_open`: `dev`
/// allows it unless `control.allow_unauthenticated_api = false`).
fn api_security(
    base: ControlConfig,
    auth: &ControlAuthArgs,
    tls: Option<switchboard_tls::TlsFiles>,
    c: &file::ControlSection,
    x: &Explicit,
    dev_open: bool,
) -> Result<ControlConfig, UsageError> {
    let mut keys = auth.keys.clone();
    if !x.has("api_keys")
        && let Some(k) = &c.api_keys
    {
        keys.api_keys = k.clone();
    }
    if !x.has("api_keys_file")
        && let Some(p) = &c.api_keys_file
    {
        keys.api_keys_file = Some(p.into());
    }
    let config = ControlConfig {
        tls,
        api_keys: keys.keys(),
        reflection: x.pick("no_reflection", !auth.no_reflection, c.reflection),
        ..base
    };
    config.validate().map_err(|e| UsageError(e.to_string()))?;
    let open =
        x.pick("allow_unauthenticated_api", auth.allow_unauthenticated_api || dev_open, c.allow_unauthenticated_api);
    if !config.is_authenticated() && !open {
        return Err(UsageError(
            "the gRPC API needs API keys (--api-keys, --api-keys-file, control.api_keys) or mutual TLS \
             (--tls-client-ca, control.tls.client_ca); --allow-unauthenticated-api serves it open"
                .into(),
        ));
    }
    Ok(config)
}

/// 32 random bytes for the demo tokens' HMAC secret, drawn anew at every start.
fn demo_secret() -> Result<Vec<u8>, UsageError> {
    use std::io::Read as _;
    let mut secret = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut secret))
        .map_err(|e| UsageError(format!("--demo-tokens: cannot read /dev/urandom for a secret: {e}")))?;
    Ok(secret)
}

/// What `switchboard control` runs with.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    pub config: ControlConfig,
    pub nats: NatsConfig,
    pub grpc_listen: SocketAddr,
    /// Set when the replica advertises another address than it listens on.
    pub advertise_addr: Option<String>,
    pub metrics_listen: Option<SocketAddr>,
}

/// `switchboard control`.
pub fn control(args: &ControlArgs, x: &Explicit) -> Result<ControlSettings, UsageError> {
    let f = load(args.config.path.as_deref())?;
    let c = f.control.clone().unwrap_or_default();
    let grpc_listen = match (&c.grpc_listen, x.has("grpc_listen")) {
        (Some(l), false) => addr("control.grpc_listen", l)?,
        _ => args.grpc_listen,
    };
    let metrics_listen = match (&c.metrics_listen, x.has("metrics_listen")) {
        (Some(l), false) => Some(addr("control.metrics_listen", l)?),
        _ => args.metrics_listen,
    };
    let advertise_addr = x.pick("advertise_addr", args.advertise_addr.clone(), c.advertise_addr.clone().map(Some));
    let replica_id = x
        .pick("replica_id", args.replica_id.clone(), c.replica_id.clone().map(Some))
        .unwrap_or_else(switchboard_control::random_replica_id);
    let config = ControlConfig {
        replica_id: replica_id.clone(),
        grpc_addr: advertise_addr.clone().unwrap_or_else(|| grpc_listen.to_string()),
        gateway_lease: x.pick("gateway_lease", args.gateway_lease, dur(c.gateway_lease)),
        replica_lease: x.pick("replica_lease", args.replica_lease, dur(c.replica_lease)),
        query_timeout: x.pick("query_timeout", args.query_timeout, dur(c.query_timeout)),
        balance: balance_config(&args.balance, c.balance.clone().unwrap_or_default(), x),
        ..ControlConfig::default()
    };
    let tls = tls(&args.tls, c.tls.as_ref(), x, "control.tls")?;
    let config = api_security(config, &args.auth, tls, &c, x, false)?;
    let nats = nats_config(&args.nats, &f, x, &replica_id)?;
    Ok(ControlSettings { config, nats, grpc_listen, advertise_addr, metrics_listen })
}

fn balance_config(a: &BalanceArgs, b: file::BalanceSection, x: &Explicit) -> BalanceConfig {
    BalanceConfig {
        enabled: x.pick("no_balance", !a.no_balance, b.enabled),
        interval: x.pick("balance_interval", a.balance_interval, dur(b.interval)),
        tolerance_percent: x.pick("balance_tolerance_percent", a.balance_tolerance_percent, b.tolerance_percent),
        min_difference: x.pick("balance_min_difference", a.balance_min_difference, b.min_difference),
        max_share_percent: x.pick("balance_max_share_percent", a.balance_max_share_percent, b.max_share_percent),
        window: x.pick("balance_window", a.balance_window, dur(b.window)),
        warmup: x.pick("balance_warmup", a.balance_warmup, dur(b.warmup)),
        ..BalanceConfig::default()
    }
}

fn gateway_config(
    a: &GatewayArgs,
    listen: SocketAddr,
    f: &FileConfig,
    x: &Explicit,
    dev: bool,
) -> Result<GatewayConfig, UsageError> {
    let g = f.gateway.clone().unwrap_or_default();
    let defaults = GatewayConfig::default();
    let config = GatewayConfig {
        listen,
        node_id: x.pick("node_id", a.node_id.clone(), g.node_id.clone().map(Some)).unwrap_or(defaults.node_id),
        max_message_size: x.pick("max_message_size", a.max_message_size, g.max_message_size),
        max_queue_bytes: x.pick("max_queue_bytes", a.max_queue_bytes, g.max_queue_bytes),
        max_subscriptions: x.pick("max_subscriptions", a.max_subscriptions, g.max_subscriptions),
        max_connections: x.pick("max_connections", a.max_connections, g.max_connections),
        handshake_timeout: x.pick("handshake_timeout", a.handshake_timeout, dur(g.handshake_timeout)),
        ping_interval: x.pick("ping_interval", a.ping_interval, dur(g.ping_interval)),
        pong_timeout: x.pick("pong_timeout", a.pong_timeout, dur(g.pong_timeout)),
        drain_window: x.pick("drain_window", a.drain_window, dur(g.drain_window)),
        client_publish: x.pick("no_client_publish", !a.no_client_publish, g.client_publish),
        serve_page: false,
        demo_tokens: None,
        auth: auth_config(a, f, x, dev)?,
        channels: channel_rules(f),
        rpc_timeout: x.pick("rpc_timeout", a.rpc_timeout, dur(g.rpc_timeout)),
        presence_timeout: x.pick("presence_timeout", a.presence_timeout, dur(g.presence_timeout)),
        max_pending_rpcs: x.pick("max_pending_rpcs", a.max_pending_rpcs, g.max_pending_rpcs),
        max_pending_commands: x.pick("max_pending_commands", a.max_pending_commands, g.max_pending_commands),
        max_recovery: x.pick("max_recovery", a.max_recovery, g.max_recovery),
        max_user_id_len: x.pick("max_user_id_len", a.max_user_id_len, g.max_user_id_len),
        max_header_bytes: x.pick("max_header_bytes", a.max_header_bytes, g.max_header_bytes),
        max_connections_per_ip: x.pick("max_connections_per_ip", a.max_connections_per_ip, g.max_connections_per_ip),
        max_connections_per_user: x.pick(
            "max_connections_per_user",
            a.max_connections_per_user,
            g.max_connections_per_user,
        ),
        connect_rate_per_ip: x.pick("connect_rate_per_ip", a.connect_rate_per_ip, g.connect_rate_per_ip),
        connect_burst_per_ip: x.pick("connect_burst_per_ip", a.connect_burst_per_ip, g.connect_burst_per_ip),
        max_messages_per_sec: x.pick("max_messages_per_sec", a.max_messages_per_sec, g.max_messages_per_sec),
        message_burst: x.pick("message_burst", a.message_burst, g.message_burst),
        max_bytes_per_sec: x.pick("max_bytes_per_sec", a.max_bytes_per_sec, g.max_bytes_per_sec),
        bytes_burst: x.pick("bytes_burst", a.bytes_burst, g.bytes_burst),
        max_channel_len: x.pick("max_channel_len", a.max_channel_len, g.max_channel_len),
        allowed_origins: crate::cli::non_empty(&x.pick(
            "allowed_origins",
            a.allowed_origins.clone(),
            g.allowed_origins.clone(),
        )),
        trusted_proxies: crate::cli::non_empty(&x.pick(
            "trusted_proxies",
            a.trusted_proxies.clone(),
            g.trusted_proxies.clone(),
        )),
        echo: false,
        metrics_on_listen: true,
        tls: None,
    };
    config.validate().map_err(|e| UsageError(format!("gateway: {e}")))?;
    Ok(config)
}

/// A gateway that would admit every session without a token must say it means to.
fn check_anonymous(config: &GatewayConfig) -> Result<(), UsageError> {
    if !config.auth.checks_tokens() && !config.auth.allow_anonymous {
        return Err(UsageError(
            "gateway: no connect-token keys are configured and anonymous sessions are not allowed: configure \
             [auth] keys (or auth.jwks_url, or --token-secret), or allow anonymous sessions explicitly \
             (--allow-anonymous)"
                .into(),
        ));
    }
    Ok(())
}

fn auth_config(a: &GatewayArgs, f: &FileConfig, x: &Explicit, dev: bool) -> Result<AuthConfig, UsageError> {
    let s = f.auth.clone().unwrap_or_default();
    let defaults = AuthConfig::default();
    let mut keys = Vec::new();
    for (i, k) in s.keys.iter().flatten().enumerate() {
        keys.push(key(&format!("auth.keys[{i}]"), k)?);
    }
    if let Some(secret) = &a.token_secret {
        keys.push(Key { kid: None, material: KeyMaterial::Hmac(secret.as_bytes().to_vec()) });
    }
    let algorithms = s
        .algorithms
        .iter()
        .flatten()
        .map(|name| {
            name.parse::<jsonwebtoken::Algorithm>()
                .map_err(|_| UsageError(format!("auth.algorithms: {name:?} is not a JWT algorithm")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AuthConfig {
        allow_anonymous: x.pick("allow_anonymous", a.allow_anonymous || dev, s.allow_anonymous),
        algorithms,
        keys,
        jwks_url: s.jwks_url.clone(),
        jwks_ca: x.pick("jwks_ca", a.jwks_ca.clone(), s.jwks_ca.clone().map(|p| Some(p.into()))),
        jwks_min_refresh: dur(s.jwks_min_refresh).unwrap_or(defaults.jwks_min_refresh),
        jwks_max_age: dur(s.jwks_max_age).unwrap_or(defaults.jwks_max_age),
        issuer: s.issuer.clone(),
        audience: s.audience.clone(),
        leeway: dur(s.leeway).unwrap_or(defaults.leeway),
        query_param: s.query_param.clone(),
    })
}

/// One `[[auth.keys]]` entry, with its file or environment variable read.
fn key(at: &str, k: &file::KeySection) -> Result<Key, UsageError> {
    let read =
        |path: &str| std::fs::read_to_string(path).map_err(|e| UsageError(format!("{at}: cannot read {path}: {e}")));
    let env = |name: &String| {
        std::env::var(name).map_err(|_| UsageError(format!("{at}: environment variable {name} is not set")))
    };
    let sources = [
        k.hmac_secret.as_ref().map(|s| Ok(KeyMaterial::Hmac(s.as_bytes().to_vec()))),
        k.hmac_secret_env.as_ref().map(|name| env(name).map(|s| KeyMaterial::Hmac(s.into_bytes()))),
        k.hmac_secret_file
            .as_ref()
            .map(|p| read(p).map(|s| KeyMaterial::Hmac(s.trim_end_matches(['\n', '\r']).as_bytes().to_vec()))),
        k.public_key_pem.as_ref().map(|s| Ok(KeyMaterial::Pem(s.clone()))),
        k.public_key_env.as_ref().map(|name| env(name).map(KeyMaterial::Pem)),
        k.public_key_file.as_ref().map(|p| read(p).map(KeyMaterial::Pem)),
        k.jwk.as_ref().map(|s| Ok(KeyMaterial::Jwk(s.clone()))),
        k.jwk_env.as_ref().map(|name| env(name).map(KeyMaterial::Jwk)),
        k.jwk_file.as_ref().map(|p| read(p).map(KeyMaterial::Jwk)),
    ];
    let mut given = sources.into_iter().flatten();
    match (given.next(), given.next()) {
        (Some(material), None) => Ok(Key { kid: k.kid.clone(), material: material? }),
        (None, _) => Err(UsageError(format!("{at}: give one key source (hmac_secret…, public_key…, jwk…)"))),
        (Some(_), Some(_)) => Err(UsageError(format!("{at}: give only one key source"))),
    }
}

/// TLS from the flags when one was given, else from the file's section (`at`). Half a
/// pair (a certificate without its key, a key without its certificate, a client CA
/// without either) is refused: it would leave TLS silently off.
fn tls(
    flags: &TlsArgs,
    file: Option<&file::TlsSection>,
    x: &Explicit,
    at: &str,
) -> Result<Option<switchboard_tls::TlsFiles>, UsageError> {
    let mut t = flags.clone();
    if let Some(f) = file {
        let refuse = |key: &str, why: &str| Err(UsageError(format!("{at}.{key}: {why}")));
        match (&f.cert, &f.key) {
            (Some(_), None) => return refuse("key", "missing: cert is set, and TLS needs both cert and key"),
            (None, Some(_)) => return refuse("cert", "missing: key is set, and TLS needs both cert and key"),
            (None, None) if f.client_ca.is_some() => {
                return refuse("client_ca", "set without cert and key: mutual TLS needs TLS on (give cert and key)");
            }
            _ => {}
        }
        if f.client_cert_optional == Some(true) && f.client_ca.is_none() {
            return refuse("client_cert_optional", "true without client_ca (no client certificate is asked for)");
        }
        if !x.has("tls_cert")
            && let (Some(cert), Some(key)) = (&f.cert, &f.key)
        {
            t.tls_cert = Some(cert.into());
            t.tls_key = Some(key.into());
            t.tls_client_ca = f.client_ca.as_ref().map(Into::into).or(t.tls_client_ca);
            t.tls_client_cert_optional = f.client_cert_optional.unwrap_or(t.tls_client_cert_optional);
        }
        t.tls_reload_interval = x.pick("tls_reload_interval", t.tls_reload_interval, dur(f.reload_interval));
    }
    t.files()
}

fn channel_rules(f: &FileConfig) -> ChannelRules {
    let c = f.channels.clone().unwrap_or_default();
    let access = |a: Option<file::Access>, default: Access| match a {
        None => default,
        Some(file::Access::Nobody) => Access::Nobody,
        Some(file::Access::Anyone) => Access::Anyone,
        Some(file::Access::Authenticated) => Access::Authenticated,
        Some(file::Access::Granted) => Access::Granted,
    };
    let base = NamespaceRules::default();
    let rules = |n: &file::NamespaceSection| NamespaceRules {
        subscribe: access(n.subscribe, base.subscribe),
        publish: access(n.publish, base.publish),
        presence: n.presence.unwrap_or(base.presence),
        join_leave: n.join_leave.unwrap_or(base.join_leave),
    };
    ChannelRules {
        default: c.default.as_ref().map(rules).unwrap_or(base),
        namespaces: c.namespaces.iter().flatten().map(|(name, n)| (name.clone(), rules(n))).collect(),
        unknown_namespaces: match c.unknown_namespaces {
            Some(file::UnknownNamespaces::Refuse) => UnknownNamespaces::Refuse,
            _ => UnknownNamespaces::Default,
        },
    }
}

fn nats_config(a: &NatsArgs, f: &FileConfig, x: &Explicit, name: &str) -> Result<NatsConfig, UsageError> {
    let n = f.nats.clone().unwrap_or_default();
    let urls = if x.has("urls") || n.urls.is_none() { a.urls.clone() } else { n.urls.clone().unwrap_or_default() };
    if urls.is_empty() {
        return Err(UsageError("no NATS server: give --nats URL (or nats.urls in the config file)".into()));
    }
    let mut config = NatsConfig::new(urls, name);
    config.prefix = x.pick("subject_prefix", a.subject_prefix.clone(), n.subject_prefix.clone());
    config.connect_timeout = x.pick("nats_connect_timeout", a.nats_connect_timeout, dur(n.connect_timeout));
    config.ping_interval = x.pick("nats_ping_interval", a.nats_ping_interval, dur(n.ping_interval));
    config.max_missed_pongs = x.pick("nats_max_missed_pongs", a.nats_max_missed_pongs, n.max_missed_pongs);
    config.history_replicas = n.history_replicas.unwrap_or(config.history_replicas);
    config.namespaces = namespaces(f)?;
    let mut s: NatsSecurityArgs = a.security.clone();
    let path = |p: &Option<String>| p.as_ref().map(std::path::PathBuf::from);
    if !x.has("nats_tls_ca") && n.tls_ca.is_some() {
        s.nats_tls_ca = path(&n.tls_ca);
    }
    match (&n.tls_cert, &n.tls_key) {
        (Some(_), None) => {
            return Err(UsageError(
                "nats.tls_key: missing: tls_cert is set, and a client certificate needs its key".into(),
            ));
        }
        (None, Some(_)) => {
            return Err(UsageError(
                "nats.tls_cert: missing: tls_key is set, and a client key needs its certificate".into(),
            ));
        }
        _ => {}
    }
    if !x.has("nats_tls_cert") && n.tls_cert.is_some() {
        (s.nats_tls_cert, s.nats_tls_key) = (path(&n.tls_cert), path(&n.tls_key));
    }
    if s.nats_tls_cert.is_some() != s.nats_tls_key.is_some() {
        return Err(UsageError("--nats-tls-cert and --nats-tls-key go together: give both, or neither".into()));
    }
    s.nats_require_tls = x.pick("nats_require_tls", s.nats_require_tls, n.require_tls);
    // A credential from the command line replaces the file's, whichever kind.
    let flag_credential = ["nats_user", "nats_token", "nats_nkey_seed_file", "nats_creds"].iter().any(|id| x.has(id));
    if !flag_credential {
        s.nats_user = n.user.clone().or(s.nats_user);
        s.nats_password = n.password.clone().or(s.nats_password);
        s.nats_token = n.token.clone().or(s.nats_token);
        s.nats_nkey_seed_file = path(&n.nkey_seed_file).or(s.nats_nkey_seed_file);
        s.nats_creds = path(&n.creds).or(s.nats_creds);
    }
    if s.nats_user.is_some() != s.nats_password.is_some() {
        return Err(UsageError("nats: a user needs a password, and a password a user".into()));
    }
    config.tls = s.tls();
    config.auth = s.auth()?;
    config.validate().map_err(|e| match e {
        switchboard_bus::BusError::Invalid(why) => UsageError(why),
        e => UsageError(e.to_string()),
    })?;
    switchboard_bus::subjects::Subjects::new(&config.prefix).map_err(|e| UsageError(e.to_string()))?;
    Ok(config)
}

#[cfg(test)]
mod tests;

// === `switchboard config` ===

/// `switchboard config check|init|schema`.
pub fn command(cmd: crate::cli::ConfigCmd, x: &Explicit) -> anyhow::Result<()> {
    use crate::cli::{ConfigAction, Role};
    match cmd.action {
        ConfigAction::Init => print!("{EXAMPLE}"),
        ConfigAction::Schema => println!("{}", schema()),
        ConfigAction::Check { role } => {
            let summary = match *role {
                Role::Dev(args) => {
                    let d = dev(&args, x)?;
                    serde_json::json!({
                        "role": "dev",
                        "gateway": gateway_summary(&d.gateway),
                        "grpc_listen": d.grpc_listen.to_string(),
                        "grpc_tls": tls_summary(d.api_tls.as_ref()),
                        "api_keys": !d.api_keys.is_empty(),
                        "reflection": d.reflection,
                        "history": history_summary(&d.namespaces),
                    })
                }
                Role::Gateway(args) => {
                    let (g, n) = gateway(&args, x)?;
                    let admin = gateway_admin(&args, x)?.map(|a| a.to_string());
                    serde_json::json!({"role": "gateway", "gateway": gateway_summary(&g), "admin_listen": admin, "nats": nats_summary(&n)})
                }
                Role::Control(args) => {
                    let c = control(&args, x)?;
                    serde_json::json!({
                        "role": "control",
                        "replica_id": c.config.replica_id,
                        "grpc_listen": c.grpc_listen.to_string(),
                        "advertise_addr": c.config.grpc_addr,
                        "metrics_listen": c.metrics_listen.map(|a| a.to_string()),
                        "gateway_lease_ms": c.config.gateway_lease.as_millis() as u64,
                        "replica_lease_ms": c.config.replica_lease.as_millis() as u64,
                        "query_timeout_ms": c.config.query_timeout.as_millis() as u64,
                        "grpc_tls": tls_summary(c.config.tls.as_ref()),
                        "api_keys": !c.config.api_keys.is_empty(),
                        "reflection": c.config.reflection,
                        "balance": balance_summary(&c.config.balance),
                        "nats": nats_summary(&c.nats),
                    })
                }
            };
            // What the server would run with, secrets left out; then the verdict.
            println!("{summary}");
            eprintln!("config ok");
        }
    }
    Ok(())
}

fn gateway_summary(g: &GatewayConfig) -> serde_json::Value {
    let access = |a: Access| match a {
        Access::Nobody => "nobody",
        Access::Anyone => "anyone",
        Access::Authenticated => "authenticated",
        Access::Granted => "granted",
    };
    // `presence` and `join_leave` are shown when on, as a configuration would set them.
    let rules = |r: &NamespaceRules| {
        let mut rules = serde_json::json!({"subscribe": access(r.subscribe), "publish": access(r.publish)});
        for (key, on) in [("presence", r.presence), ("join_leave", r.join_leave)] {
            if on {
                rules[key] = true.into();
            }
        }
        rules
    };
    let mut namespaces: Vec<_> = g.channels.namespaces.iter().collect();
    namespaces.sort_by_key(|(name, _)| name.as_str());
    serde_json::json!({
        "listen": g.listen.to_string(),
        "tls": tls_summary(g.tls.as_ref()),
        "node_id": g.node_id,
        "page": g.serve_page,
        "max_message_size": g.max_message_size,
        "max_queue_bytes": g.max_queue_bytes,
        "max_subscriptions": g.max_subscriptions,
        "max_connections": g.max_connections,
        "handshake_timeout_ms": g.handshake_timeout.as_millis() as u64,
        "ping_interval_ms": g.ping_interval.as_millis() as u64,
        "pong_timeout_ms": g.pong_timeout.as_millis() as u64,
        "drain_window_ms": g.drain_window.as_millis() as u64,
        "client_publish": g.client_publish,
        "rpc_timeout_ms": g.rpc_timeout.as_millis() as u64,
        "presence_timeout_ms": g.presence_timeout.as_millis() as u64,
        "max_pending_rpcs": g.max_pending_rpcs,
        "max_pending_commands": g.max_pending_commands,
        "max_recovery": g.max_recovery,
        "max_user_id_len": g.max_user_id_len,
        "max_header_bytes": g.max_header_bytes,
        "max_connections_per_ip": g.max_connections_per_ip,
        "max_connections_per_user": g.max_connections_per_user,
        "connect_rate_per_ip": g.connect_rate_per_ip,
        "connect_burst_per_ip": g.connect_burst_per_ip,
        "max_messages_per_sec": g.max_messages_per_sec,
        "message_burst": g.message_burst,
        "max_bytes_per_sec": g.max_bytes_per_sec,
        "bytes_burst": g.bytes_burst,
        "max_channel_len": g.max_channel_len,
        "allowed_origins": g.allowed_origins,
        "trusted_proxies": g.trusted_proxies,
        "auth": {
            "allow_anonymous": g.auth.allow_anonymous,
            "keys": g.auth.keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>(),
            "jwks_url": g.auth.jwks_url,
            "jwks_ca": g.auth.jwks_ca.as_ref().map(|p| p.display().to_string()),
            "issuer": g.auth.issuer,
            "audience": g.auth.audience,
        },
        "channels": {
            "default": rules(&g.channels.default),
            "unknown_namespaces": if g.channels.unknown_namespaces == UnknownNamespaces::Refuse { "refuse" } else { "default" },
            "namespaces": namespaces.into_iter().map(|(n, r)| (n.clone(), rules(r))).collect::<serde_json::Map<_, _>>(),
        },
    })
}

/// Whether a listener serves TLS, and with mutual TLS whether a client certificate is
/// required; file paths, not their contents.
fn tls_summary(t: Option<&switchboard_tls::TlsFiles>) -> serde_json::Value {
    match t {
        None => serde_json::json!({"on": false}),
        Some(t) => serde_json::json!({
            "on": true,
            "cert": t.cert.display().to_string(),
            "client_ca": t.client_ca.as_ref().map(|ca| ca.display().to_string()),
            "client_cert_required": t.client_ca.is_some() && t.client_cert_required,
        }),
    }
}

fn balance_summary(b: &BalanceConfig) -> serde_json::Value {
    serde_json::json!({
        "enabled": b.enabled,
        "interval_ms": b.interval.as_millis() as u64,
        "tolerance_percent": b.tolerance_percent,
        "min_difference": b.min_difference,
        "max_share_percent": b.max_share_percent,
        "window_ms": b.window.as_millis() as u64,
        "warmup_ms": b.warmup.as_millis() as u64,
    })
}

fn nats_summary(n: &NatsConfig) -> serde_json::Value {
    serde_json::json!({
        "urls": n.urls,
        "subject_prefix": n.prefix,
        "connect_timeout_ms": n.connect_timeout.as_millis() as u64,
        "ping_interval_ms": n.ping_interval.as_millis() as u64,
        "max_missed_pongs": n.max_missed_pongs,
        "history_replicas": n.history_replicas,
        // ca or a client certificate imply TLS; otherwise it is used when the server asks.
        "tls": if n.tls.require || n.tls.ca.is_some() || n.tls.cert.is_some() || n.urls.iter().any(|u| u.starts_with("tls://")) {
            "on"
        } else {
            "when the server asks"
        },
        "tls_client_cert": n.tls.cert.is_some(),
        "history": history_summary(&n.namespaces),
    })
}

fn history_summary(n: &Namespaces) -> serde_json::Value {
    let limits = |h: &Option<HistoryLimits>| match h {
        Some(h) => serde_json::json!({"size": h.size, "ttl_ms": h.ttl.as_millis() as u64}),
        None => serde_json::Value::Null,
    };
    serde_json::json!({
        "default": limits(&n.default),
        "namespaces": n.namespaces.iter().map(|(k, h)| (k.clone(), limits(h))).collect::<serde_json::Map<_, _>>(),
    })
}
