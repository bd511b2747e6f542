//! rustls client configurations: a CA bundle from a file, or the system's roots.

use std::path::Path;
use std::sync::{Arc, OnceLock};

use rustls::{ClientConfig, RootCertStore};

use crate::{TlsError, pem, provider};

/// A client configuration trusting the CAs in `ca_file`, or the system's roots when it is
/// `None`, offering `alpn`.
pub fn client_config(ca_file: Option<&Path>, alpn: &[&[u8]]) -> Result<ClientConfig, TlsError> {
    client_config_with_identity(ca_file, None, alpn)
}

/// Like [`client_config`], presenting the certificate chain and key in `identity` (`cert`,
/// `key`) to servers that ask for one (mutual TLS).
pub fn client_config_with_identity(
    ca_file: Option<&Path>,
    identity: Option<(&Path, &Path)>,
    alpn: &[&[u8]],
) -> Result<ClientConfig, TlsError> {
    let roots = match ca_file {
        Some(path) => Arc::new(pem::load_roots(path)?),
        None => system_roots()?,
    };
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(format!("tls protocol versions: {e}")))?
        .with_root_certificates(roots);
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let (chain, key_der) = (pem::load_certs(cert)?, pem::load_key(key)?);
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                TlsError::Config(format!(
                    "key file {} does not fit certificate file {}: {e}",
                    key.display(),
                    cert.display()
                ))
            })?
        }
    };
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// The system's trusted roots (`rustls-native-certs`: `/etc/ssl/certs` and friends, or
/// `SSL_CERT_FILE`), read once per process.
pub fn system_roots() -> Result<Arc<RootCertStore>, TlsError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, TlsError>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut store = RootCertStore::empty();
            let (_added, _ignored) = store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                let why = found.errors.first().map_or_else(|| "none found".to_owned(), |e| e.to_string());
                return Err(TlsError::Config(format!("no system CA certificates ({why}); give a CA file instead")));
            }
            Ok(Arc::new(store))
        })
        .clone()
}
