//! The request line (`request completed`), written by the proxy itself straight into the
//! batched log writer: byte for byte the line tracing's fmt layer wrote for the event in the
//! request's span, in both formats, at a fraction of the cost (no span field formatting, no
//! `Debug` machinery, no styling).
//!
//! The line is filtered as that event was: by the filter at level info for [`TARGET`]. A
//! client controls the path and the user agent; both are escaped (JSON string escaping, or
//! Rust's `Debug` escaping in text), so no value can end a line or forge a field.

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::OnceLock;
use std::time::SystemTime;

use http::StatusCode;
use tracing_subscriber::fmt::MakeWriter;

use super::batched::Batched;
use super::request_span;
use super::timestamp::write_rfc3339_micros;
use super::values::{debug_string, json_string};
use crate::ascii::decimal;
use crate::config::LogFormat;

/// The target the line is logged and filtered under.
pub(crate) const TARGET: &str = "itwin_proxy::pipeline::access";

/// The line's message.
const MESSAGE: &str = "request completed";

/// The name of the request's span, which the line shows its fields under.
const SPAN: &str = "request";

/// Where request lines go, as the subscriber's own lines do, and what the subscriber's filter
/// lets through: it is fixed once installed, so it is asked once, not on every request.
struct Sink {
    writer: Batched,
    format: LogFormat,
    /// The filter lets an info event of [`TARGET`] through.
    lines: bool,
    /// The filter lets the request's span through (see [`request_span::enabled`]).
    in_span: bool,
}

/// Installed once with the global subscriber: the line goes where tracing's lines go, and
/// nowhere when no subscriber was installed (a process that never called `init`).
static SINK: OnceLock<Sink> = OnceLock::new();

/// The sink was installed already.
#[derive(Debug, thiserror::Error)]
#[error("the request-line writer is already installed")]
pub(crate) struct AlreadyInstalled;

/// Sends request lines to `writer` in `format`, once per process, filtered as the global
/// subscriber (installed just before) filters.
pub(super) fn install(writer: Batched, format: LogFormat) -> Result<(), AlreadyInstalled> {
    SINK.set(Sink {
        writer,
        format,
        lines: tracing::enabled!(target: TARGET, tracing::Level::INFO),
        in_span: request_span::enabled(),
    })
    .map_err(|_| AlreadyInstalled)
}

/// Whether request lines are written: a sink is installed and the filter lets them through.
/// `Some` tells whether the lines show the request's span fields (see [`RequestLine::in_span`]).
pub(crate) fn enabled() -> Option<bool> {
    SINK.get()
        .filter(|sink| sink.lines)
        .map(|sink| sink.in_span)
}

/// What one request line says, under the names tracing gave it.
#[derive(Debug, Clone)]
pub(crate) struct RequestLine<'a> {
    /// `request_id`.
    pub request_id: &'a str,
    /// `http.method`.
    pub method: &'a str,
    /// `http.path`: as the client sent it.
    pub path: &'a str,
    /// `client.address`.
    pub client: IpAddr,
    /// `user_agent`: as the client sent it, empty without one.
    pub user_agent: &'a str,
    /// `http.route`: the route template.
    pub route: &'a str,
    /// `http.status`.
    pub status: StatusCode,
    /// `cache`: the cache label, when the cache had a say.
    pub cache: Option<&'a str>,
    /// `upstream_ms`: time spent waiting for upstream heads, when the upstream was called.
    pub upstream_ms: Option<u64>,
    /// Whether the request's span is enabled: only then does the line show the fields above
    /// (under `span` in JSON), as an event in a disabled span did.
    pub in_span: bool,
    /// `duration_ms`: from the request's arrival to the line.
    pub duration_ms: u64,
    /// `bytes`: body bytes sent.
    pub bytes: u64,
    /// `complete`: whether the whole body was sent.
    pub complete: bool,
}

/// A buffer grown past this by a long line (a long path or user agent) is not kept.
const MAX_KEPT_BUFFER: usize = 4096;

thread_local! {
    /// Each thread formats its lines in a buffer of its own, kept from line to line.
    static BUFFER: RefCell<String> = const { RefCell::new(String::new()) };
    /// The client address last written on this thread, and its text (empty before the first).
    static LAST_CLIENT: RefCell<(IpAddr, String)> =
        const { RefCell::new((IpAddr::V4(Ipv4Addr::UNSPECIFIED), String::new())) };
}

/// Writes `line` to the installed sink, if any.
pub(crate) fn write(line: &RequestLine<'_>) {
    let Some(sink) = SINK.get() else {
        return;
    };
    let write = |out: &mut String| {
        out.clear();
        format(out, sink.format, SystemTime::now(), line);
        // Nowhere to report a failed log write, as for tracing's own lines.
        let _ = sink.writer.make_writer().write_all(out.as_bytes());
        if out.capacity() > MAX_KEPT_BUFFER {
            *out = String::new();
        }
    };
    // A thread whose buffer is busy or gone (never expected) formats in a new one.
    let reused = BUFFER.try_with(|buffer| buffer.try_borrow_mut().map(|mut out| write(&mut out)));
    if !matches!(reused, Ok(Ok(()))) {
        write(&mut String::new());
    }
}

/// Appends `line`, written at `now`, in `format`, with its newline.
fn format(out: &mut String, format: LogFormat, now: SystemTime, line: &RequestLine<'_>) {
    match format {
        LogFormat::Json => json(out, now, line),
        LogFormat::Text => text(out, now, line),
    }
}

/// The line as the JSON formatter writes it (event fields flattened, the current span under
/// `span` with its keys sorted and its name last).
fn json(out: &mut String, now: SystemTime, line: &RequestLine<'_>) {
    out.push_str("{\"timestamp\":\"");
    write_rfc3339_micros(out, now);
    out.push_str("\",\"level\":\"INFO\",\"message\":\"");
    out.push_str(MESSAGE);
    out.push_str("\",\"duration_ms\":");
    decimal(out, line.duration_ms);
    out.push_str(",\"bytes\":");
    decimal(out, line.bytes);
    out.push_str(",\"complete\":");
    out.push_str(bool_str(line.complete));
    out.push_str(",\"target\":\"");
    out.push_str(TARGET);
    out.push('"');
    if line.in_span {
        out.push_str(",\"span\":{");
        if let Some(cache) = line.cache {
            out.push_str("\"cache\":");
            json_string(out, cache);
            out.push(',');
        }
        out.push_str("\"client.address\":\"");
        write_ip(out, line.client);
        out.push_str("\",\"http.method\":");
        json_string(out, line.method);
        out.push_str(",\"http.path\":");
        json_string(out, line.path);
        out.push_str(",\"http.route\":");
        json_string(out, line.route);
        out.push_str(",\"http.status\":");
        out.push_str(line.status.as_str());
        out.push_str(",\"request_id\":");
        json_string(out, line.request_id);
        if let Some(upstream_ms) = line.upstream_ms {
            out.push_str(",\"upstream_ms\":");
            decimal(out, upstream_ms);
        }
        out.push_str(",\"user_agent\":");
        json_string(out, line.user_agent);
        out.push_str(",\"name\":\"");
        out.push_str(SPAN);
        out.push_str("\"}");
    }
    out.push_str("}\n");
}

/// The line as the full text formatter writes it without colours: strings quoted and
/// escaped as `Debug` does, the method and address as `Display` does.
fn text(out: &mut String, now: SystemTime, line: &RequestLine<'_>) {
    write_rfc3339_micros(out, now);
    out.push_str("  INFO ");
    if line.in_span {
        out.push_str(SPAN);
        out.push_str("{request_id=");
        debug_string(out, line.request_id);
        out.push_str(" http.method=");
        out.push_str(line.method);
        out.push_str(" http.path=");
        debug_string(out, line.path);
        out.push_str(" client.address=");
        write_ip(out, line.client);
        out.push_str(" user_agent=");
        debug_string(out, line.user_agent);
        out.push_str(" http.route=");
        debug_string(out, line.route);
        out.push_str(" http.status=");
        out.push_str(line.status.as_str());
        if let Some(cache) = line.cache {
            out.push_str(" cache=");
            debug_string(out, cache);
        }
        if let Some(upstream_ms) = line.upstream_ms {
            out.push_str(" upstream_ms=");
            decimal(out, upstream_ms);
        }
        out.push_str("}: ");
    }
    out.push_str(TARGET);
    out.push_str(": ");
    out.push_str(MESSAGE);
    out.push_str(" duration_ms=");
    decimal(out, line.duration_ms);
    out.push_str(" bytes=");
    decimal(out, line.bytes);
    out.push_str(" complete=");
    out.push_str(bool_str(line.complete));
    out.push('\n');
}

/// A boolean as both formats write it.
fn bool_str(value: bool) -> &'static str {
    match value {
        true => "true",
        false => "false",
    }
}

/// Appends an address as `Display` writes it. A sidecar's clients are nearly always the one
/// application beside it: each thread keeps the text of the last address it wrote.
fn write_ip(out: &mut String, ip: IpAddr) {
    let memo = LAST_CLIENT.try_with(|last| {
        let mut last = last.try_borrow_mut().ok()?;
        let (address, text) = &mut *last;
        if *address != ip || text.is_empty() {
            text.clear();
            let _ = write!(text, "{ip}");
            *address = ip;
        }
        out.push_str(text);
        Some(())
    });
    // A thread whose memo is busy or gone (never expected) formats the address in place.
    if !matches!(memo, Ok(Some(()))) {
        let _ = write!(out, "{ip}");
    }
}

#[cfg(test)]
mod tests;
