//! The request's span, its fields formatted by the proxy: the fmt layer formats a span's
//! fields once, when the span is made, through its general visitor (`Debug` with escaping,
//! styling, a `serde_json` map in JSON), at a cost every request paid, though only a request
//! that logs something shows them. This layer runs first and stores them formatted as the fmt
//! layer would (which keeps fields it finds formatted), at a fraction of the cost.

use std::fmt::{self, Write as _};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::{Metadata, Subscriber};
use tracing_subscriber::fmt::FormattedFields;
use tracing_subscriber::fmt::format::{DefaultFields, JsonFields};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::registry::{ExtensionsMut, LookupSpan};

use super::values::{debug_string, json_string};
use crate::ascii::decimal;
use crate::config::LogFormat;

/// The request span's target.
pub(crate) const TARGET: &str = "itwin_proxy::pipeline";

/// The request span's name.
pub(crate) const NAME: &str = "request";

/// Whether the request's span is enabled: what its fields would be logged in. Asked once,
/// when the request line's writer is installed (see `access_line`), without making a span.
pub(super) fn enabled() -> bool {
    tracing::span_enabled!(target: TARGET, tracing::Level::INFO)
}

/// The most fields a span formatted here may have.
const MAX_FIELDS: usize = 8;

/// Formats the request span's fields before the fmt layer does, for logs in `format`.
pub(super) struct RequestSpanFields {
    format: LogFormat,
}

impl RequestSpanFields {
    /// The layer for the fmt layer that writes `format`.
    pub(super) fn new(format: LogFormat) -> Self {
        Self { format }
    }
}

impl<S> Layer<S> for RequestSpanFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        if !is_request_span(attrs.metadata()) {
            return;
        }
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut extensions = span.extensions_mut();
        match self.format {
            LogFormat::Text => keep::<DefaultFields>(&mut extensions, || text_fields(attrs)),
            LogFormat::Json => keep::<JsonFields>(&mut extensions, || json_fields(attrs)),
        }
    }
}

/// Stores the fields `format` writes as the fields the fmt layer with field formatter `F`
/// finds formatted, unless it has some already.
fn keep<F: 'static>(extensions: &mut ExtensionsMut<'_>, format: impl FnOnce() -> Option<String>) {
    if extensions.get_mut::<FormattedFields<F>>().is_none()
        && let Some(fields) = format()
    {
        extensions.insert(FormattedFields::<F>::new(fields));
    }
}

/// Whether a span is the request's span.
fn is_request_span(metadata: &Metadata<'_>) -> bool {
    metadata.name() == NAME && metadata.target() == TARGET
}

/// Whether the fmt layer treats a field named so as it treats any other (it skips `log.`
/// fields, strips `r#` and writes `message` apart); fields that are not are left to it.
fn plain_name(name: &str) -> bool {
    name != "message" && !name.starts_with("log.") && !name.starts_with("r#")
}

/// The fields as the text format's `DefaultFields` writes them: `name=value` in the order
/// given, strings quoted as `Debug` quotes them; `None` for a field it treats apart.
fn text_fields(attrs: &Attributes<'_>) -> Option<String> {
    let mut text = Text {
        out: String::with_capacity(96),
        plain: true,
    };
    attrs.record(&mut text);
    text.plain.then_some(text.out)
}

/// Collects [`text_fields`].
struct Text {
    out: String,
    plain: bool,
}

impl Text {
    fn name(&mut self, field: &Field) {
        self.plain &= plain_name(field.name());
        if !self.out.is_empty() {
            self.out.push(' ');
        }
        self.out.push_str(field.name());
        self.out.push('=');
    }
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.name(field);
        debug_string(&mut self.out, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.name(field);
        decimal(&mut self.out, value);
    }

    fn record_error(&mut self, _field: &Field, _value: &(dyn std::error::Error + 'static)) {
        // Written with its sources; left to the fmt layer.
        self.plain = false;
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.name(field);
        let _ = write!(self.out, "{value:?}");
    }
}

/// The fields as the JSON format's `JsonFields` writes them: an object with its keys in
/// order; `None` for a field it treats apart.
fn json_fields(attrs: &Attributes<'_>) -> Option<String> {
    let mut json = Json {
        values: String::with_capacity(96),
        entries: [("", 0, 0); MAX_FIELDS],
        count: 0,
        plain: true,
    };
    attrs.record(&mut json);
    if !json.plain {
        return None;
    }
    let entries = &mut json.entries[..json.count];
    entries.sort_unstable_by_key(|&(name, _, _)| name);
    let mut out = String::with_capacity(json.values.len() + 16 * entries.len() + 2);
    out.push('{');
    for (n, &(name, start, end)) in entries.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        json_string(&mut out, name);
        out.push(':');
        out.push_str(&json.values[start..end]);
    }
    out.push('}');
    Some(out)
}

/// Collects [`json_fields`]: each value written, and where.
struct Json {
    values: String,
    entries: [(&'static str, usize, usize); MAX_FIELDS],
    count: usize,
    plain: bool,
}

impl Json {
    /// Records the value `write` appends under the field's name.
    fn entry(&mut self, field: &Field, write: impl FnOnce(&mut String)) {
        let name = field.name();
        let duplicate = self.entries[..self.count].iter().any(|e| e.0 == name);
        if !plain_name(name) || duplicate || self.count == MAX_FIELDS {
            self.plain = false;
            return;
        }
        let start = self.values.len();
        write(&mut self.values);
        self.entries[self.count] = (name, start, self.values.len());
        self.count += 1;
    }
}

impl Visit for Json {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |out| json_string(out, value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |out| decimal(out, value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |out| {
            out.push_str(if value { "true" } else { "false" })
        });
    }

    fn record_i64(&mut self, _field: &Field, _value: i64) {
        // Rare enough to leave to the fmt layer, as floats and errors are.
        self.plain = false;
    }

    fn record_f64(&mut self, _field: &Field, _value: f64) {
        self.plain = false;
    }

    fn record_error(&mut self, _field: &Field, _value: &(dyn std::error::Error + 'static)) {
        self.plain = false;
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let mut text = String::new();
        let _ = write!(text, "{value:?}");
        self.entry(field, |out| json_string(out, &text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::telemetry::captured::lines_written;

    /// A warning and a debug line in a span named as the request's, under `target`, as
    /// the subscriber `init` installs writes them in `format`.
    fn warnings(format: LogFormat, request_id: &str, path: &str, request_target: bool) -> String {
        let method = http::Method::from_bytes(b"PURGE").unwrap();
        lines_written("debug", format, || {
            let span = match request_target {
                true => tracing::info_span!(
                    target: TARGET,
                    NAME,
                    request_id,
                    http.method = %method,
                    http.path = path,
                ),
                false => tracing::info_span!(
                    target: "elsewhere",
                    NAME,
                    request_id,
                    http.method = %method,
                    http.path = path,
                ),
            };
            span.in_scope(|| {
                tracing::warn!(target: "itwin_proxy::upstream", code = "x", "request failed");
                let inner = tracing::debug_span!(target: "inner", "inner", n = 1u64);
                inner.in_scope(|| tracing::debug!(target: "itwin_proxy", "nested"));
            });
        })
    }

    #[test]
    fn lines_in_the_request_span_are_those_the_fmt_layer_wrote() {
        let hostile = [
            ("id-1", "/export/connections"),
            ("q\"uote", "/a\\b\"c\nd\te\u{1b}[31m\u{7f}\u{301}"),
            ("", "x\" cache=\"forged"),
        ];
        for format in [LogFormat::Text, LogFormat::Json] {
            for (request_id, path) in hostile {
                let ours = warnings(format, request_id, path, true);
                assert_eq!(ours, warnings(format, request_id, path, false));
                assert!(ours.contains("request failed"), "{ours}");
                assert_eq!(ours.lines().count(), 2, "{ours}");
            }
        }
    }

    #[test]
    fn fields_treated_apart_are_left_to_the_fmt_layer() {
        assert!(plain_name("request_id") && plain_name("http.path"));
        for name in ["message", "log.target", "r#type"] {
            assert!(!plain_name(name), "{name}");
        }
    }
}
