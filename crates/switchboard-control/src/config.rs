//! Control replica settings, and the errors of starting one.

use std::time::Duration;

use switchboard_bus::BusError;
use switchboard_tls::TlsFiles;

use crate::auth::ApiKeys;
use crate::balance::BalanceConfig;

/// The longest gateway lease allowed: a dead gateway's sessions must not linger longer.
pub const MAX_GATEWAY_LEASE: Duration = Duration::from_secs(15);

/// How a control replica behaves. The binary maps its flags onto this struct; tests build
/// it directly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlConfig {
    /// This replica's id, unique in the cluster: one token of `[A-Za-z0-9_-]` (at most 128
    /// bytes). Default: `c` and 7 random characters.
    pub replica_id: String,
    /// The gRPC address this replica advertises to its peers and in `Info` (`host:port`).
    /// Default empty.
    pub grpc_addr: String,
    /// Interval between this replica's heartbeats. Default 1 s.
    pub heartbeat_interval: Duration,
    /// A peer replica silent this long leaves the ring; must exceed `heartbeat_interval`.
    /// Default 3 s.
    pub replica_lease: Duration,
    /// A gateway silent this long has its sessions dropped from the registry; at most 15 s,
    /// and longer than the gateways' heartbeat interval. Default 10 s.
    pub gateway_lease: Duration,
    /// Time allowed for one query to a peer replica or one command to a gateway; also
    /// bounds how long a call waits for the ring while the replica starts. Default 2 s.
    pub query_timeout: Duration,
    /// Serve the gRPC API over TLS with this certificate and key (ALPN `h2`), reloaded
    /// when the files change; with `client_ca`, a call on a connection with a verified
    /// client certificate needs no API key (mutual TLS). Default unset: plain HTTP/2.
    pub tls: Option<TlsFiles>,
    /// The API keys `SwitchboardApi` calls must carry as `authorization: Bearer <key>`.
    /// With no key and no client CA the API is open to anyone who reaches the port (fine
    /// for `switchboard dev`; `switchboard control` refuses it unless told). Health and
    /// reflection never need a key. Default none.
    pub api_keys: ApiKeys,
    /// Serve gRPC server reflection (v1 and v1alpha), which lists every service and
    /// message. Default true.
    pub reflection: bool,
    /// Moving sessions from loaded gateways to the others after a membership change
    /// (`balance.rs`). Default on, with [`BalanceConfig::default`].
    pub balance: BalanceConfig,
}

/// Why a control replica did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid.
    #[error("invalid control config: {0}")]
    Config(String),
    /// The bus refused to set up a listener.
    #[error("bus: {0}")]
    Bus(#[from] BusError),
}

// === impl ControlConfig ===

impl ControlConfig {
    /// The defaults, with the given id and advertised address.
    pub fn new(replica_id: impl Into<String>, grpc_addr: impl Into<String>) -> Self {
        ControlConfig { replica_id: replica_id.into(), grpc_addr: grpc_addr.into(), ..Default::default() }
    }

    /// Checks every field; the message names the field and what is wrong.
    pub fn validate(&self) -> Result<(), StartError> {
        let fail = |m: String| Err(StartError::Config(m));
        if !switchboard_bus::subjects::is_token(&self.replica_id) {
            return fail(format!(
                "replica_id {:?} must be 1 to 128 characters of letters, digits, '_' and '-'",
                self.replica_id
            ));
        }
        if self.heartbeat_interval.is_zero() {
            return fail("heartbeat_interval must be positive".into());
        }
        if self.replica_lease <= self.heartbeat_interval {
            return fail(format!(
                "replica_lease ({:?}) must be longer than heartbeat_interval ({:?})",
                self.replica_lease, self.heartbeat_interval
            ));
        }
        if self.gateway_lease.is_zero() || self.gateway_lease > MAX_GATEWAY_LEASE {
            return fail(format!("gateway_lease ({:?}) must be positive and at most 15s", self.gateway_lease));
        }
        if self.query_timeout.is_zero() {
            return fail("query_timeout must be positive".into());
        }
        self.balance.validate().map_err(StartError::Config)?;
        self.api_keys.validate().map_err(StartError::Config)?;
        if let Some(files) = &self.tls {
            // The same loading as at start-up, without the reloading.
            let once = TlsFiles { reload_interval: Duration::ZERO, ..files.clone() };
            switchboard_tls::ServerTls::load(&once, crate::tls::ALPN)
                .map_err(|e| StartError::Config(format!("tls: {e}")))?;
        }
        Ok(())
    }

    /// Whether callers of the API must authenticate: an API key is configured, or the gRPC
    /// listener verifies client certificates.
    pub fn is_authenticated(&self) -> bool {
        !self.api_keys.is_empty() || self.tls.as_ref().is_some_and(|t| t.client_ca.is_some())
    }
}

impl Default for ControlConfig {
    fn default() -> Self {
        ControlConfig {
            replica_id: random_replica_id(),
            grpc_addr: String::new(),
            heartbeat_interval: Duration::from_secs(1),
            replica_lease: Duration::from_secs(3),
            gateway_lease: Duration::from_secs(10),
            query_timeout: Duration::from_secs(2),
            tls: None,
            api_keys: ApiKeys::default(),
            reflection: true,
            balance: BalanceConfig::default(),
        }
    }
}

/// A fresh replica id: `c` and 7 characters of `[a-z0-9]`.
pub fn random_replica_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    std::iter::once('c').chain((0..7).map(|_| ALPHABET[fastrand::usize(..ALPHABET.len())] as char)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_settings_are_rejected_with_the_field_named() {
        let ok = ControlConfig::new("c1", "127.0.0.1:9090");
        assert!(ok.validate().is_ok());
        let ms = Duration::from_millis;
        let balance = |b: BalanceConfig| ControlConfig { balance: b, ..ok.clone() };
        let cases: [(&str, ControlConfig); 10] = [
            ("balance.interval", balance(BalanceConfig { interval: ms(0), ..Default::default() })),
            ("balance.tolerance_percent", balance(BalanceConfig { tolerance_percent: 0, ..Default::default() })),
            ("balance.max_share_percent", balance(BalanceConfig { max_share_percent: 101, ..Default::default() })),
            ("replica_id", ControlConfig { replica_id: String::new(), ..ok.clone() }),
            ("replica_id", ControlConfig { replica_id: "a.b".into(), ..ok.clone() }),
            ("heartbeat_interval", ControlConfig { heartbeat_interval: ms(0), ..ok.clone() }),
            ("replica_lease", ControlConfig { replica_lease: ms(1000), ..ok.clone() }),
            ("gateway_lease", ControlConfig { gateway_lease: ms(15_001), ..ok.clone() }),
            ("gateway_lease", ControlConfig { gateway_lease: ms(0), ..ok.clone() }),
            ("query_timeout", ControlConfig { query_timeout: ms(0), ..ok.clone() }),
        ];
        for (field, config) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{field}: {err}");
        }
    }

    #[test]
    fn random_ids_are_valid_tokens() {
        assert!(ControlConfig::default().validate().is_ok());
        assert_ne!(random_replica_id(), random_replica_id());
    }
}
