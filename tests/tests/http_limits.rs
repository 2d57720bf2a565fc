//! The HTTP server against clients that would hold its connections, over real sockets:
//! bodies that never finish (to callbacks and to module web resources), heads dribbled on a
//! new or a kept-alive connection, more connections than the cap, and what the HTTP parser
//! refuses before glia's handlers. Bounds are generous: the assertions are "answered" and
//! "closed", never "fast".

mod support;

use glia_tests::process::GliaProcess;
use glia_tests::TestGlia;
use serde_json::{json, Value};
use std::time::Duration;
use support::send;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CREATE_ROOM: &str = "/_glia/v1/callbacks/user_may_create_room";
const HELLO: &str = "/_synapse/client/demo/hello";
const TOKEN: &str = "s3cret";
/// Far longer than any bound these tests set: reaching it means the server never acted.
const GENEROUS: Duration = Duration::from_secs(120);

/// glia with a `demo` module (callbacks and a web resource), a token, and these settings.
async fn start(settings: Value) -> TestGlia {
    let mut config = settings;
    config["auth_token"] = json!(TOKEN);
    config["modules"] = json!([{"module": "demo", "config": {"denied_users": ["@evil:hs"]}}]);
    TestGlia::start(&config.to_string()).await
}

fn address(g: &TestGlia) -> String {
    g.base_url.trim_start_matches("http://").to_owned()
}

/// A connection that sent a request head promising a megabyte, then a few bytes of it, and
/// nothing more.
async fn stalled(addr: &str, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: glia\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n{{\"us"
    );
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send a head");
    stream
}

/// Everything the server sends until it closes the connection (bounded by [`GENEROUS`]).
async fn until_closed(stream: &mut TcpStream) -> String {
    let mut received = Vec::new();
    match tokio::time::timeout(GENEROUS, stream.read_to_end(&mut received)).await {
        Ok(_) => String::from_utf8_lossy(&received).into_owned(),
        Err(_) => panic!(
            "the server kept the connection open for {GENEROUS:?}; it sent {:?}",
            String::from_utf8_lossy(&received)
        ),
    }
}

/// The status line's code of a raw response.
fn status_of(response: &str) -> Option<u16> {
    response.split(' ').nth(1)?.parse().ok()
}

/// A raw response's body (after the head).
fn body_of(response: &str) -> &str {
    response.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

/// Fails, saying how, when this process may not open `needed` files.
fn need_open_files(needed: u64) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let hard = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4))
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(hard) = hard {
        assert!(
            hard >= needed,
            "this test opens {needed} files, and the hard open-file limit is {hard}: \
             raise it (`ulimit -Hn {needed}` as root, or LimitNOFILE= for a service)"
        );
    }
}

/// 600 connections stall their bodies — half to a callback, half to a module web resource,
/// which needs no token — while glia keeps answering `/health` and callbacks; each stalled
/// one gets 408 and is closed once `body_timeout` has passed.
#[actix_rt::test]
async fn stalled_bodies_time_out_while_other_requests_are_answered() {
    const STALLED: usize = 600;
    need_open_files(2 * STALLED as u64 + 1024);
    // All from one address: the per-address share is not what this test is about.
    let g = start(json!({
        "body_timeout": "3s",
        "max_connections": 1000,
        "max_connections_per_address": 1000
    }))
    .await;
    let addr = address(&g);
    let mut stalls = Vec::new();
    for i in 0..STALLED {
        let path = if i % 2 == 0 { CREATE_ROOM } else { HELLO };
        stalls.push(stalled(&addr, path).await);
    }
    // Every probe is answered while the stalled bodies wait (no timing asserted: answered is
    // the point; before the body deadline existed these were answered too, until the
    // descriptors ran out).
    for _ in 0..10 {
        let health = send("GET", &format!("{}/health", g.base_url), &[], None).await;
        assert_eq!(health.status, 200, "{}", health.text());
        let auth = format!("Bearer {TOKEN}");
        let body = json!({"user_id": "@evil:hs", "room_config": {}}).to_string();
        let reply = send(
            "POST",
            &format!("{}{CREATE_ROOM}", g.base_url),
            &[
                ("authorization", &auth),
                ("content-type", "application/json"),
            ],
            Some(body.as_bytes()),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.json()["decision"], "deny");
    }
    // Each stalled body is answered 408 and its connection closed.
    let answers = futures::future::join_all(stalls.iter_mut().map(until_closed)).await;
    for (i, answer) in answers.iter().enumerate() {
        assert_eq!(
            status_of(answer),
            Some(408),
            "stalled connection {i}: {answer:?}"
        );
        let error: Value =
            serde_json::from_str(body_of(answer)).unwrap_or_else(|e| panic!("{e}: {answer:?}"));
        assert_eq!(error["errcode"], "M_UNKNOWN", "{answer}");
        assert!(
            error["error"].as_str().unwrap().contains("3000 ms"),
            "{answer}"
        );
    }
    g.stop().await;
}

/// A body that trickles in, a byte now and then, is bounded as a whole, not per read.
#[actix_rt::test]
async fn a_trickling_body_is_bounded_as_a_whole() {
    let g = start(json!({"body_timeout": "2s"})).await;
    let mut stream = stalled(&address(&g), CREATE_ROOM).await;
    let (mut reader, mut writer) = stream.split();
    let answer = async {
        let mut answer = Vec::new();
        // Up to the close (or a reset once the trickle meets a closed socket): what came.
        let _ = reader.read_to_end(&mut answer).await;
        answer
    };
    let trickle = async {
        while writer.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        std::future::pending::<()>().await;
    };
    let answer = tokio::select! {
        answer = answer => answer,
        () = trickle => unreachable!(),
        () = tokio::time::sleep(GENEROUS) => panic!("the server kept reading the trickle"),
    };
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status_of(&answer), Some(408), "{answer:?}");
    g.stop().await;
}

/// Past `max_connections`, new connections wait for a slot; stalled bodies free theirs at
/// their deadline, so a waiting request is answered, after a stalled one was closed.
#[actix_rt::test]
async fn the_connection_cap_holds_until_stalled_bodies_time_out() {
    let g = start(json!({
        "body_timeout": "1s",
        "max_connections": 4,
        "max_connections_per_address": 4
    }))
    .await;
    let addr = address(&g);
    let mut stalls = Vec::new();
    for _ in 0..4 {
        stalls.push(stalled(&addr, HELLO).await);
    }
    let health = send("GET", &format!("{}/health", g.base_url), &[], None).await;
    assert_eq!(health.status, 200, "{}", health.text());
    // The probe could only be served once a stalled connection had gone: its 408 was sent
    // before the probe was accepted, so it is already waiting to be read.
    let mut answered = 0;
    for stream in &mut stalls {
        let mut buffer = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buffer));
        if let Ok(Ok(n)) = read.await {
            answered += usize::from(n > 0);
        }
    }
    assert!(
        answered >= 1,
        "the probe was served while all 4 slots were held"
    );
    for stream in &mut stalls {
        until_closed(stream).await;
    }
    g.stop().await;
}

/// A connection from `source` (a loopback address of its own, so a distinct peer) to `addr`.
async fn connect_from(source: &str, addr: &str) -> std::io::Result<TcpStream> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind(format!("{source}:0").parse().expect("a source address"))?;
    socket
        .connect(addr.parse().expect("a socket address"))
        .await
}

/// One peer opening many idle connections (more than the whole cap, with a head timeout
/// that would let them stay) cannot keep a second peer from being served: past its
/// address's share each is answered 503 in plain text and closed at once, and the second
/// peer, from 127.0.0.2, is answered. Before `max_connections_per_address` the probe waited
/// for as long as the idle connections were allowed to stay.
#[actix_rt::test]
async fn one_peer_cannot_take_every_connection() {
    const CAP: usize = 40;
    need_open_files(4 * CAP as u64 + 1024);
    let g = start(json!({"max_connections": CAP, "header_timeout": "1h"})).await;
    let addr = address(&g);
    let mut idle = Vec::new();
    for _ in 0..2 * CAP {
        let stream = connect_from("127.0.0.1", &addr).await.expect("connect");
        idle.push(stream.into_std().expect("a std socket"));
    }
    let mut probe = tokio::time::timeout(GENEROUS, connect_from("127.0.0.2", &addr))
        .await
        .expect("the second peer was not even accepted")
        .expect("connect from 127.0.0.2");
    let head = tokio::time::timeout(
        GENEROUS,
        exchange(&mut probe, b"GET /health HTTP/1.1\r\nHost: glia\r\n\r\n"),
    )
    .await
    .expect("the second peer was not answered while the first held its connections")
    .expect("an answer");
    assert_eq!(status_of(&head), Some(200), "{head}");
    // glia's one test worker handles connections in the order they were accepted, so every
    // refusal was written before the probe was answered.
    let refusals: Vec<String> = idle.iter_mut().filter_map(refusal_waiting).collect();
    assert_eq!(refusals.len(), 2 * CAP - CAP / 2, "refused of {}", 2 * CAP);
    for answer in &refusals {
        assert_eq!(status_of(answer), Some(503), "{answer}");
        assert!(
            body_of(answer).starts_with("too many connections"),
            "{answer}"
        );
    }
    // Scraped from the second peer: the first one's address is still over its share.
    let mut scrape = connect_from("127.0.0.2", &addr).await.expect("connect");
    let ask = format!(
        "GET /metrics HTTP/1.1\r\nHost: glia\r\nAuthorization: Bearer {TOKEN}\r\n\
         Connection: close\r\n\r\n"
    );
    scrape
        .write_all(ask.as_bytes())
        .await
        .expect("ask for metrics");
    let metrics = until_closed(&mut scrape).await;
    let counted = format!(
        "glia_http_refused_total{{reason=\"per_address_limit\",route=\"connection\",status=\"503\"}} {}",
        refusals.len()
    );
    assert!(metrics.contains(&counted), "{metrics}");
    drop(idle);
    g.stop().await;
}

/// What the server already sent on a connection it then closed, or `None` while it is open
/// with nothing to read.
fn refusal_waiting(stream: &mut std::net::TcpStream) -> Option<String> {
    use std::io::Read;
    let mut received = Vec::new();
    let mut buffer = [0u8; 512];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return Some(String::from_utf8_lossy(&received).into_owned()),
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                return (!received.is_empty()).then(|| String::from_utf8_lossy(&received).into())
            }
            Err(e) => panic!("reading a refused connection: {e}"),
        }
    }
}

/// A request head must arrive within `header_timeout` of its first byte, on a kept-alive
/// connection too (actix-web bounds only a connection's first request; see
/// vendor/README.md).
#[actix_rt::test]
async fn a_dribbled_head_is_cut_off_on_a_new_or_kept_alive_connection() {
    let g = start(json!({"header_timeout": "1s"})).await;
    let addr = address(&g);
    // A valid head that never ends: a byte every 200 ms, past the prefix an endless header
    // value (the parser's 128 KiB limit is hours away). Only the head timeout ends it.
    let dribble = |mut stream: TcpStream| async move {
        let prefix = b"GET /health HTTP/1.1\r\nHost: glia\r\nX-Slow: ";
        let dribbled = async {
            for byte in prefix.iter().chain(std::iter::repeat(&b'a')) {
                if stream.write_all(&[*byte]).await.is_err() {
                    break;
                }
                let mut peek = [0u8; 1];
                let peeked =
                    tokio::time::timeout(Duration::from_millis(200), stream.peek(&mut peek));
                if let Ok(Ok(_)) = peeked.await {
                    break;
                }
            }
        };
        if tokio::time::timeout(GENEROUS, dribbled).await.is_err() {
            panic!("the server kept reading a dribbled head for {GENEROUS:?}");
        }
        until_closed(&mut stream).await
    };
    // The first request on a connection.
    let answer = dribble(TcpStream::connect(&addr).await.unwrap()).await;
    assert_eq!(status_of(&answer), Some(408), "{answer:?}");
    let error: Value =
        serde_json::from_str(body_of(&answer)).unwrap_or_else(|e| panic!("{e}: {answer:?}"));
    assert_eq!(error["errcode"], "M_UNKNOWN", "{answer}");
    // A later one: the first is answered and the connection kept alive.
    let mut stream = TcpStream::connect(&addr).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: glia\r\n\r\n")
        .await
        .unwrap();
    let mut first = vec![0u8; 4096];
    let n = stream.read(&mut first).await.unwrap();
    let first = String::from_utf8_lossy(&first[..n]).into_owned();
    assert_eq!(status_of(&first), Some(200), "{first:?}");
    assert!(
        !first.to_ascii_lowercase().contains("connection: close"),
        "{first}"
    );
    let answer = dribble(stream).await;
    assert_eq!(status_of(&answer), Some(408), "{answer:?}");
    g.stop().await;
}

/// Sends raw bytes on a new connection and returns everything the server answers.
async fn raw(g: &TestGlia, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address(g)).await.unwrap();
    stream.write_all(request).await.unwrap();
    until_closed(&mut stream).await
}

/// What the HTTP parser refuses never reaches glia's handlers, but is answered as glia answers
/// errors (docs/http-api.md; vendor/actix-http's `set_error_body`): Matrix JSON, and on the
/// synapse-http-antispam ingress plain text, which its module does not read as a deny.
#[actix_rt::test]
async fn errors_before_glias_handlers() {
    let g = start(json!({})).await;
    let refused = |answer: &str, status: u16, errcode: &str| {
        assert_eq!(status_of(answer), Some(status), "{answer:?}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{answer:?}"
        );
        let error: Value =
            serde_json::from_str(body_of(answer)).unwrap_or_else(|e| panic!("{e}: {answer:?}"));
        assert_eq!(error["errcode"], errcode, "{answer}");
        error["error"].as_str().unwrap().to_owned()
    };
    // A Content-Length that is not a number, two that disagree, a header line that is not
    // one, an HTTP version that does not exist.
    for head in [
        "Content-Length: ten\r\n",
        "Content-Length: 2\r\nContent-Length: 3\r\n",
        "Not A Header\r\n",
    ] {
        let answer = raw(
            &g,
            format!("POST {CREATE_ROOM} HTTP/1.1\r\nHost: glia\r\n{head}\r\n{{}}").as_bytes(),
        )
        .await;
        let error = refused(&answer, 400, "M_UNKNOWN");
        assert!(error.starts_with("Malformed HTTP request: "), "{error}");
    }
    let answer = raw(&g, b"GET /health HTTP/7.1\r\nHost: glia\r\n\r\n").await;
    refused(&answer, 400, "M_UNKNOWN");
    // On the ingress: plain text.
    let answer = raw(
        &g,
        b"POST /_glia/v1/http-antispam/user_may_invite HTTP/1.1\r\nNot A Header\r\n\r\n",
    )
    .await;
    assert_eq!(status_of(&answer), Some(400), "{answer:?}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("content-type: text/plain"),
        "{answer:?}"
    );
    assert!(
        body_of(&answer).starts_with("M_UNKNOWN: Malformed HTTP request"),
        "{answer:?}"
    );
    // A head larger than the parser's buffer: a path, or headers.
    let long_path = format!("/_synapse/client/demo/{}", "a".repeat(140_000));
    let answer = raw(
        &g,
        format!("GET {long_path} HTTP/1.1\r\nHost: glia\r\n\r\n").as_bytes(),
    )
    .await;
    refused(&answer, 431, "M_TOO_LARGE");
    let many = (0..200)
        .map(|i| format!("X-H{i}: v\r\n"))
        .collect::<String>();
    let answer = raw(
        &g,
        format!("GET /health HTTP/1.1\r\nHost: glia\r\n{many}\r\n").as_bytes(),
    )
    .await;
    refused(&answer, 431, "M_TOO_LARGE");
    // A callback name that is not UTF-8 once decoded is an unknown callback like any other.
    let reply = send(
        "POST",
        &format!("{}/_glia/v1/callbacks/%FF", g.base_url),
        &[("authorization", &format!("Bearer {TOKEN}"))],
        Some(b"{}"),
    )
    .await;
    reply.assert_matrix_error(404, "M_NOT_FOUND");
    g.stop().await;
}

/// A request on a connection, and its answer (the head lower-cased, then the body).
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> std::io::Result<String> {
    stream.write_all(request).await?;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(GENEROUS, stream.read(&mut buffer))
            .await
            .map_err(|_| std::io::Error::other("no answer"))??;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        received.extend_from_slice(&buffer[..n]);
        if let Some(end) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            // The bodies here are small JSON objects; read the rest of one if it lags.
            let head = String::from_utf8_lossy(&received[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while received.len() < end + 4 + length {
                let n = stream.read(&mut buffer).await?;
                if n == 0 {
                    break;
                }
                received.extend_from_slice(&buffer[..n]);
            }
            return Ok(format!(
                "{head}\r\n\r\n{}",
                String::from_utf8_lossy(&received[end + 4..])
            ));
        }
    }
}

/// SIGTERM drops no request sent on a kept-alive connection: each is answered, and the answer
/// closes the connection (actix-web's own graceful stop closed idle connections at once, so
/// such requests were lost). They are answered by the module, still running (it denies
/// `@evil:hs`), not by its failure policy. A connection opened after the signal is told glia
/// is stopping, or refused once it has stopped. glia then exits cleanly.
#[actix_rt::test]
async fn shutdown_answers_requests_on_kept_alive_connections() {
    let demo = json!({"module": "demo", "config": {"denied_users": ["@evil:hs"]}});
    let config = support::TempFile::new(
        "shutdown.yaml",
        &json!({"shutdown_grace": "2s", "modules": [demo]}).to_string(),
    );
    let (mut process, listen) = GliaProcess::serve(config.path(), &[], &[], false).await;
    let create = |user: &str| {
        let body = json!({"user_id": user, "room_config": {}}).to_string();
        format!(
            "POST {CREATE_ROOM} HTTP/1.1\r\nHost: glia\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let (request, denied) = (create("@alice:hs"), create("@evil:hs"));
    let mut kept = Vec::new();
    for _ in 0..20 {
        let mut stream = TcpStream::connect(&listen).await.unwrap();
        let head = exchange(&mut stream, request.as_bytes()).await.unwrap();
        assert_eq!(status_of(&head), Some(200), "{head}");
        assert!(!head.contains("connection: close"), "{head}");
        kept.push(stream);
    }
    process.signal("TERM");
    // glia says it is stopping once its server answers as a stopping one.
    process.logged("shutting down").await;
    for (i, stream) in kept.iter_mut().enumerate() {
        let (sent, decision) = match i % 2 {
            0 => (&request, r#""decision":"allow""#),
            _ => (&denied, r#""decision":"deny""#),
        };
        let head = exchange(stream, sent.as_bytes())
            .await
            .unwrap_or_else(|e| panic!("connection {i}: the request was dropped: {e}"));
        assert_eq!(status_of(&head), Some(200), "connection {i}: {head}");
        assert!(head.contains(decision), "connection {i}: {head}");
        assert!(head.contains("connection: close"), "connection {i}: {head}");
        let rest = until_closed(stream).await;
        assert_eq!(rest, "", "connection {i}");
    }
    match TcpStream::connect(&listen).await {
        // Refused: it has stopped listening already.
        Err(_) => {}
        Ok(mut stream) => match exchange(&mut stream, request.as_bytes()).await {
            // Reset or closed: it stopped while the request was on its way.
            Err(_) => {}
            Ok(head) => {
                assert_eq!(status_of(&head), Some(503), "{head}");
                assert!(head.contains("connection: close"), "{head}");
            }
        },
    }
    process.terminate_with_log();
}
