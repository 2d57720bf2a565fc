//! `glia-antispam-fake CONFIG [LISTEN]`: runs one fake of `glia_tests::antispam_fakes` (Draupnir,
//! Meowlnir, or a server that allows everything) as a process, for the end-to-end tests and
//! the benchmark. CONFIG is the fake as JSON (`{"meowlnir": {...}}`, `"nothing"`); LISTEN
//! defaults to `127.0.0.1:0`. Prints `{"root": ..., "base_url": ...}` on one line once it
//! serves, then serves until SIGTERM or SIGINT.

use glia_tests::antispam_fakes::{Fake, RunningFake};
use std::process::ExitCode;
use tokio::signal::unix::{signal, SignalKind};

#[actix_rt::main]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(config) = args.next() else {
        eprintln!("usage: glia-antispam-fake CONFIG_JSON [LISTEN]");
        return ExitCode::from(2);
    };
    let fake: Fake = match serde_json::from_str(&config) {
        Ok(fake) => fake,
        Err(e) => {
            eprintln!("glia-antispam-fake: bad config {config:?}: {e}");
            return ExitCode::from(2);
        }
    };
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let running = match RunningFake::bind(fake, &listen) {
        Ok(running) => running,
        Err(e) => {
            eprintln!("glia-antispam-fake: cannot listen on {listen}: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "{}",
        serde_json::json!({"root": running.root, "base_url": running.base_url})
    );
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("glia-antispam-fake: cannot handle signals");
        return ExitCode::FAILURE;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    running.stop().await;
    ExitCode::SUCCESS
}
