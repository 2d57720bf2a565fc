//! Reading a config and checking it as a start would use it — "build everything, start
//! nothing": the config module reads the file as data, then each part checks its own section
//! (the HTTP server its connection cap, the NATS bus its credentials and TLS files, telemetry
//! its exporter and files, the Python host its modules' `parse_config`). `glia check-config`,
//! `glia serve`, `glia worker` and every reload go through here, so they refuse the same
//! configs with the same errors, each at its file, line and key.

use crate::config::{
    self, ConfigFileError, Fault, GliaConfig, ModuleConfig, ModuleTypes, Placement,
};
use crate::{bus, http, python, telemetry};
use glia_module_api::ModuleRegistry;
use std::path::Path;

/// Which Python modules' configs a check runs in a Python host (which needs Python, and
/// takes a few seconds): those this process will run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PythonCheck {
    /// Every Python module (`glia check-config`).
    All,
    /// Those with this placement (`glia serve` runs the local ones, `glia worker` those on NATS).
    Placement(Placement),
}

impl PythonCheck {
    /// Whether the process checked for serves glia's HTTP API (and its `listen_unix`): not
    /// `glia worker`, which runs the modules placed on NATS.
    fn serves_http(self) -> bool {
        self != PythonCheck::Placement(Placement::Nats)
    }
}

/// The module types this binary can run: `registry`'s, and Python classes in hosts.
pub fn module_types(registry: &ModuleRegistry) -> ModuleTypes<'_> {
    ModuleTypes {
        registry,
        python: Some(python::PythonFactory::shared),
    }
}

/// Reads and checks a config file and what it names outside itself, every Python module's
/// config included.
pub fn load_file(path: &Path, registry: &ModuleRegistry) -> Result<GliaConfig, ConfigFileError> {
    load_file_with(path, registry, PythonCheck::All)
}

/// [`load_file`], checking the Python modules `python` selects.
pub fn load_file_with(
    path: &Path,
    registry: &ModuleRegistry,
    python: PythonCheck,
) -> Result<GliaConfig, ConfigFileError> {
    let config = config::parse_file(path, &module_types(registry))?;
    check(&config, python)?;
    Ok(config)
}

/// Checks config text (`file` names it in errors) and what it names outside itself — files
/// (TLS, credentials, the token, the decision log), the NATS seed, the open-file limit, the
/// Python modules' configs — as `glia serve` and `glia worker` will use it.
pub fn load_str(
    text: &str,
    file: &str,
    registry: &ModuleRegistry,
) -> Result<GliaConfig, ConfigFileError> {
    let config = config::parse_str(text, file, &module_types(registry))?;
    check(&config, PythonCheck::All)?;
    Ok(config)
}

/// Each part's check of its own section of `config`; the first fault, at its place in the file.
pub fn check(config: &GliaConfig, python: PythonCheck) -> Result<(), ConfigFileError> {
    faults(config, python).map_err(|fault| config.locate(fault))
}

fn faults(config: &GliaConfig, python: PythonCheck) -> Result<(), Fault> {
    python::check::modules(config, |m: &ModuleConfig| match python {
        PythonCheck::All => true,
        PythonCheck::Placement(p) => m.placement == p,
    })?;
    if python.serves_http() {
        http::check(config)?;
    }
    if let config::BusConfig::Nats(nats) = &config.bus {
        bus::nats_check::check(nats)?;
    }
    telemetry::Telemetry::check(&config.telemetry, |name| std::env::var(name).ok())
        .map_err(telemetry::fault)
}
