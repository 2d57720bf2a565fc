//! glia's log as a file or a pipe sees it: plain text with no colour codes by default, JSON
//! lines with `log_format: json` (for log shippers), and `--log-format` over the config's.

mod support;

use glia_tests::process::GliaProcess;
use serde_json::Value;
use support::TempFile;

/// The start-up log of `glia serve` with `config` and `extra` arguments, its standard error
/// a pipe.
async fn start_up_log(config: &str, extra: &[&str]) -> String {
    let file = TempFile::new("logs.yaml", config);
    let (process, _) = GliaProcess::serve(file.path(), extra, &[], false).await;
    process.terminate_with_log().1
}

const MODULES: &str = "modules:\n  - module: demo\n";

#[actix_rt::test]
async fn a_log_written_to_a_pipe_has_no_colour_codes() {
    let log = start_up_log(MODULES, &[]).await;
    assert!(log.contains("glia serving on"), "{log}");
    assert!(
        !log.contains('\u{1b}'),
        "ANSI escapes in a piped log:\n{log}"
    );
}

#[actix_rt::test]
async fn log_format_json_writes_one_json_object_per_line() {
    let log = start_up_log(&format!("log_format: json\n{MODULES}"), &[]).await;
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        let record: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(record["level"].is_string(), "{line}");
        assert!(record["timestamp"].is_string(), "{line}");
    }
    assert!(log.contains("glia serving on"), "{log}");
}

#[actix_rt::test]
async fn the_command_lines_log_format_wins_over_the_configs() {
    let log = start_up_log(
        &format!("log_format: json\n{MODULES}"),
        &["--log-format", "text"],
    )
    .await;
    assert!(log.contains("glia serving on"), "{log}");
    assert!(
        log.lines()
            .all(|l| serde_json::from_str::<Value>(l).is_err()),
        "JSON lines despite --log-format text:\n{log}"
    );
}
