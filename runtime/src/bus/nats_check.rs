//! What connecting to NATS would refuse, found without connecting: the credentials (user
//! and password together, the NKey seed, the credentials file) and the TLS files. `glia
//! check-config` and every start run it, so both refuse the same configs.

use crate::config::files::{self, MAX_NAMED_FILE};
use crate::config::{Fault, NatsConfig};
use crate::telemetry::{
    self,
    tls::{Origin, PemFile},
};
use glia_module_api::ConfigPath;
use std::path::Path;

/// What connecting to NATS would refuse, found without connecting.
pub fn check(nats: &NatsConfig) -> Result<(), Fault> {
    let at = |key: &str| ConfigPath::root().key("bus").key(key);
    match (&nats.user, &nats.password) {
        (Some(_), None) => return Err(Fault::new(at("user"), "needs `password:` beside it")),
        (None, Some(_)) => return Err(Fault::new(at("password"), "needs `user:` beside it")),
        _ => {}
    }
    if let Some(seed) = &nats.nkey_seed {
        // The seed is a secret: the message says what is wrong, never what it is.
        nkeys::KeyPair::from_seed(seed)
            .map_err(|e| Fault::new(at("nkey_seed"), format!("not an NKey seed: {e}")))?;
    }
    if let Some(path) = &nats.credentials_file {
        let text = files::read_text(path, MAX_NAMED_FILE)
            .map_err(|e| Fault::new(at("credentials_file"), cannot_read(path, e)))?;
        async_nats::ConnectOptions::with_credentials(&text).map_err(|e| {
            Fault::new(
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
                .map_err(telemetry::fault)?;
            pem(key, "key_file")
                .private_key()
                .map_err(telemetry::fault)?;
        }
        (Some(_), None) => {
            return Err(Fault::new(
                at("tls").key("cert_file"),
                "needs `key_file:` (the certificate's private key) beside it",
            ))
        }
        (None, Some(_)) => {
            return Err(Fault::new(
                at("tls").key("key_file"),
                "needs `cert_file:` (the key's certificate) beside it",
            ))
        }
        (None, None) => {}
    }
    if let Some(ca) = &tls.ca_file {
        pem(ca, "ca_file")
            .certificates()
            .map_err(telemetry::fault)?;
    }
    Ok(())
}

fn cannot_read(path: &Path, e: files::FileError) -> String {
    format!("cannot read {}: {e}", path.display())
}
