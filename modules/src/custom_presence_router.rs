//! `custom_presence_router`: the presence router example from Synapse's module documentation.
//!
//! One user (`to_user`, Alice in the docs) receives the presence updates of a few others
//! (`from_users`, Bob and Charlie), whether or not they share a room.
//! `get_users_for_states` routes every update of a `from_users` member to `to_user`;
//! `get_interested_users` answers `from_users` for `to_user` and nobody for anyone else.
//!
//! Config keys:
//! - `to_user` (user id, default `"@alice:example.com"`): who receives the updates.
//! - `from_users` (non-empty list of user ids, default
//!   `["@bob:example.com", "@charlie:example.com"]`): whose updates are routed.
//!
//! ```yaml
//! modules:
//!   - module: custom_presence_router
//!     config:
//!       to_user: "@alice:localhost"
//!       from_users: ["@bob:localhost", "@charlie:localhost"]
//! ```

use crate::common;
use glia_bus_schema::requests::{GetInterestedUsers, GetUsersForStates};
use glia_bus_schema::{InterestedUsers, UserPresenceState, UsersForStatesAnswer};
use glia_module_api::{
    ConfigError, ConfigPath, Handler, Module, ModuleApi, ModuleError, PresenceRouterCallbacks,
};
use serde::Deserialize;
use serde_json::Value;
use std::collections::HashSet;
use std::rc::Rc;

/// The custom presence router.
pub struct CustomPresenceRouter;

/// `custom_presence_router`'s checked config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomPresenceRouterConfig {
    /// Who receives the routed updates.
    #[serde(default = "default_to_user")]
    pub to_user: String,
    /// Whose updates are routed (duplicates removed, order kept).
    #[serde(default = "default_from_users")]
    pub from_users: Vec<String>,
}

fn default_to_user() -> String {
    "@alice:example.com".to_owned()
}

fn default_from_users() -> Vec<String> {
    vec![
        "@bob:example.com".to_owned(),
        "@charlie:example.com".to_owned(),
    ]
}

impl Module for CustomPresenceRouter {
    const NAME: &'static str = "custom_presence_router";
    type Config = CustomPresenceRouterConfig;
    const STATELESS: bool = true;

    fn parse_config(config: &Value) -> Result<CustomPresenceRouterConfig, ConfigError> {
        let mut parsed: CustomPresenceRouterConfig = glia_module_api::from_config(config)?;
        common::check_user_id(ConfigPath::root().key("to_user"), &parsed.to_user)?;
        if parsed.from_users.is_empty() {
            return Err(ConfigError::at(
                "from_users",
                "must list at least one user id",
            ));
        }
        for (i, user) in parsed.from_users.iter().enumerate() {
            common::check_user_id(common::item("from_users", i), user)?;
        }
        let mut seen = HashSet::new();
        parsed.from_users.retain(|u| seen.insert(u.clone()));
        Ok(parsed)
    }

    fn new(config: CustomPresenceRouterConfig, api: &mut ModuleApi) -> Result<Self, ModuleError> {
        let to_user = Rc::new(config.to_user);
        let from_set: HashSet<String> = config.from_users.iter().cloned().collect();
        let from_users = config.from_users;
        let recipient = to_user.clone();
        api.register_presence_router_callbacks(PresenceRouterCallbacks {
            get_users_for_states: Some(Handler::sync(move |args: &GetUsersForStates| {
                // A set per recipient, as in Synapse: identical updates count once.
                let mut routed: Vec<UserPresenceState> = Vec::new();
                for update in &args.state_updates {
                    if from_set.contains(&update.user_id) && !routed.contains(update) {
                        routed.push(update.clone());
                    }
                }
                let mut answer = UsersForStatesAnswer::new();
                if !routed.is_empty() {
                    answer.insert(recipient.to_string(), routed);
                }
                Ok(answer)
            })),
            get_interested_users: Some(Handler::sync(move |args: &GetInterestedUsers| {
                Ok(InterestedUsers::Users(if args.user_id == *to_user {
                    from_users.clone()
                } else {
                    Vec::new()
                }))
            })),
        })
        .map_err(|e| ModuleError::fatal(e.to_string()))?;
        Ok(CustomPresenceRouter)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_config_error, build, call_now, callbacks};
    use glia_bus_schema::{Callback, Presence};
    use serde_json::json;

    fn state(user: &str, presence: Presence) -> UserPresenceState {
        UserPresenceState {
            user_id: user.into(),
            state: presence,
            last_active_ts: 1,
            last_federation_update_ts: 0,
            last_user_sync_ts: 0,
            status_msg: None,
            currently_active: true,
        }
    }

    fn route(updates: Vec<UserPresenceState>) -> GetUsersForStates {
        GetUsersForStates {
            state_updates: updates,
        }
    }

    fn interested(user: &str) -> GetInterestedUsers {
        GetInterestedUsers {
            user_id: user.into(),
        }
    }

    #[test]
    fn registers_both_presence_callbacks() {
        let regs = build::<CustomPresenceRouter>(Value::Null);
        assert_eq!(
            callbacks(&regs),
            vec![Callback::GetUsersForStates, Callback::GetInterestedUsers]
        );
    }

    #[test]
    fn routes_bob_and_charlie_to_alice_by_default() {
        let regs = build::<CustomPresenceRouter>(json!({}));
        let bob = state("@bob:example.com", Presence::Online);
        let charlie = state("@charlie:example.com", Presence::Unavailable);
        let dave = state("@dave:example.com", Presence::Online);
        let answer = call_now(
            &regs,
            route(vec![
                bob.clone(),
                dave.clone(),
                charlie.clone(),
                bob.clone(),
            ]),
        )
        .unwrap();
        assert_eq!(answer.len(), 1);
        assert_eq!(answer["@alice:example.com"], vec![bob, charlie]);

        let answer = call_now(&regs, route(vec![dave])).unwrap();
        assert!(
            answer.is_empty(),
            "no key when nothing is routed: {answer:?}"
        );
        assert!(call_now(&regs, route(vec![])).unwrap().is_empty());
    }

    #[test]
    fn only_alice_is_interested_in_bob_and_charlie() {
        let regs = build::<CustomPresenceRouter>(json!({}));
        assert_eq!(
            call_now(&regs, interested("@alice:example.com")).unwrap(),
            InterestedUsers::Users(vec![
                "@bob:example.com".into(),
                "@charlie:example.com".into()
            ])
        );
        assert_eq!(
            call_now(&regs, interested("@bob:example.com")).unwrap(),
            InterestedUsers::Users(vec![])
        );
    }

    #[test]
    fn users_are_configurable() {
        let regs = build::<CustomPresenceRouter>(json!({
            "to_user": "@alice:localhost",
            "from_users": ["@bob:localhost", "@bob:localhost", "@eve:localhost"],
        }));
        assert_eq!(
            call_now(&regs, interested("@alice:localhost")).unwrap(),
            InterestedUsers::Users(vec!["@bob:localhost".into(), "@eve:localhost".into()])
        );
        assert_eq!(
            call_now(&regs, interested("@alice:example.com")).unwrap(),
            InterestedUsers::Users(vec![])
        );
        let eve = state("@eve:localhost", Presence::Offline);
        let answer = call_now(
            &regs,
            route(vec![
                state("@bob:example.com", Presence::Online),
                eve.clone(),
            ]),
        )
        .unwrap();
        assert_eq!(
            answer.into_iter().collect::<Vec<_>>(),
            vec![("@alice:localhost".to_owned(), vec![eve])]
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        assert_config_error::<CustomPresenceRouter>(
            json!({"to_user": "alice"}),
            "to_user",
            &["not a user id"],
        );
        assert_config_error::<CustomPresenceRouter>(
            json!({"from_users": []}),
            "from_users",
            &["at least one"],
        );
        assert_config_error::<CustomPresenceRouter>(
            json!({"from_users": ["@bob:hs", "charlie"]}),
            "from_users[1]",
            &["\"charlie\"", "not a user id"],
        );
        assert_config_error::<CustomPresenceRouter>(
            json!({"routes": {}}),
            "routes",
            &["unknown field", "to_user", "from_users"],
        );
    }
}
