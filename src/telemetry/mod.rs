//! Logging set-up: tracing to stderr, as text or JSON lines, filtered by `RUST_LOG` when set,
//! else by `log.level`; lines written in batches off the request path (see [`batched`]). The
//! request line is written by the proxy's own formatter (see [`access_line`]) beside them,
//! and the request span's fields too (see [`request_span`]).

pub(crate) mod access_line;
pub mod batched;
#[cfg(test)]
pub(crate) mod captured;
pub(crate) mod request_span;
mod timestamp;
mod values;

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, LogSettings};
pub use batched::Flusher;
use request_span::RequestSpanFields;

/// Installs the global subscriber and the request-line writer. Fails when the filter is
/// invalid, the writer thread cannot start or a subscriber is already installed. Keep the
/// returned [`Flusher`] until the end: dropping it writes the last lines.
pub fn init(settings: &LogSettings) -> Result<Flusher, String> {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(directives),
        _ => EnvFilter::try_new(&settings.level),
    }
    .map_err(|e| e.to_string())?;
    let (writer, flusher) = batched::start(std::io::stderr()).map_err(|e| e.to_string())?;
    let ansi = std::io::stderr().is_terminal();
    subscriber(filter, settings.format, ansi, writer.clone(), SystemTime)
        .try_init()
        .map_err(|e| e.to_string())?;
    access_line::install(writer, settings.format).map_err(|e| e.to_string())?;
    Ok(flusher)
}

/// The subscriber [`init`] installs: `format` lines through `writer`, stamped by `timer`.
fn subscriber<W, T>(
    filter: EnvFilter,
    format: LogFormat,
    ansi: bool,
    writer: W,
    timer: T,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
    T: FormatTime + Send + Sync + 'static,
{
    // Layers see a new span innermost first: the request span's fields are formatted before
    // the fmt layer would format them.
    let registry = tracing_subscriber::registry().with(RequestSpanFields::new(format));
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(writer)
        .with_timer(timer);
    match format {
        LogFormat::Text => Box::new(registry.with(layer).with(filter)),
        LogFormat::Json => Box::new(
            registry
                .with(
                    layer
                        .json()
                        .flatten_event(true)
                        .with_current_span(true)
                        .with_span_list(false),
                )
                .with(filter),
        ),
    }
}
