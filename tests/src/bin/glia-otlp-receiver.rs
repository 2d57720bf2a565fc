//! `glia-otlp-receiver`: runs `glia_tests::otlp::OtlpReceiver` (OTLP/gRPC and OTLP/HTTP on free
//! loopback ports) as a process, for the end-to-end tests written in Python. Prints
//! `{"grpc": URL, "http": URL}` on one line once it serves, then each span it receives as one
//! JSON line (`trace_id`, `span_id`, `parent_span_id`, `name`, `kind`, `service_name`,
//! `attributes`, `status_code`), until SIGTERM or SIGINT.

use glia_tests::otlp::{OtlpReceiver, ReceivedSpan};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;
use tokio::signal::unix::{signal, SignalKind};

/// How often the spans received are looked at: what a reader waits at most past their arrival.
const POLL: Duration = Duration::from_millis(50);

#[actix_rt::main]
async fn main() -> ExitCode {
    let receiver = match OtlpReceiver::start() {
        Ok(receiver) => receiver,
        Err(e) => {
            eprintln!("glia-otlp-receiver: cannot listen: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("glia-otlp-receiver: cannot handle signals");
        return ExitCode::FAILURE;
    };
    print_line(&serde_json::json!({
        "grpc": receiver.grpc_endpoint(),
        "http": receiver.http_endpoint(),
    }));
    let mut printed = 0;
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = tick.tick() => {}
        }
        let spans = receiver.spans();
        for span in &spans[printed..] {
            print_line(&span_json(span));
        }
        printed = spans.len();
    }
    ExitCode::SUCCESS
}

/// One span as the JSON line the tests read.
fn span_json(span: &ReceivedSpan) -> serde_json::Value {
    serde_json::json!({
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_span_id": span.parent_span_id,
        "name": span.name,
        "kind": span.kind,
        "service_name": span.service_name,
        "attributes": span.attributes,
        "status_code": span.status_code,
        "protocol": span.protocol,
    })
}

/// Writes `value` as one line and flushes it at once: the reader polls a file.
fn print_line(value: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    let _ = out.flush();
}
