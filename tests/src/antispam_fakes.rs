//! Fakes of Draupnir and Meowlnir serving synapse-http-antispam's protocol, and a server that
//! allows everything, run as real HTTP servers (actix-web on loopback). Each behaviour is
//! written from the server's source, named beside it:
//!
//! - Draupnir: the-draupnir-project/Draupnir @1c9ba49,
//!   `apps/draupnir/src/webapis/SynapseHTTPAntispam/` (`SynapseHttpAntispam.ts`, the three
//!   `*Endpoint.ts`, `PingEndpoint.ts`, `SpamCheckEndpointPluginManager.ts`),
//!   `apps/draupnir/src/protections/BlockInvitationsOnServerProtection.tsx`,
//!   `apps/draupnir/test/integration/httpAntispamTest.ts`, and Express's defaults.
//! - Meowlnir: maunium/meowlnir @3013133, `cmd/meowlnir/http.go`, `auth.go`, `antispam.go`,
//!   `policyeval/antispam.go`, and mautrix-go's error statuses (`MForbidden` 403,
//!   `MNotFound` 404, `MNotJSON` 400, `MUnknownToken` 401).
//!
//! Every fake records the requests it is sent (`GET /_fake/requests` lists them, a test-only
//! route). `glia-antispam-fake` (`src/bin`) runs one as a process for the end-to-end tests.

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

/// Which server to fake, and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fake {
    /// Draupnir's `/api/1/spam_check/{callback}`.
    Draupnir(Draupnir),
    /// Meowlnir's `/_meowlnir/antispam/{management room}/{callback}`.
    Meowlnir(Meowlnir),
    /// A server that answers every POST `200 {}` at once (the benchmark's do-nothing server).
    Nothing,
}

/// Draupnir's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Draupnir {
    /// `web.synapseHTTPAntispam.authorization`, compared exactly (`SynapseHttpAntispam.ts`).
    pub authorization: String,
    /// `BlockInvitationsOnServerProtection` enabled: a blocking `user_may_invite` handler
    /// refusing invitations from these users or servers. `None`: the protection is off, and
    /// `user_may_invite` has only non-blocking handlers.
    pub block_invitations_from: Option<Vec<String>>,
    /// A blocking `check_event_for_spam` handler refusing these senders with
    /// `{"errcode": "M_FORBIDDEN", "error": "no."}` (the handler of `httpAntispamTest.ts`).
    pub refuse_events_from: Option<Vec<String>>,
    /// Users for whom a blocking handler never settles, as a protection stuck on a lookup:
    /// Draupnir awaits every blocking handler with no timeout of its own
    /// (`SpamCheckEndpointPluginManager.callBlockingHandles`).
    pub stuck_on: Vec<String>,
}

/// Meowlnir's settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Meowlnir {
    /// `antispam.secret`; `None` disables the API (`auth.go`: "This API is disabled"). Compared
    /// in plain text here; Meowlnir compares SHA-256 hashes, which answers the same.
    pub secret: Option<String>,
    /// The bot's server name: invites from it are local (`HandleUserMayInvite`).
    pub server_name: String,
    /// The management rooms Meowlnir knows: the `{policyListID}` path segment.
    pub management_rooms: Vec<String>,
    /// `antispam.filter_local_invites`: check local inviters too.
    pub filter_local_invites: bool,
    /// Users banned by a watched policy list (exact ids; Meowlnir also matches globs).
    pub banned_users: Vec<String>,
    /// Rooms banned by a watched policy list.
    pub banned_rooms: Vec<String>,
    /// Servers banned by a watched policy list.
    pub banned_servers: Vec<String>,
}

/// One request a fake was sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recorded {
    /// The request path.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The body, as sent.
    pub body: String,
}

impl Recorded {
    /// The last path segment: the callback.
    pub fn callback(&self) -> &str {
        self.path.rsplit('/').next().unwrap_or_default()
    }

    /// The body as JSON (`null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

impl Fake {
    /// The `base_url` a synapse-http-antispam client is given for this fake at `root`
    /// (`http://host:port`): Meowlnir's with its first management room.
    pub fn base_url(&self, root: &str) -> String {
        match self {
            Fake::Draupnir(_) => format!("{root}/api/1/spam_check"),
            Fake::Meowlnir(m) => format!(
                "{root}/_meowlnir/antispam/{}",
                m.management_rooms.first().map_or("", String::as_str)
            ),
            Fake::Nothing => root.to_owned(),
        }
    }
}

/// A fake serving on loopback.
pub struct RunningFake {
    /// `http://127.0.0.1:PORT`.
    pub root: String,
    /// The `base_url` to give a client (see [`Fake::base_url`]).
    pub base_url: String,
    records: Arc<Mutex<Vec<Recorded>>>,
    handle: actix_web::dev::ServerHandle,
}

impl RunningFake {
    /// Starts `fake` on a free loopback port, on the current actix system.
    pub fn start(fake: Fake) -> std::io::Result<RunningFake> {
        Self::bind(fake, "127.0.0.1:0")
    }

    /// Starts `fake` on `listen` (port 0: the system picks), on the current actix system.
    pub fn bind(fake: Fake, listen: &str) -> std::io::Result<RunningFake> {
        let records = Arc::new(Mutex::new(Vec::new()));
        let state = web::Data::new(State {
            fake: fake.clone(),
            records: records.clone(),
        });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(16 << 20))
                .default_service(web::to(serve))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(listen)?;
        let root = format!("http://{}", server.addrs()[0]);
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        Ok(RunningFake {
            base_url: fake.base_url(&root),
            root,
            records,
            handle,
        })
    }

    /// The requests sent so far, in order.
    pub fn requests(&self) -> Vec<Recorded> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The requests sent so far for `callback`.
    pub fn requests_for(&self, callback: &str) -> Vec<Recorded> {
        self.requests()
            .into_iter()
            .filter(|r| r.callback() == callback)
            .collect()
    }

    /// Stops it; requests in progress (a stuck handler's) are dropped.
    pub async fn stop(self) {
        self.handle.stop(false).await;
    }
}

struct State {
    fake: Fake,
    records: Arc<Mutex<Vec<Recorded>>>,
}

async fn serve(req: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let path = req.path().to_owned();
    if req.method() == actix_web::http::Method::GET && path == "/_fake/requests" {
        let records = state
            .records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        return HttpResponse::Ok().json(records);
    }
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    state
        .records
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Recorded {
            path: path.clone(),
            authorization: authorization.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
        });
    let post = req.method() == actix_web::http::Method::POST;
    match &state.fake {
        Fake::Draupnir(d) => draupnir(d, post, &path, authorization.as_deref(), &body).await,
        Fake::Meowlnir(m) => meowlnir(m, post, &path, authorization.as_deref(), &body),
        Fake::Nothing if post => nothing(&path, &body),
        Fake::Nothing => HttpResponse::MethodNotAllowed().finish(),
    }
}

fn json(status: u16, body: Value) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .json(body)
}

fn matrix_error(status: u16, errcode: &str, error: &str) -> HttpResponse {
    json(status, json!({"errcode": errcode, "error": error}))
}

fn server_of(id: &str) -> &str {
    id.split_once(':').map_or("", |(_, server)| server)
}

fn nothing(path: &str, body: &[u8]) -> HttpResponse {
    if path.ends_with("/ping") {
        let id = serde_json::from_slice::<Value>(body).unwrap_or_default()["id"].clone();
        return json(200, json!({"id": id, "status": "ok"}));
    }
    json(200, json!({}))
}

// ----- Draupnir ---------------------------------------------------------------------------

/// Express's default 404 page (`finalhandler`), which Draupnir answers for routes it lacks.
fn express_404(path: &str) -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/html; charset=utf-8")
        .body(format!(
            "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Error</title>\n\
             </head>\n<body>\n<pre>Cannot POST {path}</pre>\n</body>\n</html>\n"
        ))
}

async fn draupnir(
    d: &Draupnir,
    post: bool,
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> HttpResponse {
    // `express.json()` (`WebAPIs.ts`) refuses a body that is not JSON before any route runs.
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return HttpResponse::BadRequest()
            .content_type("text/html; charset=utf-8")
            .body("<pre>SyntaxError: Unexpected token in JSON</pre>");
    };
    const PREFIX: &str = "/api/1/spam_check/";
    let callback = path.strip_prefix(PREFIX).unwrap_or("");
    if !post
        || !matches!(
            callback,
            "user_may_invite" | "user_may_join_room" | "check_event_for_spam" | "ping"
        )
    {
        return express_404(path);
    }
    // `makeAuthenticatedEndpointHandler`: `Bearer (.*)` must capture exactly the secret; the
    // refusal is plain text (Express sends a string as text/html).
    let token = authorization.and_then(|a| a.split_once("Bearer ").map(|(_, t)| t));
    if token != Some(d.authorization.as_str()) {
        return HttpResponse::Unauthorized()
            .content_type("text/html; charset=utf-8")
            .body("Missing access token");
    }
    let user_id = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.starts_with('@') && s.contains(':'))
    };
    let room_id = |v: &Value| v.as_str().is_some_and(|s| s.starts_with('!'));
    // Each endpoint: its body schema, the user its handlers judge, and its blocking rule.
    let (valid, user, refuse, schema_error) = match callback {
        "ping" => {
            return match body.get("id") {
                Some(id) => json(200, json!({"id": id, "status": "ok"})),
                None => matrix_error(400, "M_INVALID_PARAM", "Error decoding request body"),
            }
        }
        "user_may_invite" => (
            user_id(&body["inviter"]) && user_id(&body["invitee"]) && room_id(&body["room_id"]),
            &body["inviter"],
            d.block_invitations_from.as_ref().map(|banned| {
                (
                    banned,
                    "You are not allowed to send invitations to this homeserver",
                )
            }),
            "Error handling inviter, invitee, and room_id",
        ),
        "user_may_join_room" => (
            user_id(&body["user"]) && room_id(&body["room"]) && body["is_invited"].is_boolean(),
            &body["user"],
            // No protection registers a blocking join handler (`SynapseHTTPAntispamRoomExplorer`
            // watches joins without blocking).
            None,
            "Error handling user, room, and is_invited",
        ),
        _ => (
            body["event"]["sender"].is_string() && body["event"]["type"].is_string(),
            &body["event"]["sender"],
            d.refuse_events_from
                .as_ref()
                .map(|refused| (refused, "no.")),
            "Error handling event",
        ),
    };
    // Without a blocking handler Draupnir answers `200 {}` before reading the body, then runs
    // its non-blocking handlers.
    let Some((refused, message)) = refuse else {
        return json(200, json!({}));
    };
    if !valid {
        return matrix_error(400, "M_INVALID_PARAM", schema_error);
    }
    let user = user.as_str().unwrap_or_default();
    if d.stuck_on.iter().any(|u| u == user) {
        futures::future::pending::<()>().await;
    }
    if refused.iter().any(|r| r == user || r == server_of(user)) {
        // A blocking handler's refusal is sent as is, with status 400.
        return matrix_error(400, "M_FORBIDDEN", message);
    }
    json(200, json!({}))
}

// ----- Meowlnir ---------------------------------------------------------------------------

fn meowlnir(
    m: &Meowlnir,
    post: bool,
    path: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> HttpResponse {
    let Some(rest) = path.strip_prefix("/_meowlnir/antispam/") else {
        return go_text(404, "404 page not found");
    };
    // `SecretAuth` wraps the whole antispam router.
    let Some(secret) = &m.secret else {
        return matrix_error(401, "M_UNKNOWN_TOKEN", "This API is disabled");
    };
    let token = authorization.map(|a| a.strip_prefix("Bearer ").unwrap_or(a));
    if token != Some(secret.as_str()) {
        return matrix_error(401, "M_UNKNOWN_TOKEN", "Invalid authorization token");
    }
    // `POST /{policyListID}/{callback}` on a Go ServeMux.
    let Some((list, callback)) = rest.split_once('/').filter(|(_, c)| !c.contains('/')) else {
        return go_text(404, "404 page not found");
    };
    if !post {
        return go_text(405, "Method Not Allowed");
    }
    let list = percent_decode(list);
    let known = m.management_rooms.contains(&list);
    let not_found = || {
        matrix_error(
            404,
            "M_NOT_FOUND",
            "Antispam configuration issue: policy list not found",
        )
    };
    let not_json = || matrix_error(400, "M_NOT_JSON", "Antispam request error: invalid JSON");
    // Go's decoder: the body must be JSON of the request struct's shape (strings where it has
    // strings); missing fields are empty.
    let Ok(body) = serde_json::from_slice::<Value>(body) else {
        return not_json();
    };
    let string = |v: &Value| v.is_null() || v.is_string();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    match callback {
        "ping" => {
            if !string(&body["id"]) {
                return not_json();
            }
            json(200, json!({"status": "ok", "id": text(&body["id"])}))
        }
        "user_may_invite" => {
            if ![&body["inviter"], &body["invitee"], &body["room_id"]]
                .into_iter()
                .all(string)
            {
                return not_json();
            }
            if !known {
                return not_found();
            }
            m.may_invite(
                &text(&body["inviter"]),
                &text(&body["invitee"]),
                &text(&body["room_id"]),
                "",
            )
        }
        "federated_user_may_invite" => {
            let event = &body["event"];
            if !event.is_object() && !event.is_null() {
                return not_json();
            }
            if !known {
                return not_found();
            }
            let creator = event["unsigned"]["invite_room_state"]
                .as_array()
                .and_then(|state| state.iter().find(|e| e["type"] == "m.room.create"))
                .map(|create| text(&create["sender"]))
                .unwrap_or_default();
            m.may_invite(
                &text(&event["sender"]),
                &text(&event["state_key"]),
                &text(&event["room_id"]),
                &creator,
            )
        }
        "user_may_join_room" | "accept_make_join" => {
            if !string(&body["user"]) || !string(&body["room"]) {
                return not_json();
            }
            let auto_routed = callback == "accept_make_join" && list == "auto";
            if !known && !auto_routed {
                return not_found();
            }
            let user = text(&body["user"]);
            if callback == "accept_make_join"
                && (m.banned_users.contains(&user)
                    || m.banned_servers.iter().any(|s| s == server_of(&user)))
            {
                return matrix_error(403, "M_FORBIDDEN", "You're banned from this room");
            }
            // `user_may_join_room` answers at once and tracks the join in goroutines.
            json(200, json!({}))
        }
        // "Don't reject unknown callbacks, just ignore them."
        _ => json(200, json!({})),
    }
}

impl Meowlnir {
    /// `HandleUserMayInvite`, for exact policy entities.
    fn may_invite(
        &self,
        inviter: &str,
        invitee: &str,
        room_id: &str,
        creator: &str,
    ) -> HttpResponse {
        let inviter_server = server_of(inviter);
        let local = inviter_server == self.server_name;
        if (local && !self.filter_local_invites)
            || (server_of(invitee) != self.server_name && !local)
        {
            return json(200, json!({}));
        }
        let forbidden = |message| matrix_error(403, "M_FORBIDDEN", message);
        let host = inviter_server
            .rsplit_once(':')
            .map_or(inviter_server, |(h, _)| h);
        if host.parse::<std::net::Ipv4Addr>().is_ok() || host.starts_with('[') {
            return forbidden("IP server names are not allowed to send invites");
        }
        let banned_server = |s: &str| !s.is_empty() && self.banned_servers.iter().any(|b| b == s);
        if self.banned_users.iter().any(|u| u == inviter) {
            return forbidden("You're not allowed to send invites");
        }
        if self.banned_rooms.iter().any(|r| r == room_id) {
            return forbidden("Inviting users to this room is not allowed");
        }
        if banned_server(inviter_server) {
            return forbidden("You're not allowed to send invites");
        }
        // The room's server, or (MSC4311 room ids without one) its creator's.
        let room_server = match server_of(room_id) {
            "" => server_of(creator),
            server => server,
        };
        if banned_server(room_server) {
            return forbidden("Inviting users to this room is not allowed");
        }
        json(200, json!({}))
    }
}

/// Go's `http.Error` answers: plain text with a newline.
fn go_text(status: u16, text: &str) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND))
        .content_type("text/plain; charset=utf-8")
        .body(format!("{text}\n"))
}

/// `%XX` escapes decoded (Go's `PathValue` gives the decoded segment).
fn percent_decode(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(hi), Some(lo)) => {
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
