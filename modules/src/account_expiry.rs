//! `account_expiry`: an account-validity module with fixed expiry dates.
//!
//! `is_user_expired` answers `true` for a listed user whose expiry time has passed, `false`
//! for a listed user whose time has not come, valid until that time (`valid_until_ms`, so
//! the bridge can reuse it until then), and `null` (no opinion: the next module or
//! Synapse's own check decides) for everyone else. A passed time stays passed, and without
//! `default_validity_ms` nothing lists a user the config does not: those answers change only
//! with the config, so they are said to hold for a day (the bridge stops reusing them at the
//! next reload anyway, see `ExpiryReply::generation`). With `default_validity_ms`, a `null`
//! holds for one request, since a registration may list the user. `on_user_registration` records each new
//! user; with `default_validity_ms` set, a new user also expires that long after registering
//! (unless `expiry` already lists them, which wins). The users registered since start-up are
//! served at `GET /_synapse/client/account_expiry/registered` as `{"users": [...]}`, in
//! registration order. The state is the module entry's (`ModuleApi::shared`, behind a lock),
//! not an instance's: instances run one per dispatching thread (the module is
//! `STATELESS`, so `is_user_expired`, asked on every authenticated request, answers on the
//! caller's thread), all see every registration, and a rebuilt instance keeps them. A
//! reload that changes the entry starts afresh.
//!
//! Config keys:
//! - `expiry` (map of user id to milliseconds since the epoch, default `{}`): when each
//!   listed user expires.
//! - `default_validity_ms` (positive integer, optional): validity of newly registered users.
//!
//! ```yaml
//! modules:
//!   - module: account_expiry
//!     config:
//!       expiry:
//!         "@bob:localhost": 0
//!         "@carol:localhost": 1999999999999
//!       default_validity_ms: 2592000000  # 30 days
//! ```

use crate::common;
use glia_bus_schema::requests::{IsUserExpired, OnUserRegistration};
use glia_bus_schema::{ExpiryAnswer, Ignored};
use glia_module_api::{
    AccountValidityCallbacks, ConfigError, ConfigPath, Handler, Module, ModuleApi, ModuleError,
    WebHandler, WebResponse,
};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// How long an answer only a config change can change is said to hold: a day.
const UNCHANGING_MS: i64 = 24 * 60 * 60 * 1000;

/// Where the registered users are served.
pub const REGISTERED_PATH: &str = "/_synapse/client/account_expiry/registered";

/// The account expiry module.
pub struct AccountExpiry;

/// `account_expiry`'s checked config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountExpiryConfig {
    /// User id to expiry time, in milliseconds since the epoch.
    #[serde(default)]
    pub expiry: BTreeMap<String, i64>,
    /// How long a newly registered user stays valid, in milliseconds.
    #[serde(default)]
    pub default_validity_ms: Option<i64>,
}

impl Module for AccountExpiry {
    const NAME: &'static str = "account_expiry";
    type Config = AccountExpiryConfig;
    const STATELESS: bool = true;

    fn parse_config(config: &Value) -> Result<AccountExpiryConfig, ConfigError> {
        let parsed: AccountExpiryConfig = glia_module_api::from_config(config)?;
        for user in parsed.expiry.keys() {
            common::check_user_id(ConfigPath::root().key("expiry").key(user.as_str()), user)?;
        }
        if parsed.default_validity_ms.is_some_and(|ms| ms <= 0) {
            return Err(ConfigError::at(
                "default_validity_ms",
                "must be positive (milliseconds)",
            ));
        }
        Ok(parsed)
    }

    fn new(config: AccountExpiryConfig, api: &mut ModuleApi) -> Result<Self, ModuleError> {
        let validity = config.default_validity_ms;
        let state = api.shared(|| {
            Mutex::new(State {
                expiry: config.expiry.into_iter().collect(),
                registered: Vec::new(),
            })
        });
        let (reader, recorder, web) = (state.clone(), state.clone(), state);
        api.register_account_validity_callbacks(AccountValidityCallbacks {
            is_user_expired: Some(Handler::sync(move |args: &IsUserExpired| {
                let expires_at = locked(&reader).expiry.get(&args.user_id).copied();
                let now = common::now_ms();
                let for_a_day = u64::try_from(now.saturating_add(UNCHANGING_MS)).unwrap_or(0);
                Ok(match expires_at {
                    // Not expired yet: that holds until the expiry time, known in advance.
                    Some(at) if now < at => {
                        ExpiryAnswer::until(Some(false), u64::try_from(at).unwrap_or(0))
                    }
                    Some(_) => ExpiryAnswer::until(Some(true), for_a_day),
                    None if validity.is_none() => ExpiryAnswer::until(None, for_a_day),
                    None => ExpiryAnswer::from(None),
                })
            })),
            on_user_registration: Some(Handler::sync(move |args: &OnUserRegistration| {
                let mut state = locked(&recorder);
                if !state.registered.contains(&args.user_id) {
                    state.registered.push(args.user_id.clone());
                }
                if let Some(ms) = validity {
                    let at = common::now_ms().saturating_add(ms);
                    state.expiry.entry(args.user_id.clone()).or_insert(at);
                }
                Ok(Ignored::default())
            })),
            ..Default::default()
        })
        .map_err(|e| ModuleError::fatal(e.to_string()))?;
        api.register_web_resource(
            REGISTERED_PATH,
            WebHandler::sync(move |req| match common::require_get(&req) {
                Ok(()) => WebResponse::json(200, &json!({ "users": locked(&web).registered })),
                Err(response) => response,
            }),
        );
        Ok(AccountExpiry)
    }
}

/// The module entry's expiry times and registrations.
struct State {
    expiry: HashMap<String, i64>,
    registered: Vec<String>,
}

/// The state, even after a panic elsewhere while it was held: every update is a single
/// insert, so there is nothing half-done to refuse.
fn locked(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_config_error, build, call_now, callbacks, web};
    use glia_bus_schema::Callback;

    fn expired(user: &str) -> IsUserExpired {
        IsUserExpired {
            user_id: user.into(),
        }
    }

    fn registered(user: &str) -> OnUserRegistration {
        OnUserRegistration {
            user_id: user.into(),
        }
    }

    /// Asserts `answer` is `expired`, said to hold for a day from about now.
    fn for_a_day(answer: ExpiryAnswer, expired: Option<bool>) {
        assert_eq!(answer.expired(), expired, "{answer:?}");
        let until = i64::try_from(answer.valid_until_ms().expect("a lifetime")).unwrap();
        let now = common::now_ms();
        assert!((now + UNCHANGING_MS - 60_000..=now + UNCHANGING_MS).contains(&until));
    }

    #[test]
    fn listed_users_expire_at_their_time_and_others_get_no_opinion() {
        let regs = build::<AccountExpiry>(json!({
            "expiry": {"@bob:localhost": 0, "@carol:localhost": 1_999_999_999_999_i64}
        }));
        assert_eq!(
            callbacks(&regs),
            vec![Callback::IsUserExpired, Callback::OnUserRegistration]
        );
        // A passed time stays passed, and nothing lists a user without a config change.
        for_a_day(
            call_now(&regs, expired("@bob:localhost")).unwrap(),
            Some(true),
        );
        assert_eq!(
            call_now(&regs, expired("@carol:localhost")).unwrap(),
            ExpiryAnswer::until(Some(false), 1_999_999_999_999),
            "not expired: holds until the expiry time"
        );
        for_a_day(call_now(&regs, expired("@dave:localhost")).unwrap(), None);
    }

    #[test]
    fn registrations_are_recorded_and_served() {
        let regs = build::<AccountExpiry>(Value::Null);
        assert_eq!(
            web(&regs, "GET", REGISTERED_PATH, ""),
            (200, json!({"users": []}))
        );
        for user in ["@erin:localhost", "@frank:localhost", "@erin:localhost"] {
            assert_eq!(
                call_now(&regs, registered(user)).unwrap(),
                Ignored::default()
            );
        }
        assert_eq!(
            web(&regs, "GET", REGISTERED_PATH, ""),
            (
                200,
                json!({"users": ["@erin:localhost", "@frank:localhost"]})
            )
        );
        // Without default_validity_ms, registering gives no opinion on expiry.
        for_a_day(call_now(&regs, expired("@erin:localhost")).unwrap(), None);
        assert_eq!(web(&regs, "PUT", REGISTERED_PATH, "").0, 405);
    }

    #[test]
    fn default_validity_applies_to_new_users_but_not_listed_ones() {
        let regs = build::<AccountExpiry>(json!({
            "default_validity_ms": 3_600_000,
            "expiry": {"@bob:localhost": 0},
        }));
        let before = common::now_ms();
        call_now(&regs, registered("@erin:localhost")).unwrap();
        let erin = call_now(&regs, expired("@erin:localhost")).unwrap();
        assert_eq!(erin.expired(), Some(false));
        let until = i64::try_from(erin.valid_until_ms().unwrap()).unwrap();
        assert!((before + 3_600_000..=common::now_ms() + 3_600_000).contains(&until));
        call_now(&regs, registered("@bob:localhost")).unwrap();
        for_a_day(
            call_now(&regs, expired("@bob:localhost")).unwrap(),
            Some(true),
        );
        // Not listed yet, but a registration could list them: for this request only.
        assert_eq!(
            call_now(&regs, expired("@hal:localhost")).unwrap(),
            ExpiryAnswer::from(None)
        );

        let regs = build::<AccountExpiry>(json!({"default_validity_ms": 1}));
        call_now(&regs, registered("@gina:localhost")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        for_a_day(
            call_now(&regs, expired("@gina:localhost")).unwrap(),
            Some(true),
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        assert_config_error::<AccountExpiry>(
            json!({"expiry": {"bob": 0}}),
            "expiry.bob",
            &["not a user id"],
        );
        assert_config_error::<AccountExpiry>(
            json!({"expiry": {"@bob:localhost": "soon"}}),
            "expiry.@bob:localhost",
            &["invalid type"],
        );
        assert_config_error::<AccountExpiry>(
            json!({"default_validity_ms": 0}),
            "default_validity_ms",
            &["must be positive"],
        );
        assert_config_error::<AccountExpiry>(
            json!({"default_validity_ms": -3}),
            "default_validity_ms",
            &["must be positive"],
        );
        assert_config_error::<AccountExpiry>(
            json!({"expired_users": {}}),
            "expired_users",
            &["unknown field", "expiry"],
        );
    }
}
