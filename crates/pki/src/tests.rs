//! Tests of the certificate authority: issuing, verifying and refusing certificates.

use std::time::SystemTime;

use idlegrid_protocol::auth::Identity;

use super::*;

#[test]
fn a_party_certificate_names_the_party_of_the_key_that_asked_for_it() {
    let authority = Authority::generate("test CA").unwrap();
    let identity = Identity::from_seed([9; 32]);
    let request = party_request(&identity.private_key_pkcs8_der()).unwrap();
    let cert_pem = authority.issue_party(&request, &identity.public_key(), SystemTime::now()).unwrap();
    let der = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    assert_eq!(party_of_certificate(&der).as_ref(), Some(identity.id()));
    let expires = not_after(&cert_pem).unwrap();
    let validity = expires.duration_since(SystemTime::now()).unwrap();
    assert!(validity > PARTY_CERTIFICATE_VALIDITY - Duration::from_secs(60) && validity <= PARTY_CERTIFICATE_VALIDITY);
}

#[test]
fn a_request_for_another_key_is_refused() {
    let authority = Authority::generate("test CA").unwrap();
    let mallory = Identity::from_seed([1; 32]);
    let alice = Identity::from_seed([2; 32]);
    let request = party_request(&mallory.private_key_pkcs8_der()).unwrap();
    let error = authority.issue_party(&request, &alice.public_key(), SystemTime::now()).unwrap_err();
    assert!(error.to_string().contains("another key"), "{error}");
    let error = authority
        .issue_party(
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
            &alice.public_key(),
            SystemTime::now(),
        )
        .unwrap_err();
    assert!(error.to_string().contains("certificate signing request"), "{error}");
}

#[test]
fn a_tampered_request_is_refused() {
    let authority = Authority::generate("test CA").unwrap();
    let identity = Identity::from_seed([3; 32]);
    let request = party_request(&identity.private_key_pkcs8_der()).unwrap();
    // Flip one byte of the signed content: the request's signature no longer holds.
    let der = pem_body(&request);
    let mut tampered = der.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    let pem = format!("-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n", b64(&tampered));
    assert!(authority.issue_party(&pem, &identity.public_key(), SystemTime::now()).is_err());
}

#[test]
fn the_authority_survives_a_restart_and_a_foreign_key_is_refused() {
    let dir = std::env::temp_dir().join(format!("idlegrid-pki-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let first = Authority::load_or_create(&dir, "CA").unwrap();
    let second = Authority::load_or_create(&dir, "CA").unwrap();
    assert_eq!(first.fingerprint(), second.fingerprint());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.join("ca.key")).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let other = Authority::generate("other").unwrap();
    let other_key = other.issuer.key().serialize_pem();
    let error = Authority::from_pem(first.cert_pem(), &other_key).unwrap_err();
    assert!(error.to_string().contains("does not belong"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn configurations_build_for_both_ends() {
    let authority = Authority::generate("CA").unwrap();
    authority.server_config(&["localhost".into(), "127.0.0.1".into()]).unwrap();
    assert!(authority.server_config(&[]).is_err());
    let identity = Identity::from_seed([4; 32]);
    let request = party_request(&identity.private_key_pkcs8_der()).unwrap();
    let cert = authority.issue_party(&request, &identity.public_key(), SystemTime::now()).unwrap();
    client_config(authority.cert_pem(), Some((&cert, &identity.private_key_pkcs8_der()))).unwrap();
    client_config(authority.cert_pem(), None).unwrap();
    assert!(client_config("not a certificate", None).is_err());
}

fn pem_body(pem: &str) -> Vec<u8> {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(body).unwrap()
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
