//! The `glia` command: serve, or check a config.

mod cli_reload;

use clap::{Parser, Subcommand};
use cli_reload as reload;
use glia_runtime::app::{self, PythonCheck};
use glia_runtime::config::{self, GliaConfig, Placement};
use glia_runtime::logging::{self, LogFormat};
use glia_runtime::{chaos, http, replay, Glia};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

/// glia: a module runtime for Matrix homeservers.
#[derive(Parser)]
#[command(name = "glia", version, about, long_about = None)]
struct Cli {
    /// How to write logs: `text` (coloured only on a terminal) or `json` (one object per
    /// line, for log shippers); overrides the config's `log_format`.
    #[arg(long, global = true, value_parser = clap::builder::ValueParser::new(parse_log_format))]
    log_format: Option<LogFormat>,
    /// Log as JSON lines: the same as `--log-format json`.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the modules and serve the HTTP API.
    Serve {
        /// The config file; without it glia runs the embedded example config.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// HOST:PORT to listen on, overriding the config's `listen`.
        #[arg(long)]
        listen: Option<String>,
    },
    /// Host the config's `placement: nats` modules and serve them over NATS (one queue group
    /// per module, so several workers share a module's load).
    Worker {
        /// The config file (the same one `glia serve` uses).
        #[arg(long, short)]
        config: PathBuf,
        /// HOST:PORT to serve Prometheus metrics on (`GET /metrics`); none if unset.
        #[arg(long)]
        metrics_listen: Option<String>,
    },
    /// Ask a running `glia serve` to re-read its config file (as SIGHUP does) and print what
    /// changed, or why the new config was refused; exits non-zero if it was.
    Reload {
        /// The base URL of the running glia.
        #[arg(long, default_value = "http://127.0.0.1:8787")]
        url: String,
        /// A file holding the API's bearer token (`auth_token`), if it has one.
        #[arg(long)]
        token_file: Option<PathBuf>,
    },
    /// Validate a config file without starting anything; exits non-zero on an error.
    CheckConfig {
        /// The config file.
        file: PathBuf,
    },
    /// Re-decide recorded decisions (a decision log written with `include_content: true`)
    /// under a candidate config, running its modules for real, and report which decisions
    /// change: totals by callback, module and kind of change, with examples.
    Replay(ReplayArgs),
    /// Drive requests at chaos modules (panicking, hanging, answering garbage on a seeded
    /// plan) mixed with a real module; exit non-zero if any request went unanswered, missed
    /// its deadline, or got another answer than the plan implies.
    Chaos {
        /// Requests to send.
        #[arg(long, default_value_t = 10_000)]
        requests: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Chance that a chaos module's invocation panics.
        #[arg(long, default_value_t = 0.10)]
        panic: f64,
        /// Chance that it hangs (caught by the module timeout, then the watchdog).
        #[arg(long, default_value_t = 0.005)]
        hang: f64,
        /// Chance that it answers an invalid value.
        #[arg(long, default_value_t = 0.02)]
        invalid: f64,
        /// Seed of the plan; the same seed replays the same run.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// First run the same scenario without panics, and compare throughput.
        #[arg(long)]
        baseline: bool,
    },
}

/// `glia replay`'s arguments.
#[derive(clap::Args)]
struct ReplayArgs {
    /// The candidate config.
    #[arg(long)]
    config: PathBuf,
    /// The decision log (JSON lines); `-` reads standard input.
    decisions: PathBuf,
    /// Print the report as JSON (every change listed) instead of text.
    #[arg(long)]
    json: bool,
    /// Decisions re-decided per second, at most.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Decisions re-decided at once, at most.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Examples of each kind of change in the text report.
    #[arg(long, default_value_t = 5)]
    examples: usize,
    /// Exit with status 2 when any decision would change.
    #[arg(long)]
    fail_on_change: bool,
}

/// What `check-config` and `serve` say of a config without modules (`modules: []`, or none
/// listed); an empty file is refused.
const NO_MODULES: &str = "no modules are configured: glia allows every callback it is asked \
                          (list modules under `modules:`)";

/// Loads the config; `python` selects the Python modules whose configs a Python host checks
/// (those this command runs, or all of them for `check-config`).
fn load_config(
    path: Option<&PathBuf>,
    python: PythonCheck,
) -> Result<GliaConfig, config::ConfigFileError> {
    let registry = glia_modules::builtin_registry();
    match path {
        Some(p) => app::load_file_with(p, &registry, python),
        None => app::load_str(config::EMBEDDED_CONFIG, config::EMBEDDED_NAME, &registry),
    }
}

/// [`load_config`], its error as text.
fn load(path: Option<&PathBuf>, python: PythonCheck) -> Result<GliaConfig, String> {
    load_config(path, python).map_err(|e| e.to_string())
}

/// How `serve` (or `worker`) re-reads its config on a reload: the same file, checks and
/// command-line overrides as at start.
fn loader(
    path: Option<PathBuf>,
    python: PythonCheck,
    listen: Option<String>,
) -> glia_runtime::app::ConfigLoader {
    Arc::new(move || {
        let mut cfg = load_config(path.as_ref(), python)?;
        if let Some(listen) = &listen {
            cfg.listen = listen.clone();
        }
        Ok(cfg)
    })
}

fn parse_log_format(s: &str) -> Result<LogFormat, String> {
    s.parse()
}

/// The log format: the command line's, else the config file's `log_format`, else text.
fn log_format(cli: &Cli) -> LogFormat {
    if cli.log_json {
        return LogFormat::Json;
    }
    let file = match &cli.command {
        Command::Serve { config, .. } => config.as_ref(),
        Command::Worker { config, .. } | Command::CheckConfig { file: config } => Some(config),
        _ => None,
    };
    cli.log_format
        .or_else(|| file.and_then(|f| config::peek_log_format(f)))
        .unwrap_or_default()
}

/// Runs `future` in an actix system.
fn run<T, F: std::future::Future<Output = Result<T, String>>>(future: F) -> Result<T, String> {
    actix_web::rt::System::new().block_on(future)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A chaos run crashes modules by the thousand on purpose: its report says what matters.
    // A replay's report is its output: only warnings and errors join it (on stderr).
    let level = match &cli.command {
        Command::Chaos { .. } => "off",
        Command::Replay(_) => "warn",
        _ => "info",
    };
    logging::init(log_format(&cli), level);
    let outcome = match cli.command {
        // Loading checks everything `serve` and `worker` check before they start, the files
        // the config names and every Python module's `parse_config` included.
        Command::CheckConfig { file } => load(Some(&file), PythonCheck::All).map(|cfg| {
            println!("{}: OK ({} modules)", file.display(), cfg.modules.len());
            if cfg.modules.is_empty() {
                eprintln!("warning: {NO_MODULES}");
            }
        }),
        Command::Chaos {
            requests,
            concurrency,
            panic,
            hang,
            invalid,
            seed,
            baseline,
        } => {
            let options = chaos::ChaosOptions {
                requests,
                concurrency,
                panic,
                hang,
                invalid,
                seed,
                ..chaos::ChaosOptions::default()
            };
            glia_modules::chaos::quiet_planned_panics();
            return actix_web::rt::System::new().block_on(run_chaos(options, baseline));
        }
        Command::Reload { url, token_file } => run(reload::ask(url, token_file)),
        Command::Replay(args) => return run_replay(args),
        Command::Worker {
            config,
            metrics_listen,
        } => {
            let python = PythonCheck::Placement(Placement::Nats);
            let reload = loader(Some(config.clone()), python, None);
            load(Some(&config), python).and_then(|cfg| run(run_worker(cfg, metrics_listen, reload)))
        }
        Command::Serve { config, listen } => {
            let python = PythonCheck::Placement(Placement::Local);
            let reload = loader(config.clone(), python, listen.clone());
            load(config.as_ref(), python).and_then(|mut cfg| {
                if let Some(listen) = listen {
                    cfg.listen = listen;
                }
                run(serve(cfg, reload))
            })
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `glia replay`: exits 0, 2 when a decision would change and `--fail-on-change` asks, or 1
/// on an error.
fn run_replay(args: ReplayArgs) -> ExitCode {
    let options = replay::ReplayOptions {
        rate: args.rate,
        concurrency: args.concurrency,
        ..Default::default()
    };
    let python = PythonCheck::Placement(Placement::Local);
    let outcome = load(Some(&args.config), python).and_then(|cfg| {
        run(async {
            let report = replay::run(cfg, &args.decisions, &options).await?;
            match args.json {
                true => println!(
                    "{}",
                    serde_json::to_string_pretty(&report).unwrap_or_default()
                ),
                false => print!("{}", report.text(args.examples)),
            }
            Ok(report.changed)
        })
    });
    match outcome {
        Ok(changed) if changed > 0 && args.fail_on_change => ExitCode::from(2),
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cfg: GliaConfig, loader: glia_runtime::app::ConfigLoader) -> Result<(), String> {
    // Before anything else: the default actions of SIGHUP, SIGTERM and SIGINT would kill the
    // process (a SIGTERM during start-up is then a graceful stop once started).
    let mut hangups = reload::hangups()?;
    let stopping = shutdown_signal();
    let listen = cfg.listen.clone();
    let source = cfg.source.clone();
    let options = glia_runtime::app::StartOptions {
        loader: Some(loader),
        ..Default::default()
    };
    let glia = Arc::new(
        Glia::start_with(cfg, options)
            .await
            .map_err(|e| e.to_string())?,
    );
    let http::Bound { server, urls, stop } = http::serve(glia.clone(), &listen, None)
        .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    tracing::info!(%listen, config = %source, modules = glia.config().modules.len(), "glia serving on {urls}");
    if glia.config().modules.is_empty() {
        tracing::warn!("{NO_MODULES}");
    }
    let mut running = server;
    tokio::pin!(stopping);
    loop {
        tokio::select! {
            result = &mut running => return result.map_err(|e| e.to_string()),
            _ = hangups.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                let glia = glia.clone();
                // The outcome is logged and counted by the reload itself.
                actix_rt::spawn(async move { let _ = glia.reload().await; });
            }
            signal = &mut stopping => {
                stop.begin();
                tracing::info!(%signal, grace_ms = glia.config().shutdown_grace.as_millis() as u64, "shutting down: no new requests; in-flight ones get the grace period");
                break;
            }
        }
    }
    // The last config's grace: a reload may have changed it.
    let grace = glia.config().shutdown_grace;
    let until = tokio::time::Instant::now() + grace;
    // Stop taking requests, and answer those that arrive on connections already open (a
    // bridge's pooled ones) with the modules still running: stopping them at once had such
    // requests decided by failure policies (a 500 for a rule) in every rolling restart. Once
    // the connections are gone, or the grace is over, in-flight requests get what is left of
    // it, the rest resolve through their failure policies, and modules stop in reverse config
    // order. The server future must be polled for the stop to proceed.
    let http = async { futures::join!(stop.stop(), running).1 };
    tokio::pin!(http);
    let stopped = tokio::select! {
        stopped = &mut http => {
            glia.shutdown(until.saturating_duration_since(tokio::time::Instant::now())).await;
            stopped
        }
        () = tokio::time::sleep_until(until) => futures::join!(http, glia.shutdown(std::time::Duration::ZERO)).0,
    };
    stopped.map_err(|e| e.to_string())?;
    tracing::info!("glia stopped");
    Ok(())
}

/// Waits for SIGTERM or SIGINT and names it.
/// The first SIGTERM or SIGINT. The handlers are installed at the call, not when the future
/// is first polled: a signal that comes in between would otherwise kill the process with its
/// default action, skipping the drain.
fn shutdown_signal() -> impl std::future::Future<Output = &'static str> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        match handlers {
            (Ok(mut term), Ok(mut int)) => tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
}

async fn run_chaos(options: chaos::ChaosOptions, baseline: bool) -> ExitCode {
    let base = if baseline {
        let calm = chaos::ChaosOptions {
            panic: 0.0,
            ..options.clone()
        };
        println!("== baseline: the same scenario without panics");
        match chaos::run(&calm).await {
            Ok(report) => {
                println!("{report}\n");
                Some(report)
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        None
    };
    println!(
        "== chaos: {} requests, {} in flight, panic {}, hang {}, invalid {}, seed {}",
        options.requests,
        options.concurrency,
        options.panic,
        options.hang,
        options.invalid,
        options.seed
    );
    let report = match chaos::run(&options).await {
        Ok(report) => report,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{report}");
    if let Some(base) = base {
        println!(
            "throughput with panics / without: {:.0} / {:.0} requests/s = {:.2}",
            report.throughput(),
            base.throughput(),
            report.throughput() / base.throughput()
        );
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The worker's `/health`, for its metrics listener.
fn health_of(worker: &Arc<glia_runtime::worker::Worker>) -> http::HealthFn {
    let worker = worker.clone();
    Arc::new(move || {
        let worker = worker.clone();
        Box::pin(async move { worker.health().await })
    })
}

async fn run_worker(
    cfg: GliaConfig,
    metrics_listen: Option<String>,
    loader: glia_runtime::app::ConfigLoader,
) -> Result<(), String> {
    // Before anything else: the default actions of SIGHUP, SIGTERM and SIGINT would kill the
    // process (a SIGTERM during start-up is then a graceful stop once started).
    let mut hangups = reload::hangups()?;
    let stopping = shutdown_signal();
    let worker = Arc::new(glia_runtime::worker::Worker::start_with(&cfg, Some(loader)).await?);
    tracing::info!(modules = ?worker.modules(), "glia worker serving over NATS");
    let metrics = match &metrics_listen {
        Some(listen) => {
            let glia_runtime::http::Bound { server, urls, stop } =
                glia_runtime::http::serve_metrics(
                    worker.telemetry().clone(),
                    health_of(&worker),
                    listen,
                )
                .map_err(|e| format!("cannot serve metrics on {listen}: {e}"))?;
            actix_rt::spawn(server);
            tracing::info!(%listen, health = "/health", "serving GET /metrics on {urls}");
            Some(stop)
        }
        None => None,
    };
    tokio::pin!(stopping);
    let signal = loop {
        tokio::select! {
            _ = hangups.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                let worker = worker.clone();
                // The outcome is logged and counted by the reload itself.
                actix_rt::spawn(async move { let _ = worker.reload().await; });
            }
            signal = &mut stopping => break signal,
        }
    };
    tracing::info!(%signal, "draining: no new invocations; in-flight ones finish");
    if let Some(server) = metrics {
        server.stop().await;
    }
    worker.shutdown(worker.shutdown_grace()).await;
    tracing::info!("glia worker stopped");
    Ok(())
}
