//! The API a glia module is written against.
//!
//! A module is a Rust type implementing [`Module`]: a `parse_config` step that checks its
//! `config:` block, and a constructor that registers callbacks through a [`ModuleApi`]
//! handle, mirroring Synapse's `register_spam_checker_callbacks(...)` and friends. Each
//! module instance lives on its own actor thread, so handlers and their futures need not be
//! `Send`.
//!
//! The book's example (docs/writing-a-module.md), compiled and run here:
//!
//! ```
//! use glia_module_api::schema::{requests::UserMayInvite, SpamAnswer};
//! use glia_module_api::{from_config, ConfigError, Handler, Module, ModuleApi, ModuleError,
//!     SpamCheckerCallbacks};
//! use serde::Deserialize;
//!
//! /// Refuses invites from one server.
//! pub struct NoInvitesFrom;
//!
//! #[derive(Clone, Deserialize)]
//! #[serde(deny_unknown_fields)]
//! pub struct Config { server: String }
//!
//! impl Module for NoInvitesFrom {
//!     const NAME: &'static str = "no_invites_from";
//!     type Config = Config;
//!
//!     fn parse_config(config: &serde_json::Value) -> Result<Config, ConfigError> {
//!         from_config(config)
//!     }
//!
//!     fn new(config: Config, api: &mut ModuleApi) -> Result<Self, ModuleError> {
//!         let suffix = format!(":{}", config.server);
//!         api.register_spam_checker_callbacks(SpamCheckerCallbacks {
//!             user_may_invite: Some(Handler::sync(move |req: &UserMayInvite| {
//!                 Ok(if req.inviter.ends_with(&suffix) {
//!                     SpamAnswer::code("M_FORBIDDEN")
//!                 } else {
//!                     SpamAnswer::NOT_SPAM
//!                 })
//!             })),
//!             ..Default::default()
//!         });
//!         Ok(NoInvitesFrom)
//!     }
//! }
//!
//! let config = NoInvitesFrom::parse_config(&serde_json::json!({"server": "spam.example"})).unwrap();
//! let mut api = ModuleApi::new("no_invites_from");
//! NoInvitesFrom::new(config, &mut api).unwrap();
//! let registered = api.into_registrations();
//! let (callback, handler) = &registered.callbacks[0];
//! assert_eq!(callback.name(), "user_may_invite");
//! let request = glia_module_api::schema::CallbackRequest::UserMayInvite(UserMayInvite {
//!     inviter: "@bot:spam.example".into(),
//!     invitee: "@alice:example.com".into(),
//!     room_id: "!room:example.com".into(),
//! });
//! let answer = futures::executor::block_on(handler.call(&request)).unwrap();
//! assert_eq!(answer, glia_module_api::schema::ModuleAnswer::UserMayInvite(SpamAnswer::code("M_FORBIDDEN")));
//! let bad = NoInvitesFrom::parse_config(&serde_json::json!({"servr": "x"})).err().unwrap();
//! assert!(bad.message.contains("unknown field `servr`"));
//! ```

pub mod config_error;
pub mod error;
pub mod files;
pub mod handler;
pub mod module;
pub mod registration;
pub mod shared;
pub mod web;

pub use config_error::{from_config, path_of, ConfigError, ConfigPath, PathSegment};
pub use error::ModuleError;
pub use handler::{ErasedHandler, Handler};
pub use module::{Module, ModuleFactory, ModuleRegistry, ParsedConfig};
pub use registration::{
    check_described, login_fields_clash, AccountDataCallbacks, AccountValidityCallbacks,
    AuthChecker, BackgroundUpdateControllerCallbacks, FederationCallbacks,
    MediaRepositoryCallbacks, ModuleApi, PasswordAuthProviderCallbacks, PresenceRouterCallbacks,
    RatelimitCallbacks, RegistrationError, Registrations, SpamCheckerCallbacks,
    ThirdPartyRulesCallbacks, WebResource,
};
pub use shared::SharedState;
pub use web::{WebHandler, WebRequest, WebResponse};

/// The wire contract, re-exported so a module needs one dependency.
pub use glia_bus_schema as schema;
