//! Matrix errcodes glia produces or that Synapse's modules commonly use.

/// Generic denial.
pub const M_FORBIDDEN: &str = "M_FORBIDDEN";
/// Anything Synapse raises without its own code.
pub const M_UNKNOWN: &str = "M_UNKNOWN";
/// Unknown endpoint.
pub const M_NOT_FOUND: &str = "M_NOT_FOUND";
/// Malformed JSON or wrong field types.
pub const M_BAD_JSON: &str = "M_BAD_JSON";
/// Body is not JSON at all.
pub const M_NOT_JSON: &str = "M_NOT_JSON";
/// A required field is missing.
pub const M_MISSING_PARAM: &str = "M_MISSING_PARAM";
/// Request body too large.
pub const M_TOO_LARGE: &str = "M_TOO_LARGE";
/// No access token.
pub const M_MISSING_TOKEN: &str = "M_MISSING_TOKEN";
/// Wrong access token.
pub const M_UNKNOWN_TOKEN: &str = "M_UNKNOWN_TOKEN";
/// Expired account (account validity).
pub const ORG_MATRIX_EXPIRED_ACCOUNT: &str = "ORG_MATRIX_EXPIRED_ACCOUNT";
/// 3PID refused by `is_3pid_allowed`.
pub const M_THREEPID_DENIED: &str = "M_THREEPID_DENIED";
/// Rate limited.
pub const M_LIMIT_EXCEEDED: &str = "M_LIMIT_EXCEEDED";
/// Method not allowed on this path.
pub const M_UNRECOGNIZED: &str = "M_UNRECOGNIZED";
