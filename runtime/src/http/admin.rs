//! `GET /health` and `GET /_glia/v1/modules`.

use super::auth::Authorized;
use super::AppState;
use actix_web::{web, HttpResponse};

/// Liveness: 200 `{"status": "ok"}` while glia serves.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "ok",
        "modules": state.glia.modules().len(),
    }))
}

/// Each module (name, callbacks, state) and each callback's plan.
pub async fn modules(_auth: Authorized, state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({
        "modules": state.glia.modules(),
        "plans": state.glia.plan_listing(),
    }))
}
