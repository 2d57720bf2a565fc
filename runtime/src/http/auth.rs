//! The bearer-token check, as an extractor: a handler that takes `Authorized` only runs for
//! callers that presented the configured token.

use super::errors::MatrixError;
use super::state::AppState;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use glia_bus_schema::errcodes::{M_MISSING_TOKEN, M_UNKNOWN_TOKEN};
use std::future::{ready, Ready};

/// Proof that the request carried the right bearer token (or that none is configured).
pub struct Authorized;

impl FromRequest for Authorized {
    type Error = MatrixError;
    type Future = Ready<Result<Self, MatrixError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<web::Data<AppState>>() else {
            return ready(Ok(Authorized));
        };
        // Read at each request: a reload may change the token.
        let config = state.glia.config();
        let Some(expected) = config.auth_token.as_deref() else {
            return ready(Ok(Authorized));
        };
        let presented = req
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token);
        ready(match presented {
            None => Err(MatrixError::new(
                401,
                M_MISSING_TOKEN,
                "Missing access token",
            )),
            Some(token) if constant_time_eq(token.as_bytes(), expected.as_bytes()) => {
                Ok(Authorized)
            }
            Some(_) => Err(MatrixError::new(
                403,
                M_UNKNOWN_TOKEN,
                "Unrecognised access token",
            )),
        })
    }
}

/// The token of an `Authorization: Bearer TOKEN` header. The scheme is case-insensitive
/// (RFC 7235 §2.1), so `bearer` and `BEARER` are the same scheme.
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.split_once(' ')?;
    let token = token.trim_start_matches(' ');
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Compares without leaking where the first difference is.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_scheme_is_case_insensitive() {
        for header in ["Bearer t0k", "bearer t0k", "BEARER t0k", "bEaReR   t0k"] {
            assert_eq!(bearer_token(header), Some("t0k"), "{header:?}");
        }
        for header in [
            "t0k",
            "Basic t0k",
            "Bearer",
            "Bearer ",
            "Bearert0k",
            "Bearer\tt0k",
        ] {
            assert_eq!(bearer_token(header), None, "{header:?}");
        }
    }
}
