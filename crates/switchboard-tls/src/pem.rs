//! PEM files to rustls types, with errors that name the file.

use std::path::Path;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

/// Every certificate in the PEM file at `path`, in file order.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    certs("certificate file", path, &read("certificate file", path)?)
}

/// The first private key in the PEM file at `path`.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    key(path, &read("key file", path)?)
}

/// The CA certificates in the PEM file at `path`, as trust anchors.
pub fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    roots("CA file", path, &read("CA file", path)?)
}

pub(crate) fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read { what, path: path.to_owned(), why: io_text(&e) })
}

pub(crate) fn certs(what: &'static str, path: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let invalid = |why: String| TlsError::Invalid { what, path: path.to_owned(), why };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(format!("not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(invalid("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(certs)
}

pub(crate) fn key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::Invalid {
        what: "key file",
        path: path.to_owned(),
        why: match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "holds no PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)".into()
            }
            e => format!("not a PEM private key ({e})"),
        },
    })
}

pub(crate) fn roots(what: &'static str, path: &Path, pem: &[u8]) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    for cert in certs(what, path, pem)? {
        store.add(cert).map_err(|e| TlsError::Invalid {
            what,
            path: path.to_owned(),
            why: format!("a certificate rustls cannot use as a trust anchor ({e})"),
        })?;
    }
    Ok(store)
}

/// `No such file or directory (os error 2)` → `no such file or directory`.
fn io_text(e: &std::io::Error) -> String {
    let text = e.to_string();
    let text = text.split(" (os error").next().unwrap_or_default();
    let mut chars = text.chars();
    chars.next().map(|c| c.to_lowercase().chain(chars).collect()).unwrap_or_default()
}
