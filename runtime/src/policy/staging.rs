//! Trying a module before it bites: whether its answers are applied (`enforce`), only
//! recorded (`audit`), or applied for a stable share of subjects and recorded for the rest
//! (`rollout`). The coordinator asks an audited module exactly as an enforcing one; only
//! what its answer does differs.

use super::Builtin;
use glia_bus_schema::{Callback, CallbackRequest};
use serde::Deserialize;
use std::fmt;
use std::str::FromStr;

/// What a module's answers do for a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Applied, as Synapse applies a module's answer.
    Enforce,
    /// Asked and recorded (what the decision would have been), never applied.
    Audit,
    /// Enforced for the subjects the module's `rollout:` selects, audited for the rest.
    Rollout,
}

impl Mode {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Audit => "audit",
            Mode::Rollout => "rollout",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "enforce" => Ok(Mode::Enforce),
            "audit" => Ok(Mode::Audit),
            "rollout" => Ok(Mode::Rollout),
            other => Err(format!(
                "unknown mode {other:?}; use enforce, audit or rollout"
            )),
        }
    }
}

impl Builtin for Mode {
    /// Enforce: a module does what Synapse would have it do unless the operator says otherwise.
    fn builtin(_: Callback) -> Self {
        Mode::Enforce
    }
}

/// A module's modes, per callback.
pub type ModeTable = super::PerCallback<Mode>;

/// Who a rollout's share is drawn over: the same subject is always in or always out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Subject {
    /// The user acting: an event's sender, an inviter, the user registering or logging in.
    Sender,
    /// The room the callback is about.
    Room,
}

/// Where each subject is found in a callback's arguments, tried in order (JSON pointers
/// into the request's `args`): one table for every callback, as the bus schema names them.
const SUBJECT_PATHS: &[(Subject, &[&str])] = &[
    (
        Subject::Sender,
        &[
            "/event/sender",
            "/inviter",
            "/user_id",
            "/requester/user_id",
            "/user_profile/user_id",
            "/username",
        ],
    ),
    (Subject::Room, &["/event/room_id", "/room_id"]),
];

impl Subject {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Subject::Sender => "sender",
            Subject::Room => "room",
        }
    }

    /// This subject of `request`, when the callback has one.
    pub fn of(self, request: &CallbackRequest) -> Option<String> {
        let tagged = serde_json::to_value(request).ok()?;
        let args = tagged.get("args")?;
        let paths = SUBJECT_PATHS.iter().find(|(s, _)| *s == self)?.1;
        paths
            .iter()
            .find_map(|p| args.pointer(p).and_then(|v| v.as_str()))
            .map(str::to_owned)
    }
}

/// `rollout: {percent, by}`: the share of subjects a module is enforced for.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollout {
    /// From 0 to 100 (fractions allowed, to a hundredth of a percent).
    pub percent: f64,
    /// Whose share it is.
    pub by: Subject,
}

/// The buckets a rollout's percent is counted in: a hundredth of a percent each.
const BUCKETS: u64 = 10_000;

impl Rollout {
    /// A percent outside 0 to 100, said as the config error.
    pub fn check(&self) -> Result<(), String> {
        if (0.0..=100.0).contains(&self.percent) {
            Ok(())
        } else {
            Err(format!(
                "rollout.percent must be from 0 to 100, not {}",
                self.percent
            ))
        }
    }

    /// Whether `module` is enforced for `subject` (a request without the subject is audited:
    /// a rollout never widens by accident). The bucket depends on the module and the subject
    /// only, so raising the percent keeps everyone already in, and every process
    /// (and every restart) agrees.
    pub fn enforces_subject(&self, module: &str, subject: &str) -> bool {
        let share = (self.percent * (BUCKETS as f64 / 100.0)).round() as u64;
        bucket(module, subject) < share
    }
}

/// FNV-1a over the module's name, a separator and the subject, in `0..BUCKETS`: fixed
/// across builds and platforms, unlike std's randomly keyed hasher.
fn bucket(module: &str, subject: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in module.bytes().chain([0u8]).chain(subject.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash % BUCKETS
}

#[cfg(test)]
mod tests {
    use super::*;
    use glia_bus_schema::requests::{CheckEventForSpam, UserMayInvite};
    use glia_bus_schema::CallbackArgs;

    fn rollout(percent: f64) -> Rollout {
        Rollout {
            percent,
            by: Subject::Sender,
        }
    }

    #[test]
    fn a_share_holds_about_its_percent_of_subjects() {
        let users: Vec<String> = (0..20_000)
            .map(|i| format!("@user{i}:example.org"))
            .collect();
        for percent in [1.0, 10.0, 50.0] {
            let inside = users
                .iter()
                .filter(|u| rollout(percent).enforces_subject("spam", u))
                .count() as f64;
            let share = inside / users.len() as f64 * 100.0;
            assert!((share - percent).abs() < 1.0, "{percent}%: {share}%");
        }
    }

    #[test]
    fn raising_the_percent_keeps_everyone_already_in() {
        for i in 0..5_000 {
            let user = format!("@u{i}:hs");
            if rollout(10.0).enforces_subject("m", &user) {
                assert!(rollout(50.0).enforces_subject("m", &user), "{user}");
            }
        }
        assert!(!rollout(0.0).enforces_subject("m", "@a:hs"));
        assert!(rollout(100.0).enforces_subject("m", "@a:hs"));
    }

    #[test]
    fn the_subject_is_found_in_each_callbacks_arguments() {
        let invite = UserMayInvite {
            inviter: "@a:hs".into(),
            invitee: "@b:hs".into(),
            room_id: "!r:hs".into(),
        }
        .into_request();
        assert_eq!(Subject::Sender.of(&invite).as_deref(), Some("@a:hs"));
        assert_eq!(Subject::Room.of(&invite).as_deref(), Some("!r:hs"));
        let event: glia_bus_schema::Event = serde_json::from_value(serde_json::json!({
            "event_id": "$e", "room_id": "!r:hs", "sender": "@s:hs", "type": "m.room.message",
            "content": {}
        }))
        .unwrap();
        let spam = CheckEventForSpam { event }.into_request();
        assert_eq!(Subject::Sender.of(&spam).as_deref(), Some("@s:hs"));
    }

    #[test]
    fn percents_outside_the_range_are_refused() {
        assert!(rollout(-1.0).check().is_err());
        assert!(rollout(100.5).check().is_err());
        assert!(rollout(f64::NAN).check().is_err());
        assert!(rollout(0.5).check().is_ok());
    }
}
