//! Log output through tracing-subscriber: human-readable by default, JSON on request; the
//! level comes from `RUST_LOG`.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber at level `info` unless `RUST_LOG` says otherwise. Calling
/// it twice is harmless (the second call is ignored).
pub fn init(json: bool) {
    init_with_default(json, "info");
}

/// Installs the global subscriber with `default` as the filter when `RUST_LOG` is unset.
pub fn init_with_default(json: bool, default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
