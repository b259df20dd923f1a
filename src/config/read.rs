//! Reads the merged file-and-environment tree into the file model one key at a time, so a value
//! of the wrong type or an unknown key becomes a problem naming its key while every other key
//! is still read (and validated).
//!
//! Environment values are always strings; numbers, booleans and lists are parsed from them
//! here, by the type of the key they override (lists are comma-separated).

use config::{Map, Value, ValueKind};

use super::ConfigProblem;
use super::file::*;

/// The file model of `tree`, with the default for every key that is missing or of the wrong
/// type (an empty tree reads as the defaults), and the problems found: type errors, then
/// unknown keys.
pub(crate) fn read(tree: &Map<String, Value>) -> (FileConfig, Vec<ConfigProblem>) {
    let mut r = Reader {
        tree,
        known: Vec::new(),
        problems: Vec::new(),
    };
    r.enter("server");
    let server = ServerFile {
        listen: r.string("listen", DEFAULT_LISTEN),
        public_base_url: r.string("public_base_url", DEFAULT_PUBLIC_BASE_URL),
        admin_listen: r.string("admin_listen", DEFAULT_ADMIN_LISTEN),
        shutdown_grace: r.duration("shutdown_grace", DEFAULT_SHUTDOWN_GRACE),
        admin_token: r.string("admin_token", ""),
        max_request_body: r.integer("max_request_body", DEFAULT_MAX_REQUEST_BODY),
        client_timeout: r.duration("client_timeout", DEFAULT_CLIENT_TIMEOUT),
    };
    r.enter("upstream");
    let upstream = UpstreamFile {
        base_url: r.string("base_url", DEFAULT_UPSTREAM_BASE_URL),
        link_origins: r.list("link_origins", &[]),
        connect_timeout: r.duration("connect_timeout", DEFAULT_CONNECT_TIMEOUT),
        request_timeout: r.duration("request_timeout", DEFAULT_REQUEST_TIMEOUT),
        ca_file: r.string("ca_file", ""),
        max_rewrite_bytes: r.integer("max_rewrite_bytes", DEFAULT_MAX_REWRITE_BYTES),
    };
    r.enter("cache");
    let cache = CacheFile {
        ttl: r.duration("ttl", DEFAULT_CACHE_TTL),
        stale_if_error: r.duration("stale_if_error", DEFAULT_STALE_IF_ERROR),
        stale_while_revalidate: r
            .duration("stale_while_revalidate", DEFAULT_STALE_WHILE_REVALIDATE),
        max_bytes: r.integer("max_bytes", DEFAULT_CACHE_MAX_BYTES),
    };
    r.enter("rate_limit");
    let rate_limit = RateLimitFile {
        requests_per_second: r.float("requests_per_second", DEFAULT_REQUESTS_PER_SECOND),
        burst: r.integer("burst", DEFAULT_BURST),
        requests_per_hour: r.integer("requests_per_hour", DEFAULT_REQUESTS_PER_HOUR),
        max_wait: r.duration("max_wait", DEFAULT_MAX_WAIT),
        max_pause: r.duration("max_pause", DEFAULT_MAX_PAUSE),
        key: r.string("key", DEFAULT_RATE_LIMIT_KEY),
        unverified_per_second: r.float("unverified_per_second", DEFAULT_UNVERIFIED_PER_SECOND),
        unverified_burst: r.integer("unverified_burst", DEFAULT_UNVERIFIED_BURST),
    };
    r.enter("auth");
    let auth = AuthFile {
        jwks_url: r.string("jwks_url", ""),
        issuer: r.string("issuer", DEFAULT_ISSUER),
        audience: r.string("audience", ""),
        accepted_scopes: r.list("accepted_scopes", &DEFAULT_ACCEPTED_SCOPES),
        reject_unverified: r.boolean("reject_unverified", false),
    };
    r.enter("cluster");
    let cluster = ClusterFile {
        redis_url: r.string("redis_url", ""),
        key_prefix: r.string("key_prefix", DEFAULT_KEY_PREFIX),
        timeout: r.duration("timeout", DEFAULT_CLUSTER_TIMEOUT),
        replicas_hint: r.integer("replicas_hint", DEFAULT_REPLICAS_HINT),
        shared_cache: r.boolean("shared_cache", true),
    };
    r.enter("log");
    let log = LogFile {
        level: r.string("level", DEFAULT_LOG_LEVEL),
        format: r.string("format", DEFAULT_LOG_FORMAT),
        access: r.boolean("access", true),
    };
    r.report_unknown_keys();
    let file = FileConfig {
        server,
        upstream,
        cache,
        rate_limit,
        auth,
        cluster,
        log,
    };
    (file, r.problems)
}

/// Walks the tree, remembering which keys it was asked for.
struct Reader<'a> {
    tree: &'a Map<String, Value>,
    /// Every section and its keys, in the order they were read; the last is being read.
    known: Vec<(&'static str, Vec<&'static str>)>,
    problems: Vec<ConfigProblem>,
}

impl<'a> Reader<'a> {
    /// Starts reading `[section]`.
    fn enter(&mut self, section: &'static str) {
        self.known.push((section, Vec::new()));
    }

    /// The value of `key` in the current section, if present; marks the key as known.
    fn value(&mut self, key: &'static str) -> Option<(String, &'a ValueKind)> {
        let (section, keys) = self.known.last_mut()?;
        keys.push(key);
        let name = format!("{section}.{key}");
        match &self.tree.get(*section)?.kind {
            ValueKind::Table(table) => table.get(key).map(|value| (name, &value.kind)),
            _ => None,
        }
    }

    /// The value of `key` converted by `convert`; `default` when it is missing, or when it
    /// cannot be converted, which is then a problem.
    fn typed<T>(
        &mut self,
        key: &'static str,
        default: T,
        convert: impl FnOnce(&ValueKind) -> Result<T, String>,
    ) -> T {
        let Some((name, kind)) = self.value(key) else {
            return default;
        };
        convert(kind).unwrap_or_else(|message| {
            self.problems.push(ConfigProblem::new(name, message));
            default
        })
    }

    fn string(&mut self, key: &'static str, default: &str) -> String {
        self.text(key, default, "a string")
    }

    fn duration(&mut self, key: &'static str, default: &str) -> String {
        self.text(key, default, "a duration string such as \"30s\"")
    }

    fn text(&mut self, key: &'static str, default: &str, what: &str) -> String {
        self.typed(key, default.to_owned(), |kind| match kind {
            ValueKind::String(text) => Ok(text.clone()),
            other => Err(expected(what, other)),
        })
    }

    /// An integer within TOML's range (`i64`) that fits `T`.
    fn integer<T: TryFrom<i64>>(&mut self, key: &'static str, default: T) -> T {
        self.typed(key, default, |kind| {
            let number: i128 = match kind {
                ValueKind::I64(number) => (*number).into(),
                ValueKind::I128(number) => *number,
                ValueKind::U64(number) => (*number).into(),
                ValueKind::U128(number) => i128::try_from(*number).unwrap_or(i128::MAX),
                ValueKind::String(text) => text
                    .trim()
                    .parse()
                    .map_err(|_| expected("an integer", kind))?,
                other => return Err(expected("an integer", other)),
            };
            match i64::try_from(number).ok().and_then(|n| T::try_from(n).ok()) {
                Some(value) => Ok(value),
                None if number < 0 => Err("must be >= 0".to_owned()),
                None => Err(format!("{number} is too large")),
            }
        })
    }

    fn float(&mut self, key: &'static str, default: f64) -> f64 {
        self.typed(key, default, |kind| match kind {
            ValueKind::Float(number) => Ok(*number),
            ValueKind::I64(number) => Ok(*number as f64),
            ValueKind::String(text) => text.trim().parse().map_err(|_| expected("a number", kind)),
            other => Err(expected("a number", other)),
        })
    }

    fn boolean(&mut self, key: &'static str, default: bool) -> bool {
        self.typed(key, default, |kind| match kind {
            ValueKind::Boolean(value) => Ok(*value),
            ValueKind::String(text) => text
                .trim()
                .to_ascii_lowercase()
                .parse()
                .map_err(|_| expected("true or false", kind)),
            other => Err(expected("true or false", other)),
        })
    }

    /// A TOML array of strings, or (from the environment) a comma-separated string.
    fn list(&mut self, key: &'static str, default: &[&str]) -> Vec<String> {
        let default = default.iter().map(|item| item.to_string()).collect();
        self.typed(key, default, |kind| match kind {
            ValueKind::Array(items) => items
                .iter()
                .map(|item| match &item.kind {
                    ValueKind::String(text) => Ok(text.clone()),
                    other => Err(expected("a list of strings", other)),
                })
                .collect(),
            ValueKind::String(text) => Ok(text
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(str::to_owned)
                .collect()),
            other => Err(expected("a list of strings", other)),
        })
    }

    /// Adds a problem for each section or key in the tree that was never read, and for each
    /// section that is not a table.
    fn report_unknown_keys(&mut self) {
        let sections: Vec<&str> = self.known.iter().map(|(name, _)| *name).collect();
        let mut unknown = Vec::new();
        for (name, value) in self.tree {
            let Some((_, keys)) = self.known.iter().find(|(known, _)| known == name) else {
                let message = format!("unknown key; expected a section: {}", sections.join(", "));
                unknown.push(ConfigProblem::new(name, message));
                continue;
            };
            let ValueKind::Table(table) = &value.kind else {
                unknown.push(ConfigProblem::new(name, expected("a table", &value.kind)));
                continue;
            };
            for key in table.keys().filter(|key| !keys.contains(&key.as_str())) {
                let message = format!("unknown key; expected one of {}", keys.join(", "));
                unknown.push(ConfigProblem::new(format!("{name}.{key}"), message));
            }
        }
        unknown.sort_by(|a, b| a.key.cmp(&b.key));
        self.problems.append(&mut unknown);
    }
}

/// "expected {what}, found {kind}", e.g. `expected an integer, found string "ten"`.
fn expected(what: &str, found: &ValueKind) -> String {
    let found = match found {
        ValueKind::Nil => "nothing".to_owned(),
        ValueKind::Boolean(value) => format!("boolean {value}"),
        ValueKind::I64(value) => format!("integer {value}"),
        ValueKind::I128(value) => format!("integer {value}"),
        ValueKind::U64(value) => format!("integer {value}"),
        ValueKind::U128(value) => format!("integer {value}"),
        ValueKind::Float(value) => format!("number {value}"),
        ValueKind::String(value) => format!("string {value:?}"),
        ValueKind::Table(_) => "a table".to_owned(),
        ValueKind::Array(_) => "a list".to_owned(),
    };
    format!("expected {what}, found {found}")
}
