//! TLS to the OTLP collector: the trusted CA and the client identity, read from PEM files and
//! checked when glia starts (so a wrong path fails the start, naming the setting, instead of
//! every export failing quietly), then handed to tonic (gRPC) or to reqwest (HTTP).
//!
//! Both trust the system's roots plus the configured CA; rustls runs on ring.

use super::TelemetryError;
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;

/// A PEM file and where it was named (`key \`telemetry.traces.certificate\`` or an `OTEL_*`
/// variable), so an error about it points at the setting to fix.
#[derive(Debug, Clone, PartialEq)]
pub struct PemFile {
    /// The file.
    pub path: PathBuf,
    /// The setting that named it.
    pub origin: String,
}

/// The TLS files the traces settings name; all optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsFiles {
    /// Certificates of CAs to trust besides the system's.
    pub certificate: Option<PemFile>,
    /// The certificate chain glia presents (mutual TLS).
    pub client_certificate: Option<PemFile>,
    /// The private key of `client_certificate`.
    pub client_key: Option<PemFile>,
}

impl TlsFiles {
    /// Whether any file is named.
    pub fn any(&self) -> bool {
        self.certificate.is_some() || self.client_certificate.is_some() || self.client_key.is_some()
    }
}

/// The files' contents, read and parsed.
pub struct TlsMaterial {
    ca: Option<Pem<Vec<CertificateDer<'static>>>>,
    identity: Option<ClientIdentity>,
}

/// A file's bytes (tonic wants PEM) with what rustls wants parsed from them.
struct Pem<T> {
    text: Vec<u8>,
    parsed: T,
}

struct ClientIdentity {
    chain: Pem<Vec<CertificateDer<'static>>>,
    key: Pem<PrivateKeyDer<'static>>,
    /// Both files' settings, for errors about the pair.
    origin: String,
}

impl TlsMaterial {
    /// Reads and checks the files: each must hold what its setting says; a client certificate
    /// needs its key and a key its certificate.
    pub fn load(files: &TlsFiles) -> Result<TlsMaterial, TelemetryError> {
        let ca = files.certificate.as_ref().map(certificates).transpose()?;
        let identity = match (&files.client_certificate, &files.client_key) {
            (None, None) => None,
            (Some(chain), Some(key)) => Some(ClientIdentity {
                chain: certificates(chain)?,
                key: private_key(key)?,
                origin: format!("{} and {}", chain.origin, key.origin),
            }),
            (Some(only), None) | (None, Some(only)) => {
                return Err(TelemetryError::Setting(format!(
                    "{}: a client certificate and its key go together; set both \
                     (`telemetry.traces.client_certificate` and `client_key`, or \
                     OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY)",
                    only.origin
                )))
            }
        };
        let material = TlsMaterial { ca, identity };
        // rustls checks that the key signs for the certificate; doing it now fails the start
        // rather than every export.
        material.rustls()?;
        Ok(material)
    }

    /// The gRPC channel's TLS settings.
    pub fn tonic(&self) -> ClientTlsConfig {
        let mut config = ClientTlsConfig::new().with_native_roots();
        if let Some(ca) = &self.ca {
            config = config.ca_certificate(Certificate::from_pem(&ca.text));
        }
        if let Some(id) = &self.identity {
            config = config.identity(Identity::from_pem(&id.chain.text, &id.key.text));
        }
        config
    }

    /// The HTTP client's TLS settings.
    pub fn rustls(&self) -> Result<rustls::ClientConfig, TelemetryError> {
        let mut roots = RootCertStore::empty();
        // Unreadable entries of the system store are skipped, as every client does.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if let Some(ca) = &self.ca {
            for cert in &ca.parsed {
                roots.add(cert.clone()).map_err(|e| {
                    TelemetryError::Setting(format!("cannot trust the CA certificate: {e}"))
                })?;
            }
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| TelemetryError::Setting(format!("TLS: {e}")))?
        .with_root_certificates(roots);
        match &self.identity {
            None => Ok(builder.with_no_client_auth()),
            Some(id) => builder
                .with_client_auth_cert(id.chain.parsed.clone(), id.key.parsed.clone_key())
                .map_err(|e| {
                    TelemetryError::Setting(format!(
                        "{}: not a usable certificate and key: {e}",
                        id.origin
                    ))
                }),
        }
    }
}

/// Reads `file`, which must hold at least one PEM certificate.
fn certificates(file: &PemFile) -> Result<Pem<Vec<CertificateDer<'static>>>, TelemetryError> {
    let text = read(file)?;
    let parsed = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(file, &e.to_string()))?;
    if parsed.is_empty() {
        return Err(bad_pem(file, "no PEM certificate in it"));
    }
    Ok(Pem { text, parsed })
}

/// Reads `file`, which must hold a PEM private key.
fn private_key(file: &PemFile) -> Result<Pem<PrivateKeyDer<'static>>, TelemetryError> {
    let text = read(file)?;
    let parsed = PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => bad_pem(file, "no PEM private key in it"),
        e => bad_pem(file, &e.to_string()),
    })?;
    Ok(Pem { text, parsed })
}

fn read(file: &PemFile) -> Result<Vec<u8>, TelemetryError> {
    std::fs::read(&file.path).map_err(|e| {
        TelemetryError::Setting(format!(
            "{}: cannot read {}: {e}",
            file.origin,
            file.path.display()
        ))
    })
}

fn bad_pem(file: &PemFile, why: &str) -> TelemetryError {
    TelemetryError::Setting(format!("{}: {}: {why}", file.origin, file.path.display()))
}
