//! Every request glia refuses (answers with one of its own errors, asking no module: a missing
//! token, a body it cannot read, an unknown path, a shutdown), counted and logged in one place:
//! a layer that reads glia's error off each answer. Each is counted in
//! `glia_http_refused_total{route,status,reason}`; the log gets at most one line per route,
//! status and errcode every [`THROTTLE_PERIOD`], saying how many were left out since the last
//! one, so a client sending bad requests in a loop cannot flood it. Handlers only return
//! their errors.

use super::matrix_error::{self, MatrixError};
use super::state::AppState;
use super::{admin, antispam_paths, callbacks};
use crate::logging::THROTTLE_PERIOD;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpRequest};

/// The layer: counts and logs the answer if it carries glia's own error.
pub async fn layer(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let response = next.call(req).await?;
    if let Some(error) = response.response().error().and_then(matrix_error::glias) {
        let request_id = response
            .headers()
            .get(callbacks::REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok());
        record(response.request(), error, request_id);
    }
    Ok(response)
}

/// The route a path belongs to, as the metric and the log name it: a few fixed names, never
/// the path itself.
pub fn route_of(path: &str) -> &'static str {
    let below = |prefix: &str| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    };
    if antispam_paths::serves(path) {
        antispam_paths::ROUTE
    } else if below(callbacks::PREFIX) {
        "callbacks"
    } else if path == admin::MODULES {
        "modules"
    } else if path == admin::RELOAD {
        "reload"
    } else {
        "other"
    }
}

fn record(req: &HttpRequest, error: &MatrixError, request_id: Option<&str>) {
    let Some(state) = req.app_data::<web::Data<AppState>>() else {
        return;
    };
    let route = route_of(req.path());
    let status = actix_web::ResponseError::status_code(error);
    if let Some(metrics) = state.glia.telemetry().metrics() {
        metrics.http_refused(route, status.as_str(), error.errcode);
    }
    let Some(left_out) = state
        .log_throttle
        .admit((route, status.as_u16(), error.errcode))
    else {
        return;
    };
    let what = if route == antispam_paths::ROUTE {
        "synapse-http-antispam request not decided (its fail_open applies)"
    } else {
        "request refused"
    };
    tracing::warn!(
        route = %route,
        status = status.as_u16(),
        reason = %error.errcode,
        request_id,
        path = ?shortened(req.path()),
        left_out,
        "{what}: {} (one line per route, status and reason every {} s at most; \
         glia_http_refused_total counts them all)",
        error.error,
        THROTTLE_PERIOD.as_secs(),
    );
}

/// `path`, cut after 200 bytes (a client chooses it).
fn shortened(path: &str) -> &str {
    let mut end = path.len().min(200);
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    &path[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_are_a_few_fixed_names() {
        for (path, route) in [
            ("/_glia/v1/http-antispam", "http_antispam"),
            ("/_glia/v1/http-antispam//ping", "http_antispam"),
            ("/_glia/v1/callbacks/user_may_invite", "callbacks"),
            ("/_glia/v1/callbacks", "callbacks"),
            ("/_glia/v1/callbacksx", "other"),
            ("/_glia/v1/modules", "modules"),
            ("/_glia/v1/admin/reload", "reload"),
            ("/_synapse/client/x", "other"),
            ("/health", "other"),
        ] {
            assert_eq!(route_of(path), route, "{path}");
        }
    }

    #[test]
    fn a_long_path_is_cut_on_a_character_boundary() {
        let path = format!("/{}", "é".repeat(300));
        let cut = shortened(&path);
        assert!(cut.len() <= 200 && path.starts_with(cut));
    }
}
