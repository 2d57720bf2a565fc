//! `glia reload` and SIGHUP: the two ways to make a running glia re-read its config.
//!
//! The command asks over HTTP (`POST /_glia/v1/admin/reload`, behind the API's token) rather
//! than signalling a pid: the answer (what changed, or why the config was refused) comes
//! back to the operator, and it works where a pid cannot be reached (another container, a
//! Kubernetes pod). SIGHUP stays for service managers (`systemctl reload`), which only
//! signal; its outcome is in the log and in `/metrics`.

use std::path::PathBuf;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// SIGHUP, caught from now on (its default action ends the process).
pub fn hangups() -> Result<Signal, String> {
    signal(SignalKind::hangup()).map_err(|e| format!("cannot handle SIGHUP: {e}"))
}

/// Asks the glia at `url` to reload and prints its answer.
pub async fn ask(url: String, token_file: Option<PathBuf>) -> Result<(), String> {
    let token = match &token_file {
        Some(path) => Some(
            glia_module_api::files::read_text(path, glia_module_api::files::MAX_NAMED_FILE)
                .map_err(|e| format!("cannot read the token file {}: {e}", path.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let endpoint = format!("{}/_glia/v1/admin/reload", url.trim_end_matches('/'));
    // A reload waits for the retired modules' in-flight work: at most the deadline plus
    // the shutdown grace.
    let client = awc::Client::builder()
        .timeout(std::time::Duration::from_secs(120))
        .finish();
    let mut request = client.post(&endpoint);
    if let Some(token) = &token {
        request = request.bearer_auth(token);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| format!("cannot reach {endpoint}: {e}"))?;
    let body = response
        .body()
        .await
        .map_err(|e| format!("cannot read the answer of {endpoint}: {e}"))?;
    let json: serde_json::Value = serde_json::from_slice(&body).map_err(|_| {
        format!(
            "{endpoint} answered {}: {}",
            response.status(),
            String::from_utf8_lossy(&body)
        )
    })?;
    if !response.status().is_success() {
        let error = json["error"].as_str().unwrap_or("no reason given");
        return Err(format!("{error} (HTTP {})", response.status().as_u16()));
    }
    println!("{}", describe(&json));
    Ok(())
}

/// The report as lines an operator reads.
fn describe(report: &serde_json::Value) -> String {
    let names = |key: &str| -> Vec<String> {
        report[key]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let list = |key: &str| {
        let names = names(key);
        if names.is_empty() {
            "none".to_owned()
        } else {
            names.join(", ")
        }
    };
    let mut out = format!(
        "reloaded {}\n  started:  {}\n  replaced: {}\n  stopped:  {}\n  kept:     {}",
        report["config"].as_str().unwrap_or("?"),
        list("started"),
        list("replaced"),
        list("stopped"),
        list("kept"),
    );
    let restart = names("needs_restart");
    if !restart.is_empty() {
        out.push_str(&format!(
            "\n  changed but needs a restart (old value kept): {}",
            restart.join(", ")
        ));
    }
    out
}
