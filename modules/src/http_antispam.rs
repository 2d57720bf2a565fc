//! `http_antispam`: asks a server that speaks synapse-http-antispam's protocol (Draupnir,
//! Meowlnir, or any other) the spam checks it serves, beside glia's other modules, under
//! glia's timeouts, failure policies, traces and decision records. Several instances (one per
//! server) may sit in one config.
//!
//! Each enabled callback POSTs to `{base_url}/{callback}` exactly the body
//! synapse-http-antispam 0.5.1 sends (`glia_bus_schema::http_antispam` writes it), with
//! `Authorization: Bearer <token>`, so the servers need no change. Answers are read by
//! errcode, not by status (Meowlnir denies with 403, Draupnir with 400):
//! - 2xx with a JSON body: `NOT_SPAM`;
//! - any other status with a JSON object: a deny with its `errcode` (`M_FORBIDDEN` when it has
//!   none) and the rest of the body as extra fields, so the server's `error` reaches the
//!   client as the module makes it do; unless the errcode is in `failure_errcodes`;
//! - everything else is a failure, which the module's glia `failure_policy` resolves (it
//!   replaces the module's `fail_open`): an errcode in `failure_errcodes` (Meowlnir's `404
//!   M_NOT_FOUND` for an unknown management room, Draupnir's `400 M_INVALID_PARAM` for a body
//!   it rejects), a body that is not JSON (Draupnir's `401` "Missing access token", Express's
//!   HTML 404 for a callback Draupnir does not serve), a refused connection, `timeout_ms`.
//!
//! `check_username_for_spam` is read as Synapse reads it (a deny hides the user); through
//! synapse-http-antispam itself every user is hidden, whatever the server answers.
//!
//! Config keys (named as synapse-http-antispam's, so its `config:` block can be moved here):
//! - `base_url` (string, required): an `http://` URL; requests go to `{base_url}/{callback}`.
//! - `authorization` or `authorization_path` (optional, not both): the bearer token, inline or
//!   in a file read at start-up (trimmed).
//! - `enabled_callbacks` (list, required): which of `user_may_join_room`, `user_may_invite`,
//!   `user_may_send_3pid_invite`, `user_may_create_room`, `user_may_create_room_alias`,
//!   `user_may_publish_room`, `check_username_for_spam`, `check_login_for_spam`,
//!   `check_event_for_spam` and `federated_user_may_invite` to register.
//! - `async` (list, or a mapping of callback to boolean as in the module; default none):
//!   callbacks answered `NOT_SPAM` at once and posted in the background (failures logged), for
//!   callbacks a server only watches (Meowlnir's `user_may_join_room`).
//! - `do_ping` (boolean, default `false`): POST `{base_url}/ping` when the instance starts, then
//!   every 5 s until the server echoes the id, as the module does (logged; glia starts anyway).
//! - `failure_errcodes` (list, default [`DEFAULT_FAILURE_ERRCODES`]): errcodes that say the
//!   server failed rather than denied.
//! - `timeout_ms` (positive integer, default 10000): how long one HTTP request may take,
//!   background posts included; how long a decision waits for it is the entry's `timeout:`.
//!
//! ```yaml
//! modules:
//!   - module: http_antispam
//!     name: meowlnir
//!     timeout: 500ms
//!     failure_policy: {default: allow}
//!     config:
//!       base_url: "http://meowlnir:29339/_meowlnir/antispam/!mgmt:example.com"
//!       authorization_path: /run/secrets/meowlnir_antispam
//!       enabled_callbacks: [user_may_invite, federated_user_may_invite, user_may_join_room]
//!       async: [user_may_join_room]
//! ```

use crate::common;
use futures::future::{self, FutureExt};
use glia_bus_schema::errcodes;
use glia_bus_schema::http_antispam::{self, Verdict};
use glia_bus_schema::{
    Callback, CallbackRequest, InvocationError, ModuleAnswer, SpamAnswer, SpamCode, TruthyAnswer,
};
use glia_module_api::handler::ErasedFuture;
use glia_module_api::{ConfigError, ConfigPath, ErasedHandler, Module, ModuleApi, ModuleError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::cell::{Cell, OnceCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::time::Duration;

/// Errcodes read as the server failing, not denying: Meowlnir's unknown management room
/// (`M_NOT_FOUND`), unreadable body (`M_NOT_JSON`) and wrong secret (`M_UNKNOWN_TOKEN`),
/// Draupnir's rejected body (`M_INVALID_PARAM`), the other request and token errors of the
/// Matrix spec, and `M_UNKNOWN` (a server error; synapse-http-antispam's own "Failed to
/// connect").
pub const DEFAULT_FAILURE_ERRCODES: &[&str] = &[
    errcodes::M_NOT_FOUND,
    errcodes::M_NOT_JSON,
    errcodes::M_BAD_JSON,
    "M_INVALID_PARAM",
    errcodes::M_MISSING_PARAM,
    errcodes::M_UNKNOWN_TOKEN,
    errcodes::M_MISSING_TOKEN,
    errcodes::M_UNRECOGNIZED,
    errcodes::M_UNKNOWN,
];

/// The largest answer read, in bytes (answers are `{}` or a short error).
const MAX_ANSWER_BYTES: usize = 64 * 1024;
/// The largest token file read, in bytes.
const MAX_TOKEN_FILE_BYTES: u64 = 64 * 1024;
/// Background posts one instance keeps in flight; past it they are dropped (and logged), so a
/// server that hangs cannot make glia pile up requests.
const MAX_BACKGROUND: usize = 1024;
/// How often the start-up ping is retried, as the module retries it.
const PING_RETRY: Duration = Duration::from_secs(5);

/// The synapse-http-antispam client module.
pub struct HttpAntispam;

/// `http_antispam`'s checked config.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpAntispamConfig {
    /// Requests go to `{base_url}/{callback}` (a trailing `/` is dropped).
    pub base_url: String,
    /// The bearer token.
    pub token: Option<String>,
    /// The callbacks to register, in config order.
    pub callbacks: Vec<Callback>,
    /// The callbacks answered at once and posted in the background.
    pub background: Vec<Callback>,
    /// Ping the server when an instance starts.
    pub do_ping: bool,
    /// Errcodes that are failures, not denies.
    pub failure_errcodes: Vec<String>,
    /// How long one HTTP request may take.
    pub timeout: Duration,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    base_url: String,
    #[serde(default)]
    authorization: Option<String>,
    #[serde(default)]
    authorization_path: Option<String>,
    enabled_callbacks: Vec<String>,
    #[serde(default, rename = "async")]
    background: Option<Background>,
    #[serde(default)]
    do_ping: bool,
    #[serde(default)]
    failure_errcodes: Option<Vec<String>>,
    #[serde(default = "default_timeout_ms")]
    timeout_ms: u64,
}

/// `async` as a list of callbacks, or as the module's mapping of callback to boolean.
#[derive(Deserialize)]
#[serde(untagged)]
enum Background {
    List(Vec<String>),
    Map(BTreeMap<String, bool>),
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn key(name: &str) -> ConfigPath {
    ConfigPath::root().key(name)
}

impl Module for HttpAntispam {
    const NAME: &'static str = "http_antispam";
    type Config = HttpAntispamConfig;

    fn parse_config(config: &Value) -> Result<HttpAntispamConfig, ConfigError> {
        if config.get("fail_open").is_some() {
            return Err(ConfigError::at_path(
                key("fail_open"),
                "glia's failure policy replaces fail_open: give this module's entry \
                 `failure_policy: {default: allow}` (fail open) or `deny`, per callback if need be",
            ));
        }
        let raw: RawConfig = glia_module_api::from_config(config)?;
        common::check_http_url(&raw.base_url)
            .map_err(|m| ConfigError::at_path(key("base_url"), m))?;
        let token = match (raw.authorization, raw.authorization_path) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::at_path(
                    key("authorization_path"),
                    "give authorization or authorization_path, not both",
                ))
            }
            (Some(token), None) => Some(check_token(key("authorization"), token)?),
            (None, Some(path)) => Some(read_token(&path)?),
            (None, None) => None,
        };
        let callbacks = parse_callbacks(&raw.enabled_callbacks)?;
        let background = match raw.background {
            None => Vec::new(),
            Some(Background::List(names)) => names
                .iter()
                .enumerate()
                .map(|(i, name)| enabled(&callbacks, key("async").index(i), name))
                .collect::<Result<_, _>>()?,
            Some(Background::Map(names)) => names
                .iter()
                .filter(|(_, on)| **on)
                .map(|(name, _)| enabled(&callbacks, key("async").key(name), name))
                .collect::<Result<_, _>>()?,
        };
        let failure_errcodes = match raw.failure_errcodes {
            None => DEFAULT_FAILURE_ERRCODES
                .iter()
                .map(|c| c.to_string())
                .collect(),
            Some(codes) => {
                if let Some(i) = codes.iter().position(|c| c.trim().is_empty()) {
                    return Err(ConfigError::at_path(
                        common::item("failure_errcodes", i),
                        "an errcode cannot be empty",
                    ));
                }
                codes
            }
        };
        if raw.timeout_ms == 0 {
            return Err(ConfigError::at("timeout_ms", "must be positive"));
        }
        Ok(HttpAntispamConfig {
            base_url: raw.base_url.trim_end_matches('/').to_owned(),
            token,
            callbacks,
            background,
            do_ping: raw.do_ping,
            failure_errcodes,
            timeout: Duration::from_millis(raw.timeout_ms),
        })
    }

    fn new(config: HttpAntispamConfig, api: &mut ModuleApi) -> Result<Self, ModuleError> {
        let server = Rc::new(Server {
            name: api.module_name().to_owned(),
            authorization: config.token.as_ref().map(|t| format!("Bearer {t}")),
            config,
            client: OnceCell::new(),
            in_background: Rc::new(Cell::new(0)),
        });
        for &callback in &server.config.callbacks {
            let server = server.clone();
            api.register_erased(
                callback,
                ErasedHandler::new(move |request| server.clone().ask(request)),
            )?;
        }
        if server.config.do_ping {
            actix_rt::spawn(ping(Rc::downgrade(&server)));
        }
        Ok(HttpAntispam)
    }
}

/// The callbacks named in `enabled_callbacks`: each once, each one the protocol has.
fn parse_callbacks(names: &[String]) -> Result<Vec<Callback>, ConfigError> {
    let mut callbacks = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let path = common::item("enabled_callbacks", i);
        let callback = name
            .parse::<Callback>()
            .ok()
            .filter(|c| http_antispam::CALLBACKS.contains(c))
            .ok_or_else(|| {
                let known: Vec<&str> = http_antispam::CALLBACKS.iter().map(|c| c.name()).collect();
                let why = if name == "accept_make_join" {
                    " (a callback of maunium's Synapse fork only, which glia does not have)"
                } else {
                    ""
                };
                ConfigError::at_path(
                    path.clone(),
                    format!(
                        "{name:?} is not a callback synapse-http-antispam forwards{why}; \
                         known: {}",
                        known.join(", ")
                    ),
                )
            })?;
        if callbacks.contains(&callback) {
            return Err(ConfigError::at_path(
                path,
                format!("{name} is listed twice"),
            ));
        }
        callbacks.push(callback);
    }
    if callbacks.is_empty() {
        return Err(ConfigError::at(
            "enabled_callbacks",
            "list at least one callback",
        ));
    }
    Ok(callbacks)
}

/// `name`, which must be one of the enabled `callbacks`.
fn enabled(callbacks: &[Callback], path: ConfigPath, name: &str) -> Result<Callback, ConfigError> {
    name.parse::<Callback>()
        .ok()
        .filter(|c| callbacks.contains(c))
        .ok_or_else(|| ConfigError::at_path(path, format!("{name:?} is not in enabled_callbacks")))
}

/// A token that fits in an `Authorization` header.
fn check_token(path: ConfigPath, token: String) -> Result<String, ConfigError> {
    if token.is_empty() {
        return Err(ConfigError::at_path(path, "the token is empty"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::at_path(
            path,
            "the token must be visible ASCII (it is sent in an Authorization header)",
        ));
    }
    Ok(token)
}

/// The token in the file at `path`, trimmed: a regular file, of a sensible size.
fn read_token(path: &str) -> Result<String, ConfigError> {
    let at = || key("authorization_path");
    let text = glia_module_api::files::read_text(std::path::Path::new(path), MAX_TOKEN_FILE_BYTES)
        .map_err(|e| ConfigError::at_path(at(), format!("cannot read {path:?}: {e}")))?;
    check_token(at(), text.trim().to_owned())
        .map_err(|e| ConfigError::at_path(at(), format!("{path:?}: {}", e.message)))
}

/// One instance's server, client and settings, shared by its handlers.
struct Server {
    /// The instance's name in the config, for messages.
    name: String,
    config: HttpAntispamConfig,
    /// `Bearer <token>`.
    authorization: Option<String>,
    /// Made on first use, on the instance's own thread.
    client: OnceCell<awc::Client>,
    /// Background posts in flight.
    in_background: Rc<Cell<usize>>,
}

impl Server {
    /// Asks the server about `request`, or, for a background callback, answers `NOT_SPAM` and
    /// posts it without waiting.
    fn ask(self: Rc<Self>, request: &CallbackRequest) -> ErasedFuture {
        let callback = request.callback();
        let Some(body) = http_antispam::body(request) else {
            return future::ready(Err(InvocationError::InvalidAnswer {
                detail: format!("http_antispam {}: cannot send {callback}", self.name),
            }))
            .boxed_local();
        };
        let url = format!("{}/{}", self.config.base_url, callback.name());
        if self.config.background.contains(&callback) {
            self.post_in_background(url, body);
            return future::ready(answer(callback, None)).boxed_local();
        }
        async move {
            let (status, bytes) = self
                .post(&url, &body)
                .await
                .map_err(|e| self.failed(&url, e))?;
            match http_antispam::verdict(status.as_u16(), &bytes, &self.config.failure_errcodes) {
                Verdict::Allow => answer(callback, None),
                Verdict::Deny(code) => answer(callback, Some(code)),
                Verdict::Failure(why) => Err(self.failed(&url, why)),
            }
        }
        .boxed_local()
    }

    async fn post(
        &self,
        url: &str,
        body: &Value,
    ) -> Result<(awc::http::StatusCode, bytes::Bytes), String> {
        let client = self.client.get_or_init(awc::Client::default);
        let mut headers = vec![
            ("accept", "application/json"),
            ("user-agent", concat!("glia/", env!("CARGO_PKG_VERSION"))),
        ];
        if let Some(authorization) = &self.authorization {
            headers.push(("authorization", authorization));
        }
        common::post_json(
            client,
            url,
            &headers,
            body,
            self.config.timeout,
            MAX_ANSWER_BYTES,
        )
        .await
    }

    fn failed(&self, url: &str, why: String) -> InvocationError {
        ModuleError::failed(format!("http_antispam {}: POST {url}: {why}", self.name)).into()
    }

    /// Posts `body` without waiting for the answer (the module's `async`), unless too many
    /// such posts are in flight already.
    fn post_in_background(self: Rc<Self>, url: String, body: Value) {
        let in_flight = self.in_background.get();
        if in_flight >= MAX_BACKGROUND {
            tracing::warn!(module = %self.name, "{in_flight} background posts in flight; not posting to {url}");
            return;
        }
        self.in_background.set(in_flight + 1);
        actix_rt::spawn(async move {
            let outcome = match self.post(&url, &body).await {
                Ok((status, bytes)) => {
                    match http_antispam::verdict(
                        status.as_u16(),
                        &bytes,
                        &self.config.failure_errcodes,
                    ) {
                        Verdict::Failure(why) => Err(why),
                        Verdict::Allow | Verdict::Deny(_) => Ok(()),
                    }
                }
                Err(e) => Err(e),
            };
            if let Err(why) = outcome {
                tracing::warn!(module = %self.name, "background POST {url}: {why}");
            }
            self.in_background.set(self.in_background.get() - 1);
        });
    }
}

/// The answer to `callback`: allow, or deny with `code`.
fn answer(callback: Callback, deny: Option<SpamCode>) -> Result<ModuleAnswer, InvocationError> {
    use ModuleAnswer as A;
    let denied = deny.is_some();
    let spam = deny.map_or(SpamAnswer::NOT_SPAM, SpamAnswer::Code);
    Ok(match callback {
        // Read by truthiness: a deny hides the user.
        Callback::CheckUsernameForSpam => A::CheckUsernameForSpam(TruthyAnswer::from(denied)),
        Callback::UserMayJoinRoom => A::UserMayJoinRoom(spam),
        Callback::UserMayInvite => A::UserMayInvite(spam),
        Callback::UserMaySend3pidInvite => A::UserMaySend3pidInvite(spam),
        Callback::UserMayCreateRoom => A::UserMayCreateRoom(spam),
        Callback::UserMayCreateRoomAlias => A::UserMayCreateRoomAlias(spam),
        Callback::UserMayPublishRoom => A::UserMayPublishRoom(spam),
        Callback::CheckLoginForSpam => A::CheckLoginForSpam(spam),
        Callback::CheckEventForSpam => A::CheckEventForSpam(spam),
        Callback::FederatedUserMayInvite => A::FederatedUserMayInvite(spam),
        other => {
            return Err(InvocationError::InvalidAnswer {
                detail: format!("http_antispam does not serve {other}"),
            })
        }
    })
}

/// The start-up ping: until the server echoes the id (every 5 s) or the instance is gone.
async fn ping(server: Weak<Server>) {
    loop {
        let Some(s) = server.upgrade() else {
            return;
        };
        let id: String = std::iter::repeat_with(fastrand::alphabetic)
            .take(8)
            .collect();
        let url = format!("{}/{}", s.config.base_url, http_antispam::PING);
        let problem = match s.post(&url, &json!({ "id": id })).await {
            Ok((status, body)) if status.is_success() => {
                match serde_json::from_slice::<Value>(&body) {
                    Ok(reply) if reply["id"] == id.as_str() && reply["status"] == "ok" => {
                        tracing::info!(module = %s.name, "pinged the antispam server at {url} (id {id})");
                        return;
                    }
                    _ => format!("unexpected answer {}", String::from_utf8_lossy(&body)),
                }
            }
            Ok((status, body)) => format!("answered {status} {}", String::from_utf8_lossy(&body)),
            Err(e) => e,
        };
        tracing::error!(module = %s.name, "ping of the antispam server failed (POST {url} with id {id}): {problem}; retrying in 5 s");
        drop(s);
        actix_rt::time::sleep(PING_RETRY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_config_error, build, callbacks};

    fn config(extra: Value) -> Value {
        let mut config = json!({
            "base_url": "http://127.0.0.1:1/_meowlnir/antispam/!mgmt:hs/",
            "enabled_callbacks": ["user_may_invite", "user_may_join_room"],
        });
        config
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        config
    }

    #[test]
    fn parses_the_modules_keys() {
        let parsed = HttpAntispam::parse_config(&config(json!({
            "authorization": "s3cret",
            "async": {"user_may_join_room": true, "user_may_invite": false},
            "do_ping": true,
        })))
        .unwrap();
        assert_eq!(
            parsed.base_url,
            "http://127.0.0.1:1/_meowlnir/antispam/!mgmt:hs"
        );
        assert_eq!(parsed.token.as_deref(), Some("s3cret"));
        assert_eq!(
            parsed.callbacks,
            [Callback::UserMayInvite, Callback::UserMayJoinRoom]
        );
        assert_eq!(parsed.background, [Callback::UserMayJoinRoom]);
        assert!(parsed.do_ping);
        assert!(parsed.failure_errcodes.iter().any(|c| c == "M_NOT_FOUND"));
        assert_eq!(parsed.timeout, Duration::from_secs(10));
        let listed = HttpAntispam::parse_config(&config(json!({"async": ["user_may_join_room"]})));
        assert_eq!(listed.unwrap().background, [Callback::UserMayJoinRoom]);
    }

    #[test]
    fn registers_the_enabled_callbacks_in_order() {
        let regs = build::<HttpAntispam>(config(json!({})));
        assert_eq!(
            callbacks(&regs),
            [Callback::UserMayInvite, Callback::UserMayJoinRoom]
        );
    }

    #[test]
    fn reads_the_token_from_a_file_trimmed() {
        let path = std::env::temp_dir().join(format!("glia-antispam-token-{}", std::process::id()));
        std::fs::write(&path, "  file-token\n").unwrap();
        let parsed =
            HttpAntispam::parse_config(&config(json!({"authorization_path": path}))).unwrap();
        assert_eq!(parsed.token.as_deref(), Some("file-token"));
        std::fs::write(&path, "\n").unwrap();
        assert_config_error::<HttpAntispam>(
            config(json!({"authorization_path": path})),
            "authorization_path",
            &["the token is empty"],
        );
        std::fs::remove_file(&path).unwrap();
        assert_config_error::<HttpAntispam>(
            config(json!({"authorization_path": path})),
            "authorization_path",
            &["cannot read"],
        );
        assert_config_error::<HttpAntispam>(
            config(json!({"authorization_path": std::env::temp_dir()})),
            "authorization_path",
            &["not a regular file"],
        );
    }

    #[test]
    fn config_errors_name_the_key() {
        assert_config_error::<HttpAntispam>(json!({}), "", &["missing field", "base_url"]);
        assert_config_error::<HttpAntispam>(
            config(json!({"base_url": "https://meowlnir"})),
            "base_url",
            &["https is not supported"],
        );
        assert_config_error::<HttpAntispam>(
            config(json!({"fail_open": {"user_may_invite": true}})),
            "fail_open",
            &["failure_policy"],
        );
        assert_config_error::<HttpAntispam>(
            config(json!({"enabled_callbacks": ["user_may_invite", "accept_make_join"]})),
            "enabled_callbacks[1]",
            &["maunium's Synapse fork", "known: user_may_join_room"],
        );
        assert_config_error::<HttpAntispam>(
            config(json!({"enabled_callbacks": ["check_media_file_for_spam"]})),
            "enabled_callbacks[0]",
            &["not a callback synapse-http-antispam forwards"],
        );
        assert_config_error::<HttpAntispam>(
            config(json!({"enabled_callbacks": ["user_may_invite", "user_may_invite"]})),
            "enabled_callbacks[1]",
            &["listed twice"],
        );
        assert_config_error::<HttpAntispam>(
            config(json!({"enabled_callbacks": []})),
            "enabled_callbacks",
            &["at least one"],
        );
        assert_config_error::<HttpAntispam>(
            config(json!({"async": ["check_event_for_spam"]})),
            "async[0]",
            &["not in enabled_callbacks"],
        );
        assert_config_error::<HttpAntispam>(
            config(json!({"async": {"check_event_for_spam": true}})),
            "async.check_event_for_spam",
            &["not in enabled_callbacks"],
        );
        assert_config_error::<HttpAntispam>(
            config(json!({"authorization": "a", "authorization_path": "/x"})),
            "authorization_path",
            &["not both"],
        );
        assert_config_error::<HttpAntispam>(
            config(json!({"authorization": "two words"})),
            "authorization",
            &["visible ASCII"],
        );
        assert_config_error::<HttpAntispam>(
            config(json!({"failure_errcodes": ["M_NOT_FOUND", " "]})),
            "failure_errcodes[1]",
            &["empty"],
        );
        assert_config_error::<HttpAntispam>(
            config(json!({"timeout_ms": 0})),
            "timeout_ms",
            &["must be positive"],
        );
        assert_config_error::<HttpAntispam>(
            config(json!({"timeout": "5s"})),
            "timeout",
            &["unknown field"],
        );
    }

    #[test]
    fn answers_allow_and_deny_in_each_callbacks_terms() {
        let code = || SpamCode {
            errcode: "M_FORBIDDEN".into(),
            fields: Some(Default::default()),
        };
        for &callback in http_antispam::CALLBACKS {
            let allowed = answer(callback, None).unwrap();
            let denied = answer(callback, Some(code())).unwrap();
            assert_eq!(allowed.callback(), callback);
            assert_eq!(denied.callback(), callback);
        }
        assert_eq!(
            answer(Callback::CheckUsernameForSpam, Some(code())).unwrap(),
            ModuleAnswer::CheckUsernameForSpam(TruthyAnswer::from(true))
        );
        assert_eq!(
            answer(Callback::UserMayInvite, None).unwrap(),
            ModuleAnswer::UserMayInvite(SpamAnswer::NOT_SPAM)
        );
        assert!(answer(Callback::OnNewEvent, None).is_err());
    }
}
