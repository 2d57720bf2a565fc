//! The HTTP API (actix-web): one endpoint per callback, health and module listings, and the
//! modules' web resources, all answering errors as Matrix JSON; the ingress for
//! synapse-http-antispam, which answers in that module's terms; and the bounds that keep
//! clients from holding glia's connections: a head timeout, a body deadline, a connection cap
//! under the open-file limit with a share per peer address, and a shutdown that answers
//! instead of dropping.

mod admin;
mod antispam_paths;
mod auth;
mod body;
mod body_deadline;
mod callbacks;
mod drain;
mod errors;
mod http_antispam;
mod limits;
mod matrix_error;
mod peers;
mod refusals;
mod resources;
pub mod routes;
mod service;
mod state;
mod unix;

pub use drain::GracefulStop;
pub use errors::MatrixError;
pub use limits::check_max_connections;
pub use service::{ReloadRefused, Service, WebTarget};
pub use state::AppState;

use crate::config::{Fault, GliaConfig};
use glia_module_api::ConfigPath;

/// What the HTTP server would refuse of `config` when it starts: a connection cap above what
/// the open-file limit allows, a `listen_unix` it cannot bind (see [`unix::check`]), a Unix
/// socket group the system does not know.
pub fn check(config: &GliaConfig) -> Result<(), Fault> {
    check_max_connections(config.max_connections)
        .map_err(|m| Fault::new(ConfigPath::root().key("max_connections"), m))?;
    if let Some(path) = &config.listen_unix {
        unix::check(path).map_err(|m| Fault::new(ConfigPath::root().key("listen_unix"), m))?;
    }
    if let Some(group) = &config.listen_unix_group {
        unix::group_id(group)
            .map_err(|m| Fault::new(ConfigPath::root().key("listen_unix_group"), m))?;
    }
    Ok(())
}

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpResponse, HttpServer};
use std::sync::Arc;
use std::time::Duration;

/// How long an idle connection is kept open for its next request (actix-web's default, set
/// here because shutdown waits this long for idle connections to close).
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Adds glia's routes and the module web resources to an actix-web app.
fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(admin::health))
        .route(admin::MODULES, web::get().to(admin::modules))
        .route("/metrics", web::get().to(admin::metrics))
        .route(admin::RELOAD, web::post().to(admin::reload))
        .route(admin::RELOAD, web::route().to(errors::method_not_allowed))
        .service(web::scope(callbacks::PREFIX).default_service(web::to(callbacks::route)))
        .service(web::scope(http_antispam::SCOPE).default_service(web::to(http_antispam::route)))
        .default_service(web::to(resources::serve));
}

/// The app state for `glia`.
fn state(glia: Arc<dyn Service>) -> web::Data<AppState> {
    let config = glia.config();
    web::Data::new(AppState {
        max_body_size: config.max_body_size,
        body_timeout: config.body_timeout,
        log_throttle: Default::default(),
        glia,
    })
}

/// A process's health as `GET /health` answers it (a worker's: see `Worker::health`).
pub type HealthFn =
    Arc<dyn Fn() -> futures::future::BoxFuture<'static, serde_json::Value> + Send + Sync>;

/// Serves `GET /metrics` for `telemetry` and `GET /health` from `health` on `listen` (what
/// `glia worker --metrics-listen` exposes).
pub fn serve_metrics(
    telemetry: Arc<crate::telemetry::Telemetry>,
    health: HealthFn,
    listen: &str,
) -> std::io::Result<Bound> {
    let telemetry = web::Data::from(telemetry);
    let health = web::Data::new(health);
    actix_http::h1::set_error_body(errors::parser_error_body);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(telemetry.clone())
            .app_data(health.clone())
            .route(
                "/metrics",
                web::get().to(|t: web::Data<crate::telemetry::Telemetry>| async move {
                    admin::metrics_of(&t)
                }),
            )
            .route(
                "/health",
                web::get().to(|h: web::Data<HealthFn>| async move {
                    HttpResponse::Ok().json((h.get_ref())().await)
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
    Ok(Bound::new(server.addrs(), server.run(), Default::default()))
}

/// Binds glia's HTTP server to `listen` (and to the config's `listen_unix` socket, if any)
/// and returns it, ready to be awaited, with `workers` threads (by default one per core). It
/// does not handle signals itself: the caller stops it (see `glia serve`), so shutdown can
/// drain the modules.
pub fn serve<S: Service>(
    glia: Arc<S>,
    listen: &str,
    workers: Option<usize>,
) -> std::io::Result<Bound> {
    let config = glia.config();
    let unix_socket = config.listen_unix.clone();
    // In-flight requests answer within the grace period (then through their failure
    // policies); the server waits a little longer than that before it gives up on them.
    let timeout = config.shutdown_grace.as_secs() + 5;
    let (workers, cap) = limits::workers_and_cap(
        workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from)),
        config.max_connections,
    );
    limits::raise_open_file_limit(config.max_connections);
    let header_timeout = config.header_timeout;
    // The parser's own answers (400, 431, 408) in glia's error format, once per process.
    actix_http::h1::set_error_body(errors::parser_error_body);
    let connections = Arc::new(drain::Connections::default());
    let counted = connections.clone();
    let peers = peers::Peers::new(config.max_connections_per_address, glia.telemetry().clone());
    let data = state(glia as Arc<dyn Service>);
    // Layers run outermost last: every refusal is counted and logged (the drain's own
    // included), the drain sees every request first, actix-web's own errors are made Matrix
    // JSON, and handlers read bodies under the deadline.
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .wrap(from_fn(body_deadline::layer))
            .wrap(from_fn(errors::layer))
            .wrap(from_fn(drain::layer))
            .wrap(from_fn(refusals::layer))
            .configure(configure)
    })
    .workers(workers)
    .max_connections(cap)
    .client_request_timeout(header_timeout)
    .keep_alive(KEEP_ALIVE)
    .on_connect(move |stream, data| {
        counted.opened(data);
        peers.admit(stream, data);
    })
    .disable_signals()
    .shutdown_timeout(timeout)
    .bind(listen)?;
    let addrs = server.addrs();
    warn_if_open(&addrs, config.auth_token.is_some());
    let server = match &unix_socket {
        Some(path) => server
            .bind_uds(unix::prepare(path)?)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?,
        None => server,
    };
    if let Some(path) = &unix_socket {
        unix::set_access(
            path,
            config.listen_unix_mode,
            config.listen_unix_group.as_deref(),
        )
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    }
    let mut bound = Bound::new(addrs, server.run(), connections);
    if let Some(path) = unix_socket {
        bound.urls.push_str(&format!(", unix:{}", path.display()));
    }
    Ok(bound)
}

/// Says loudly that the API is open to anyone who reaches it: it listens beyond loopback and
/// asks no token (the example config and the image's default do, until a token is set).
fn warn_if_open(addrs: &[std::net::SocketAddr], has_token: bool) {
    let exposed: Vec<String> = addrs
        .iter()
        .filter(|a| !a.ip().is_loopback())
        .map(ToString::to_string)
        .collect();
    if !has_token && !exposed.is_empty() {
        tracing::warn!(
            listen = %exposed.join(", "),
            "glia listens beyond loopback without an auth token: anyone who reaches it can ask \
             for decisions, list the modules and reload the config; set auth_token or \
             auth_token_file (and the bridge's glia_token)"
        );
    }
}

/// A bound server, running, and where it listens: with port 0 in `listen` the system picks
/// the port, so the log must say which.
pub struct Bound {
    /// The server, to be awaited.
    pub server: actix_web::dev::Server,
    /// The addresses it listens on, as `http://host:port`, comma-separated.
    pub urls: String,
    /// Stops it without dropping requests on open connections.
    pub stop: GracefulStop,
}

impl Bound {
    fn new(
        addrs: Vec<std::net::SocketAddr>,
        server: actix_web::dev::Server,
        connections: Arc<drain::Connections>,
    ) -> Bound {
        Bound {
            urls: urls(&addrs),
            stop: GracefulStop {
                handle: server.handle(),
                connections,
                keep_alive: KEEP_ALIVE,
            },
            server,
        }
    }
}

fn urls(addrs: &[std::net::SocketAddr]) -> String {
    addrs
        .iter()
        .map(|a| format!("http://{a}"))
        .collect::<Vec<_>>()
        .join(", ")
}
