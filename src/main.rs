//! The `itwin-proxy` binary: parse the command line, load the config, start, run until
//! SIGTERM or SIGINT (reloading the config on SIGHUP), drain.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use itwin_proxy::{app, config, telemetry};

/// The allocator: every request allocates and frees a few small blocks (headers, bodies, its
/// future), and mimalloc's per-thread free lists take a fraction of the instructions of the
/// system allocator's (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A caching reverse proxy for the iTwin Platform REST API.
#[derive(Debug, Parser)]
#[command(name = "itwin-proxy", version, about)]
struct Cli {
    /// The TOML config file; without it the built-in defaults apply.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate the config, print the effective config (secrets redacted) and exit.
    #[arg(long)]
    check_config: bool,
}

/// Why a variable such as `ITWIN_PROXY_CACHE_TTL` is worth a warning.
const STRAY_VARIABLE: &str =
    "ignored: overrides are named ITWIN_PROXY__SECTION__KEY, with double underscores";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: HashMap<String, String> = std::env::vars().collect();
    let settings = match config::load(cli.config.as_deref(), &env) {
        Ok(settings) => settings,
        Err(problems) => {
            eprintln!("invalid configuration:\n{problems}");
            return ExitCode::from(2);
        }
    };
    let stray = config::stray_variables(&env);
    if cli.check_config {
        for variable in &stray {
            eprintln!("warning: {variable}: {STRAY_VARIABLE}");
        }
        print!("{}", settings.to_toml());
        return ExitCode::SUCCESS;
    }
    let _flusher = match telemetry::init(&settings.log) {
        Ok(flusher) => flusher,
        Err(error) => {
            eprintln!("cannot set up logging: {error}");
            return ExitCode::from(2);
        }
    };
    for variable in &stray {
        tracing::warn!(variable = variable.as_str(), "{STRAY_VARIABLE}");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(settings, cli.config, &env))
}

async fn run(
    settings: config::Settings,
    config_path: Option<PathBuf>,
    env: &HashMap<String, String>,
) -> ExitCode {
    // Handlers go in before the listeners, so a signal right after start-up is never lost
    // (an unhandled SIGHUP would end the process).
    let signals = match Signals::install() {
        Ok(signals) => signals,
        Err(error) => {
            tracing::error!(%error, "cannot listen for signals");
            return ExitCode::FAILURE;
        }
    };
    let running = match app::start(settings).await {
        Ok(running) => running,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    signals
        .serve_until_stopped(&running, config_path.as_deref(), env)
        .await;
    tracing::info!("shutdown signal received; draining");
    let drained = running.shutdown().await;
    if drained.cut > 0 {
        tracing::warn!(cut = drained.cut, "grace period over; requests cut");
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// The signals the binary handles.
struct Signals {
    terminate: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
    hangup: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Serves until SIGTERM or SIGINT; on SIGHUP, reloads the config file and applies it.
    async fn serve_until_stopped(
        mut self,
        running: &app::RunningProxy,
        config_path: Option<&Path>,
        env: &HashMap<String, String>,
    ) {
        loop {
            tokio::select! {
                _ = self.terminate.recv() => return,
                _ = self.interrupt.recv() => return,
                _ = self.hangup.recv() => reload(running, config_path, env),
            }
        }
    }
}

/// Reads the config file again and swaps it in; an invalid config keeps the running one.
/// The environment is the one the process started with (it cannot change).
fn reload(running: &app::RunningProxy, config_path: Option<&Path>, env: &HashMap<String, String>) {
    match running.reload_config(config_path, env) {
        Ok(reloaded) => {
            for origin in &reloaded.unrewritten_origins {
                tracing::warn!(
                    origin = origin.as_str(),
                    "links to this former upstream origin are no longer rewritten; list it in upstream.link_origins to keep them leading through the proxy"
                );
            }
            for key in &reloaded.needs_restart {
                tracing::warn!(key, "changed, but only takes effect after a restart");
            }
            tracing::info!(
                cache_emptied = reloaded.cache_emptied,
                "configuration reloaded"
            );
        }
        Err(app::ReloadError::Invalid(problems)) => {
            tracing::error!(%problems, "reload refused: invalid configuration; keeping the running one");
        }
        Err(error) => tracing::error!(%error, "reload refused; keeping the running configuration"),
    }
}
