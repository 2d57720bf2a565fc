//! Stopping the HTTP server without dropping requests. actix-web's graceful stop closes idle
//! kept-alive connections at once, so a request a client sends on one just then is lost
//! with the connection. Instead, when glia stops, connections already open keep being
//! answered, each answer carrying `Connection: close`; connections opened since are answered
//! 503 and closed; and the server itself stops once every connection has gone, or once the
//! keep-alive has expired for every idle one.

use super::errors::MatrixError;
use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Extensions, ServerHandle, ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::middleware::Next;
use glia_bus_schema::errcodes::M_UNKNOWN;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Whether the server is stopping, and how many connections are open.
#[derive(Debug, Default)]
pub struct Connections {
    stopping: AtomicBool,
    open: AtomicUsize,
}

/// Held by each connection (in its connection data) while it is open.
struct Open {
    connections: Arc<Connections>,
    opened_while_stopping: bool,
}

impl Drop for Open {
    fn drop(&mut self) {
        self.connections.open.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Connections {
    /// Counts a new connection (the server's `on_connect` hook).
    pub fn opened(self: &Arc<Self>, data: &mut Extensions) {
        self.open.fetch_add(1, Ordering::AcqRel);
        data.insert(Open {
            connections: self.clone(),
            opened_while_stopping: self.stopping.load(Ordering::Acquire),
        });
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }
}

/// The layer: while stopping, answers on old connections close them, and new connections
/// get 503 at once.
pub async fn layer(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let stopping = req
        .conn_data::<Open>()
        .filter(|open| open.connections.stopping.load(Ordering::Acquire))
        .map(|open| open.opened_while_stopping);
    let mut response = match stopping {
        None => {
            return next
                .call(req)
                .await
                .map(ServiceResponse::map_into_boxed_body)
        }
        Some(true) => {
            let refusal = MatrixError::new(503, M_UNKNOWN, "glia is shutting down");
            let answer = super::errors::response_for(req.path(), refusal);
            req.into_response(answer)
        }
        Some(false) => next.call(req).await?.map_into_boxed_body(),
    };
    response
        .response_mut()
        .head_mut()
        .set_connection_type(ConnectionType::Close);
    Ok(response)
}

/// Stops a server whose connections `connections` counts, as the module doc says.
pub struct GracefulStop {
    /// The server.
    pub handle: ServerHandle,
    /// Its connections.
    pub connections: Arc<Connections>,
    /// Its keep-alive: an idle connection is closed by then.
    pub keep_alive: Duration,
}

impl GracefulStop {
    /// From now on, answers close their connections and new connections are refused 503.
    pub fn begin(&self) {
        self.connections.stopping.store(true, Ordering::Release);
    }

    /// [`begin`](Self::begin)s, lets open connections finish (see the module doc), then stops
    /// the server (which still waits for requests in flight).
    pub async fn stop(&self) {
        self.begin();
        // A little past the keep-alive, so the last idle connections' timers have fired.
        let until = Instant::now() + self.keep_alive + Duration::from_millis(250);
        while self.connections.open() > 0 && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.handle.stop(true).await;
    }
}
