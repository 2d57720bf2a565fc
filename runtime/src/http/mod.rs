//! The HTTP API (actix-web): one endpoint per callback, health and module listings, and the
//! modules' web resources, all answering errors as Matrix JSON; and the ingress for
//! synapse-http-antispam, which answers in that module's terms.

mod admin;
mod auth;
mod body;
mod callbacks;
mod errors;
mod http_antispam;
mod resources;
pub mod routes;

pub use errors::MatrixError;

use crate::app::Glia;
use actix_web::{web, App, HttpResponse, HttpServer};
use std::sync::Arc;

/// What every handler can reach.
pub struct AppState {
    /// The running glia.
    pub glia: Arc<Glia>,
    /// The bearer token callers must present, if any.
    pub auth_token: Option<String>,
    /// The largest body accepted.
    pub max_body_size: usize,
}

/// Adds glia's routes and the module web resources to an actix-web app.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(admin::health))
        .route("/_glia/v1/modules", web::get().to(admin::modules))
        .route("/metrics", web::get().to(admin::metrics))
        .route(
            "/_glia/v1/callbacks/{callback}",
            web::post().to(callbacks::dispatch),
        )
        .route(
            "/_glia/v1/callbacks/{callback}",
            web::route().to(errors::method_not_allowed),
        )
        .route(
            "/_glia/v1/http-antispam/{callback}",
            web::post().to(http_antispam::serve),
        )
        .route(
            "/_glia/v1/http-antispam/{callback}",
            web::route().to(http_antispam::method_not_allowed),
        )
        .default_service(web::to(resources::serve));
}

/// The app state for `glia`.
pub fn state(glia: Arc<Glia>) -> web::Data<AppState> {
    let config = glia.config();
    web::Data::new(AppState {
        auth_token: config.auth_token.clone(),
        max_body_size: config.max_body_size,
        glia,
    })
}

/// Serves only `GET /metrics` for `telemetry` on `listen` (what `glia worker` exposes).
pub fn serve_metrics(
    telemetry: Arc<crate::telemetry::Telemetry>,
    listen: &str,
) -> std::io::Result<Bound> {
    let telemetry = web::Data::from(telemetry);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(telemetry.clone())
            .route(
                "/metrics",
                web::get().to(|t: web::Data<crate::telemetry::Telemetry>| async move {
                    admin::metrics_of(&t)
                }),
            )
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(MatrixError::new(
                    404,
                    glia_bus_schema::errcodes::M_NOT_FOUND,
                    "Not found",
                ))
            }))
    })
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .bind(listen)?;
    let urls = urls(&server.addrs());
    Ok(Bound {
        server: server.run(),
        urls,
    })
}

/// Binds the HTTP server to `listen` and returns it, ready to be awaited. It does not handle
/// signals itself: the caller stops it (see `glia serve`), so shutdown can drain the modules.
pub fn serve(glia: Arc<Glia>, listen: &str) -> std::io::Result<Bound> {
    // In-flight requests answer within the grace period (then through their failure
    // policies); the server waits a little longer than that before it gives up on them.
    let timeout = glia.config().shutdown_grace.as_secs() + 5;
    let data = state(glia);
    let server = HttpServer::new(move || App::new().app_data(data.clone()).configure(configure))
        .disable_signals()
        .shutdown_timeout(timeout)
        .bind(listen)?;
    let urls = urls(&server.addrs());
    Ok(Bound {
        server: server.run(),
        urls,
    })
}

/// A bound server, running, and where it listens: with port 0 in `listen` the system picks
/// the port, so the log must say which.
pub struct Bound {
    /// The server, to be awaited.
    pub server: actix_web::dev::Server,
    /// The addresses it listens on, as `http://host:port`, comma-separated.
    pub urls: String,
}

fn urls(addrs: &[std::net::SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| format!("http://{a}"))
        .collect::<Vec<_>>()
        .join(", ")
}
