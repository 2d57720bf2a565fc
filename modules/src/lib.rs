//! glia's built-in modules: the examples from Synapse's module documentation and a few
//! real-world policies, each a small self-contained file.
//!
//! A module is a type implementing [`glia_module_api::Module`]; its `NAME` is what a config's
//! `module:` key names. [`builtin_registry`] lists them all. Adding a module means writing its
//! file, declaring it below, and adding one line to the registry.

mod common;
#[cfg(test)]
mod testing;

pub mod account_expiry;
pub mod chaos;
pub mod custom_presence_router;
pub mod demo;
pub mod event_censorer;
pub mod http_antispam;
pub mod list_spam_checker;
pub mod message_policy;
pub mod user_restrictions;

use glia_module_api::ModuleRegistry;

/// Every built-in module, keyed by the name used in `module:`.
pub fn builtin_registry() -> ModuleRegistry {
    ModuleRegistry::new()
        .with::<demo::Demo>()
        .with::<list_spam_checker::ListSpamChecker>()
        .with::<event_censorer::EventCensorer>()
        .with::<http_antispam::HttpAntispam>()
        .with::<custom_presence_router::CustomPresenceRouter>()
        .with::<account_expiry::AccountExpiry>()
        .with::<user_restrictions::UserRestrictions>()
        .with::<message_policy::MessagePolicy>()
        .with::<chaos::Chaos>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_lists_every_builtin_module() {
        assert_eq!(
            builtin_registry().names(),
            vec![
                "account_expiry",
                "chaos",
                "custom_presence_router",
                "demo",
                "event_censorer",
                "http_antispam",
                "list_spam_checker",
                "message_policy",
                "user_restrictions",
            ]
        );
    }

    #[test]
    fn registry_factories_parse_and_build() {
        let registry = builtin_registry();
        let factory = registry.get("demo").expect("demo is registered");
        let config = factory
            .parse_config(&serde_json::Value::Null)
            .expect("demo has defaults");
        let mut api = glia_module_api::ModuleApi::new("demo");
        factory.build(&config, &mut api).expect("demo builds");
        assert_eq!(api.into_registrations().callbacks.len(), 1);

        let factory = registry.get("list_spam_checker").unwrap();
        let err = factory.parse_config(&serde_json::json!({})).err().unwrap();
        assert!(err.message.contains("evil_users"), "{err}");
    }
}
