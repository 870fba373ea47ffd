use super::*;
use crate::auth::test_pki::TestCa;

fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[test]
fn self_signed_is_its_own_ca_bundle() {
    install_provider();
    let serving = ServingCertificate::self_signed(&[
        "metrics-registry.ns.svc".to_owned(),
        "127.0.0.1".to_owned(),
    ])
    .unwrap();
    assert_eq!(serving.ca_bundle().trim(), serving.cert_pem.trim());
    assert!(!format!("{serving:?}").contains("PRIVATE KEY"));
    ReloadableTls::new(serving, None).unwrap();
}

#[test]
fn self_signed_needs_a_host() {
    let err = ServingCertificate::self_signed(&[]).unwrap_err();
    assert!(err.to_string().contains("at least one"), "{err}");
}

#[test]
fn chain_ca_bundle_is_the_last_certificate() {
    let ca = TestCa::new("serving-ca");
    let leaf = ca.serving(&["127.0.0.1"]);
    let chained = ServingCertificate {
        cert_pem: format!("{}{}", leaf.cert_pem, ca.pem()),
        key_pem: leaf.key_pem,
    };
    assert_eq!(chained.ca_bundle().trim(), ca.pem().trim());
}

#[test]
fn from_files_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("tls.crt");
    let key = dir.path().join("tls.key");
    std::fs::write(&cert, "not a certificate").unwrap();
    std::fs::write(&key, "").unwrap();
    let err = ServingCertificate::from_files(&cert, &key).unwrap_err();
    assert!(err.to_string().contains("tls.crt"), "{err}");

    let missing = ServingCertificate::from_files(&dir.path().join("nope"), &key).unwrap_err();
    assert!(missing.to_string().contains("nope"), "{missing}");
}

#[test]
fn mismatched_key_is_refused_and_the_old_pair_kept() {
    install_provider();
    let first = ServingCertificate::self_signed(&["localhost".to_owned()]).unwrap();
    let other = ServingCertificate::self_signed(&["localhost".to_owned()]).unwrap();
    let tls = ReloadableTls::new(first.clone(), None).unwrap();
    let broken = ServingCertificate {
        cert_pem: other.cert_pem,
        key_pem: first.key_pem.clone(),
    };
    let err = tls.set_serving(broken).unwrap_err();
    assert!(
        err.to_string().contains("serving certificate and key"),
        "{err}"
    );
    assert_eq!(tls.serving(), first);
    assert!(!err.to_string().contains("PRIVATE"), "{err}");
}

#[test]
fn client_ca_errors_are_explained() {
    install_provider();
    let serving = ServingCertificate::self_signed(&["localhost".to_owned()]).unwrap();
    let err = ReloadableTls::new(serving.clone(), Some("garbage".to_owned())).unwrap_err();
    assert!(err.to_string().contains("client CA bundle"), "{err}");
    let tls = ReloadableTls::new(serving, None).unwrap();
    tls.set_client_ca(Some(TestCa::new("ca").pem())).unwrap();
    tls.set_client_ca(None).unwrap();
    assert!(tls.set_client_ca(Some(String::new())).is_err());
}
