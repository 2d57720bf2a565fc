//! `GET /health`, `GET /_glia/v1/modules` and `GET /metrics`.

use super::auth::Authorized;
use super::errors::MatrixError;
use super::AppState;
use crate::telemetry::Telemetry;
use actix_web::{web, HttpResponse};
use glia_bus_schema::errcodes::M_NOT_FOUND;

/// Liveness: 200 while glia serves; `"status": "degraded"` (with the failed modules) when a
/// module is failed, `"ok"` otherwise.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let failed = state.glia.failed_modules();
    let bus = match state.glia.bus_connected() {
        None => "internal",
        Some(true) => "connected",
        Some(false) => "disconnected",
    };
    let degraded = !failed.is_empty() || bus == "disconnected";
    HttpResponse::Ok().json(serde_json::json!({
        "status": if degraded { "degraded" } else { "ok" },
        "modules": state.glia.config().modules.len(),
        "failed": failed,
        "bus": bus,
    }))
}

/// Each module (name, callbacks, state) and each callback's plan.
pub async fn modules(_auth: Authorized, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "modules": state.glia.modules(),
        "plans": state.glia.plan_listing(),
    }))
}

/// Prometheus metrics in the text exposition format. Like `/health` it needs no token: it
/// carries counts by module, callback and outcome, no user data.
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, MatrixError> {
    metrics_of(state.glia.telemetry())
}

/// The metrics of `telemetry` as a response, or 404 when they are off.
pub fn metrics_of(telemetry: &Telemetry) -> Result<HttpResponse, MatrixError> {
    let metrics = telemetry.metrics().ok_or_else(|| {
        MatrixError::new(
            404,
            M_NOT_FOUND,
            "metrics are off (telemetry.metrics.enabled: false)",
        )
    })?;
    Ok(HttpResponse::Ok()
        .content_type(prometheus::TEXT_FORMAT)
        .body(metrics.render()))
}
