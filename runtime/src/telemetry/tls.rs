//! TLS to the OTLP collector: the trusted CA and the client identity, read from PEM files and
//! checked when glia starts (so a wrong path fails the start, naming the setting, instead of
//! every export failing quietly), then handed to tonic (gRPC) or to reqwest (HTTP).
//!
//! A configured CA file is the whole trust store, as `OTEL_EXPORTER_OTLP_CERTIFICATE` is in
//! the other OpenTelemetry SDKs; without one, the system's CA certificates are trusted.
//! rustls runs on ring.

use super::TelemetryError;
use opentelemetry_otlp::tonic_types::transport::{Certificate, ClientTlsConfig, Identity};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::PathBuf;
use std::sync::Arc;

/// A PEM file and where it was named (a config key such as `telemetry.traces.tls.ca_file`,
/// or an `OTEL_*` variable), so an error about it points at the setting to fix.
#[derive(Debug, Clone, PartialEq)]
pub struct PemFile {
    /// The file.
    pub path: PathBuf,
    /// The setting that named it.
    pub origin: Origin,
}

/// The setting that named a file.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A key of the config file, as a path (`bus.tls.ca_file`): its errors get its line.
    Key(String),
    /// An environment variable.
    Variable(String),
}

impl Origin {
    /// The same kind of setting with `from` replaced by `to` in its name.
    fn replace(&self, from: &str, to: &str) -> Origin {
        match self {
            Origin::Key(k) => Origin::Key(k.replace(from, to)),
            Origin::Variable(v) => Origin::Variable(v.replace(from, to)),
        }
    }

    fn name(&self) -> &str {
        match self {
            Origin::Key(name) | Origin::Variable(name) => name,
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Key(key) => write!(f, "key `{key}`"),
            Origin::Variable(name) => f.write_str(name),
        }
    }
}

impl PemFile {
    /// An error about this file, at its config key when the config named it (so the config
    /// error points at its line), else naming its variable.
    pub fn error(&self, message: String) -> TelemetryError {
        match &self.origin {
            Origin::Key(key) => TelemetryError::Key {
                key: key.clone(),
                message,
            },
            Origin::Variable(name) => TelemetryError::Setting(format!("{name}: {message}")),
        }
    }

    /// Reads the file, which must hold at least one PEM certificate.
    pub fn certificates(&self) -> Result<(Vec<u8>, Vec<CertificateDer<'static>>), TelemetryError> {
        let text = self.read()?;
        let certs = CertificateDer::pem_slice_iter(&text)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.bad_pem(&e.to_string()))?;
        if certs.is_empty() {
            return Err(self.bad_pem("no PEM certificate in it"));
        }
        Ok((text, certs))
    }

    /// Reads the file, which must hold a PEM private key.
    pub fn private_key(&self) -> Result<(Vec<u8>, PrivateKeyDer<'static>), TelemetryError> {
        let text = self.read()?;
        let key = PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => self.bad_pem("no PEM private key in it"),
            e => self.bad_pem(&e.to_string()),
        })?;
        Ok((text, key))
    }

    fn read(&self) -> Result<Vec<u8>, TelemetryError> {
        crate::config::files::read_regular(&self.path, crate::config::files::MAX_NAMED_FILE)
            .map_err(|e| self.error(format!("cannot read {}: {e}", self.path.display())))
    }

    fn bad_pem(&self, why: &str) -> TelemetryError {
        self.error(format!("{}: {why}", self.path.display()))
    }
}

/// The TLS files the traces settings name; all optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TlsFiles {
    /// The CA certificates to trust (instead of the system's).
    pub ca: Option<PemFile>,
    /// The certificate chain glia presents (mutual TLS).
    pub cert: Option<PemFile>,
    /// The private key of `cert`.
    pub key: Option<PemFile>,
}

impl TlsFiles {
    /// Whether any file is named.
    pub fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }
}

/// The files' contents, read and checked, and the rustls config made from them.
pub struct TlsMaterial {
    /// The CA file's text (tonic parses PEM itself); `None` trusts the system's roots.
    ca_pem: Option<Vec<u8>>,
    /// The client certificate's and key's texts.
    identity_pem: Option<(Vec<u8>, Vec<u8>)>,
    rustls: rustls::ClientConfig,
}

impl TlsMaterial {
    /// Reads and checks the files: each must hold what its setting says, a client
    /// certificate needs its key (and the key must be the certificate's), and without a CA
    /// file the system must have CA certificates.
    pub fn load(files: &TlsFiles) -> Result<TlsMaterial, TelemetryError> {
        let identity = match (&files.cert, &files.key) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some((cert, key, cert.certificates()?, key.private_key()?)),
            (Some(only), None) | (None, Some(only)) => {
                let (has, lacks) = if files.cert.is_some() {
                    ("a client certificate", "its key")
                } else {
                    ("a client key", "its certificate")
                };
                // The other half's setting: the same spelling with the other name.
                let other = [
                    ("cert_file", "key_file"),
                    ("CLIENT_CERTIFICATE", "CLIENT_KEY"),
                ]
                .iter()
                .find_map(|(a, b)| {
                    let name = only.origin.name();
                    if name.contains(a) {
                        Some(only.origin.replace(a, b).to_string())
                    } else if name.contains(b) {
                        Some(only.origin.replace(b, a).to_string())
                    } else {
                        None
                    }
                })
                .unwrap_or_default();
                return Err(only.error(format!("{has} needs {lacks}; set {other} too")));
            }
        };
        let (ca_pem, roots) = match &files.ca {
            Some(file) => {
                let (text, certs) = file.certificates()?;
                let mut roots = RootCertStore::empty();
                for cert in certs {
                    roots
                        .add(cert)
                        .map_err(|e| file.bad_pem(&format!("not a usable CA certificate: {e}")))?;
                }
                (Some(text), roots)
            }
            None => {
                let roots = system_roots();
                if roots.is_empty() {
                    return Err(TelemetryError::Setting(
                        "the system has no CA certificates to check the OTLP collector's with \
                         (see SSL_CERT_FILE, SSL_CERT_DIR); name the collector's CA with \
                         `telemetry.traces.tls.ca_file` or OTEL_EXPORTER_OTLP_CERTIFICATE"
                            .into(),
                    ));
                }
                (None, roots)
            }
        };
        let builder = client_config_builder().with_root_certificates(roots);
        let (rustls, identity_pem) = match identity {
            None => (builder.with_no_client_auth(), None),
            Some((cert, key, (cert_pem, chain), (key_pem, private))) => {
                // rustls checks that the key is the certificate's.
                let config = builder.with_client_auth_cert(chain, private).map_err(|e| {
                    key.error(format!(
                        "{} and {} ({}): not a certificate and its key: {e}",
                        key.path.display(),
                        cert.origin,
                        cert.path.display()
                    ))
                })?;
                (config, Some((cert_pem, key_pem)))
            }
        };
        Ok(TlsMaterial {
            ca_pem,
            identity_pem,
            rustls,
        })
    }

    /// The gRPC channel's TLS settings.
    pub fn tonic(&self) -> ClientTlsConfig {
        let config = match &self.ca_pem {
            Some(ca) => ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)),
            None => ClientTlsConfig::new().with_native_roots(),
        };
        match &self.identity_pem {
            Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
            None => config,
        }
    }

    /// The HTTP client's TLS settings.
    pub fn rustls(&self) -> rustls::ClientConfig {
        self.rustls.clone()
    }
}

/// The TLS settings of an HTTP client for a plain `http://` endpoint, which never needs them
/// unless redirected: the system's roots, however many there are.
pub fn plain_rustls() -> rustls::ClientConfig {
    client_config_builder()
        .with_root_certificates(system_roots())
        .with_no_client_auth()
}

fn client_config_builder() -> rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier> {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("ring supports TLS 1.2 and 1.3")
}

/// The system's CA certificates; unreadable entries are skipped, as every client does.
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
    roots
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(origin: Origin) -> Option<PemFile> {
        Some(PemFile {
            path: "/nonexistent/glia-test.pem".into(),
            origin,
        })
    }

    fn error(files: TlsFiles) -> String {
        match TlsMaterial::load(&files) {
            Ok(_) => panic!("loaded {files:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn half_a_client_identity_names_the_missing_half() {
        let e = error(TlsFiles {
            cert: named(Origin::Variable(
                "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE".into(),
            )),
            ..TlsFiles::default()
        });
        assert!(
            e.contains(
                "a client certificate needs its key; set OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY"
            ),
            "{e}"
        );
        let e = error(TlsFiles {
            key: named(Origin::Key("telemetry.traces.tls.key_file".into())),
            ..TlsFiles::default()
        });
        assert!(
            e.contains(
                "a client key needs its certificate; set key `telemetry.traces.tls.cert_file`"
            ),
            "{e}"
        );
    }

    #[test]
    fn an_unreadable_file_is_named_with_its_setting() {
        let e = error(TlsFiles {
            ca: named(Origin::Variable("OTEL_EXPORTER_OTLP_CERTIFICATE".into())),
            ..TlsFiles::default()
        });
        assert!(
            e.contains("OTEL_EXPORTER_OTLP_CERTIFICATE: cannot read /nonexistent/glia-test.pem"),
            "{e}"
        );
    }
}
