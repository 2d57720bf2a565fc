//! `user_restrictions`: who may invite and who may create rooms, by user id pattern, after
//! matrix-org/synapse-user-restrictions.
//!
//! Registers `user_may_invite` (checking the inviter) and `user_may_create_room`. Rules apply
//! top to bottom: the first rule whose `match` matches the whole user id *and* which names the
//! action (in `allow` or `deny`) decides. When no rule decides, the action is denied iff it is
//! listed in `default_deny`. A denial answers `M_FORBIDDEN`; an allowance `NOT_SPAM`.
//!
//! Config keys:
//! - `rules` (list, default `[]`), each with:
//!   - `match` (regex, required): matched against the full user id, anchored at both ends;
//!   - `allow`, `deny` (lists of actions; at least one of them non-empty, no action in both).
//! - `default_deny` (list of actions, default `[]`): what is denied when no rule decides.
//!
//! Actions: `invite`, `create_room`. At least one of `rules` and `default_deny` must be given.
//!
//! ```yaml
//! modules:
//!   - module: user_restrictions
//!     config:
//!       rules:
//!         - match: "@admin-[a-z]+:example\\.com"
//!           allow: [invite, create_room]
//!         - match: "@guest-.*"
//!           deny: [invite]
//!       default_deny: [create_room]
//! ```

use crate::common;
use glia_bus_schema::errcodes::M_FORBIDDEN;
use glia_bus_schema::requests::{UserMayCreateRoom, UserMayInvite};
use glia_bus_schema::SpamAnswer;
use glia_module_api::{
    ConfigError, ConfigPath, Handler, Module, ModuleApi, ModuleError, SpamCheckerCallbacks,
};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use std::rc::Rc;

/// The user restrictions module.
pub struct UserRestrictions;

/// Something a rule allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Sending an invite (`user_may_invite`, checked for the inviter).
    Invite,
    /// Creating a room (`user_may_create_room`).
    CreateRoom,
}

impl Action {
    /// Every action, in the order error messages list them.
    pub const ALL: [Action; 2] = [Action::Invite, Action::CreateRoom];

    /// The name used in config.
    pub fn name(self) -> &'static str {
        match self {
            Action::Invite => "invite",
            Action::CreateRoom => "create_room",
        }
    }

    fn parse(path: ConfigPath, name: &str) -> Result<Action, ConfigError> {
        Action::ALL
            .into_iter()
            .find(|a| a.name() == name)
            .ok_or_else(|| {
                let valid: Vec<&str> = Action::ALL.iter().map(|a| a.name()).collect();
                ConfigError::at_path(
                    path,
                    format!(
                        "unknown action {name:?}; valid actions are: {}",
                        valid.join(", ")
                    ),
                )
            })
    }
}

/// One checked rule.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The anchored pattern on the full user id.
    pub pattern: Regex,
    /// Actions this rule allows.
    pub allow: Vec<Action>,
    /// Actions this rule denies.
    pub deny: Vec<Action>,
}

/// `user_restrictions`' checked config.
#[derive(Debug, Clone)]
pub struct UserRestrictionsConfig {
    /// The rules, in order.
    pub rules: Vec<Rule>,
    /// Actions denied when no rule decides.
    pub default_deny: Vec<Action>,
}

impl UserRestrictionsConfig {
    /// Whether `user_id` may perform `action`.
    pub fn allows(&self, user_id: &str, action: Action) -> bool {
        for rule in &self.rules {
            if !rule.pattern.is_match(user_id) {
                continue;
            }
            if rule.allow.contains(&action) {
                return true;
            }
            if rule.deny.contains(&action) {
                return false;
            }
        }
        !self.default_deny.contains(&action)
    }

    fn answer(&self, user_id: &str, action: Action) -> SpamAnswer {
        if self.allows(user_id, action) {
            SpamAnswer::NOT_SPAM
        } else {
            SpamAnswer::code(M_FORBIDDEN)
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    rules: Vec<RawRule>,
    #[serde(default)]
    default_deny: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    #[serde(rename = "match")]
    pattern: String,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
}

fn actions(path: ConfigPath, names: &[String]) -> Result<Vec<Action>, ConfigError> {
    names
        .iter()
        .enumerate()
        .map(|(i, name)| Action::parse(path.clone().index(i), name))
        .collect()
}

impl Module for UserRestrictions {
    const NAME: &'static str = "user_restrictions";
    type Config = UserRestrictionsConfig;
    const STATELESS: bool = true;

    fn parse_config(config: &Value) -> Result<UserRestrictionsConfig, ConfigError> {
        let raw: RawConfig = glia_module_api::from_config(config)?;
        if raw.rules.is_empty() && raw.default_deny.is_empty() {
            return Err(ConfigError::new(
                "nothing to enforce: give `rules`, `default_deny`, or both",
            ));
        }
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (i, rule) in raw.rules.iter().enumerate() {
            let at = common::item("rules", i);
            let pattern =
                common::compile_regex(at.clone().key("match"), &rule.pattern, true, false)?;
            let allow = actions(at.clone().key("allow"), &rule.allow)?;
            let deny = actions(at.clone().key("deny"), &rule.deny)?;
            if allow.is_empty() && deny.is_empty() {
                return Err(ConfigError::at_path(
                    at,
                    "a rule must list at least one action in `allow` or `deny`",
                ));
            }
            if let Some(j) = deny.iter().position(|a| allow.contains(a)) {
                return Err(ConfigError::at_path(
                    at.key("deny").index(j),
                    format!(
                        "{:?} is in both `allow` and `deny` of this rule",
                        deny[j].name()
                    ),
                ));
            }
            rules.push(Rule {
                pattern,
                allow,
                deny,
            });
        }
        let default_deny = actions(ConfigPath::root().key("default_deny"), &raw.default_deny)?;
        Ok(UserRestrictionsConfig {
            rules,
            default_deny,
        })
    }

    fn new(config: UserRestrictionsConfig, api: &mut ModuleApi) -> Result<Self, ModuleError> {
        let policy = Rc::new(config);
        let for_rooms = policy.clone();
        api.register_spam_checker_callbacks(SpamCheckerCallbacks {
            user_may_invite: Some(Handler::sync(move |args: &UserMayInvite| {
                Ok(policy.answer(&args.inviter, Action::Invite))
            })),
            user_may_create_room: Some(Handler::sync(move |args: &UserMayCreateRoom| {
                Ok(for_rooms.answer(&args.user_id, Action::CreateRoom))
            })),
            ..Default::default()
        });
        Ok(UserRestrictions)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_config_error, build, call_now, callbacks};
    use glia_bus_schema::Callback;
    use glia_module_api::Registrations;
    use serde_json::json;

    fn may_invite(regs: &Registrations, inviter: &str) -> bool {
        let answer = call_now(
            regs,
            UserMayInvite {
                inviter: inviter.into(),
                invitee: "@someone:example.com".into(),
                room_id: "!room:example.com".into(),
            },
        )
        .unwrap();
        decision(answer)
    }

    fn may_create(regs: &Registrations, user: &str) -> bool {
        let answer = call_now(
            regs,
            UserMayCreateRoom {
                user_id: user.into(),
                room_config: Default::default(),
            },
        )
        .unwrap();
        decision(answer)
    }

    fn decision(answer: SpamAnswer) -> bool {
        match answer {
            SpamAnswer::NOT_SPAM => true,
            a if a == SpamAnswer::code("M_FORBIDDEN") => false,
            other => panic!("unexpected answer {other:?}"),
        }
    }

    #[test]
    fn first_rule_mentioning_the_action_decides_else_default_deny() {
        let regs = build::<UserRestrictions>(json!({
            "rules": [
                {"match": "@admin-[a-z]+:example\\.com", "allow": ["invite", "create_room"]},
                {"match": "@guest-.*", "deny": ["invite"]},
                {"match": "@guest-vip:.*", "allow": ["invite", "create_room"]},
            ],
            "default_deny": ["create_room"],
        }));
        assert_eq!(
            callbacks(&regs),
            vec![Callback::UserMayInvite, Callback::UserMayCreateRoom]
        );
        // Rule 1 decides both actions.
        assert!(may_invite(&regs, "@admin-ann:example.com"));
        assert!(may_create(&regs, "@admin-ann:example.com"));
        // Rule 2 decides invite; for create_room, rule 2 is silent and rule 3 allows.
        assert!(!may_invite(&regs, "@guest-vip:example.com"));
        assert!(may_create(&regs, "@guest-vip:example.com"));
        // Rule 2 decides invite; nothing decides create_room: default_deny.
        assert!(!may_invite(&regs, "@guest-joe:example.com"));
        assert!(!may_create(&regs, "@guest-joe:example.com"));
        // No rule matches: invite is allowed, create_room is in default_deny.
        assert!(may_invite(&regs, "@bob:example.com"));
        assert!(!may_create(&regs, "@bob:example.com"));
    }

    #[test]
    fn match_is_anchored_on_the_full_user_id() {
        let regs = build::<UserRestrictions>(json!({
            "rules": [{"match": "@admin:example\\.com|@root:example\\.com", "allow": ["create_room"]}],
            "default_deny": ["create_room", "invite"],
        }));
        assert!(may_create(&regs, "@admin:example.com"));
        assert!(may_create(&regs, "@root:example.com"));
        assert!(!may_create(&regs, "@admin:example.com.evil.org"));
        assert!(!may_create(&regs, "@xroot:example.com"));
        // The inviter is what is checked, and invite is in default_deny for everyone.
        assert!(!may_invite(&regs, "@admin:example.com"));
    }

    #[test]
    fn rules_alone_without_default_deny_allow_the_rest() {
        let regs = build::<UserRestrictions>(json!({
            "rules": [{"match": "@spam.*", "deny": ["invite", "create_room"]}],
        }));
        assert!(!may_invite(&regs, "@spammer:hs"));
        assert!(!may_create(&regs, "@spammer:hs"));
        assert!(may_invite(&regs, "@alice:hs"));
        assert!(may_create(&regs, "@alice:hs"));
    }

    #[test]
    fn config_errors_name_the_key() {
        assert_config_error::<UserRestrictions>(
            json!({"rules": [{"match": "@a.*", "allow": ["invite", "kick"]}]}),
            "rules[0].allow[1]",
            &[
                "unknown action \"kick\"",
                "valid actions are: invite, create_room",
            ],
        );
        assert_config_error::<UserRestrictions>(
            json!({"default_deny": ["invites"]}),
            "default_deny[0]",
            &["unknown action \"invites\"", "invite, create_room"],
        );
        assert_config_error::<UserRestrictions>(
            json!({"rules": [
                {"match": "@a.*", "allow": ["invite"]},
                {"match": "@a.*", "deny": ["invite"]},
                {"match": "@(unclosed", "deny": ["invite"]},
            ]}),
            "rules[2].match",
            &["invalid regex", "@(unclosed", "unclosed group"],
        );
        assert_config_error::<UserRestrictions>(
            json!({"rules": [{"match": "@a.*", "allow": [], "deny": []}]}),
            "rules[0]",
            &["at least one action"],
        );
        assert_config_error::<UserRestrictions>(
            json!({"rules": [{"match": "@a.*"}]}),
            "rules[0]",
            &["at least one action"],
        );
        assert_config_error::<UserRestrictions>(
            json!({"rules": [{"match": "@a.*", "allow": ["invite", "create_room"], "deny": ["create_room"]}]}),
            "rules[0].deny[0]",
            &["\"create_room\" is in both"],
        );
        assert_config_error::<UserRestrictions>(
            json!({"rules": [{"allow": ["invite"]}]}),
            "rules[0]",
            &["missing field `match`"],
        );
        assert_config_error::<UserRestrictions>(
            json!({"rules": [{"match": "@a", "allow": ["invite"], "permit": []}]}),
            "rules[0].permit",
            &["unknown field"],
        );
        assert_config_error::<UserRestrictions>(json!({}), "", &["nothing to enforce"]);
        assert_config_error::<UserRestrictions>(Value::Null, "", &["nothing to enforce"]);
    }
}
