//! The cluster's PKI in the data directory: a CA made on first start, a serving
//! certificate for the API server and a client certificate for the admin, an
//! admin bearer token, and the admin kubeconfig.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::Error;

const CA_CN: &str = "kubesvc-ca";
/// The identity the admin client certificate carries (Kubernetes' superuser group).
pub const ADMIN_CN: &str = "kubesvc-admin";
const ADMIN_ORG: &str = "system:masters";

pub struct Pki {
    pub ca_pem: String,
    ca_der: CertificateDer<'static>,
    pub server_cert_pem: String,
    server_key_der: Vec<u8>,
    pub admin_cert_pem: String,
    pub admin_key_pem: String,
    pub token: String,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io(path.to_path_buf(), e)
}

fn pki_err(e: rcgen::Error) -> Error {
    Error::Pki(e.to_string())
}

fn ca_params() -> Result<CertificateParams, Error> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2124, 1, 1);
    Ok(p)
}

/// Writes a private file (mode 0600) so that no reader or crash ever sees half of it.
fn write_atomic(path: &Path, contents: &str) -> Result<(), Error> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f =
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
    f.write_all(contents.as_bytes()).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

impl Pki {
    /// Loads the CA and token from `dir/pki`, making them on first start, and
    /// issues fresh serving and admin certificates signed by the CA.
    pub fn load_or_create(dir: &Path, server_names: &[String]) -> Result<Pki, Error> {
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki).map_err(io(&pki))?;
        let (ca_crt, ca_key) = (pki.join("ca.crt"), pki.join("ca.key"));
        let (ca_pem, ca_keypair) = if ca_crt.exists() && ca_key.exists() {
            let key_pem = std::fs::read_to_string(&ca_key).map_err(io(&ca_key))?;
            let key = KeyPair::from_pem(&key_pem).map_err(pki_err)?;
            (std::fs::read_to_string(&ca_crt).map_err(io(&ca_crt))?, key)
        } else {
            let key = KeyPair::generate().map_err(pki_err)?;
            let cert = ca_params()?.self_signed(&key).map_err(pki_err)?;
            write_atomic(&ca_key, &key.serialize_pem())?;
            write_atomic(&ca_crt, &cert.pem())?;
            (cert.pem(), key)
        };
        let ca_der = rustls_pemfile::certs(&mut ca_pem.as_bytes())
            .next()
            .ok_or_else(|| Error::Pki("ca.crt holds no certificate".into()))?
            .map_err(|e| Error::Pki(format!("ca.crt: {e}")))?;
        // The issuer needs only the CA's subject and key, both stable across restarts.
        let issuer = Issuer::new(ca_params()?, ca_keypair);

        let mut sans: Vec<SanType> = Vec::new();
        for n in server_names {
            match n.parse::<IpAddr>() {
                Ok(ip) => sans.push(SanType::IpAddress(ip)),
                Err(_) => sans.push(SanType::DnsName(n.as_str().try_into().map_err(pki_err)?)),
            }
        }
        let server_key = KeyPair::generate().map_err(pki_err)?;
        let mut sp = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
        sp.subject_alt_names = sans;
        sp.distinguished_name.push(DnType::CommonName, "kube-apiserver");
        sp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        sp.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let server_cert = sp.signed_by(&server_key, &issuer).map_err(pki_err)?;

        let admin_key = KeyPair::generate().map_err(pki_err)?;
        let mut ap = CertificateParams::new(Vec::<String>::new()).map_err(pki_err)?;
        ap.distinguished_name.push(DnType::CommonName, ADMIN_CN);
        ap.distinguished_name.push(DnType::OrganizationName, ADMIN_ORG);
        ap.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        ap.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let admin_cert = ap.signed_by(&admin_key, &issuer).map_err(pki_err)?;

        let token_path = pki.join("token");
        let existing = match std::fs::read_to_string(&token_path) {
            Ok(t) => t.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(Error::Io(token_path, e)),
        };
        // An empty token (a crash while writing it) is replaced, never accepted.
        let token = if existing.is_empty() {
            let mut bytes = [0u8; 32];
            rand::fill(&mut bytes);
            let t = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
            write_atomic(&token_path, &t)?;
            t
        } else {
            existing
        };

        Ok(Pki {
            ca_pem,
            ca_der,
            server_cert_pem: server_cert.pem(),
            server_key_der: server_key.serialize_der(),
            admin_cert_pem: admin_cert.pem(),
            admin_key_pem: admin_key.serialize_pem(),
            token,
        })
    }

    /// TLS for the API server: HTTP/2 and HTTP/1.1, client certificates
    /// verified against the CA but not required (bearer tokens work too).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).map_err(|e| Error::Pki(e.to_string()))?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| Error::Pki(e.to_string()))?;
        let chain = vec![
            rustls_pemfile::certs(&mut self.server_cert_pem.as_bytes())
                .next()
                .ok_or_else(|| Error::Pki("no serving certificate".into()))?
                .map_err(|e| Error::Pki(e.to_string()))?,
            self.ca_der.clone(),
        ];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Pki(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| Error::Pki(e.to_string()))?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// Writes the admin kubeconfig for a server reachable at `server_url`.
    pub fn write_kubeconfig(&self, path: &Path, server_url: &str) -> Result<PathBuf, Error> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesvc\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {}\nusers:\n- name: kubesvc-admin\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: kubesvc\n  context:\n    cluster: kubesvc\n    user: kubesvc-admin\n    namespace: default\ncurrent-context: kubesvc\npreferences: {{}}\n",
            b64(&self.ca_pem),
            b64(&self.admin_cert_pem),
            b64(&self.admin_key_pem),
        );
        write_atomic(path, &text)?;
        Ok(path.to_path_buf())
    }
}
