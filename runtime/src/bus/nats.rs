//! The NATS bus: invocations as request-reply on `glia.v1.module.<module>.<callback>`, and
//! requests for a module's web resources on `glia.v1.module.<module>.web`, served by a queue
//! group of workers per module (docs/PROTOCOL.md).

use super::refusals::Refusals;
use super::roster::{Outstanding, Roster};
use super::{Bus, InvocationMeta, InvokeFuture, Route, Target};
use crate::config::NatsConfig;
use async_nats::header::HeaderMap;
use async_nats::{Client, ConnectErrorKind, RequestErrorKind};
use futures::FutureExt;
use glia_bus_schema::subjects::{self, headers, Description};
use glia_bus_schema::web::{WebCallRequest, WebCallResponse};
use glia_bus_schema::{CallbackRequest, InvocationError, InvocationReply, InvocationResult};
use serde::Serialize;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Connects to NATS as the config says (auth, TLS), to any server of `bus.url`; reconnects
/// by itself afterwards. `role` names the connection (`glia coordinator (pid N)`), which
/// the server's monitoring shows. When no server is reachable (refused, timed out, no such
/// host) it connects in the background and keeps trying, so glia starts and `/health` says
/// `disconnected` meanwhile; settings the server refuses (auth, TLS) stop the start. The
/// refusals returned tell which optional routes the server's permissions rule out.
pub async fn connect(config: &NatsConfig, role: &str) -> Result<(Client, Arc<Refusals>), String> {
    let servers = config
        .url
        .server_addrs()
        .map_err(|(_, e)| format!("bad NATS server URL: {e}"))?;
    let name = format!("glia {role} (pid {})", std::process::id());
    let refused =
        |e: async_nats::ConnectError| format!("cannot connect to NATS at {}: {e}", config.url);
    let refusals = Arc::new(Refusals::default());
    let client = match options(config, &name, &refusals)
        .await?
        .connect(servers.clone())
        .await
    {
        Ok(client) => Ok(client),
        Err(e)
            if matches!(
                e.kind(),
                ConnectErrorKind::Io | ConnectErrorKind::TimedOut | ConnectErrorKind::Dns
            ) =>
        {
            tracing::warn!(servers = %config.url, error = %e, "no NATS server reachable; starting anyway and connecting in the background");
            options(config, &name, &refusals)
                .await?
                .retry_on_initial_connect()
                .connect(servers)
                .await
                .map_err(refused)
        }
        Err(e) => Err(refused(e)),
    }?;
    Ok((client, refusals))
}

/// The connection options the config asks for, its events told to `refusals`.
async fn options(
    config: &NatsConfig,
    name: &str,
    refusals: &Arc<Refusals>,
) -> Result<async_nats::ConnectOptions, String> {
    let refusals = refusals.clone();
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .event_callback(move |event| {
            refusals.heard(&event);
            async {}
        })
        .connection_timeout(
            config
                .connect_timeout
                .map_or(Duration::from_secs(5), |d| d.0),
        );
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    match (&config.user, &config.password) {
        (Some(user), Some(password)) => {
            options = options.user_and_password(user.clone(), password.clone())
        }
        (None, None) => {}
        _ => return Err("NATS user and password go together".into()),
    }
    if let Some(seed) = &config.nkey_seed {
        options = options.nkey(seed.clone());
    }
    if let Some(path) = &config.credentials_file {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| format!("cannot read NATS credentials {}: {e}", path.display()))?;
    }
    if let Some(tls) = &config.tls {
        options = options.require_tls(tls.required);
        if let Some(ca) = &tls.ca_file {
            options = options.add_root_certificates(ca.clone());
        }
        match (&tls.cert_file, &tls.key_file) {
            (Some(cert), Some(key)) => {
                options = options.add_client_certificate(cert.clone(), key.clone())
            }
            (None, None) => {}
            _ => return Err("a NATS client certificate needs both cert_file and key_file".into()),
        }
    }
    Ok(options)
}

/// Waits until the client is connected, saying so once if it is not yet.
pub async fn wait_connected(client: &Client) {
    let mut said = false;
    while client.connection_state() != async_nats::connection::State::Connected {
        if !said {
            tracing::warn!("waiting for a NATS server to be reachable");
            said = true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub use crate::nats_client::{flush, FLUSH_TIMEOUT};

/// Milliseconds since the Unix epoch at `deadline`.
pub fn deadline_ms(deadline: Instant) -> u64 {
    let left = deadline.saturating_duration_since(Instant::now());
    (SystemTime::now() + left)
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The time left before a `Glia-Deadline`, or `None` if it has passed.
pub fn time_left(deadline_ms: u64) -> Option<Duration> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    (deadline_ms > now).then(|| Duration::from_millis(deadline_ms - now))
}

/// An `Invocation` serialised without cloning the shared request.
#[derive(Serialize)]
struct InvocationRef<'a> {
    request_id: &'a str,
    deadline_ms: u64,
    #[serde(flatten)]
    request: &'a CallbackRequest,
}

/// Reaches modules served over NATS: on an announced worker's own subjects when one is live
/// (see `roster.rs`), else through the module's queue group.
pub struct NatsBus {
    client: Client,
    names: Vec<Arc<str>>,
    roster: Arc<Roster>,
    refusals: Arc<Refusals>,
    listening: tokio::task::AbortHandle,
}

impl NatsBus {
    /// A bus over `client` to the modules named `names` (by config index); listens to the
    /// workers' announcements, and routes to them unless the server refuses (`refusals`).
    /// Call within a tokio runtime.
    pub fn new(client: Client, names: Vec<Arc<str>>, refusals: Arc<Refusals>) -> Self {
        let roster = Arc::new(Roster::new(&names));
        let listening = tokio::spawn(roster.clone().listen(client.clone())).abort_handle();
        NatsBus {
            client,
            names,
            roster,
            refusals,
            listening,
        }
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }
}

/// Asks the workers of `module` what it registered.
pub async fn describe(
    client: &Client,
    module: &str,
    timeout: Duration,
) -> Result<Description, String> {
    let request = async_nats::Request::new().timeout(Some(timeout));
    let reply = client
        .send_request(subjects::describe_subject(module), request)
        .await
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => format!("no worker serves module {module}"),
            RequestErrorKind::TimedOut => {
                format!("module {module} did not describe itself in time")
            }
            _ => format!("cannot describe module {module}: {e}"),
        })?;
    serde_json::from_slice(&reply.payload)
        .map_err(|e| format!("module {module} sent a bad description: {e}"))
}

/// Whether any worker serves `module`: `Some(false)` when NATS says nobody listens on its
/// describe subject (no responders), `Some(true)` on any reply, `None` when it cannot tell
/// within `timeout` (a slow or busy worker is not an absent one).
pub async fn served(client: &Client, module: &str, timeout: Duration) -> Option<bool> {
    let request = async_nats::Request::new().timeout(Some(timeout));
    match client
        .send_request(subjects::describe_subject(module), request)
        .await
    {
        Ok(_) => Some(true),
        Err(e) if e.kind() == RequestErrorKind::NoResponders => Some(false),
        Err(_) => None,
    }
}

impl Drop for NatsBus {
    fn drop(&mut self) {
        self.listening.abort();
    }
}

/// A worker's reply, checked: an `InvocationReply` to this invocation (its `request_id`)
/// and this callback, else an invalid answer.
fn judge(
    payload: &[u8],
    callback: glia_bus_schema::Callback,
    request_id: &str,
) -> Result<glia_bus_schema::ModuleAnswer, InvocationError> {
    let reply: InvocationReply =
        serde_json::from_slice(payload).map_err(|e| InvocationError::InvalidAnswer {
            detail: format!("not an invocation reply: {e}"),
        })?;
    if reply.request_id != request_id {
        return Err(InvocationError::InvalidAnswer {
            detail: format!(
                "a reply to request {:?}, not to this invocation ({request_id:?})",
                reply.request_id
            ),
        });
    }
    match reply.result {
        InvocationResult::Answer(answer) if answer.callback() == callback => Ok(answer),
        InvocationResult::Answer(answer) => Err(InvocationError::InvalidAnswer {
            detail: format!("answered {} instead of {callback}", answer.callback()),
        }),
        InvocationResult::Error(e) => Err(e),
    }
}

/// The body of an invocation, serialised without cloning the shared request; a failure is
/// the invocation's answer, given when its future is polled.
#[inline]
fn invocation_body(
    request_id: &str,
    deadline_ms: u64,
    request: &CallbackRequest,
) -> Result<bytes::Bytes, InvocationError> {
    serde_json::to_vec(&InvocationRef {
        request_id,
        deadline_ms,
        request,
    })
    .map(bytes::Bytes::from)
    .map_err(|e| InvocationError::Unavailable {
        reason: format!("cannot encode the invocation: {e}"),
    })
}

/// The headers of an invocation: its id, its deadline and the caller's trace context, so a
/// worker can drop a late request and continue the trace without reading the body.
#[inline]
fn invocation_headers(meta: &InvocationMeta, deadline_ms: u64) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(headers::REQUEST_ID, &*meta.request_id);
    headers.insert(headers::DEADLINE, deadline_ms.to_string().as_str());
    let trace = crate::propagation::inject(&meta.trace);
    if let Some(traceparent) = &trace.traceparent {
        headers.insert(headers::TRACEPARENT, traceparent.as_str());
    }
    if let Some(tracestate) = &trace.tracestate {
        headers.insert(headers::TRACESTATE, tracestate.as_str());
    }
    headers
}

/// Why a request to `module`'s workers got no reply: nobody serves it, or NATS failed.
fn unanswered(module: &str, e: &async_nats::RequestError) -> InvocationError {
    InvocationError::Unavailable {
        reason: unanswered_reason(module, e),
    }
}

/// [`unanswered`]'s reason.
fn unanswered_reason(module: &str, e: &async_nats::RequestError) -> String {
    match e.kind() {
        RequestErrorKind::NoResponders => {
            format!("no worker serves module {module} (no responders)")
        }
        _ => format!("NATS: {e}"),
    }
}

/// Sends a request to a module (the `target`-th) and waits for the reply without a timeout
/// (the coordinator applies its own): on `worker`'s own subject (`<prefix>.<suffix>`) when one
/// was picked, else through the module's queue group (`subject()`, named only when needed);
/// also there when the worker has gone (no responders: nothing ran).
async fn deliver(
    client: &Client,
    roster: &Roster,
    target: usize,
    worker: Option<&Outstanding>,
    (subject, suffix): (impl FnOnce() -> String, &str),
    body: bytes::Bytes,
    headers: HeaderMap,
) -> Result<async_nats::Message, async_nats::RequestError> {
    let send = |subject: String| {
        let request = async_nats::Request::new()
            .payload(body.clone())
            .headers(headers.clone())
            .timeout(None);
        client.send_request(subject, request)
    };
    let Some(worker) = worker else {
        return send(subject()).await;
    };
    let direct = format!("{}.{suffix}", worker.member().prefix);
    match send(direct).await {
        // Nobody took it, so nothing ran: the worker left or lost its connection. Its queue
        // group has the others.
        Err(e) if e.kind() == RequestErrorKind::NoResponders => {
            roster.gone(target, worker.member());
            send(subject()).await
        }
        other => other,
    }
}

/// Why a request for a remote module's web resource got no response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebFailure {
    /// No worker serves the module, or NATS failed: why.
    Unavailable(String),
    /// The request is larger than the NATS server carries: its size as JSON, and the limit.
    TooLarge(usize, usize),
    /// What came back is not a web response: why.
    Invalid(String),
}

impl NatsBus {
    /// Sends a request for one of the `module`-th module's web resources to its workers (an
    /// announced one's own subject when one is live, as invocations go), with `deadline`
    /// in its `Glia-Deadline` header; the module's response. The caller applies the timeout.
    pub async fn web(
        &self,
        module: usize,
        request: &WebCallRequest,
        deadline: Instant,
    ) -> Result<WebCallResponse, WebFailure> {
        let name = self
            .names
            .get(module)
            .ok_or_else(|| WebFailure::Unavailable(format!("no module at index {module}")))?;
        let body = serde_json::to_vec(request)
            .map_err(|e| WebFailure::Unavailable(format!("cannot encode the request: {e}")))?;
        let max = self.client.server_info().max_payload;
        if max > 0 && body.len() > max {
            return Err(WebFailure::TooLarge(body.len(), max));
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            headers::DEADLINE,
            deadline_ms(deadline).to_string().as_str(),
        );
        let worker = match self.refusals.direct_refused() {
            true => None,
            false => self.roster.pick(module),
        };
        let subject = (|| subjects::web_subject(name), subjects::WEB);
        let reply = deliver(
            &self.client,
            &self.roster,
            module,
            worker.as_ref(),
            subject,
            body.into(),
            headers,
        )
        .await
        .map_err(|e| WebFailure::Unavailable(unanswered_reason(name, &e)))?;
        serde_json::from_slice(&reply.payload)
            .map_err(|e| WebFailure::Invalid(format!("module {name} sent a bad web response: {e}")))
    }
}

impl Bus for NatsBus {
    fn invoke(
        &self,
        target: Target,
        request: Arc<CallbackRequest>,
        meta: &InvocationMeta,
    ) -> InvokeFuture {
        let Some(name) = self.names.get(target.module).cloned() else {
            return futures::future::ready(Err(InvocationError::Unavailable {
                reason: format!("no module at index {}", target.module),
            }))
            .boxed();
        };
        let callback = request.callback();
        let deadline_ms = deadline_ms(meta.deadline);
        let body = invocation_body(&meta.request_id, deadline_ms, &request);
        let headers = invocation_headers(meta, deadline_ms);
        let (client, roster) = (self.client.clone(), self.roster.clone());
        let request_id = meta.request_id.clone();
        let worker = match self.refusals.direct_refused() {
            true => None,
            false => roster.pick(target.module),
        };
        async move {
            let body = body?;
            let sent = deliver(
                &client,
                &roster,
                target.module,
                worker.as_ref(),
                (
                    || subjects::module_subject(&name, callback),
                    callback.name(),
                ),
                body,
                headers,
            )
            .await;
            let reply = sent.map_err(|e| unanswered(&name, &e))?;
            let answer = judge(&reply.payload, callback, &request_id);
            if let (Err(InvocationError::Unavailable { .. }), Some(worker)) = (&answer, &worker) {
                roster.refused(worker.member());
            }
            answer
        }
        .boxed()
    }

    fn route(&self, _target: Target) -> Route {
        Route::Nats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines() {
        assert!(time_left(deadline_ms(Instant::now() + Duration::from_secs(5))).is_some());
        assert_eq!(time_left(1), None);
    }
}
