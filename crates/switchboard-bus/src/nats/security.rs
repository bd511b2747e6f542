//! TLS and authentication towards the NATS servers: the settings ([`NatsTls`],
//! [`NatsAuth`]), their checks before any connection, how they go into async-nats's
//! `ConnectOptions`, and what a failed connection says about them.
//!
//! async-nats reads the CA and client certificate files on every connection attempt, so
//! a client certificate renewed on disk is used from the next reconnect on.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{ConnectOptions, ServerAddr};
use switchboard_tls::pki_types::ServerName;
use switchboard_tls::rustls::ClientConfig;
use switchboard_tls::rustls::sign::CertifiedKey;
use tokio::io::AsyncBufReadExt;

use crate::BusError;

/// TLS towards the NATS servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsTls {
    /// CA certificates (PEM) the servers' certificates must chain to; unset: the system's
    /// roots. Setting it requires TLS. Default unset.
    pub ca: Option<PathBuf>,
    /// A client certificate (PEM), with `key`, for servers that verify clients (`verify:
    /// true` in their `tls {}` block). Setting it requires TLS. Default unset.
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM). Default unset.
    pub key: Option<PathBuf>,
    /// Refuse servers that do not offer TLS. Default false: TLS when the server asks for
    /// it (`tls_required` in its greeting), a `tls://` URL, or `ca`/`cert` is set.
    pub require: bool,
}

/// How a node proves who it is to NATS.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum NatsAuth {
    /// No credentials (an open server, or one that trusts the client certificate).
    #[default]
    None,
    /// `authorization { user, password }` or an account's users.
    UserPassword { user: String, password: String },
    /// `authorization { token }`.
    Token(String),
    /// An nkey seed (`SU…`); the server lists the matching public key (`U…`).
    NkeySeed(String),
    /// A `.creds` file: a user JWT and its nkey seed (operator mode, NGS, Synadia Cloud).
    CredsFile(PathBuf),
}

impl std::fmt::Debug for NatsAuth {
    /// Never a password, token or seed: configs are logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NatsAuth::None => f.write_str("None"),
            NatsAuth::UserPassword { user, .. } => write!(f, "UserPassword {{ user: {user:?}, password: <hidden> }}"),
            NatsAuth::Token(_) => f.write_str("Token(<hidden>)"),
            NatsAuth::NkeySeed(_) => f.write_str("NkeySeed(<hidden>)"),
            NatsAuth::CredsFile(path) => write!(f, "CredsFile({path:?})"),
        }
    }
}

// === impl NatsTls ===

impl NatsTls {
    /// Whether connections must use TLS.
    pub fn required(&self) -> bool {
        self.require || self.ca.is_some() || self.cert.is_some()
    }

    /// Checks that the files exist and hold what they should; the message names the file.
    pub fn validate(&self) -> Result<(), BusError> {
        let invalid = |e: switchboard_tls::TlsError| BusError::Invalid(format!("nats tls: {e}"));
        if let Some(ca) = &self.ca {
            switchboard_tls::load_roots(ca).map_err(invalid)?;
        }
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => {
                let chain = switchboard_tls::load_certs(cert).map_err(invalid)?;
                let key_der = switchboard_tls::load_key(key).map_err(invalid)?;
                CertifiedKey::from_der(chain, key_der, &switchboard_tls::provider()).map_err(|e| {
                    BusError::Invalid(format!(
                        "nats tls: key file {} does not fit certificate file {}: {e}",
                        key.display(),
                        cert.display()
                    ))
                })?;
            }
            (None, None) => {}
            (Some(_), None) => return Err(BusError::Invalid("nats tls: a client certificate needs its key".into())),
            (None, Some(_)) => return Err(BusError::Invalid("nats tls: a client key needs its certificate".into())),
        }
        Ok(())
    }

    /// The rustls client config async-nats would build, for [`tls_failure`].
    fn client_config(&self) -> Option<ClientConfig> {
        let identity = self.cert.as_deref().zip(self.key.as_deref());
        switchboard_tls::client_config_with_identity(self.ca.as_deref(), identity, &[]).ok()
    }
}

// === impl NatsAuth ===

impl NatsAuth {
    /// Checks what can be checked without a server: a seed that parses, a creds file that
    /// can be read.
    pub fn validate(&self) -> Result<(), BusError> {
        match self {
            NatsAuth::None | NatsAuth::UserPassword { .. } | NatsAuth::Token(_) => Ok(()),
            NatsAuth::NkeySeed(seed) => nkeys::KeyPair::from_seed(seed.trim())
                .map(drop)
                .map_err(|e| BusError::Invalid(format!("nats nkey seed is not valid: {e}"))),
            NatsAuth::CredsFile(path) => std::fs::metadata(path)
                .map(drop)
                .map_err(|e| BusError::Invalid(format!("cannot read nats creds file {}: {}", path.display(), os(&e)))),
        }
    }
}

/// Adds the TLS and credential settings to `options`.
pub(super) async fn apply(
    mut options: ConnectOptions,
    tls: &NatsTls,
    auth: &NatsAuth,
) -> Result<ConnectOptions, BusError> {
    if let Some(ca) = &tls.ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if tls.required() {
        options = options.require_tls(true);
    }
    Ok(match auth {
        NatsAuth::None => options,
        NatsAuth::UserPassword { user, password } => options.user_and_password(user.clone(), password.clone()),
        NatsAuth::Token(token) => options.token(token.clone()),
        NatsAuth::NkeySeed(seed) => options.nkey(seed.trim().to_owned()),
        NatsAuth::CredsFile(path) => options
            .credentials_file(path)
            .await
            .map_err(|e| BusError::Invalid(format!("nats creds file {}: {}", path.display(), os(&e))))?,
    })
}

/// Why a TLS connection to `addr` fails, from a handshake of our own with the same
/// settings (async-nats says only "TLS error"); `None` when it succeeds or cannot tell.
pub(super) async fn tls_failure(addr: &ServerAddr, tls: &NatsTls) -> Option<String> {
    let config = tls.client_config()?;
    let probe = async {
        let tcp = tokio::net::TcpStream::connect((addr.host(), addr.port())).await.ok()?;
        // NATS greets in plaintext (`INFO {…}`), then the client starts TLS.
        let mut reader = tokio::io::BufReader::new(tcp);
        let mut info = String::new();
        reader.read_line(&mut info).await.ok()?;
        if !info.starts_with("INFO ") {
            return None;
        }
        if !info.contains("\"tls_required\":true") && !tls.required() {
            return None;
        }
        let name = ServerName::try_from(addr.host().to_owned()).ok()?;
        let connector = switchboard_tls::tokio_rustls::TlsConnector::from(Arc::new(config));
        match connector.connect(name, reader.into_inner()).await {
            Ok(_) => None,
            Err(e) => Some(format!("tls failed: {e}")),
        }
    };
    tokio::time::timeout(Duration::from_secs(2), probe).await.ok().flatten()
}

fn os(e: &std::io::Error) -> String {
    let text = e.to_string();
    text.split(" (os error").next().unwrap_or_default().to_lowercase()
}
