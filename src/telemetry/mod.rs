//! Logging set-up: tracing to stderr, as text or JSON lines, filtered by `RUST_LOG` when set,
//! else by `log.level`; lines written in batches off the request path (see [`batched`]).

pub mod batched;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};
pub use batched::Flusher;

/// Installs the global subscriber. Fails when the filter is invalid, the writer thread cannot
/// start or a subscriber is already installed. Keep the returned [`Flusher`] until the end:
/// dropping it writes the last lines.
pub fn init(settings: &LogSettings) -> Result<Flusher, String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(directives),
        _ => EnvFilter::try_new(&settings.level),
    }
    .map_err(|e| e.to_string())?;
    let (writer, flusher) = batched::start(std::io::stderr()).map_err(|e| e.to_string())?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(writer);
    match settings.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .try_init(),
    }
    .map_err(|e| e.to_string())?;
    Ok(flusher)
}
