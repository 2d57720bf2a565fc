//! The fix glia carries in `vendor/async-nats` (see `vendor/README.md`): a draining
//! subscription takes every message the server sent it before answering the PING that follows
//! the UNSUB. A real nats-server cannot hold a message back on demand, so these tests speak
//! the NATS protocol from a scripted server: it sends the last message only after the client
//! has woken up again, then the PONG.

use futures::channel::oneshot;
use futures::StreamExt;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::time::Duration;

/// What the scripted server does and when.
struct Script {
    /// Send a PING right after INFO, before the client's CONNECT (as nats-server's first
    /// ping timer can).
    early_ping: bool,
    /// Told when the drain's UNSUB and PING have arrived.
    drained: oneshot::Sender<()>,
    /// Waited for before the held-back message and the PONG are sent.
    release: std::sync::mpsc::Receiver<()>,
}

/// Serves one client on `listener` as `script` says.
fn serve(listener: TcpListener, script: Script) {
    let (stream, _) = listener.accept().expect("the client connects");
    let mut out = stream.try_clone().unwrap();
    let mut lines = BufReader::new(stream);
    let info = r#"{"server_id":"scripted","server_name":"scripted","version":"2.10.0","proto":1,"go":"go","host":"127.0.0.1","port":4222,"headers":true,"max_payload":1048576}"#;
    write!(out, "INFO {info}\r\n").unwrap();
    if script.early_ping {
        out.write_all(b"PING\r\n").unwrap();
    }
    let mut unsubscribed = false;
    let mut drained = Some(script.drained);
    let mut line = String::new();
    loop {
        line.clear();
        if lines.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let op = line.trim_end();
        if op.starts_with("UNSUB") {
            unsubscribed = true;
        } else if op == "PING" {
            // The first PING after the UNSUB is the drain's fence (they are written together);
            // the handshake's and keep-alive ones are answered at once.
            match unsubscribed.then(|| drained.take()).flatten() {
                Some(drained) => {
                    // A message routed before the UNSUB was read is still on its way when
                    // the client wakes up for something else.
                    let _ = drained.send(());
                    script.release.recv().unwrap();
                    out.write_all(b"MSG work 1 4\r\nlast\r\nPONG\r\n").unwrap();
                }
                None => out.write_all(b"PONG\r\n").unwrap(),
            }
        }
        // CONNECT, SUB, PONG: nothing to answer.
    }
}

/// A free loopback listener.
fn listener() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

async fn drain_takes_the_message_sent_before_the_pong(early_ping: bool) {
    let (listener, port) = listener();
    let (drained_tx, drained) = oneshot::channel();
    let (release, release_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        serve(
            listener,
            Script {
                early_ping,
                drained: drained_tx,
                release: release_rx,
            },
        )
    });
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(format!("nats://127.0.0.1:{port}"))
        .await
        .expect("the client connects to the scripted server");
    let mut subscriber = client.subscribe("work").await.unwrap();
    subscriber.drain().await.unwrap();
    drained
        .await
        .expect("the server saw the UNSUB and the PING");
    // Something else for the connection to do: the unpatched client dropped the draining
    // subscription here, before the message below arrived.
    client.flush().await.unwrap();
    release.send(()).unwrap();
    let last = tokio::time::timeout(Duration::from_secs(5), subscriber.next())
        .await
        .expect("the subscription ends or delivers within 5 s");
    assert_eq!(
        last.map(|m| m.payload),
        Some("last".into()),
        "the message sent before the PONG was lost"
    );
    let end = tokio::time::timeout(Duration::from_secs(5), subscriber.next())
        .await
        .expect("the drained subscription ends after the PONG");
    assert!(end.is_none());
    // The connection closes once nothing holds it (its task runs on this runtime, so the
    // wait for the server's end must not block it).
    drop((subscriber, client));
    tokio::task::spawn_blocking(move || server.join())
        .await
        .unwrap()
        .expect("the scripted server ran its script");
}

#[tokio::test]
async fn a_drained_subscription_takes_what_was_sent_before_the_pong() {
    drain_takes_the_message_sent_before_the_pong(false).await;
}

#[tokio::test]
async fn a_server_ping_before_connect_does_not_shift_the_fence() {
    drain_takes_the_message_sent_before_the_pong(true).await;
}
