//! Where the synapse-http-antispam ingress is served, which callback a path below it names,
//! and how it answers what it cannot decide: in plain text, which the module reads as "cannot
//! decide" (any JSON error is a deny to it). The error layer asks here, for answers it gives
//! before any handler.

use super::matrix_error::{MatrixError, PlainText};
use actix_web::HttpResponse;
use glia_bus_schema::errcodes::M_UNRECOGNIZED;

/// Where the ingress is served; `{callback}` follows.
pub const PREFIX: &str = "/_glia/v1/http-antispam/";

/// The ingress's scope: [`PREFIX`] without its final slash.
pub const SCOPE: &str = "/_glia/v1/http-antispam";

/// The ingress's route, as logs and metrics name it.
pub const ROUTE: &str = "http_antispam";

/// Whether the ingress serves `path` (so its errors are answered as [`cannot_decide`] does):
/// the scope itself and every path below it.
pub fn serves(path: &str) -> bool {
    path == SCOPE || path.starts_with(PREFIX)
}

/// The callback (or `ping`) that `rest`, the path below [`SCOPE`], names. The module posts to
/// `f"{base_url}/{callback}"`, so a `base_url` ending in `/` or `/.` puts an empty or a `.`
/// segment before the name: those segments, like a trailing slash, are skipped. What is left
/// must be one name of lower-case letters, digits and `_` (the module's method names); `..`, a
/// path of two names or none, and anything percent-encoded name nothing.
pub fn callback_name(rest: &str) -> Option<&str> {
    let mut names = rest.split('/').filter(|s| !s.is_empty() && *s != ".");
    let name = names.next()?;
    let is_name = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    (is_name && names.next().is_none()).then_some(name)
}

/// The error as plain text (`M_UNKNOWN_TOKEN: ...`), with its status: not JSON, so the module
/// applies its `fail_open` instead of denying. The answer carries the error, so the refusal
/// layer counts it.
pub fn cannot_decide(e: MatrixError) -> HttpResponse {
    HttpResponse::from_error(PlainText(e))
}

/// A path below the ingress that names no callback: a base URL the module cannot have been
/// given for glia, answered so that its `fail_open` applies.
pub fn unroutable() -> HttpResponse {
    cannot_decide(MatrixError::new(
        404,
        M_UNRECOGNIZED,
        format!(
            "no synapse-http-antispam callback at this path: point the module's base_url at \
             {SCOPE} (a trailing slash is fine)"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_and_dot_segments_and_a_trailing_slash_are_skipped() {
        for rest in [
            "/ping",
            "//ping",
            "/./ping",
            "/ping/",
            "/.//./ping//",
            "ping",
        ] {
            assert_eq!(callback_name(rest), Some("ping"), "{rest:?}");
        }
        for rest in [
            "",
            "/",
            "//",
            "/.",
            "/..",
            "/a/../ping",
            "/../ping",
            "/x/ping",
            "/ping/x",
            "/Ping",
            "/pi%6Eg",
            "/pi ng",
        ] {
            assert_eq!(callback_name(rest), None, "{rest:?}");
        }
    }

    #[test]
    fn the_scope_and_every_path_below_it_are_served() {
        assert!(serves(SCOPE));
        assert!(serves("/_glia/v1/http-antispam/"));
        assert!(serves("/_glia/v1/http-antispam//x"));
        assert!(!serves("/_glia/v1/http-antispamx"));
        assert!(!serves("/_glia/v1/callbacks/x"));
    }
}
