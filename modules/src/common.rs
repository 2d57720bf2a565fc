//! Helpers the built-in modules share: config parsing and checks, web responses, the clock.

use glia_bus_schema::errcodes;
use glia_module_api::{ConfigError, ConfigPath, WebRequest, WebResponse};
use regex::{Regex, RegexBuilder};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// "a string", "an array", ...: what kind of JSON value `v` is, for messages.
pub(crate) fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The path `key[index]`.
pub(crate) fn item(key: &str, index: usize) -> ConfigPath {
    ConfigPath::root().key(key).index(index)
}

/// Checks that `id` looks like a Matrix user id, `@localpart:server`.
pub(crate) fn check_user_id(path: ConfigPath, id: &str) -> Result<(), ConfigError> {
    let ok = id
        .strip_prefix('@')
        .and_then(|rest| rest.split_once(':'))
        .is_some_and(|(local, server)| !local.is_empty() && !server.is_empty());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::at_path(
            path,
            format!("{id:?} is not a user id (expected @localpart:server)"),
        ))
    }
}

/// Compiles `pattern`; with `whole`, it must match the whole text (`^(?:pattern)$`).
pub(crate) fn compile_regex(
    path: ConfigPath,
    pattern: &str,
    whole: bool,
    case_insensitive: bool,
) -> Result<Regex, ConfigError> {
    let build = |p: &str| {
        RegexBuilder::new(p)
            .case_insensitive(case_insensitive)
            .build()
    };
    // Compile the pattern as written first, so that `a)|(b` is refused rather than being made
    // valid by the anchoring group.
    let plain = build(pattern).map_err(|e| {
        ConfigError::at_path(
            path.clone(),
            format!("invalid regex {pattern:?}: {}", regex_error(&e)),
        )
    })?;
    if !whole {
        return Ok(plain);
    }
    build(&format!("^(?:{pattern})$")).map_err(|e| {
        ConfigError::at_path(
            path,
            format!("invalid regex {pattern:?}: {}", regex_error(&e)),
        )
    })
}

/// The one line of a regex error that says what is wrong.
fn regex_error(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => text
            .lines()
            .find_map(|l| l.trim().strip_prefix("error: "))
            .unwrap_or(text)
            .to_owned(),
        regex::Error::CompiledTooBig(limit) => {
            format!("compiled regex exceeds the size limit of {limit} bytes")
        }
        other => other.to_string(),
    }
}

/// A Matrix-style JSON error response.
pub(crate) fn json_error(status: u16, errcode: &str, error: impl Into<String>) -> WebResponse {
    WebResponse::json(status, &json!({"errcode": errcode, "error": error.into()}))
}

/// `Err(405)` unless the request is a `GET` (or `HEAD`, which Twisted serves as `GET`).
pub(crate) fn require_get(req: &WebRequest) -> Result<(), WebResponse> {
    if req.method.eq_ignore_ascii_case("GET") || req.method.eq_ignore_ascii_case("HEAD") {
        Ok(())
    } else {
        Err(json_error(
            405,
            errcodes::M_UNRECOGNIZED,
            format!("method {} is not allowed here; use GET", req.method),
        ))
    }
}

/// The query parameter `name`, or a 400 `M_MISSING_PARAM` response.
pub(crate) fn require_param(req: &WebRequest, name: &str) -> Result<String, WebResponse> {
    req.query_param(name).ok_or_else(|| {
        json_error(
            400,
            errcodes::M_MISSING_PARAM,
            format!("missing query parameter '{name}'"),
        )
    })
}

/// Checks that `url` is an absolute `http://` URL with a host. `https://` is refused: glia's
/// HTTP client is built without TLS.
pub(crate) fn check_http_url(url: &str) -> Result<(), String> {
    let uri: awc::http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "{url:?}: https is not supported (glia's HTTP client is built without TLS); \
                 use an http:// URL"
            ))
        }
        Some(other) => return Err(format!("{url:?}: scheme {other:?} is not http")),
        None => return Err(format!("{url:?} is not an absolute http:// URL")),
    }
    match uri.host() {
        Some(host) if !host.is_empty() => Ok(()),
        _ => Err(format!("{url:?} has no host")),
    }
}

/// POSTs `body` as JSON to `url` with extra `headers`, all within `timeout`; returns the
/// status and up to `limit` bytes of the answer, or what went wrong.
pub(crate) async fn post_json(
    client: &awc::Client,
    url: &str,
    headers: &[(&str, &str)],
    body: &impl serde::Serialize,
    timeout: Duration,
    limit: usize,
) -> Result<(awc::http::StatusCode, bytes::Bytes), String> {
    let mut request = client.post(url).timeout(timeout);
    for header in headers {
        request = request.insert_header(*header);
    }
    let mut response = request.send_json(body).await.map_err(|e| match e {
        awc::error::SendRequestError::Timeout => {
            format!("timed out after {} ms", timeout.as_millis())
        }
        other => format!("request failed: {other}"),
    })?;
    let body = response
        .body()
        .limit(limit)
        .await
        .map_err(|e| format!("reading the answer failed: {e}"))?;
    Ok((response.status(), body))
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_errors_are_one_line_and_anchoring_does_not_rescue_bad_patterns() {
        let err = compile_regex(item("rules", 0).key("match"), "(foo", true, false).unwrap_err();
        assert_eq!(err.path.to_string(), "rules[0].match");
        assert_eq!(err.message, "invalid regex \"(foo\": unclosed group");
        let err = compile_regex(ConfigPath::root().key("m"), "a)|(b", true, false).unwrap_err();
        assert!(err.message.starts_with("invalid regex \"a)|(b\""), "{err}");
        let re = compile_regex(ConfigPath::root(), "ab", true, true).unwrap();
        assert!(re.is_match("AB") && !re.is_match("xab"));
    }

    #[test]
    fn user_ids_are_checked() {
        assert!(check_user_id(ConfigPath::root(), "@a:b").is_ok());
        for bad in ["a:b", "@:b", "@a:", "@ab"] {
            let err = check_user_id(item("users", 3), bad).unwrap_err();
            assert_eq!(err.path.to_string(), "users[3]");
            assert!(err.message.contains("not a user id"), "{err}");
        }
    }
}
