//! Validation: the file model to [`Settings`], every value checked and every problem reported
//! at once with its key.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use url::Url;

use super::file::{
    AuthFile, CacheFile, ClusterFile, FileConfig, LogFile, RateLimitFile, ServerFile, UpstreamFile,
};
use super::{
    AuthSettings, CacheSettings, ClusterSettings, ConfigErrors, ConfigProblem, LogSettings,
    RateLimitSettings, ServerSettings, Settings, UpstreamSettings,
};

impl TryFrom<FileConfig> for Settings {
    type Error = ConfigErrors;

    fn try_from(file: FileConfig) -> Result<Self, ConfigErrors> {
        let mut p = Problems(Vec::new());
        let server = server(&file.server, &mut p);
        let upstream = upstream(&file.upstream, &mut p);
        let cache = cache(&file.cache, &mut p);
        let rate_limit = rate_limit(&file.rate_limit, &mut p);
        let auth = auth(&file.auth, &mut p);
        let cluster = cluster(&file.cluster, &mut p);
        let log = log(&file.log, &mut p);
        match (server, upstream, cache, rate_limit, auth, cluster, log) {
            (
                Some(server),
                Some(upstream),
                Some(cache),
                Some(rate_limit),
                Some(auth),
                Some(cluster),
                Some(log),
            ) if p.0.is_empty() => Ok(Settings {
                server,
                upstream,
                cache,
                rate_limit,
                auth,
                cluster,
                log,
            }),
            _ => Err(ConfigErrors(p.0)),
        }
    }
}

/// The problems found so far.
struct Problems(Vec<ConfigProblem>);

impl Problems {
    /// The checked value, or `None` after recording why `key` is invalid.
    fn check<T>(&mut self, key: &str, checked: Result<T, String>) -> Option<T> {
        checked
            .map_err(|message| self.0.push(ConfigProblem::new(key, message)))
            .ok()
    }
}

fn server(f: &ServerFile, p: &mut Problems) -> Option<ServerSettings> {
    let listen = p.check("server.listen", socket_addr(&f.listen));
    let public_base_url = p.check("server.public_base_url", http_url(&f.public_base_url));
    let admin_listen = p.check("server.admin_listen", socket_addr(&f.admin_listen));
    let shutdown_grace = p.check("server.shutdown_grace", duration(&f.shutdown_grace));
    let admin_token = p.check("server.admin_token", admin_token(&f.admin_token));
    let max_request_body = p.check(
        "server.max_request_body",
        at_least(f.max_request_body, 0, u64::MAX),
    );
    let client_timeout = p.check("server.client_timeout", positive(&f.client_timeout));
    if let (Some(listen), Some(admin)) = (listen, admin_listen)
        && overlap(listen, admin)
    {
        let message = format!("must differ from server.listen ({listen}): one port each");
        p.0.push(ConfigProblem::new("server.admin_listen", message));
    }
    Some(ServerSettings {
        listen: listen?,
        public_base_url: public_base_url?,
        admin_listen: admin_listen?,
        shutdown_grace: shutdown_grace?,
        admin_token: admin_token?,
        max_request_body: max_request_body?,
        client_timeout: client_timeout?,
    })
}

fn upstream(f: &UpstreamFile, p: &mut Problems) -> Option<UpstreamSettings> {
    let base_url = p.check("upstream.base_url", http_url(&f.base_url));
    let link_origins: Vec<Option<Url>> = (f.link_origins.iter().enumerate())
        .map(|(i, origin)| p.check(&format!("upstream.link_origins[{i}]"), http_url(origin)))
        .collect();
    let connect_timeout = p.check("upstream.connect_timeout", positive(&f.connect_timeout));
    let request_timeout = p.check("upstream.request_timeout", positive(&f.request_timeout));
    let ca_file = p.check("upstream.ca_file", ca_file(&f.ca_file));
    let max_rewrite_bytes = p.check(
        "upstream.max_rewrite_bytes",
        at_least(f.max_rewrite_bytes, 0, u64::MAX),
    );
    Some(UpstreamSettings {
        base_url: base_url?,
        link_origins: link_origins.into_iter().collect::<Option<_>>()?,
        connect_timeout: connect_timeout?,
        request_timeout: request_timeout?,
        ca_file: ca_file?,
        max_rewrite_bytes: max_rewrite_bytes?,
    })
}

fn cache(f: &CacheFile, p: &mut Problems) -> Option<CacheSettings> {
    let ttl = p.check("cache.ttl", positive(&f.ttl));
    let stale_if_error = p.check("cache.stale_if_error", duration(&f.stale_if_error));
    let stale_while_revalidate = p.check(
        "cache.stale_while_revalidate",
        duration(&f.stale_while_revalidate),
    );
    let max_bytes = p.check("cache.max_bytes", at_least(f.max_bytes, 1, u64::MAX));
    Some(CacheSettings {
        ttl: ttl?,
        stale_if_error: stale_if_error?,
        stale_while_revalidate: stale_while_revalidate?,
        max_bytes: max_bytes?,
    })
}

fn rate_limit(f: &RateLimitFile, p: &mut Problems) -> Option<RateLimitSettings> {
    let requests_per_second = p.check(
        "rate_limit.requests_per_second",
        rate(f.requests_per_second),
    );
    let burst = p.check("rate_limit.burst", at_least(f.burst, 1, u32::MAX));
    let requests_per_hour = p.check(
        "rate_limit.requests_per_hour",
        at_least(f.requests_per_hour, 0, u32::MAX),
    );
    let max_wait = p.check("rate_limit.max_wait", duration(&f.max_wait));
    let max_pause = p.check("rate_limit.max_pause", positive(&f.max_pause));
    let key = p.check("rate_limit.key", f.key.parse());
    let unverified_per_second = p.check(
        "rate_limit.unverified_per_second",
        rate(f.unverified_per_second),
    );
    let unverified_burst = p.check(
        "rate_limit.unverified_burst",
        at_least(f.unverified_burst, 1, u32::MAX),
    );
    Some(RateLimitSettings {
        requests_per_second: requests_per_second?,
        burst: burst?,
        requests_per_hour: Some(requests_per_hour?).filter(|n| *n != 0),
        max_wait: max_wait?,
        max_pause: max_pause?,
        key: key?,
        unverified_per_second: unverified_per_second?,
        unverified_burst: unverified_burst?,
    })
}

fn auth(f: &AuthFile, p: &mut Problems) -> Option<AuthSettings> {
    let jwks_url = match f.jwks_url.as_str() {
        "" => Some(None),
        url => p
            .check("auth.jwks_url", http_url(url).and_then(key_source))
            .map(Some),
    };
    if f.jwks_url.is_empty() && !f.issuer.is_empty() {
        // The keys are discovered under the issuer, so it must be a place to fetch from.
        p.check("auth.issuer", http_url(&f.issuer).and_then(key_source));
    }
    let accepted_scopes = p.check("auth.accepted_scopes", scopes(&f.accepted_scopes));
    if f.reject_unverified && f.jwks_url.is_empty() && f.issuer.is_empty() {
        let message = "needs auth.jwks_url or auth.issuer to verify tokens with";
        p.0.push(ConfigProblem::new("auth.reject_unverified", message));
    }
    if !f.audience.is_empty() && f.jwks_url.is_empty() && f.issuer.is_empty() {
        // Only tokens verified locally have their audience checked.
        let message = "is never checked without auth.jwks_url or auth.issuer to verify tokens with";
        p.0.push(ConfigProblem::new("auth.audience", message));
    }
    Some(AuthSettings {
        jwks_url: jwks_url?,
        issuer: non_empty(&f.issuer),
        audience: non_empty(&f.audience),
        accepted_scopes: accepted_scopes?,
        reject_unverified: f.reject_unverified,
    })
}

fn cluster(f: &ClusterFile, p: &mut Problems) -> Option<ClusterSettings> {
    let redis_url = match f.redis_url.trim() {
        "" => Some(None),
        url => p.check("cluster.redis_url", redis_url(url)).map(Some),
    };
    let key_prefix = p.check("cluster.key_prefix", key_prefix(&f.key_prefix));
    let timeout = p.check("cluster.timeout", positive(&f.timeout));
    let replicas_hint = p.check(
        "cluster.replicas_hint",
        at_least(f.replicas_hint, 1, u32::MAX),
    );
    Some(ClusterSettings {
        redis_url: redis_url?,
        key_prefix: key_prefix?,
        timeout: timeout?,
        replicas_hint: replicas_hint?,
        shared_cache: f.shared_cache,
    })
}

fn log(f: &LogFile, p: &mut Problems) -> Option<LogSettings> {
    let level = p.check("log.level", filter(&f.level));
    let format = p.check("log.format", f.format.parse());
    Some(LogSettings {
        level: level?,
        format: format?,
        access: f.access,
    })
}

fn rate(rate: f64) -> Result<f64, String> {
    if rate.is_finite() && rate > 0.0 {
        Ok(rate)
    } else {
        Err(format!("must be a finite number > 0, found {rate}"))
    }
}

fn scopes(scopes: &[String]) -> Result<Vec<String>, String> {
    match scopes {
        [] => Err("must list at least one scope".to_owned()),
        _ if scopes.iter().any(String::is_empty) => Err("a scope must not be empty".to_owned()),
        _ => Ok(scopes.to_vec()),
    }
}

/// A tracing filter directive, as `EnvFilter` will parse it when logging starts, whose every
/// bare word is a level: `EnvFilter` takes a bare `verbose` for a target, which would turn
/// off every other line. A target is written `target=level`.
fn filter(level: &str) -> Result<String, String> {
    if level.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    EnvFilter::try_new(level).map_err(|error| format!("invalid filter {level:?}: {error}"))?;
    let bare_words = level
        .split(',')
        .map(str::trim)
        .filter(|directive| !directive.is_empty() && !directive.contains(['=', '[']));
    for word in bare_words {
        if word.parse::<LevelFilter>().is_err() {
            return Err(format!(
                "{word:?} is not a level: expected trace, debug, info, warn, error or off, \
                 or target=level"
            ));
        }
    }
    Ok(level.to_owned())
}

/// Whether two listeners would take the same port: the same one, or one on every address.
/// Port 0 asks for a free port, never the same.
fn overlap(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() != 0
        && a.port() == b.port()
        && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| {
        format!("invalid address {text:?}: expected IP:port, such as \"127.0.0.1:8080\"")
    })
}

/// An http or https URL with a host and without query or fragment. The text is not echoed in
/// messages, since it may hold credentials.
fn http_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|error| format!("invalid URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "must be an http or https URL, not {}",
            url.scheme()
        ));
    }
    if !url.has_host() {
        return Err("the URL must have a host".to_owned());
    }
    if url.query().is_some() {
        return Err("the URL must not have a query".to_owned());
    }
    if url.fragment().is_some() {
        return Err("the URL must not have a fragment".to_owned());
    }
    Ok(url)
}

/// A Redis URL: `redis://` or `rediss://` (TLS), a host, and optionally a database number as
/// its path. The text is not echoed in messages, since it may hold a password.
fn redis_url(text: &str) -> Result<Url, String> {
    let url = Url::parse(text).map_err(|error| format!("invalid URL: {error}"))?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(format!(
            "must be a redis:// or rediss:// URL, not {}",
            url.scheme()
        ));
    }
    if !url.has_host() || url.host_str().is_some_and(str::is_empty) {
        return Err("the URL must have a host".to_owned());
    }
    let database = url.path().trim_start_matches('/');
    if !database.is_empty() && database.parse::<u16>().is_err() {
        return Err("the path must be a database number, such as /0".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the URL must not have a query or fragment".to_owned());
    }
    Ok(url)
}

/// A key prefix: not empty, no whitespace, no braces (they would change which keys Redis
/// Cluster keeps together).
fn key_prefix(text: &str) -> Result<String, String> {
    if text.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if text
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '{' || c == '}')
    {
        return Err("must not hold whitespace, control characters or braces".to_owned());
    }
    Ok(text.to_owned())
}

/// A URL signing keys may be fetched from: https, or plain http only to a loopback host
/// (anyone on the path of a plain-http fetch could slip in a key and forge tokens).
fn key_source(url: Url) -> Result<Url, String> {
    if is_secure_or_loopback(&url) {
        Ok(url)
    } else {
        Err("signing keys must come over https (plain http only from a loopback host)".into())
    }
}

/// Whether `url` is https, or http to a loopback host: where signing keys may come from.
pub(crate) fn is_secure_or_loopback(url: &Url) -> bool {
    let loopback = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        None => false,
    };
    url.scheme() == "https" || (url.scheme() == "http" && loopback)
}

/// The longest duration any key accepts: longer ones are surely mistakes, and bounding them
/// keeps every sum of durations far from overflow.
const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);

fn duration(text: &str) -> Result<Duration, String> {
    let parsed = humantime::parse_duration(text.trim())
        .map_err(|error| format!("invalid duration {text:?}: {error}"))?;
    if parsed > MAX_DURATION {
        return Err(format!("must be at most 10 years, found {text:?}"));
    }
    Ok(parsed)
}

/// Empty means no token; otherwise it must fit in an `Authorization` header as given.
fn admin_token(text: &str) -> Result<Option<String>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    let visible = text.bytes().all(|b| b.is_ascii_graphic());
    match visible {
        true => Ok(Some(text.to_owned())),
        false => Err("must be visible ASCII characters without spaces".to_owned()),
    }
}

fn positive(text: &str) -> Result<Duration, String> {
    match duration(text)? {
        Duration::ZERO => Err(format!("must be > 0, found {text:?}")),
        positive => Ok(positive),
    }
}

/// `value` as a `T` from `min` to `max`: one message for every value below `min`.
fn at_least<T: TryFrom<i64> + fmt::Display>(value: i64, min: i64, max: T) -> Result<T, String> {
    if value < min {
        return Err(format!("must be >= {min}"));
    }
    T::try_from(value).map_err(|_| format!("must be at most {max}"))
}

/// Empty means no extra CA; otherwise the file must exist (relative to the working directory).
fn ca_file(text: &str) -> Result<Option<PathBuf>, String> {
    if text.is_empty() {
        return Ok(None);
    }
    match std::fs::metadata(text) {
        Ok(metadata) if metadata.is_file() => Ok(Some(PathBuf::from(text))),
        Ok(_) => Err(format!("{text:?} is not a file")),
        Err(error) => Err(format!("cannot use {text:?}: {error}")),
    }
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}
