//! Configuration: the TOML file and `ITWIN_PROXY__SECTION__KEY` environment overrides, read
//! into the file model (`read`, `file`), validated into [`Settings`] (`validate`) with every
//! problem reported at once, and rendered back as TOML (`render`).
//!
//! Adding a key touches two places:
//! 1. `file.rs`: the field as written, and its default in the section's `Default`. Reading
//!    it from the file or the environment, its type errors and the unknown-key check follow.
//! 2. `settings.rs`: the validated field (with a `serialize_with` helper of `render` when its
//!    type does not serialize as written), and in `validate.rs` the line that checks it
//!    into that field. `--check-config` prints it from there. A key a reload cannot apply
//!    goes in [`NEEDS_RESTART`], next to the settings.
//!
//! Then document it (README, `config/default.toml`); the tests check that the file model,
//! the rendered settings and the bundled file agree.

mod file;
mod read;
mod render;
mod settings;
mod validate;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

pub use settings::*;
pub(crate) use validate::is_secure_or_loopback;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigProblem {
    /// The key at fault, as `section.key` (the file's path for a file that cannot be read).
    pub key: String,
    /// What is wrong with it.
    pub message: String,
    /// The environment variable the value came from, when it did.
    pub variable: Option<String>,
}

impl ConfigProblem {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
            variable: None,
        }
    }

    /// The problem, as coming from the environment variable `variable`.
    pub(crate) fn from(mut self, variable: &str) -> Self {
        self.variable = Some(variable.to_owned());
        self
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(variable) = &self.variable {
            write!(f, "{variable}: ")?;
        }
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Every problem found in one configuration; displayed one `key: message` per line.
#[derive(Debug, thiserror::Error)]
#[error("{}", lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

fn lines(problems: &[ConfigProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

/// Loads the file (None: built-in defaults only), applies env overrides from `env` (a map, so
/// tests never call set_var; main passes `std::env::vars().collect()`), validates.
///
/// Only variables starting `ITWIN_PROXY__` are read (see [`stray_variables`] for the rest).
/// Every problem is reported, each naming its key, and its variable when the value came
/// from one: values of the wrong type, unknown keys, and invalid values alike.
pub fn load(path: Option<&Path>, env: &HashMap<String, String>) -> Result<Settings, ConfigErrors> {
    let mut table = toml::Table::new();
    if let Some(path) = path {
        let key = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| {
            ConfigErrors(vec![ConfigProblem::new(
                &key,
                format!("cannot read the config file: {error}"),
            )])
        })?;
        // A syntax error is attributed to the file, on one line, and without quoting the
        // line (which may hold a secret).
        table = toml::from_str(&text).map_err(|error| {
            ConfigErrors(vec![ConfigProblem::new(&key, syntax_error(&text, &error))])
        })?;
    }
    let overrides = read::overrides(env);
    let (file, mut problems) = read::read(&table, &overrides);
    match Settings::try_from(file) {
        Ok(settings) if problems.is_empty() => Ok(settings),
        Ok(_) => Err(ConfigErrors(problems)),
        Err(ConfigErrors(invalid)) => {
            // A value that came from the environment is blamed on its variable.
            problems.extend(invalid.into_iter().map(|problem| {
                let key = problem.key.split('[').next().unwrap_or_default();
                match overrides.iter().find(|o| o.key == key) {
                    Some(o) => problem.from(&o.variable),
                    None => problem,
                }
            }));
            Err(ConfigErrors(problems))
        }
    }
}

/// Variables of `env` that look like overrides but are not read, such as
/// `ITWIN_PROXY_CACHE_TTL` (single underscores): worth a warning at start.
pub fn stray_variables(env: &HashMap<String, String>) -> Vec<String> {
    let mut stray: Vec<String> = env
        .keys()
        .filter(|name| {
            let upper = name.to_uppercase();
            upper.starts_with("ITWIN_PROXY") && !upper.starts_with(read::ENV_PREFIX)
        })
        .cloned()
        .collect();
    stray.sort();
    stray
}

/// "invalid TOML at line L, column C: message".
fn syntax_error(text: &str, error: &toml::de::Error) -> String {
    let Some(before) = error.span().and_then(|span| text.get(..span.start)) else {
        return format!("invalid TOML: {}", error.message());
    };
    let line = before.matches('\n').count() + 1;
    let last_line = before.rsplit('\n').next().unwrap_or_default();
    let column = last_line.chars().count() + 1;
    let message = error.message();
    format!("invalid TOML at line {line}, column {column}: {message}")
}

impl Default for Settings {
    /// The documented defaults (the file model's).
    #[expect(
        clippy::expect_used,
        reason = "the defaults are literals, checked by the `defaults_are_valid` test"
    )]
    fn default() -> Self {
        Settings::try_from(file::FileConfig::default()).expect("the built-in defaults are valid")
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Writes `text` to a fresh file and loads it with `vars`.
    pub(super) fn load_text(text: &str, vars: &[(&str, &str)]) -> Result<Settings, ConfigErrors> {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("config-test-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        let result = load(Some(&path), &env(vars));
        std::fs::remove_file(&path).unwrap();
        result
    }

    fn problems(result: Result<Settings, ConfigErrors>) -> Vec<ConfigProblem> {
        result.unwrap_err().0
    }

    fn keys(problems: &[ConfigProblem]) -> Vec<&str> {
        problems.iter().map(|p| p.key.as_str()).collect()
    }

    #[test]
    fn defaults_are_valid() {
        let settings = load(None, &HashMap::new()).unwrap();
        assert_eq!(settings, Settings::default());
        assert_eq!(settings.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(
            settings.upstream.base_url.as_str(),
            "https://api.bentley.com/"
        );
        assert_eq!(settings.cache.ttl, Duration::from_secs(60));
        assert_eq!(settings.cache.stale_if_error, Duration::from_secs(300));
        assert_eq!(settings.rate_limit.requests_per_second, 8.0);
        assert_eq!(settings.rate_limit.requests_per_hour, None);
        assert_eq!(settings.rate_limit.key, RateLimitKey::ClientId);
        assert_eq!(settings.auth.jwks_url, None);
        assert_eq!(
            settings.auth.issuer.as_deref(),
            Some("https://ims.bentley.com")
        );
        assert_eq!(settings.rate_limit.unverified_per_second, 2.0);
        assert_eq!(settings.rate_limit.unverified_burst, 10);
        assert_eq!(
            settings.auth.accepted_scopes,
            ["itwin-platform", "export:read"]
        );
        assert_eq!(settings.log.format, LogFormat::Text);
        assert_eq!(settings.server.admin_token, None);
        assert_eq!(settings.server.max_request_body, 10_485_760);
        assert_eq!(settings.server.client_timeout, Duration::from_secs(30));
    }

    #[test]
    fn connection_limits_and_admin_token_are_checked() {
        let found = problems(load_text(
            "[server]\nadmin_token = \"two words\"\nclient_timeout = \"0s\"\n",
            &[],
        ));
        assert_eq!(
            keys(&found),
            ["server.admin_token", "server.client_timeout"]
        );
        let settings = load_text(
            "[server]\nadmin_token = \"t0ken\"\nmax_request_body = 1024\n",
            &[],
        )
        .unwrap();
        assert_eq!(settings.server.admin_token.as_deref(), Some("t0ken"));
        assert_eq!(settings.server.max_request_body, 1024);
    }

    #[test]
    fn signing_keys_come_over_https_or_from_loopback() {
        let keys = |url: &str| load_text(&format!("[auth]\njwks_url = \"{url}\"\n"), &[]);
        assert!(keys("https://ims.example/keys").is_ok());
        assert!(keys("http://127.0.0.1:9/keys").is_ok());
        assert_eq!(
            problems(keys("http://ims.example/keys"))[0].key,
            "auth.jwks_url"
        );
        let issuer = |url: &str| load_text(&format!("[auth]\nissuer = \"{url}\"\n"), &[]);
        assert!(issuer("https://ims.bentley.com").is_ok());
        assert_eq!(problems(issuer("ims.example"))[0].key, "auth.issuer");
        assert_eq!(problems(issuer("http://ims.example"))[0].key, "auth.issuer");
    }

    #[test]
    fn bundled_default_toml_equals_defaults() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/default.toml");
        assert_eq!(
            load(Some(&path), &HashMap::new()).unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn file_overrides_defaults() {
        let settings = load_text(
            "[server]\npublic_base_url = \"http://gw/bentley\"\n\
             [upstream]\nlink_origins = [\"https://other.example\"]\n\
             [cache]\nttl = \"250ms\"\n\
             [rate_limit]\nrequests_per_hour = 5000\nkey = \"global\"\n\
             [auth]\njwks_url = \"https://ims.example/keys\"\nreject_unverified = true\n",
            &[],
        )
        .unwrap();
        assert_eq!(
            settings.server.public_base_url.as_str(),
            "http://gw/bentley"
        );
        assert_eq!(
            settings.upstream.link_origins[0].as_str(),
            "https://other.example/"
        );
        assert_eq!(settings.cache.ttl, Duration::from_millis(250));
        assert_eq!(settings.rate_limit.requests_per_hour, Some(5000));
        assert_eq!(settings.rate_limit.key, RateLimitKey::Global);
        assert!(settings.auth.reject_unverified);
        // Untouched keys keep their defaults.
        assert_eq!(
            settings.cache.max_bytes,
            Settings::default().cache.max_bytes
        );
    }

    #[test]
    fn env_overrides_file_and_defaults() {
        let settings = load_text(
            "[rate_limit]\nburst = 3\n",
            &[
                (
                    "ITWIN_PROXY__UPSTREAM__BASE_URL",
                    "http://127.0.0.1:7000/base",
                ),
                ("ITWIN_PROXY__RATE_LIMIT__BURST", "5"),
                ("ITWIN_PROXY__RATE_LIMIT__REQUESTS_PER_SECOND", "2.5"),
                ("ITWIN_PROXY__AUTH__REJECT_UNVERIFIED", "false"),
                ("ITWIN_PROXY__LOG__FORMAT", "json"),
                ("OTHER__RATE_LIMIT__BURST", "not a number"),
            ],
        )
        .unwrap();
        assert_eq!(
            settings.upstream.base_url.as_str(),
            "http://127.0.0.1:7000/base"
        );
        assert_eq!(settings.rate_limit.burst, 5);
        assert_eq!(settings.rate_limit.requests_per_second, 2.5);
        assert_eq!(settings.log.format, LogFormat::Json);
    }

    #[test]
    fn env_integer_valued_float_lists_and_numeric_strings() {
        let settings = load(
            None,
            &env(&[
                ("ITWIN_PROXY__RATE_LIMIT__REQUESTS_PER_SECOND", "8"),
                ("ITWIN_PROXY__RATE_LIMIT__MAX_WAIT", "0s"),
                (
                    "ITWIN_PROXY__UPSTREAM__LINK_ORIGINS",
                    "https://a.example, https://b.example",
                ),
                ("ITWIN_PROXY__AUTH__ACCEPTED_SCOPES", "one,two"),
                ("ITWIN_PROXY__AUTH__JWKS_URL", "https://ims.example/keys"),
                ("ITWIN_PROXY__AUTH__ISSUER", "true"),
                ("ITWIN_PROXY__AUTH__AUDIENCE", "007"),
            ]),
        )
        .unwrap();
        assert_eq!(settings.rate_limit.requests_per_second, 8.0);
        assert_eq!(settings.rate_limit.max_wait, Duration::ZERO);
        let origins: Vec<&str> = settings
            .upstream
            .link_origins
            .iter()
            .map(url::Url::as_str)
            .collect();
        assert_eq!(origins, ["https://a.example/", "https://b.example/"]);
        assert_eq!(settings.auth.accepted_scopes, ["one", "two"]);
        assert_eq!(settings.auth.issuer.as_deref(), Some("true"));
        assert_eq!(settings.auth.audience.as_deref(), Some("007"));
    }

    #[test]
    fn every_problem_is_reported_with_its_key() {
        let found = problems(load_text(
            "[upstream]\nbase_url = \"not a url\"\n[rate_limit]\nburst = 0\n\
             [cache]\nttl = \"5 parsecs\"\n",
            &[],
        ));
        assert_eq!(
            keys(&found),
            ["upstream.base_url", "cache.ttl", "rate_limit.burst"]
        );
        assert!(
            found[1]
                .message
                .starts_with("invalid duration \"5 parsecs\": ")
        );
        let shown = ConfigErrors(found).to_string();
        assert!(
            shown.lines().any(|l| l == "rate_limit.burst: must be >= 1"),
            "{shown}"
        );
        assert_eq!(shown.lines().count(), 3);
    }

    #[test]
    fn invalid_values_name_their_keys() {
        let found = problems(load_text(
            "[server]\nlisten = \"localhost\"\n\
             [upstream]\nbase_url = \"https://h/?q=1\"\nlink_origins = [\"ftp://x\"]\n\
             connect_timeout = \"0s\"\nca_file = \"/no/such/ca.pem\"\n\
             [cache]\nmax_bytes = 0\n\
             [rate_limit]\nrequests_per_second = 0.0\nkey = \"ip\"\n\
             [auth]\nissuer = \"\"\naccepted_scopes = []\nreject_unverified = true\n\
             [log]\nlevel = \"info,[\"\nformat = \"xml\"\n",
            &[],
        ));
        assert_eq!(
            keys(&found),
            [
                "server.listen",
                "upstream.base_url",
                "upstream.link_origins[0]",
                "upstream.connect_timeout",
                "upstream.ca_file",
                "cache.max_bytes",
                "rate_limit.requests_per_second",
                "rate_limit.key",
                "auth.accepted_scopes",
                "auth.reject_unverified",
                "log.level",
                "log.format",
            ]
        );
    }

    #[test]
    fn type_errors_and_unknown_keys_are_reported_with_the_rest() {
        let found = problems(load_text(
            "[server]\nlisen = \"0.0.0.0:1\"\n[rate_limit]\nburst = \"ten\"\n\
             requests_per_hour = -1\n[cache]\nttl = 5\n[extra]\n",
            &[
                ("ITWIN_PROXY__LOG__LEVLE", "debug"),
                ("ITWIN_PROXY__LOG__FORMAT", "xml"),
            ],
        ));
        assert_eq!(
            keys(&found),
            [
                "cache.ttl",
                "rate_limit.burst",
                "extra",
                "log.levle",
                "server.lisen",
                "rate_limit.requests_per_hour",
                "log.format",
            ]
        );
        assert_eq!(found[0].message, "expected a string, found integer 5");
        assert_eq!(
            found[1].message,
            "expected an integer, found string \"ten\""
        );
        assert!(
            found[4]
                .message
                .starts_with("unknown key; expected one of listen, ")
        );
        assert_eq!(found[5].message, "must be >= 0");
    }

    #[test]
    fn problems_from_the_environment_name_their_variable() {
        let found = problems(load_text(
            "[cache]\nttl = \"0s\"\n",
            &[
                ("ITWIN_PROXY__CACHE__TTLL", "5s"),
                ("ITWIN_PROXY__RATE_LIMIT__BURST", "0"),
                ("ITWIN_PROXY__AUTH__REJECT_UNVERIFIED", "maybe"),
                ("itwin_proxy__nosuch__key", "1"),
                (
                    "ITWIN_PROXY__UPSTREAM__LINK_ORIGINS",
                    "https://a.example,ftp://b",
                ),
            ],
        ));
        let shown: Vec<String> = found.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "ITWIN_PROXY__AUTH__REJECT_UNVERIFIED: auth.reject_unverified: \
                 expected true or false, found string \"maybe\"",
                "ITWIN_PROXY__CACHE__TTLL: cache.ttll: unknown key; expected one of ttl, \
                 stale_if_error, stale_while_revalidate, max_bytes",
                "itwin_proxy__nosuch__key: nosuch.key: unknown key; expected a section: \
                 server, upstream, cache, rate_limit, auth, cluster, log",
                "ITWIN_PROXY__UPSTREAM__LINK_ORIGINS: upstream.link_origins[1]: \
                 must be an http or https URL, not ftp",
                "cache.ttl: must be > 0, found \"0s\"",
                "ITWIN_PROXY__RATE_LIMIT__BURST: rate_limit.burst: must be >= 1",
            ]
        );
    }

    #[test]
    fn look_alike_variables_are_found() {
        let vars = env(&[
            ("ITWIN_PROXY_CACHE_TTL", "5s"),
            ("itwin_proxy_log_level", "debug"),
            ("ITWIN_PROXY__CACHE__TTL", "5s"),
            ("ITWIN_PROXYCACHE", "x"),
            ("HOME", "/"),
        ]);
        assert_eq!(
            stray_variables(&vars),
            [
                "ITWIN_PROXYCACHE",
                "ITWIN_PROXY_CACHE_TTL",
                "itwin_proxy_log_level"
            ]
        );
    }

    #[test]
    fn a_log_level_must_name_levels() {
        let level = |text: &str| load_text(&format!("[log]\nlevel = \"{text}\"\n"), &[]);
        for good in [
            "info",
            "WARN",
            "itwin_proxy=debug,warn",
            "off",
            "hyper=info, debug",
        ] {
            assert!(level(good).is_ok(), "{good}");
        }
        for bad in ["verbose", "inof", "info,verbose", "itwin_proxy=loud", " "] {
            assert_eq!(keys(&problems(level(bad))), ["log.level"], "{bad}");
        }
        assert_eq!(
            problems(level("verbose"))[0].message,
            "\"verbose\" is not a level: expected trace, debug, info, warn, error or off, \
             or target=level"
        );
    }

    #[test]
    fn the_listeners_take_different_ports() {
        let listeners = |listen: &str, admin: &str| {
            load_text(
                &format!("[server]\nlisten = \"{listen}\"\nadmin_listen = \"{admin}\"\n"),
                &[],
            )
        };
        for (listen, admin) in [
            ("127.0.0.1:8080", "127.0.0.1:8080"),
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("127.0.0.1:9090", "[::]:9090"),
        ] {
            let found = problems(listeners(listen, admin));
            assert_eq!(keys(&found), ["server.admin_listen"], "{listen} {admin}");
            assert!(found[0].message.contains(listen), "{found:?}");
        }
        for (listen, admin) in [
            ("127.0.0.1:0", "127.0.0.1:0"),
            ("127.0.0.1:8080", "127.0.0.2:8080"),
            ("0.0.0.0:8080", "0.0.0.0:9090"),
        ] {
            assert!(listeners(listen, admin).is_ok(), "{listen} {admin}");
        }
    }

    #[test]
    fn counts_have_one_bound() {
        for burst in ["-5", "0"] {
            let found = problems(load_text(&format!("[rate_limit]\nburst = {burst}\n"), &[]));
            assert_eq!(found[0].to_string(), "rate_limit.burst: must be >= 1");
        }
        let found = problems(load_text("[cluster]\nreplicas_hint = 5000000000\n", &[]));
        assert_eq!(
            found[0].to_string(),
            "cluster.replicas_hint: must be at most 4294967295"
        );
        let found = problems(load_text("[server]\nmax_request_body = -1\n", &[]));
        assert_eq!(
            found[0].to_string(),
            "server.max_request_body: must be >= 0"
        );
    }

    #[test]
    fn an_audience_needs_a_key_source() {
        let found = problems(load_text(
            "[auth]\nissuer = \"\"\naudience = \"my-app\"\n",
            &[],
        ));
        assert_eq!(keys(&found), ["auth.audience"]);
        assert!(load_text("[auth]\naudience = \"my-app\"\n", &[]).is_ok());
        let with_keys = "[auth]\nissuer = \"\"\naudience = \"my-app\"\n\
                         jwks_url = \"https://ims.example/keys\"\n";
        assert!(load_text(with_keys, &[]).is_ok());
    }

    #[test]
    fn cluster_keys_are_read_and_checked() {
        let settings = load_text(
            "[cluster]\nredis_url = \"redis://127.0.0.1:6379/1\"\nreplicas_hint = 4\n",
            &[("ITWIN_PROXY__CLUSTER__SHARED_CACHE", "false")],
        )
        .unwrap();
        let url = settings.cluster.redis_url.as_ref().map(url::Url::as_str);
        assert_eq!(url, Some("redis://127.0.0.1:6379/1"));
        assert_eq!(settings.cluster.replicas_hint, 4);
        assert!(!settings.cluster.shared_cache);
        assert_eq!(settings.cluster.timeout, Duration::from_millis(100));
        assert_eq!(Settings::default().cluster.redis_url, None);

        let found = problems(load_text(
            "[cluster]\nredis_url = \"http://:secret@h\"\nkey_prefix = \"a{b}\"\n\
             timeout = \"0s\"\nreplicas_hint = 0\n",
            &[],
        ));
        assert_eq!(
            keys(&found),
            [
                "cluster.redis_url",
                "cluster.key_prefix",
                "cluster.timeout",
                "cluster.replicas_hint",
            ]
        );
        assert!(
            found.iter().all(|p| !p.message.contains("secret")),
            "{found:?}"
        );
        for bad in ["redis://", "redis://h/x", "redis://h/0?x=1", "not a url"] {
            let text = format!("[cluster]\nredis_url = \"{bad}\"\n");
            assert_eq!(
                keys(&problems(load_text(&text, &[]))),
                ["cluster.redis_url"],
                "{bad}"
            );
        }
        assert!(load_text("[cluster]\nredis_url = \"rediss://h:6380\"\n", &[]).is_ok());
    }

    #[test]
    fn unreadable_or_malformed_files_name_the_file() {
        let missing = PathBuf::from("/nonexistent/itwin-proxy.toml");
        let found = problems(load(Some(&missing), &HashMap::new()));
        assert_eq!(keys(&found), ["/nonexistent/itwin-proxy.toml"]);
        assert!(found[0].message.starts_with("cannot read the config file"));

        let found = problems(load_text("[server]\nlisten = \"secret", &[]));
        assert_eq!(found.len(), 1);
        assert!(found[0].key.ends_with(".toml"), "{found:?}");
        assert!(
            found[0]
                .message
                .starts_with("invalid TOML at line 2, column "),
            "{found:?}"
        );
        assert!(!found[0].message.contains("secret"), "{found:?}");
    }
}
