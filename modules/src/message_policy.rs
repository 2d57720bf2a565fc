//! `message_policy`: refuses events by sender homeserver, and messages by length or content.
//!
//! `check_event_for_spam` refuses, with the configured errcode and a field
//! `{"org.glia.reason": ...}` naming the rule:
//! - any event whose sender's server name is in `blocked_homeservers`
//!   (`"blocked_homeserver"`);
//! - an `m.room.message` event whose `content.body`
//!   - is longer than `max_body_length` characters (`"body_too_long"`),
//!   - matches one of `blocked_patterns` (`"blocked_pattern"`),
//!   - or contains one of `blocked_keywords` (`"blocked_keyword"`);
//!
//! checked in that order. Everything else is `NOT_SPAM`.
//!
//! Config keys (at least one of the first four must be given):
//! - `max_body_length` (positive integer, optional): the longest body allowed, in characters.
//! - `blocked_patterns` (list of regexes, default `[]`): searched in the body, ignoring case.
//! - `blocked_keywords` (list of non-empty strings, default `[]`): substrings of the body,
//!   ignoring case.
//! - `blocked_homeservers` (list of server names, default `[]`): the sender's server name
//!   (everything after the first `:` of the user id, port included) must not equal one,
//!   ignoring ASCII case.
//! - `errcode` (string, default `"M_FORBIDDEN"`): the errcode of refusals.
//!
//! ```yaml
//! modules:
//!   - module: message_policy
//!     config:
//!       max_body_length: 4000
//!       blocked_patterns: ["free\\s+crypto", "https?://bit\\.ly/"]
//!       blocked_keywords: ["viagra"]
//!       blocked_homeservers: ["spam.example.org"]
//!       errcode: M_FORBIDDEN
//! ```

use crate::common;
use glia_bus_schema::errcodes::M_FORBIDDEN;
use glia_bus_schema::requests::CheckEventForSpam;
use glia_bus_schema::{Event, JsonObject, SpamAnswer};
use glia_module_api::{
    ConfigError, ConfigPath, Handler, Module, ModuleApi, ModuleError, SpamCheckerCallbacks,
};
use regex::Regex;
use serde::Deserialize;
use serde_json::Value;
use std::rc::Rc;

/// The extra field of a refusal that names the rule.
pub const REASON_FIELD: &str = "org.glia.reason";

/// The message policy module.
pub struct MessagePolicy;

/// Which rule refused an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The sender's homeserver is blocked.
    BlockedHomeserver,
    /// The body is longer than `max_body_length`.
    BodyTooLong,
    /// The body matches a blocked pattern.
    BlockedPattern,
    /// The body contains a blocked keyword.
    BlockedKeyword,
}

impl Reason {
    /// The value of the `org.glia.reason` field.
    pub fn name(self) -> &'static str {
        match self {
            Reason::BlockedHomeserver => "blocked_homeserver",
            Reason::BodyTooLong => "body_too_long",
            Reason::BlockedPattern => "blocked_pattern",
            Reason::BlockedKeyword => "blocked_keyword",
        }
    }
}

/// `message_policy`'s checked config.
#[derive(Debug, Clone)]
pub struct MessagePolicyConfig {
    /// The longest body allowed, in characters.
    pub max_body_length: Option<usize>,
    /// Case-insensitive patterns searched in bodies.
    pub blocked_patterns: Vec<Regex>,
    /// Lower-cased keywords searched in lower-cased bodies.
    pub blocked_keywords: Vec<String>,
    /// Lower-cased server names whose users' events are refused.
    pub blocked_homeservers: Vec<String>,
    /// The errcode of refusals.
    pub errcode: String,
}

impl MessagePolicyConfig {
    /// Which rule, if any, refuses `event`.
    pub fn check(&self, event: &Event) -> Option<Reason> {
        let server = event.sender_server().unwrap_or("").to_ascii_lowercase();
        if self.blocked_homeservers.contains(&server) {
            return Some(Reason::BlockedHomeserver);
        }
        if event.event_type != "m.room.message" {
            return None;
        }
        let body = event.body()?;
        if self
            .max_body_length
            .is_some_and(|max| body.chars().count() > max)
        {
            return Some(Reason::BodyTooLong);
        }
        if self.blocked_patterns.iter().any(|p| p.is_match(body)) {
            return Some(Reason::BlockedPattern);
        }
        if !self.blocked_keywords.is_empty() {
            let lower = body.to_lowercase();
            if self
                .blocked_keywords
                .iter()
                .any(|k| lower.contains(k.as_str()))
            {
                return Some(Reason::BlockedKeyword);
            }
        }
        None
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    max_body_length: Option<i64>,
    #[serde(default)]
    blocked_patterns: Vec<String>,
    #[serde(default)]
    blocked_keywords: Vec<String>,
    #[serde(default)]
    blocked_homeservers: Vec<String>,
    #[serde(default = "default_errcode")]
    errcode: String,
}

fn default_errcode() -> String {
    M_FORBIDDEN.to_owned()
}

impl Module for MessagePolicy {
    const NAME: &'static str = "message_policy";
    type Config = MessagePolicyConfig;
    const STATELESS: bool = true;

    fn parse_config(config: &Value) -> Result<MessagePolicyConfig, ConfigError> {
        let raw: RawConfig = glia_module_api::from_config(config)?;
        if raw.max_body_length.is_none()
            && raw.blocked_patterns.is_empty()
            && raw.blocked_keywords.is_empty()
            && raw.blocked_homeservers.is_empty()
        {
            return Err(ConfigError::new(
                "nothing to enforce: set at least one of max_body_length, blocked_patterns, \
                 blocked_keywords, blocked_homeservers",
            ));
        }
        let max_body_length = match raw.max_body_length {
            Some(n) if n <= 0 => {
                return Err(ConfigError::at(
                    "max_body_length",
                    "must be positive (characters)",
                ))
            }
            Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            None => None,
        };
        let blocked_patterns = raw
            .blocked_patterns
            .iter()
            .enumerate()
            .map(|(i, p)| {
                common::compile_regex(common::item("blocked_patterns", i), p, false, true)
            })
            .collect::<Result<_, _>>()?;
        for (i, keyword) in raw.blocked_keywords.iter().enumerate() {
            if keyword.is_empty() {
                return Err(ConfigError::at_path(
                    common::item("blocked_keywords", i),
                    "must not be empty (it would match every message)",
                ));
            }
        }
        for (i, server) in raw.blocked_homeservers.iter().enumerate() {
            if server.is_empty() || server.starts_with('@') || server.contains(char::is_whitespace)
            {
                return Err(ConfigError::at_path(
                    common::item("blocked_homeservers", i),
                    format!("{server:?} is not a server name (such as example.org)"),
                ));
            }
        }
        let errcode_ok = !raw.errcode.is_empty()
            && raw
                .errcode
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
        if !errcode_ok {
            return Err(ConfigError::at_path(
                ConfigPath::root().key("errcode"),
                format!(
                    "{:?} is not a Matrix errcode (such as M_FORBIDDEN)",
                    raw.errcode
                ),
            ));
        }
        Ok(MessagePolicyConfig {
            max_body_length,
            blocked_patterns,
            blocked_keywords: raw
                .blocked_keywords
                .iter()
                .map(|k| k.to_lowercase())
                .collect(),
            blocked_homeservers: raw
                .blocked_homeservers
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            errcode: raw.errcode,
        })
    }

    fn new(config: MessagePolicyConfig, api: &mut ModuleApi) -> Result<Self, ModuleError> {
        let policy = Rc::new(config);
        api.register_spam_checker_callbacks(SpamCheckerCallbacks {
            check_event_for_spam: Some(Handler::sync(move |args: &CheckEventForSpam| {
                Ok(match policy.check(&args.event) {
                    None => SpamAnswer::NOT_SPAM,
                    Some(reason) => {
                        let mut fields = JsonObject::new();
                        fields.insert(REASON_FIELD.into(), reason.name().into());
                        SpamAnswer::code_with_fields(policy.errcode.clone(), fields)
                    }
                })
            })),
            ..Default::default()
        });
        Ok(MessagePolicy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_config_error, build, call_now, callbacks, event};
    use glia_bus_schema::Callback;
    use glia_module_api::Registrations;
    use serde_json::json;

    fn check(regs: &Registrations, sender: &str, event_type: &str, content: Value) -> SpamAnswer {
        call_now(
            regs,
            CheckEventForSpam {
                event: event(sender, event_type, content),
            },
        )
        .unwrap()
    }

    fn message(regs: &Registrations, body: &str) -> SpamAnswer {
        check(
            regs,
            "@alice:good.org",
            "m.room.message",
            json!({"msgtype": "m.text", "body": body}),
        )
    }

    fn denied(errcode: &str, reason: &str) -> SpamAnswer {
        let mut fields = JsonObject::new();
        fields.insert("org.glia.reason".into(), reason.into());
        SpamAnswer::code_with_fields(errcode, fields)
    }

    #[test]
    fn max_body_length_counts_characters() {
        let regs = build::<MessagePolicy>(json!({"max_body_length": 5}));
        assert_eq!(callbacks(&regs), vec![Callback::CheckEventForSpam]);
        assert_eq!(message(&regs, "héllo"), SpamAnswer::NOT_SPAM);
        assert_eq!(
            message(&regs, "hello!"),
            denied("M_FORBIDDEN", "body_too_long")
        );
        // Only m.room.message bodies are checked.
        let long = json!({"body": "far too long for the limit"});
        assert_eq!(
            check(&regs, "@alice:good.org", "m.sticker", long.clone()),
            SpamAnswer::NOT_SPAM
        );
        assert_eq!(
            check(&regs, "@alice:good.org", "m.room.topic", long),
            SpamAnswer::NOT_SPAM
        );
        // A message without a string body has nothing to check.
        assert_eq!(
            check(
                &regs,
                "@alice:good.org",
                "m.room.message",
                json!({"body": 123456789})
            ),
            SpamAnswer::NOT_SPAM
        );
    }

    #[test]
    fn blocked_patterns_ignore_case() {
        let regs =
            build::<MessagePolicy>(json!({"blocked_patterns": ["free\\s+crypto", "^spam$"]}));
        assert_eq!(
            message(&regs, "Get FREE   Crypto now"),
            denied("M_FORBIDDEN", "blocked_pattern")
        );
        assert_eq!(
            message(&regs, "SPAM"),
            denied("M_FORBIDDEN", "blocked_pattern")
        );
        assert_eq!(message(&regs, "no spam here"), SpamAnswer::NOT_SPAM);
    }

    #[test]
    fn blocked_keywords_are_case_insensitive_substrings() {
        let regs = build::<MessagePolicy>(json!({"blocked_keywords": ["Viagra", "ÉCLAIR"]}));
        assert_eq!(
            message(&regs, "cheap vIaGrA!!"),
            denied("M_FORBIDDEN", "blocked_keyword")
        );
        assert_eq!(
            message(&regs, "des éclairs"),
            denied("M_FORBIDDEN", "blocked_keyword")
        );
        assert_eq!(message(&regs, "via gra"), SpamAnswer::NOT_SPAM);
    }

    #[test]
    fn blocked_homeservers_apply_to_every_event() {
        let regs = build::<MessagePolicy>(
            json!({"blocked_homeservers": ["Spam.Example.org", "evil.net:8448"]}),
        );
        let blocked = denied("M_FORBIDDEN", "blocked_homeserver");
        assert_eq!(
            check(
                &regs,
                "@bot:spam.example.org",
                "m.room.message",
                json!({"body": "hi"})
            ),
            blocked
        );
        assert_eq!(
            check(&regs, "@bot:spam.example.org", "m.reaction", json!({})),
            blocked
        );
        assert_eq!(
            check(
                &regs,
                "@bot:evil.net:8448",
                "m.room.topic",
                json!({"topic": "x"})
            ),
            blocked
        );
        assert_eq!(
            check(
                &regs,
                "@bot:evil.net",
                "m.room.message",
                json!({"body": "hi"})
            ),
            SpamAnswer::NOT_SPAM
        );
        assert_eq!(
            check(
                &regs,
                "@bot:example.org",
                "m.room.message",
                json!({"body": "hi"})
            ),
            SpamAnswer::NOT_SPAM
        );
    }

    #[test]
    fn rules_apply_in_order_with_the_configured_errcode() {
        let regs = build::<MessagePolicy>(json!({
            "max_body_length": 10,
            "blocked_patterns": ["bad"],
            "blocked_keywords": ["worse"],
            "blocked_homeservers": ["spam.org"],
            "errcode": "M_LIMIT_EXCEEDED",
        }));
        let body = |b: &str| json!({"msgtype": "m.text", "body": b});
        assert_eq!(
            check(
                &regs,
                "@x:spam.org",
                "m.room.message",
                body("bad worse and too long")
            ),
            denied("M_LIMIT_EXCEEDED", "blocked_homeserver")
        );
        assert_eq!(
            message(&regs, "bad worse and too long"),
            denied("M_LIMIT_EXCEEDED", "body_too_long")
        );
        assert_eq!(
            message(&regs, "bad worse"),
            denied("M_LIMIT_EXCEEDED", "blocked_pattern")
        );
        assert_eq!(
            message(&regs, "worse"),
            denied("M_LIMIT_EXCEEDED", "blocked_keyword")
        );
        assert_eq!(message(&regs, "fine"), SpamAnswer::NOT_SPAM);
    }

    #[test]
    fn config_errors_name_the_key() {
        assert_config_error::<MessagePolicy>(json!({}), "", &["nothing to enforce"]);
        assert_config_error::<MessagePolicy>(Value::Null, "", &["nothing to enforce"]);
        assert_config_error::<MessagePolicy>(
            json!({"errcode": "M_FORBIDDEN"}),
            "",
            &["nothing to enforce"],
        );
        assert_config_error::<MessagePolicy>(
            json!({"max_body_length": 0}),
            "max_body_length",
            &["must be positive"],
        );
        assert_config_error::<MessagePolicy>(
            json!({"max_body_length": -1}),
            "max_body_length",
            &["must be positive"],
        );
        assert_config_error::<MessagePolicy>(
            json!({"max_body_length": "long"}),
            "max_body_length",
            &["invalid type"],
        );
        assert_config_error::<MessagePolicy>(
            json!({"blocked_patterns": ["ok", "[unclosed"]}),
            "blocked_patterns[1]",
            &["invalid regex", "[unclosed", "unclosed character class"],
        );
        assert_config_error::<MessagePolicy>(
            json!({"blocked_keywords": ["spam", ""]}),
            "blocked_keywords[1]",
            &["must not be empty"],
        );
        assert_config_error::<MessagePolicy>(
            json!({"blocked_homeservers": ["@bot:spam.org"]}),
            "blocked_homeservers[0]",
            &["not a server name"],
        );
        assert_config_error::<MessagePolicy>(
            json!({"blocked_keywords": ["x"], "errcode": "not an errcode"}),
            "errcode",
            &["not a Matrix errcode"],
        );
        assert_config_error::<MessagePolicy>(
            json!({"blocked_keywords": ["x"], "blocked_words": ["y"]}),
            "blocked_words",
            &["unknown field", "blocked_keywords"],
        );
    }
}
