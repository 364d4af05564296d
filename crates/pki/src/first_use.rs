//! Trust on first use of a server's certificate authority, as SSH does for host keys: the
//! first connection takes the CA that the server presents at the end of its chain, checks that
//! the server's certificate really chains to it for the name dialled, and the caller pins it.
//! Later connections trust only the pinned CA.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::{PkiError, provider, server_name};

/// Records the chain and checks only the handshake signatures (that the server holds the key
/// of the certificate it shows); the chain itself is checked after the handshake.
#[derive(Debug)]
struct Recorder {
    chain: Mutex<Vec<CertificateDer<'static>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone().into_owned()];
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        *self.chain.lock().unwrap_or_else(|p| p.into_inner()) = chain;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Connect to `host:port`, and return the PEM of the CA the server's chain ends with, after
/// checking that the server's certificate is valid under it for `host`.
pub async fn fetch_server_ca(host: &str, port: u16, timeout: Duration) -> Result<String, PkiError> {
    let name = server_name(host)?;
    let recorder = Arc::new(Recorder { chain: Mutex::new(Vec::new()), provider: provider() });
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| PkiError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(recorder.clone())
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let address = format!("{}:{port}", host.trim_start_matches('[').trim_end_matches(']'));
    let handshake = async {
        let tcp = tokio::net::TcpStream::connect(&address)
            .await
            .map_err(|e| PkiError::Tls(format!("cannot connect to {address}: {e}")))?;
        connector
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| PkiError::Tls(format!("TLS handshake with {address} failed: {e}")))
    };
    let _stream = tokio::time::timeout(timeout, handshake)
        .await
        .map_err(|_| PkiError::Tls(format!("no TLS handshake with {address} within {timeout:?}")))??;
    let chain = recorder.chain.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (leaf, rest) =
        chain.split_first().ok_or_else(|| PkiError::Tls("the server presented no certificate".into()))?;
    let ca = rest.last().ok_or_else(|| {
        PkiError::Tls("the server's chain does not include its CA; give the CA file explicitly".into())
    })?;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).map_err(|e| PkiError::Tls(format!("the server's CA is not usable: {e}")))?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| PkiError::Tls(e.to_string()))?;
    let intermediates = &rest[..rest.len() - 1];
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], crate::unix_now())
        .map_err(|e| PkiError::Tls(format!("the server's certificate is not valid under the CA it presents: {e}")))?;
    Ok(to_pem(ca))
}

pub(crate) fn to_pem(der: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}
