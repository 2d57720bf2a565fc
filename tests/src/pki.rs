//! Certificates made at test time for TLS tests: a CA, a server certificate for loopback
//! (`127.0.0.1` and `localhost`) and a client certificate, all signed by that CA, as PEM.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate and its private key, PEM-encoded.
#[derive(Clone, Debug)]
pub struct CertifiedKey {
    /// The certificate.
    pub cert_pem: String,
    /// The private key (PKCS#8).
    pub key_pem: String,
}

/// A fresh CA and the two leaves it signed.
#[derive(Clone, Debug)]
pub struct TestPki {
    /// The CA's certificate: what a client or server must trust.
    pub ca_pem: String,
    /// For a server on loopback.
    pub server: CertifiedKey,
    /// For a client (mutual TLS).
    pub client: CertifiedKey,
}

impl TestPki {
    /// Makes new keys and certificates (ECDSA P-256).
    pub fn new() -> TestPki {
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.distinguished_name
            .push(DnType::CommonName, "glia test CA");
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key"))
            .expect("the CA signs itself");
        let leaf = |names: Vec<String>, purpose: ExtendedKeyUsagePurpose, cn: &str| {
            let mut params = CertificateParams::new(names).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![purpose];
            let key = KeyPair::generate().expect("leaf key");
            let cert = params.signed_by(&key, &ca).expect("the CA signs");
            CertifiedKey {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            }
        };
        TestPki {
            server: leaf(
                vec!["127.0.0.1".into(), "localhost".into()],
                ExtendedKeyUsagePurpose::ServerAuth,
                "glia test collector",
            ),
            client: leaf(
                Vec::new(),
                ExtendedKeyUsagePurpose::ClientAuth,
                "glia test client",
            ),
            ca_pem: ca.pem(),
        }
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}
