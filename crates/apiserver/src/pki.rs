//! The cluster's PKI in the data directory: a CA made on first start, a serving
//! certificate for the API server, client certificates for the admin and for
//! any other user (node agents are `system:node:<name>` in `system:nodes`), an
//! admin bearer token, and kubeconfigs that carry them.

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
use crate::auth::GROUP_MASTERS;

const CA_CN: &str = "kubesvc-ca";
/// The user the admin client certificate names (in Kubernetes' superuser group).
pub const ADMIN_CN: &str = "kubesvc-admin";
/// The API server's user towards node agents, as kubeadm names it.
pub const KUBELET_CLIENT_CN: &str = "kube-apiserver-kubelet-client";

/// Why a certificate could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(transparent)]
    Certificate(#[from] rcgen::Error),
    #[error(transparent)]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("reading PEM")]
    Pem(#[source] std::io::Error),
    #[error("the PEM holds no certificate")]
    NoCertificate,
}

/// A certificate and its key, PEM.
pub struct ClientCertificate {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The cluster CA: it signs the serving certificate and every client's.
pub struct Ca {
    pub pem: String,
    der: CertificateDer<'static>,
    issuer: Issuer<'static, KeyPair>,
}

pub struct Pki {
    pub ca: Ca,
    pub server_cert_pem: String,
    server_key_der: Vec<u8>,
    pub admin: ClientCertificate,
    /// The API server's own certificate towards node agents (logs, exec, port-forward).
    pub kubelet_client: ClientCertificate,
    pub token: String,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Io(path.to_path_buf(), e)
}

/// Wraps a PKI failure with what was being done.
fn failed(what: &'static str) -> impl Fn(rcgen::Error) -> Error {
    move |e| Error::Pki(what, e.into())
}

/// The first certificate of a PEM text.
fn first_cert(what: &'static str, pem: &str) -> Result<CertificateDer<'static>, Error> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .next()
        .ok_or(Error::Pki(what, PkiError::NoCertificate))?
        .map_err(|e| Error::Pki(what, PkiError::Pem(e)))
}

fn ca_params() -> Result<CertificateParams, Error> {
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(failed("the CA's parameters"))?;
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

/// A client certificate: CN is the user, O its group, as Kubernetes reads them.
/// (rcgen keeps one value per attribute type, so one group per certificate.)
fn client_certificate(issuer: &Issuer<'static, KeyPair>, cn: &str, group: &str) -> Result<ClientCertificate, Error> {
    let key = KeyPair::generate().map_err(failed("making a client key"))?;
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(failed("a client certificate"))?;
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name.push(DnType::OrganizationName, group);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    let cert = p.signed_by(&key, issuer).map_err(failed("signing a client certificate"))?;
    Ok(ClientCertificate { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// A serving certificate for `names` (IP addresses and DNS names).
fn serving_certificate(
    issuer: &Issuer<'static, KeyPair>,
    cn: &str,
    names: &[String],
) -> Result<ClientCertificate, Error> {
    let mut sans: Vec<SanType> = Vec::new();
    for n in names {
        match n.parse::<IpAddr>() {
            Ok(ip) => sans.push(SanType::IpAddress(ip)),
            Err(_) => sans.push(SanType::DnsName(n.as_str().try_into().map_err(failed("a server name"))?)),
        }
    }
    let key = KeyPair::generate().map_err(failed("making a serving key"))?;
    let mut p = CertificateParams::new(Vec::<String>::new()).map_err(failed("a serving certificate"))?;
    p.subject_alt_names = sans;
    p.distinguished_name.push(DnType::CommonName, cn);
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    let cert = p.signed_by(&key, issuer).map_err(failed("signing a serving certificate"))?;
    Ok(ClientCertificate { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

impl Ca {
    /// The CA of an existing data directory; an error if it has none.
    pub fn load(dir: &Path) -> Result<Ca, Error> {
        let (crt, key) = (dir.join("pki/ca.crt"), dir.join("pki/ca.key"));
        let key_pem = std::fs::read_to_string(&key).map_err(io(&key))?;
        let keypair = KeyPair::from_pem(&key_pem).map_err(failed("reading ca.key"))?;
        let pem = std::fs::read_to_string(&crt).map_err(io(&crt))?;
        Self::from_parts(pem, keypair)
    }

    /// The CA of `dir`, made on first start.
    pub fn load_or_create(dir: &Path) -> Result<Ca, Error> {
        let pki = dir.join("pki");
        std::fs::create_dir_all(&pki).map_err(io(&pki))?;
        if pki.join("ca.crt").exists() && pki.join("ca.key").exists() {
            return Self::load(dir);
        }
        let key = KeyPair::generate().map_err(failed("making the CA key"))?;
        let cert = ca_params()?.self_signed(&key).map_err(failed("making the CA"))?;
        write_atomic(&pki.join("ca.key"), &key.serialize_pem())?;
        write_atomic(&pki.join("ca.crt"), &cert.pem())?;
        Self::from_parts(cert.pem(), key)
    }

    fn from_parts(pem: String, key: KeyPair) -> Result<Ca, Error> {
        let der = first_cert("reading ca.crt", &pem)?;
        // The issuer needs only the CA's subject and key, both stable across restarts.
        Ok(Ca { pem, der, issuer: Issuer::new(ca_params()?, key) })
    }

    /// Issues a client certificate for user `cn` in `group`.
    pub fn issue_client(&self, cn: &str, group: &str) -> Result<ClientCertificate, Error> {
        client_certificate(&self.issuer, cn, group)
    }

    /// Issues a serving certificate for `names` (a node agent's, for its addresses).
    pub fn issue_server(&self, cn: &str, names: &[String]) -> Result<ClientCertificate, Error> {
        serving_certificate(&self.issuer, cn, names)
    }

    /// Writes a kubeconfig for `user` holding `cert`, for a server at `server_url`.
    pub fn write_kubeconfig(
        &self,
        path: &Path,
        server_url: &str,
        user: &str,
        cert: &ClientCertificate,
    ) -> Result<PathBuf, Error> {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        // A JSON string is a YAML scalar, whatever the name holds.
        let user = serde_json::to_string(user).map_err(|e| Error::Io(path.to_path_buf(), e.into()))?;
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesvc\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\ncontexts:\n- name: kubesvc\n  context:\n    cluster: kubesvc\n    user: {user}\n    namespace: default\ncurrent-context: kubesvc\npreferences: {{}}\n",
            b64(&self.pem),
            b64(&cert.cert_pem),
            b64(&cert.key_pem),
        );
        write_atomic(path, &text)?;
        Ok(path.to_path_buf())
    }
}

impl Pki {
    /// Loads the CA and token from `dir/pki`, making them on first start, and
    /// issues fresh serving and admin certificates signed by the CA.
    pub fn load_or_create(dir: &Path, server_names: &[String]) -> Result<Pki, Error> {
        let pki = dir.join("pki");
        let ca = Ca::load_or_create(dir)?;
        let issuer = &ca.issuer;

        let server = serving_certificate(issuer, "kube-apiserver", server_names)?;
        let server_key = KeyPair::from_pem(&server.key_pem).map_err(failed("reading the serving key"))?;
        let admin = client_certificate(issuer, ADMIN_CN, GROUP_MASTERS)?;
        let kubelet_client = client_certificate(issuer, KUBELET_CLIENT_CN, GROUP_MASTERS)?;

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
            ca,
            server_cert_pem: server.cert_pem,
            server_key_der: server_key.serialize_der(),
            admin,
            kubelet_client,
            token,
        })
    }

    /// TLS for the API server: HTTP/2 and HTTP/1.1, client certificates
    /// verified against the CA but not required (bearer tokens work too).
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let tls = |e: rustls::Error| Error::Pki("the TLS configuration", e.into());
        roots.add(self.ca.der.clone()).map_err(tls)?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()
            .map_err(|e| Error::Pki("the client certificate verifier", e.into()))?;
        let chain = vec![first_cert("the serving certificate", &self.server_cert_pem)?, self.ca.der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone()));
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(tls)?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// TLS towards node agents: their serving certificates verified against
    /// the CA, the API server's kubelet-client certificate presented.
    pub fn kubelet_client_config(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = |e: rustls::Error| Error::Pki("the node agent TLS configuration", e.into());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der.clone()).map_err(tls)?;
        let chain = vec![first_cert("the kubelet client certificate", &self.kubelet_client.cert_pem)?];
        let key = KeyPair::from_pem(&self.kubelet_client.key_pem).map_err(failed("reading the kubelet client key"))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(tls)?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }

    /// Writes the admin kubeconfig for a server reachable at `server_url`.
    pub fn write_kubeconfig(&self, path: &Path, server_url: &str) -> Result<PathBuf, Error> {
        self.ca.write_kubeconfig(path, server_url, ADMIN_CN, &self.admin)
    }
}
