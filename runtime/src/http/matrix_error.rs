//! The error every route of the HTTP API answers with: Matrix JSON,
//! `{"errcode": ..., "error": ...}`, with a 4xx or 5xx status; or, where a JSON error would be
//! read as a decision (the synapse-http-antispam ingress), the same error in plain text.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use std::fmt;

/// A Matrix-style error response.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixError {
    /// HTTP status.
    pub status: u16,
    /// Matrix errcode.
    pub errcode: &'static str,
    /// Message.
    pub error: String,
}

impl MatrixError {
    /// An error with this status, errcode and message.
    pub fn new(status: u16, errcode: &'static str, error: impl Into<String>) -> Self {
        MatrixError {
            status,
            errcode,
            error: error.into(),
        }
    }
}

impl MatrixError {
    /// `{"errcode": ..., "error": ...}`.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({ "errcode": self.errcode, "error": self.error })
    }

    /// `ERRCODE: error`.
    pub fn plain(&self) -> String {
        format!("{}: {}", self.errcode, self.error)
    }
}

impl fmt::Display for MatrixError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.errcode, self.error)
    }
}

impl ResponseError for MatrixError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self.json())
    }
}

impl From<crate::coordinator::DispatchError> for MatrixError {
    fn from(e: crate::coordinator::DispatchError) -> Self {
        MatrixError::new(e.status, e.errcode, e.error)
    }
}

/// The content type of [`PlainText`] answers.
pub const PLAIN_TEXT: &str = "text/plain; charset=utf-8";

/// A [`MatrixError`] answered in plain text (`M_UNKNOWN_TOKEN: ...`) with its status.
#[derive(Debug, Clone, PartialEq)]
pub struct PlainText(pub MatrixError);

impl fmt::Display for PlainText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl ResponseError for PlainText {
    fn status_code(&self) -> StatusCode {
        self.0.status_code()
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code())
            .content_type(PLAIN_TEXT)
            .body(self.0.plain())
    }
}

/// glia's own error behind an answer (`HttpResponse::from_error`, or a handler's `Err`), in
/// JSON or in plain text; `None` for actix-web's errors and for answers without an error.
pub fn glias(error: &actix_web::Error) -> Option<&MatrixError> {
    error
        .as_error::<MatrixError>()
        .or_else(|| error.as_error::<PlainText>().map(|p| &p.0))
}
