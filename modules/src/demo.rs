//! `demo`: the demo module from Synapse's module documentation.
//!
//! Denies room creation (`user_may_create_room` answers `M_FORBIDDEN`) to the users listed in
//! `denied_users` and allows everyone else (`NOT_SPAM`). Serves
//! `GET /_synapse/client/demo/hello?name=X`, answering `{"hello": "X"}`; without `name` it
//! answers 400 `M_MISSING_PARAM`.
//!
//! Config keys:
//! - `denied_users` (list of user ids, default `["@evilguy:example.com"]`): who may not
//!   create rooms.
//!
//! ```yaml
//! modules:
//!   - module: demo
//!     config:
//!       denied_users: ["@evilguy:localhost"]
//! ```

use crate::common;
use glia_bus_schema::errcodes::M_FORBIDDEN;
use glia_bus_schema::requests::UserMayCreateRoom;
use glia_bus_schema::SpamAnswer;
use glia_module_api::{
    ConfigError, Handler, Module, ModuleApi, ModuleError, SpamCheckerCallbacks, WebHandler,
    WebResponse,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashSet;

/// Where the greeting resource is served.
pub const HELLO_PATH: &str = "/_synapse/client/demo/hello";

/// The demo module.
pub struct Demo;

/// `demo`'s checked config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoConfig {
    /// Users that may not create rooms.
    #[serde(default = "default_denied_users")]
    pub denied_users: Vec<String>,
}

fn default_denied_users() -> Vec<String> {
    vec!["@evilguy:example.com".to_owned()]
}

impl Module for Demo {
    const NAME: &'static str = "demo";
    type Config = DemoConfig;
    const STATELESS: bool = true;

    fn parse_config(config: &Value) -> Result<DemoConfig, ConfigError> {
        let parsed: DemoConfig = glia_module_api::from_config(config)?;
        for (i, user) in parsed.denied_users.iter().enumerate() {
            common::check_user_id(common::item("denied_users", i), user)?;
        }
        Ok(parsed)
    }

    fn new(config: DemoConfig, api: &mut ModuleApi) -> Result<Self, ModuleError> {
        let denied: HashSet<String> = config.denied_users.into_iter().collect();
        api.register_spam_checker_callbacks(SpamCheckerCallbacks {
            user_may_create_room: Some(Handler::sync(move |args: &UserMayCreateRoom| {
                Ok(if denied.contains(&args.user_id) {
                    SpamAnswer::code(M_FORBIDDEN)
                } else {
                    SpamAnswer::NOT_SPAM
                })
            })),
            ..Default::default()
        });
        api.register_web_resource(
            HELLO_PATH,
            WebHandler::sync(|req| {
                let name =
                    common::require_get(&req).and_then(|()| common::require_param(&req, "name"));
                match name {
                    Ok(name) => WebResponse::json(200, &json!({ "hello": name })),
                    Err(response) => response,
                }
            }),
        );
        Ok(Demo)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_config_error, build, call_now, callbacks, web};
    use glia_bus_schema::Callback;

    fn may_create(user: &str) -> UserMayCreateRoom {
        UserMayCreateRoom {
            user_id: user.into(),
            room_config: Default::default(),
        }
    }

    #[test]
    fn denies_evilguy_by_default_and_allows_others() {
        let regs = build::<Demo>(Value::Null);
        assert_eq!(callbacks(&regs), vec![Callback::UserMayCreateRoom]);
        assert_eq!(
            call_now(&regs, may_create("@evilguy:example.com")).unwrap(),
            SpamAnswer::code("M_FORBIDDEN")
        );
        assert_eq!(
            call_now(&regs, may_create("@alice:example.com")).unwrap(),
            SpamAnswer::NOT_SPAM
        );
    }

    #[test]
    fn denied_users_are_configurable() {
        let regs =
            build::<Demo>(json!({"denied_users": ["@evilguy:localhost", "@mallory:localhost"]}));
        for user in ["@evilguy:localhost", "@mallory:localhost"] {
            assert_eq!(
                call_now(&regs, may_create(user)).unwrap(),
                SpamAnswer::code("M_FORBIDDEN")
            );
        }
        assert_eq!(
            call_now(&regs, may_create("@evilguy:example.com")).unwrap(),
            SpamAnswer::NOT_SPAM
        );
        let regs = build::<Demo>(json!({"denied_users": []}));
        assert_eq!(
            call_now(&regs, may_create("@evilguy:example.com")).unwrap(),
            SpamAnswer::NOT_SPAM
        );
    }

    #[test]
    fn hello_resource_greets_by_name() {
        let regs = build::<Demo>(json!({}));
        assert_eq!(
            web(&regs, "GET", HELLO_PATH, "name=Alice%20B"),
            (200, json!({"hello": "Alice B"}))
        );
        assert_eq!(
            web(&regs, "GET", HELLO_PATH, "name="),
            (200, json!({"hello": ""}))
        );
    }

    #[test]
    fn hello_resource_refuses_missing_name_and_other_methods() {
        let regs = build::<Demo>(json!({}));
        let (status, body) = web(&regs, "GET", HELLO_PATH, "other=1");
        assert_eq!(status, 400);
        assert_eq!(body["errcode"], "M_MISSING_PARAM");
        assert!(body["error"].as_str().unwrap().contains("name"));
        let (status, body) = web(&regs, "POST", HELLO_PATH, "name=x");
        assert_eq!(status, 405);
        assert_eq!(body["errcode"], "M_UNRECOGNIZED");
    }

    #[test]
    fn config_errors_name_the_key() {
        assert_config_error::<Demo>(
            json!({"denied_users": ["@ok:hs", "evilguy"]}),
            "denied_users[1]",
            &["\"evilguy\"", "not a user id"],
        );
        assert_config_error::<Demo>(
            json!({"denied_users": "@a:b"}),
            "denied_users",
            &["invalid type"],
        );
        assert_config_error::<Demo>(
            json!({"denied": []}),
            "denied",
            &["unknown field", "denied_users"],
        );
        assert_config_error::<Demo>(json!(["@a:b"]), "", &["must be a mapping", "not a list"]);
        assert_config_error::<Demo>(json!("x"), "", &["not a string"]);
    }
}
