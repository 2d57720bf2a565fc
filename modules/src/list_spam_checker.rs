//! `list_spam_checker`: refuses events sent by a fixed list of users.
//!
//! `check_event_for_spam` answers `M_FORBIDDEN` for events whose `sender` is listed in
//! `evil_users` and `NOT_SPAM` for all others. Serves
//! `GET /_synapse/client/list_spam_checker/is_evil?user=@x:y`, answering
//! `{"user": "@x:y", "is_evil": true|false}`.
//!
//! Config keys:
//! - `evil_users` (list of user ids, required, non-empty): whose events are refused.
//!
//! ```yaml
//! modules:
//!   - module: list_spam_checker
//!     config:
//!       evil_users: ["@spammer:example.com", "@troll:example.org"]
//! ```

use crate::common;
use glia_bus_schema::errcodes::M_FORBIDDEN;
use glia_bus_schema::requests::CheckEventForSpam;
use glia_bus_schema::SpamAnswer;
use glia_module_api::{
    ConfigError, ConfigPath, Handler, Module, ModuleApi, ModuleError, SpamCheckerCallbacks,
    WebHandler, WebResponse,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::rc::Rc;

/// Where the lookup resource is served.
pub const IS_EVIL_PATH: &str = "/_synapse/client/list_spam_checker/is_evil";

/// The list spam checker.
pub struct ListSpamChecker;

/// `list_spam_checker`'s checked config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSpamCheckerConfig {
    /// Users whose events are refused.
    pub evil_users: Vec<String>,
}

impl Module for ListSpamChecker {
    const NAME: &'static str = "list_spam_checker";
    type Config = ListSpamCheckerConfig;
    const STATELESS: bool = true;

    fn parse_config(config: &Value) -> Result<ListSpamCheckerConfig, ConfigError> {
        let parsed: ListSpamCheckerConfig = glia_module_api::from_config(config)?;
        if parsed.evil_users.is_empty() {
            return Err(ConfigError::at_path(
                ConfigPath::root().key("evil_users"),
                "must list at least one user id",
            ));
        }
        for (i, user) in parsed.evil_users.iter().enumerate() {
            common::check_user_id(common::item("evil_users", i), user)?;
        }
        Ok(parsed)
    }

    fn new(config: ListSpamCheckerConfig, api: &mut ModuleApi) -> Result<Self, ModuleError> {
        let evil: Rc<HashSet<String>> = Rc::new(config.evil_users.into_iter().collect());
        let list = evil.clone();
        api.register_spam_checker_callbacks(SpamCheckerCallbacks {
            check_event_for_spam: Some(Handler::sync(move |args: &CheckEventForSpam| {
                Ok(if list.contains(&args.event.sender) {
                    SpamAnswer::code(M_FORBIDDEN)
                } else {
                    SpamAnswer::NOT_SPAM
                })
            })),
            ..Default::default()
        });
        api.register_web_resource(
            IS_EVIL_PATH,
            WebHandler::sync(move |req| {
                let user =
                    common::require_get(&req).and_then(|()| common::require_param(&req, "user"));
                match user {
                    Ok(user) => {
                        let is_evil = evil.contains(&user);
                        WebResponse::json(200, &json!({ "user": user, "is_evil": is_evil }))
                    }
                    Err(response) => response,
                }
            }),
        );
        Ok(ListSpamChecker)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_config_error, build, call_now, callbacks, event, web};
    use glia_bus_schema::Callback;

    fn check(sender: &str) -> CheckEventForSpam {
        CheckEventForSpam {
            event: event(
                sender,
                "m.room.message",
                json!({"msgtype": "m.text", "body": "hi"}),
            ),
        }
    }

    #[test]
    fn denies_events_from_listed_senders_only() {
        let regs = build::<ListSpamChecker>(json!({"evil_users": ["@spammer:hs", "@troll:hs"]}));
        assert_eq!(callbacks(&regs), vec![Callback::CheckEventForSpam]);
        for sender in ["@spammer:hs", "@troll:hs"] {
            assert_eq!(
                call_now(&regs, check(sender)).unwrap(),
                SpamAnswer::code("M_FORBIDDEN")
            );
        }
        for sender in ["@alice:hs", "@spammer:other", "@SPAMMER:hs"] {
            assert_eq!(
                call_now(&regs, check(sender)).unwrap(),
                SpamAnswer::NOT_SPAM
            );
        }
    }

    #[test]
    fn is_evil_resource_reports_membership() {
        let regs = build::<ListSpamChecker>(json!({"evil_users": ["@spammer:hs"]}));
        assert_eq!(
            web(&regs, "GET", IS_EVIL_PATH, "user=%40spammer%3Ahs"),
            (200, json!({"user": "@spammer:hs", "is_evil": true}))
        );
        assert_eq!(
            web(&regs, "GET", IS_EVIL_PATH, "user=@alice:hs"),
            (200, json!({"user": "@alice:hs", "is_evil": false}))
        );
        let (status, body) = web(&regs, "GET", IS_EVIL_PATH, "");
        assert_eq!(status, 400);
        assert_eq!(body["errcode"], "M_MISSING_PARAM");
        assert_eq!(web(&regs, "DELETE", IS_EVIL_PATH, "user=@a:b").0, 405);
    }

    #[test]
    fn config_errors_name_the_key() {
        assert_config_error::<ListSpamChecker>(json!({}), "", &["missing field", "evil_users"]);
        assert_config_error::<ListSpamChecker>(Value::Null, "", &["missing field", "evil_users"]);
        assert_config_error::<ListSpamChecker>(
            json!({"evil_users": []}),
            "evil_users",
            &["at least one"],
        );
        assert_config_error::<ListSpamChecker>(
            json!({"evil_users": ["@a:b", "@c"]}),
            "evil_users[1]",
            &["not a user id"],
        );
        assert_config_error::<ListSpamChecker>(
            json!({"evil_users": ["@a:b", 7]}),
            "evil_users[1]",
            &["invalid type"],
        );
        assert_config_error::<ListSpamChecker>(
            json!({"evil_users": ["@a:b"], "evil": true}),
            "evil",
            &["unknown field"],
        );
    }
}
