//! `GET /health`, `GET /_glia/v1/modules`, `GET /metrics` and
//! `POST /_glia/v1/admin/reload`.

use super::auth::Authorized;
use super::errors::MatrixError;
use super::state::AppState;
use crate::telemetry::Telemetry;
use actix_web::{web, HttpResponse};
use glia_bus_schema::errcodes::{M_NOT_FOUND, M_UNKNOWN};

/// Where the module listing is served.
pub const MODULES: &str = "/_glia/v1/modules";
/// Where a reload is asked for.
pub const RELOAD: &str = "/_glia/v1/admin/reload";

/// Liveness: 200 while glia serves; `"status": "degraded"` when a module is failed (listed in
/// `failed`), a module placed on NATS has no worker (listed in `unserved`), or NATS is down;
/// `"ok"` otherwise.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let failed = state.glia.failed_modules();
    let unserved = state.glia.unserved_modules().await;
    let bus = match state.glia.bus_connected() {
        None => "internal",
        Some(true) => "connected",
        Some(false) => "disconnected",
    };
    let degraded = !failed.is_empty() || !unserved.is_empty() || bus == "disconnected";
    HttpResponse::Ok().json(serde_json::json!({
        "status": if degraded { "degraded" } else { "ok" },
        "modules": state.glia.config().modules.len(),
        "failed": failed,
        "unserved": unserved,
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

/// Re-reads the config file and applies it, as SIGHUP does, and answers what changed: the
/// modules started, replaced, stopped and kept, and the settings that need a restart; or,
/// when the new config is refused (nothing changed), why.
pub async fn reload(
    _auth: Authorized,
    state: web::Data<AppState>,
) -> Result<HttpResponse, MatrixError> {
    match state.glia.reload().await {
        Ok(report) => Ok(HttpResponse::Ok().json(report)),
        Err(e) => Err(MatrixError::new(
            if e.shutting_down { 503 } else { 400 },
            M_UNKNOWN,
            format!("config reload refused, nothing changed: {}", e.message),
        )),
    }
}

/// Prometheus metrics in the text exposition format. Like `/health` it needs no token: it
/// carries counts by module, callback and outcome, no user data.
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, MatrixError> {
    metrics_of(state.glia.telemetry().as_ref())
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
