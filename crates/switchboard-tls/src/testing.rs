//! Certificates made at run time for tests (feature `testing`): a throw-away CA in a fresh
//! temp dir that issues server and client certificates for `localhost` and `127.0.0.1`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use rustls_pki_types::CertificateDer;

use crate::TlsFiles;

static COUNTER: AtomicUsize = AtomicUsize::new(0);

/// A CA and the files it wrote; the directory is removed on drop.
pub struct TestPki {
    ca: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

/// A certificate [`TestPki`] issued: its files and its DER.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub der: CertificateDer<'static>,
}

impl Issued {
    /// The files as a server's TLS settings.
    pub fn files(&self) -> TlsFiles {
        TlsFiles::new(&self.cert, &self.key)
    }
}

impl TestPki {
    /// A fresh CA (`{name} test CA`) in a fresh temp dir, its certificate in `ca.pem`.
    pub fn new(name: &str) -> TestPki {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("sb-pki-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("ca params");
        params.distinguished_name = name_of(&format!("{name} test CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().expect("ca key")).expect("ca cert");
        std::fs::write(dir.join("ca.pem"), ca.pem()).expect("ca.pem written");
        TestPki { ca, dir }
    }

    /// The CA certificate's file.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The CA certificate.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca.der().clone()
    }

    /// The temp dir everything is written to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// A server certificate for `localhost` and `127.0.0.1` with this serial, written to
    /// `{name}.crt` and `{name}.key`.
    pub fn server(&self, name: &str, serial: u64) -> Issued {
        let issued = self.issue(name, serial, ExtendedKeyUsagePurpose::ServerAuth);
        self.write(&issued.0, &issued.1, &self.dir.join(format!("{name}.crt")), &self.dir.join(format!("{name}.key")))
    }

    /// A client certificate (subject CN `name`), written to `{name}.crt` and `{name}.key`.
    pub fn client(&self, name: &str, serial: u64) -> Issued {
        let issued = self.issue(name, serial, ExtendedKeyUsagePurpose::ClientAuth);
        self.write(&issued.0, &issued.1, &self.dir.join(format!("{name}.crt")), &self.dir.join(format!("{name}.key")))
    }

    /// Replaces the files of `at` with a new server certificate of `serial` (each file
    /// written beside and renamed over the old one, as a deployment tool would).
    pub fn renew_server(&self, at: &Issued, serial: u64) -> Issued {
        let (cert, key) = self.issue("renewed", serial, ExtendedKeyUsagePurpose::ServerAuth);
        self.write(&cert, &key, &at.cert, &at.key)
    }

    fn issue(&self, name: &str, serial: u64, usage: ExtendedKeyUsagePurpose) -> (rcgen::Certificate, KeyPair) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("leaf params");
        params.distinguished_name = name_of(name);
        params.serial_number = Some(SerialNumber::from(serial));
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.ca).expect("leaf cert");
        (cert, key)
    }

    fn write(&self, cert: &rcgen::Certificate, key: &KeyPair, cert_path: &Path, key_path: &Path) -> Issued {
        for (path, text) in [(cert_path, cert.pem()), (key_path, key.serialize_pem())] {
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, text).expect("pem written");
            std::fs::rename(&tmp, path).expect("pem renamed into place");
        }
        Issued { cert: cert_path.to_owned(), key: key_path.to_owned(), der: cert.der().clone() }
    }
}

impl Drop for TestPki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn name_of(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name
}
