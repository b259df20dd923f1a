//! `itwin-proxy-sim`: runs the iTwin Export API simulator standalone, so the proxy can be tried
//! offline. It prints its address, its iModels and a ready-to-use demo token, and stops on
//! Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use itwin_proxy_sim::{
    DEMO_CONNECTION_COUNT, DEMO_IMODEL_ID, SimConfig, SimQuota, Simulator, TokenSpec,
};

/// How long the printed demo token stays valid.
const DEMO_TOKEN_LIFETIME_SECS: i64 = 24 * 60 * 60;

/// Where the example curl line expects the proxy.
const EXAMPLE_PROXY: &str = "http://127.0.0.1:8080";

/// Runs a local simulator of the iTwin Export API.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// Origin written into hrefs and Location headers, e.g. https://api.bentley.com
    /// (default: its own address).
    #[arg(long)]
    link_origin: Option<String>,
    /// An iModel to serve, with the number of connections to seed (repeatable; default: the
    /// demo iModel with 120).
    #[arg(long = "imodel", value_name = "ID[:COUNT]", value_parser = parse_imodel)]
    imodels: Vec<(String, usize)>,
    /// Delay added before each answer, e.g. 250ms.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "0s")]
    delay: Duration,
    /// Its own rate limit per token client_id, in requests per second (fractions allowed).
    #[arg(long)]
    quota_rps: Option<f64>,
    /// Calls allowed at once under --quota-rps (default: the rate rounded up).
    #[arg(long, requires = "quota_rps")]
    quota_burst: Option<u32>,
    /// Key its tokens are signed with, so they stay valid across restarts (default: random).
    #[arg(long)]
    secret: Option<String>,
    /// Subject of the printed demo token.
    #[arg(long, default_value = "demo-user")]
    token_sub: String,
    /// client_id of the printed demo token.
    #[arg(long, default_value = "sim-client")]
    token_client_id: String,
}

/// Reads `ID` or `ID:COUNT`.
fn parse_imodel(value: &str) -> Result<(String, usize), String> {
    let (id, count) = match value.rsplit_once(':') {
        Some((id, count)) => {
            let count = count
                .parse()
                .map_err(|_| format!("connection count {count:?} is not a whole number"))?;
            (id, count)
        }
        None => (value, DEMO_CONNECTION_COUNT),
    };
    if id.is_empty() {
        return Err("the iModel id is empty".to_owned());
    }
    Ok((id.to_owned(), count))
}

impl Args {
    fn config(&self) -> SimConfig {
        let imodels = if self.imodels.is_empty() {
            vec![(DEMO_IMODEL_ID.to_owned(), DEMO_CONNECTION_COUNT)]
        } else {
            self.imodels.clone()
        };
        let quota = self.quota_rps.map(|rps| SimQuota {
            requests_per_second: rps,
            burst: self
                .quota_burst
                .unwrap_or_else(|| rps.ceil().clamp(1.0, f64::from(u32::MAX)) as u32),
        });
        SimConfig {
            link_origin: self.link_origin.clone(),
            imodels,
            delay: self.delay,
            quota,
            secret: self.secret.as_ref().map(|s| s.as_bytes().to_vec()),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let config = args.config();
    let imodels = config.imodels.clone();
    let sim = match Simulator::bind(args.listen, config).await {
        Ok(sim) => sim,
        Err(error) => {
            eprintln!("itwin-proxy-sim: cannot start on {}: {error}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let spec = TokenSpec::new(&args.token_sub)
        .client_id(&args.token_client_id)
        .expires_in(DEMO_TOKEN_LIFETIME_SECS);
    let token = sim.token(&spec);
    println!("itwin-proxy-sim listening on {}", sim.base_url());
    println!("links are written with the origin {}", sim.link_origin());
    for (id, count) in &imodels {
        println!("iModel {id} ({count} connections)");
    }
    println!();
    println!(
        "demo token (sub {}, client_id {}, valid 24 h):",
        spec.sub, spec.client_id
    );
    println!("{token}");
    if args.secret.is_none() {
        println!("(the signing key is random: pass --secret to keep tokens valid across restarts)");
    }
    println!();
    println!(
        "RS256 demo token, verifiable locally with auth.issuer = \"{}\" (valid 24 h):",
        sim.base_url()
    );
    println!("{}", sim.rs256_token(&spec));
    if let Some((id, _)) = imodels.first() {
        println!();
        println!("through a proxy at {EXAMPLE_PROXY}:");
        println!(
            "curl -H \"Authorization: Bearer {token}\" \"{EXAMPLE_PROXY}/export/connections?imodelId={id}&\\$top=10\""
        );
    }
    stopped().await;
    sim.shutdown().await;
    ExitCode::SUCCESS
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn stopped() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            return;
        }
    }
    // Without a signal handler the simulator would never stop, so wait on Ctrl-C alone.
    let _ = tokio::signal::ctrl_c().await;
}
