//! The `itwin-proxy` binary: parse the command line, load the config, start, run until
//! SIGTERM or SIGINT, drain.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use itwin_proxy::{app, config, telemetry};

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
    if cli.check_config {
        print!("{}", settings.to_toml());
        return ExitCode::SUCCESS;
    }
    if let Err(error) = telemetry::init(&settings.log) {
        eprintln!("cannot set up logging: {error}");
        return ExitCode::from(2);
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
    runtime.block_on(run(settings))
}

async fn run(settings: config::Settings) -> ExitCode {
    let running = match app::start(settings).await {
        Ok(running) => running,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) = shutdown_signal().await {
        tracing::error!(%error, "cannot listen for signals; shutting down");
    }
    tracing::info!("shutdown signal received; draining");
    let drained = running.shutdown().await;
    if drained.cut > 0 {
        tracing::warn!(cut = drained.cut, "grace period over; requests cut");
    }
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() -> std::io::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}
