//! What a module registered, named so it can leave the module's thread: which handler a
//! slot is, and the callbacks, auth checkers and web paths behind the slots.

use glia_bus_schema::Callback;

/// Which of a module's registered handlers to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    /// The n-th entry of `Registrations::callbacks`.
    Callback(usize),
    /// The n-th entry of `Registrations::auth_checkers`.
    AuthChecker(usize),
}

/// What a module registered, in a form that can leave its thread.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistrationSummary {
    /// Callback of each `Slot::Callback` index.
    pub callbacks: Vec<Callback>,
    /// Login type and fields of each `Slot::AuthChecker` index.
    pub auth_checkers: Vec<(String, Vec<String>)>,
    /// Path of each web resource index, and whether it serves the paths below it.
    pub web_resources: Vec<WebPath>,
}

/// Where a web resource is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebPath {
    /// The path it was registered at.
    pub path: String,
    /// Whether it also serves every path below `path`.
    pub subtree: bool,
}
