//! The request line against what tracing's fmt layer writes for the same event in the same
//! span (through the very subscriber `init` installs), and its escaping of hostile values.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, UNIX_EPOCH};

use tracing::field;

use super::*;
use crate::telemetry::captured::lines_written;

/// The instant every line of these tests is written at (the caught lines' stopped clock).
const AT_SECS: u64 = 1_709_210_096;

/// The line tracing's fmt layer writes in `format` for the event the proxy used to log, in
/// a span shaped as the request's span was (its late fields recorded as `finish` did).
fn by_tracing(format: LogFormat, line: &RequestLine<'_>) -> String {
    lines_written("info", format, || {
        let user_agent = line.user_agent;
        let span = match line.in_span {
            true => tracing::info_span!(
                "request",
                request_id = line.request_id,
                http.method = %line.method,
                http.path = line.path,
                client.address = %line.client,
                user_agent,
                http.route = field::Empty,
                http.status = field::Empty,
                cache = field::Empty,
                upstream_ms = field::Empty,
            ),
            false => tracing::Span::none(),
        };
        span.record("http.route", line.route);
        span.record("http.status", line.status.as_u16());
        if let Some(cache) = line.cache {
            span.record("cache", cache);
        }
        if let Some(upstream_ms) = line.upstream_ms {
            span.record("upstream_ms", upstream_ms);
        }
        span.in_scope(|| {
            tracing::info!(
                target: "itwin_proxy::pipeline::access",
                duration_ms = line.duration_ms,
                bytes = line.bytes,
                complete = line.complete,
                "request completed"
            );
        });
    })
}

/// The line this module writes.
fn ours(format: LogFormat, line: &RequestLine<'_>) -> String {
    let mut out = String::new();
    let at = UNIX_EPOCH + Duration::new(AT_SECS, 123_456_789);
    super::format(&mut out, format, at, line);
    out
}

/// A hit, as the proxy logs it most often.
fn hit() -> RequestLine<'static> {
    RequestLine {
        request_id: "first",
        method: "GET",
        path: "/export/connections",
        client: IpAddr::V4(Ipv4Addr::LOCALHOST),
        user_agent: "log-test/1.0",
        route: "/export/connections",
        status: StatusCode::OK,
        cache: Some("hit"),
        upstream_ms: None,
        in_span: true,
        duration_ms: 0,
        bytes: 5222,
        complete: true,
    }
}

/// Values a client may send to break a line or forge a field.
const HOSTILE: &[&str] = &[
    "",
    "plain/1.0",
    "quote\" back\\slash",
    "x\" cache=\"forged",
    "new\nline\r\n{\"level\":\"ERROR\"}",
    "tab\tnul\0bell\u{7}esc\u{1b}[31mdel\u{7f}unit\u{1f}",
    "caf\u{e9} e\u{301} nel\u{85} bom\u{feff} emoji\u{1f600} 'single'",
    "} : request{request_id=\"forged\"}",
];

fn every_variant() -> Vec<RequestLine<'static>> {
    let mut lines = vec![hit()];
    lines.push(RequestLine {
        cache: None,
        upstream_ms: Some(12),
        status: StatusCode::BAD_GATEWAY,
        route: "other",
        method: "PURGE",
        client: IpAddr::V6(Ipv6Addr::LOCALHOST),
        complete: false,
        duration_ms: 30_001,
        bytes: 0,
        ..hit()
    });
    lines.push(RequestLine {
        cache: Some("miss"),
        upstream_ms: Some(0),
        client: "::ffff:10.1.2.3".parse().unwrap(),
        ..hit()
    });
    lines.push(RequestLine {
        in_span: false,
        ..hit()
    });
    // Another address of the same family after the first: each thread keeps the text of the
    // last address it wrote, which must not be shown for another.
    lines.push(RequestLine {
        client: IpAddr::V4(Ipv4Addr::new(10, 20, 30, 255)),
        ..hit()
    });
    lines.push(hit());
    for hostile in HOSTILE {
        lines.push(RequestLine {
            user_agent: hostile,
            path: hostile,
            request_id: hostile,
            ..hit()
        });
    }
    lines
}

#[test]
fn lines_are_those_tracing_wrote_in_both_formats() {
    for format in [LogFormat::Json, LogFormat::Text] {
        for line in every_variant() {
            assert_eq!(ours(format, &line), by_tracing(format, &line), "{line:?}");
        }
    }
}

#[test]
fn json_lines_give_back_hostile_values_whole() {
    for hostile in HOSTILE {
        let line = RequestLine {
            user_agent: hostile,
            path: hostile,
            ..hit()
        };
        let written = ours(LogFormat::Json, &line);
        assert_eq!(written.matches('\n').count(), 1, "{written}");
        assert!(written.ends_with('\n'));
        let parsed: serde_json::Value = serde_json::from_str(&written).unwrap();
        assert_eq!(parsed["span"]["user_agent"], *hostile);
        assert_eq!(parsed["span"]["http.path"], *hostile);
        assert_eq!(parsed["span"]["cache"], "hit");
        assert_eq!(parsed["span"]["http.status"], 200);
        assert_eq!(parsed["bytes"], 5222);
        assert_eq!(parsed["complete"], true);
        assert!(parsed["span"].get("upstream_ms").is_none());
    }
}

#[test]
fn text_lines_keep_hostile_values_inside_their_quotes() {
    for hostile in HOSTILE {
        let line = RequestLine {
            user_agent: hostile,
            path: hostile,
            ..hit()
        };
        let written = ours(LogFormat::Text, &line);
        assert_eq!(written.matches('\n').count(), 1, "{written}");
        assert!(
            !written.contains('\r') && !written.contains('\u{1b}'),
            "{written}"
        );
        let quoted = format!("{hostile:?}");
        assert!(
            written.contains(&format!(" http.path={quoted} client.address=127.0.0.1 ")),
            "{written}"
        );
        assert!(written.contains(&format!(" user_agent={quoted} http.route=")));
        assert_eq!(written.matches(" cache=\"hit\"").count(), 1, "{written}");
    }
}

#[test]
fn nothing_is_written_without_a_sink() {
    // No test installs the sink: it is the process-wide one `init` sets.
    assert_eq!(enabled(), None);
    write(&hit());
}
