//! What a config names outside itself, checked as `glia serve` and `glia worker` will use it:
//! whether the connection cap fits under the open-file limit, the NATS credentials (the
//! NKey seed, the credentials file, the TLS files), and the telemetry's files (the OTLP TLS
//! files, the decision log). Every load runs it, so `glia check-config` refuses exactly
//! the configs a start would refuse, and each error points at its key.

use super::files::{self, MAX_NAMED_FILE};
use super::{BusConfig, GliaConfig, NatsConfig};
use crate::telemetry::tls::{Origin, PemFile};
use crate::telemetry::{Telemetry, TelemetryError};
use glia_module_api::ConfigPath;
use std::path::Path;

/// The key at fault and what is wrong.
pub(super) type Fault = (ConfigPath, String);

/// Checks `config`'s outside world; `env` reads the environment (the `OTEL_*` variables).
pub(super) fn check(
    config: &GliaConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<(), Fault> {
    crate::http::check_max_connections(config.max_connections)
        .map_err(|m| (ConfigPath::root().key("max_connections"), m))?;
    if let BusConfig::Nats(nats) = &config.bus {
        check_nats(nats)?;
    }
    Telemetry::check(&config.telemetry, env).map_err(telemetry_fault)
}

/// A telemetry error at its key; one from the environment at the section it completes.
fn telemetry_fault(e: TelemetryError) -> Fault {
    match e {
        TelemetryError::Key { key, message } => (ConfigPath::parse(&key), message),
        TelemetryError::Setting(message) | TelemetryError::Export(message) => {
            (ConfigPath::root().key("telemetry"), message)
        }
    }
}

/// What connecting to NATS would refuse, found without connecting.
fn check_nats(nats: &NatsConfig) -> Result<(), Fault> {
    let at = |key: &str| ConfigPath::root().key("bus").key(key);
    match (&nats.user, &nats.password) {
        (Some(_), None) => return Err((at("user"), "needs `password:` beside it".into())),
        (None, Some(_)) => return Err((at("password"), "needs `user:` beside it".into())),
        _ => {}
    }
    if let Some(seed) = &nats.nkey_seed {
        // The seed is a secret: the message says what is wrong, never what it is.
        nkeys::KeyPair::from_seed(seed)
            .map_err(|e| (at("nkey_seed"), format!("not an NKey seed: {e}")))?;
    }
    if let Some(path) = &nats.credentials_file {
        let text = files::read_text(path, MAX_NAMED_FILE)
            .map_err(|e| (at("credentials_file"), cannot_read(path, e)))?;
        async_nats::ConnectOptions::with_credentials(&text).map_err(|e| {
            (
                at("credentials_file"),
                format!("{}: not a NATS credentials file: {e}", path.display()),
            )
        })?;
    }
    let Some(tls) = &nats.tls else {
        return Ok(());
    };
    let pem = |path: &Path, key: &str| PemFile {
        path: path.to_owned(),
        origin: Origin::Key(format!("bus.tls.{key}")),
    };
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            pem(cert, "cert_file")
                .certificates()
                .map_err(telemetry_fault)?;
            pem(key, "key_file")
                .private_key()
                .map_err(telemetry_fault)?;
        }
        (Some(_), None) => {
            return Err((
                at("tls").key("cert_file"),
                "needs `key_file:` (the certificate's private key) beside it".into(),
            ))
        }
        (None, Some(_)) => {
            return Err((
                at("tls").key("key_file"),
                "needs `cert_file:` (the key's certificate) beside it".into(),
            ))
        }
        (None, None) => {}
    }
    if let Some(ca) = &tls.ca_file {
        pem(ca, "ca_file").certificates().map_err(telemetry_fault)?;
    }
    Ok(())
}

fn cannot_read(path: &Path, e: files::FileError) -> String {
    format!("cannot read {}: {e}", path.display())
}
