//! The command line's TLS, API key and NATS credential flags, and their mapping onto the
//! libraries' settings. A file that cannot be used is a [`UsageError`] (exit 64) naming it.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use switchboard_bench::parse_duration;
use switchboard_bus::{NatsAuth, NatsTls};
use switchboard_control::ApiKeys;
use switchboard_tls::TlsFiles;

use crate::UsageError;

/// TLS for a listener: a certificate and key from PEM files, reloaded when they change.
#[derive(Debug, Clone, Args)]
pub struct TlsArgs {
    /// Certificate chain (PEM) to serve TLS with; needs --tls-key. Re-read when it changes.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that client certificates must chain to (mutual TLS).
    #[arg(long, env = "SWITCHBOARD_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// With --tls-client-ca: let clients without a certificate connect (they then need
    /// another credential, such as an API key).
    #[arg(long, env = "SWITCHBOARD_TLS_CLIENT_CERT_OPTIONAL", requires = "tls_client_ca")]
    pub tls_client_cert_optional: bool,
    /// How often the certificate, key and client CA files are checked for changes.
    #[arg(long, env = "SWITCHBOARD_TLS_RELOAD_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub tls_reload_interval: Duration,
}

impl TlsArgs {
    /// No TLS flags (a listener whose TLS only the config file sets).
    pub fn none() -> Self {
        TlsArgs {
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            tls_client_cert_optional: false,
            tls_reload_interval: TlsFiles::new("", "").reload_interval,
        }
    }

    /// The TLS settings, if TLS is on. Half a pair is refused rather than leaving TLS off
    /// (clap checks the flags, this also the environment variables).
    pub fn files(&self) -> Result<Option<TlsFiles>, UsageError> {
        let (cert, key) = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => return Err(UsageError("--tls-cert needs --tls-key (SWITCHBOARD_TLS_KEY)".into())),
            (None, Some(_)) => return Err(UsageError("--tls-key needs --tls-cert (SWITCHBOARD_TLS_CERT)".into())),
            (None, None) if self.tls_client_ca.is_some() => {
                return Err(UsageError(
                    "--tls-client-ca needs --tls-cert and --tls-key: mutual TLS needs TLS on".into(),
                ));
            }
            (None, None) => return Ok(None),
        };
        let mut files = TlsFiles { reload_interval: self.tls_reload_interval, ..TlsFiles::new(cert, key) };
        if let Some(ca) = &self.tls_client_ca {
            files = files.with_client_ca(ca, !self.tls_client_cert_optional);
        }
        Ok(Some(files))
    }
}

/// API keys for the gRPC API.
#[derive(Debug, Clone, Args)]
pub struct ApiKeysArgs {
    /// API keys a backend must send as `authorization: Bearer <key>` on SwitchboardApi
    /// calls, comma-separated; several at once for rotation; at least 16 characters each.
    #[arg(long, env = "SWITCHBOARD_API_KEYS", value_delimiter = ',', hide_env_values = true)]
    pub api_keys: Vec<String>,
    /// A file of API keys, one per line (`#` comments), e.g. a mounted secret; re-read when
    /// it changes.
    #[arg(long, env = "SWITCHBOARD_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
}

impl ApiKeysArgs {
    pub fn keys(&self) -> ApiKeys {
        let keys = ApiKeys::new(&self.api_keys);
        match &self.api_keys_file {
            Some(path) => keys.with_file(path),
            None => keys,
        }
    }
}

/// Who may call a control replica's API.
#[derive(Debug, Clone, Args)]
pub struct ControlAuthArgs {
    #[command(flatten)]
    pub keys: ApiKeysArgs,
    /// Serve the API without API keys or mutual TLS: anyone who reaches the port may
    /// publish and disconnect sessions. Only behind a network boundary you trust.
    #[arg(long, env = "SWITCHBOARD_ALLOW_UNAUTHENTICATED_API")]
    pub allow_unauthenticated_api: bool,
    /// Do not serve gRPC server reflection.
    #[arg(long, env = "SWITCHBOARD_NO_REFLECTION")]
    pub no_reflection: bool,
}

/// TLS and credentials towards NATS.
#[derive(Debug, Clone, Args)]
pub struct NatsSecurityArgs {
    /// CA certificates (PEM) of the NATS servers; implies TLS.
    #[arg(long, env = "SWITCHBOARD_NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for NATS servers that verify clients; implies TLS.
    #[arg(long, env = "SWITCHBOARD_NATS_TLS_CERT", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --nats-tls-cert.
    #[arg(long, env = "SWITCHBOARD_NATS_TLS_KEY", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,
    /// Refuse NATS servers that do not offer TLS (with the system's CA roots unless
    /// --nats-tls-ca is given).
    #[arg(long, env = "SWITCHBOARD_NATS_REQUIRE_TLS")]
    pub nats_require_tls: bool,
    /// NATS user name (with --nats-password).
    #[arg(long, env = "SWITCHBOARD_NATS_USER", requires = "nats_password")]
    pub nats_user: Option<String>,
    /// NATS password of --nats-user.
    #[arg(long, env = "SWITCHBOARD_NATS_PASSWORD", hide_env_values = true, requires = "nats_user")]
    pub nats_password: Option<String>,
    /// NATS authorization token.
    #[arg(long, env = "SWITCHBOARD_NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// A file holding the NATS nkey seed (`SU…`) this node signs in with.
    #[arg(long, env = "SWITCHBOARD_NATS_NKEY_SEED_FILE")]
    pub nats_nkey_seed_file: Option<PathBuf>,
    /// A NATS credentials file (`.creds`: user JWT and nkey seed).
    #[arg(long, env = "SWITCHBOARD_NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
}

impl NatsSecurityArgs {
    pub fn tls(&self) -> NatsTls {
        NatsTls {
            ca: self.nats_tls_ca.clone(),
            cert: self.nats_tls_cert.clone(),
            key: self.nats_tls_key.clone(),
            require: self.nats_require_tls,
        }
    }

    /// The one credential given; two kinds at once are a usage error.
    pub fn auth(&self) -> Result<NatsAuth, UsageError> {
        let given = [
            self.nats_user.is_some(),
            self.nats_token.is_some(),
            self.nats_nkey_seed_file.is_some(),
            self.nats_creds.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(UsageError(
                "give one NATS credential: --nats-user/--nats-password, --nats-token, --nats-nkey-seed-file or --nats-creds"
                    .into(),
            ));
        }
        if let (Some(user), Some(password)) = (&self.nats_user, &self.nats_password) {
            return Ok(NatsAuth::UserPassword { user: user.clone(), password: password.clone() });
        }
        if let Some(token) = &self.nats_token {
            return Ok(NatsAuth::Token(token.clone()));
        }
        if let Some(path) = &self.nats_nkey_seed_file {
            let seed = std::fs::read_to_string(path).map_err(|e| {
                UsageError(format!("cannot read --nats-nkey-seed-file {}: {}", path.display(), io_text(&e)))
            })?;
            return Ok(NatsAuth::NkeySeed(seed.trim().to_owned()));
        }
        if let Some(path) = &self.nats_creds {
            return Ok(NatsAuth::CredsFile(path.clone()));
        }
        Ok(NatsAuth::None)
    }
}

fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    text.split(" (os error").next().unwrap_or_default().to_lowercase()
}
