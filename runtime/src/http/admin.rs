//! `GET /health` and `GET /_glia/v1/modules`.

use super::auth::Authorized;
use super::AppState;
use actix_web::{web, HttpResponse};

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
