//! The error every route of the HTTP API answers with: Matrix JSON,
//! `{"errcode": ..., "error": ...}`, with a 4xx or 5xx status.

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
        HttpResponse::build(self.status_code())
            .json(serde_json::json!({ "errcode": self.errcode, "error": self.error }))
    }
}

impl From<crate::coordinator::DispatchError> for MatrixError {
    fn from(e: crate::coordinator::DispatchError) -> Self {
        MatrixError::new(e.status, e.errcode, e.error)
    }
}
