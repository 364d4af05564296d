//! Certificates as identity (P4.1, P8.2): the server's certificate authority, the server's
//! TLS certificate, party certificates issued at registration for the party's own Ed25519 key
//! (proved by a signing request), and the rustls configurations of both ends.
//!
//! A party's ID is the hash of its public key whether it is read from a request signature or
//! from its certificate, so the two schemes name the same parties.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use idlegrid_types::PartyId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, PKCS_ED25519, PublicKeyData, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

mod first_use;

pub use first_use::fetch_server_ca;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{what}: {reason}")]
    Invalid { what: String, reason: String },
    #[error("cannot {action} {path}: {reason}")]
    File { action: &'static str, path: String, reason: String },
    #[error("TLS: {0}")]
    Tls(String),
}

fn invalid(what: impl Into<String>, reason: impl std::fmt::Display) -> PkiError {
    PkiError::Invalid { what: what.into(), reason: reason.to_string() }
}

/// The crypto implementation used everywhere (ring: small, builds without C toolchains
/// beyond cc, supports Ed25519 client certificates).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Make ring the process's default crypto provider, for TLS clients that do not bring their
/// own configuration (webhook deliveries, upgrades). Harmless when called again.
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// How long issued certificates are valid. Parties get a fresh one at every registration,
/// which every engine and client process does when it starts.
pub const PARTY_CERTIFICATE_VALIDITY: Duration = Duration::from_secs(90 * 24 * 3600);
const SERVER_CERTIFICATE_VALIDITY: Duration = Duration::from_secs(397 * 24 * 3600);
const CA_VALIDITY: Duration = Duration::from_secs(20 * 365 * 24 * 3600);

fn at(time: SystemTime) -> time::OffsetDateTime {
    let secs = time.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    bytes[0] &= 0x7f; // positive
    SerialNumber::from_slice(&bytes)
}

/// The server's certificate authority: signs the server's certificate and every party's.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_der: CertificateDer<'static>,
    cert_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").field("fingerprint", &self.fingerprint()).finish_non_exhaustive()
    }
}

/// A certificate chain and its private key, in PEM.
#[derive(Clone)]
pub struct CertifiedKey {
    pub chain_pem: String,
    pub key_pem: String,
}

impl Authority {
    /// A new authority with an ECDSA P-256 key.
    pub fn generate(name: &str) -> Result<Authority, PkiError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| invalid("CA key", e))?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| invalid("CA parameters", e))?;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let now = SystemTime::now();
        params.not_before = at(now - Duration::from_secs(3600));
        params.not_after = at(now + CA_VALIDITY);
        params.serial_number = Some(random_serial());
        let cert = params.self_signed(&key).map_err(|e| invalid("CA certificate", e))?;
        let cert_pem = cert.pem();
        let cert_der = cert.der().clone();
        Ok(Authority { issuer: Issuer::new(params, key), cert_der, cert_pem })
    }

    /// An authority from its certificate and private key (PEM), e.g. one the operator runs.
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Authority, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| invalid("CA private key", e))?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| invalid("CA certificate", e))?;
        let issuer = Issuer::from_ca_cert_der(&cert_der, key).map_err(|e| invalid("CA certificate", e))?;
        if issuer.key().der_bytes() != certificate_public_key(&cert_der)? {
            return Err(invalid("CA private key", "it does not belong to the CA certificate"));
        }
        Ok(Authority { issuer, cert_der, cert_pem: cert_pem.to_string() })
    }

    /// Load `ca.pem` and `ca.key` from `dir`, or create them there (the key with mode 0600).
    pub fn load_or_create(dir: &Path, name: &str) -> Result<Authority, PkiError> {
        let cert_path = dir.join("ca.pem");
        let key_path = dir.join("ca.key");
        if cert_path.exists() || key_path.exists() {
            let cert = read(&cert_path)?;
            let key = read(&key_path)?;
            return Authority::from_pem(&cert, &key);
        }
        let authority = Authority::generate(name)?;
        create_private_dir(dir).map_err(|e| PkiError::File {
            action: "create",
            path: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        write_private(&key_path, authority.issuer.key().serialize_pem().as_bytes())?;
        write_private(&cert_path, authority.cert_pem.as_bytes())?;
        Ok(authority)
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// SHA-256 of the CA certificate, hex with colons, for people to compare.
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.cert_der)
    }

    /// A certificate for the server under `names` (DNS names or IP addresses).
    pub fn issue_server(&self, names: &[String]) -> Result<CertifiedKey, PkiError> {
        if names.is_empty() {
            return Err(invalid("server names", "at least one DNS name or IP address is needed"));
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| invalid("server key", e))?;
        let mut params = CertificateParams::new(names.to_vec()).map_err(|e| invalid("server names", e))?;
        params.distinguished_name.push(DnType::CommonName, names[0].clone());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = SystemTime::now();
        params.not_before = at(now - Duration::from_secs(3600));
        params.not_after = at(now + SERVER_CERTIFICATE_VALIDITY);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer).map_err(|e| invalid("server certificate", e))?;
        Ok(CertifiedKey { chain_pem: format!("{}{}", cert.pem(), self.cert_pem), key_pem: key.serialize_pem() })
    }

    /// A client certificate for the holder of `public_key`, from its signing request (PEM),
    /// which proves the holder has the private key. Only the request's key is used: the
    /// subject, validity and uses are this authority's choice, never the requester's.
    pub fn issue_party(&self, csr_pem: &str, public_key: &[u8; 32], now: SystemTime) -> Result<String, PkiError> {
        let request = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| invalid("certificate signing request", e))?;
        if request.public_key.algorithm() != &PKCS_ED25519 || request.public_key.der_bytes() != public_key {
            return Err(invalid("certificate signing request", "it is for another key than the one being registered"));
        }
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| invalid("party certificate", e))?;
        params.distinguished_name.push(DnType::CommonName, PartyId::from_public_key(public_key).to_string());
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = at(now - Duration::from_secs(3600));
        params.not_after = at(now + PARTY_CERTIFICATE_VALIDITY);
        params.serial_number = Some(random_serial());
        params.use_authority_key_identifier_extension = true;
        let signed = CertificateSigningRequestParams { params, public_key: request.public_key }
            .signed_by(&self.issuer)
            .map_err(|e| invalid("party certificate", e))?;
        Ok(signed.pem())
    }

    /// The server's TLS configuration: its certificate for `names`; client certificates are
    /// verified against this authority when offered. They are optional at the TLS layer
    /// because registration comes before a party has one; every other endpoint requires one.
    pub fn server_config(&self, names: &[String]) -> Result<rustls::ServerConfig, PkiError> {
        let certified = self.issue_server(names)?;
        let chain = certificates(&certified.chain_pem, "server certificate")?;
        let key = PrivateKeyDer::from_pem_slice(certified.key_pem.as_bytes()).map_err(|e| invalid("server key", e))?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.cert_der.clone()).map_err(|e| invalid("CA certificate", e))?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| PkiError::Tls(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| PkiError::Tls(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// A certificate signing request (PEM) for a party's Ed25519 key (PKCS#8 DER).
pub fn party_request(private_key_pkcs8_der: &[u8]) -> Result<String, PkiError> {
    let key =
        KeyPair::from_pkcs8_der_and_sign_algo(&PrivatePkcs8KeyDer::from(private_key_pkcs8_der.to_vec()), &PKCS_ED25519)
            .map_err(|e| invalid("party key", e))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| invalid("signing request", e))?;
    params.distinguished_name.push(DnType::CommonName, "idlegrid party");
    let request = params.serialize_request(&key).map_err(|e| invalid("signing request", e))?;
    request.pem().map_err(|e| invalid("signing request", e))
}

/// A client's TLS configuration: trusts only `ca_pem`; presents `client` (certificate chain
/// PEM and PKCS#8 key DER) when given.
pub fn client_config(ca_pem: &str, client: Option<(&str, &[u8])>) -> Result<rustls::ClientConfig, PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(ca_pem, "server CA")? {
        roots.add(cert).map_err(|e| invalid("server CA", e))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match client {
        Some((chain_pem, key_der)) => builder
            .with_client_auth_cert(
                certificates(chain_pem, "client certificate")?,
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key_der.to_vec())),
            )
            .map_err(|e| PkiError::Tls(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The party a verified client certificate names: the hash of its Ed25519 key.
pub fn party_of_certificate(cert: &CertificateDer<'_>) -> Option<PartyId> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let spki = parsed.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
        return None;
    }
    let key: [u8; 32] = spki.subject_public_key.data.as_ref().try_into().ok()?;
    Some(PartyId::from_public_key(&key))
}

/// The time after which a certificate (PEM) is no longer valid.
pub fn not_after(cert_pem: &str) -> Result<SystemTime, PkiError> {
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| invalid("certificate", e))?;
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| invalid("certificate", e))?;
    let secs = parsed.validity().not_after.timestamp();
    Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
}

/// SHA-256 fingerprint of the first certificate of a PEM text.
pub fn pem_fingerprint(pem: &str) -> Result<String, PkiError> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| invalid("certificate", e))?;
    Ok(fingerprint(&der))
}

fn fingerprint(der: &CertificateDer<'_>) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(der.as_ref());
    digest.iter().map(|b| format!("{b:02X}")).collect::<Vec<_>>().join(":")
}

fn certificate_public_key(der: &CertificateDer<'_>) -> Result<Vec<u8>, PkiError> {
    let (_, parsed) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| invalid("CA certificate", e))?;
    Ok(parsed.public_key().subject_public_key.data.to_vec())
}

fn certificates(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs: Vec<_> =
        CertificateDer::pem_slice_iter(pem.as_bytes()).collect::<Result<_, _>>().map_err(|e| invalid(what, e))?;
    if certs.is_empty() {
        return Err(invalid(what, "no PEM certificate found"));
    }
    Ok(certs)
}

fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|e| PkiError::File {
        action: "read",
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// Write a file readable only by its owner, atomically.
/// Create a folder and its missing parents, readable by the owner only (0700 on Unix).
fn create_private_dir(path: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(path)
}

pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    use std::io::Write;
    let error =
        |e: std::io::Error| PkiError::File { action: "write", path: path.display().to_string(), reason: e.to_string() };
    if let Some(parent) = path.parent() {
        create_private_dir(parent).map_err(error)?;
    }
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp).map_err(error)?;
    file.write_all(bytes).map_err(error)?;
    file.sync_all().map_err(error)?;
    std::fs::rename(&tmp, path).map_err(error)
}

/// Whether `server_name` (host of a URL) is a valid TLS name.
pub fn server_name(host: &str) -> Result<ServerName<'static>, PkiError> {
    ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())
        .map_err(|e| invalid(format!("server name '{host}'"), e))
}

pub(crate) fn unix_now() -> UnixTime {
    UnixTime::now()
}

#[cfg(test)]
mod tests;
