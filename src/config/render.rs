//! Rendering: [`Settings`] back to TOML as the file writes it, for `--check-config` (with
//! credentials redacted) and for comparing two settings key by key; the `serialize_with`
//! helpers the settings' fields name live here.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serializer;
use url::Url;

use super::Settings;

/// What replaces a secret: `server.admin_token`, and the credentials of any URL.
const REDACTED: &str = "REDACTED";

impl Settings {
    /// The effective config as TOML (every key, durations as humantime strings like "30s",
    /// credentials inside URLs and `server.admin_token` replaced by "REDACTED"), parseable
    /// back by `load` to equal settings but for those.
    pub fn to_toml(&self) -> String {
        let mut rendered = table(self);
        if let Some(toml::Value::String(token)) = rendered
            .get_mut("server")
            .and_then(|server| server.get_mut("admin_token"))
            && !token.is_empty()
        {
            REDACTED.clone_into(token);
        }
        rendered
            .iter_mut()
            .for_each(|(_, value)| redact_urls(value));
        toml::to_string(&rendered)
            .unwrap_or_else(|error| format!("# the configuration cannot be shown: {error}\n"))
    }
}

/// The settings as the file's table, secrets in clear.
pub(super) fn table(settings: &Settings) -> toml::Table {
    // Every field serializes to a TOML value, which the rendering tests check.
    toml::Table::try_from(settings).unwrap_or_default()
}

/// Replaces the credentials of every URL within `value`.
fn redact_urls(value: &mut toml::Value) {
    match value {
        toml::Value::String(text) => {
            if let Ok(url) = Url::parse(text)
                && (!url.username().is_empty() || url.password().is_some())
            {
                *text = redacted(&url);
            }
        }
        toml::Value::Array(items) => items.iter_mut().for_each(redact_urls),
        toml::Value::Table(table) => table.iter_mut().for_each(|(_, value)| redact_urls(value)),
        _ => {}
    }
}

/// The URL with its user name and password replaced by [`REDACTED`].
fn redacted(url: &Url) -> String {
    let mut url = url.clone();
    if url.set_password(None).is_err() || url.set_username(REDACTED).is_err() {
        return REDACTED.to_owned();
    }
    url.to_string()
}

/// A duration as humantime writes it: "30s", "1s 500ms".
pub(super) fn duration<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*value))
}

/// A URL as its text.
pub(super) fn url<S: Serializer>(value: &Url, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.as_str())
}

/// A list of URLs as their texts.
pub(super) fn urls<S: Serializer>(value: &[Url], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(value.iter().map(Url::as_str))
}

/// An optional URL; "" for none.
pub(super) fn optional_url<S: Serializer>(value: &Option<Url>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.as_ref().map_or("", Url::as_str))
}

/// An optional text; "" for none.
pub(super) fn optional<S: Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(value.as_deref().unwrap_or_default())
}

/// An optional path; "" for none.
pub(super) fn optional_path<S: Serializer>(
    value: &Option<PathBuf>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match value {
        Some(path) => s.collect_str(&path.display()),
        None => s.serialize_str(""),
    }
}

/// An optional count; 0 for none.
pub(super) fn zero_if_none<S: Serializer>(value: &Option<u32>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u32(value.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::tests::load_text;
    use crate::config::{LogFormat, RateLimitKey};

    fn reload(text: &str) -> Settings {
        load_text(text, &[]).unwrap()
    }

    #[test]
    fn rendered_settings_load_back_equal() {
        let mut settings = Settings::default();
        settings.server.public_base_url = Url::parse("http://gw.example/bentley").unwrap();
        settings.upstream.link_origins = vec![Url::parse("https://other.example:8443").unwrap()];
        settings.upstream.ca_file =
            Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
        settings.cache.ttl = Duration::from_millis(1500);
        settings.rate_limit.requests_per_second = 2.5;
        settings.rate_limit.requests_per_hour = Some(5000);
        settings.rate_limit.key = RateLimitKey::Global;
        settings.auth.issuer = Some("https://ims.example".to_owned());
        settings.auth.audience = Some("12345".to_owned());
        settings.auth.jwks_url = Some(Url::parse("https://ims.example/keys").unwrap());
        settings.auth.reject_unverified = true;
        settings.log.format = LogFormat::Json;
        settings.server.max_request_body = 1024;
        settings.server.client_timeout = Duration::from_secs(5);
        settings.cluster.redis_url = Some(Url::parse("redis://127.0.0.1:6379/3").unwrap());
        settings.cluster.key_prefix = "app-a".to_owned();
        settings.cluster.timeout = Duration::from_millis(250);
        settings.cluster.replicas_hint = 3;
        settings.cluster.shared_cache = false;
        let text = settings.to_toml();
        assert!(text.contains("ttl = \"1s 500ms\""), "{text}");
        assert_eq!(reload(&text), settings);
        assert_eq!(reload(&Settings::default().to_toml()), Settings::default());
    }

    #[test]
    fn credentials_in_urls_are_redacted() {
        let mut settings = Settings::default();
        settings.upstream.base_url = Url::parse("https://user:pw@host.example/api").unwrap();
        settings.auth.jwks_url = Some(Url::parse("https://token@ims.example/keys").unwrap());
        settings.server.admin_token = Some("s3cret-admin".to_owned());
        settings.cluster.redis_url =
            Some(Url::parse("rediss://:sesame@redis.example:6380/2").unwrap());
        let text = settings.to_toml();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("admin_token = \"REDACTED\""), "{text}");
        assert!(
            !text.contains("pw") && !text.contains("user") && !text.contains("token@"),
            "{text}"
        );
        assert!(
            text.contains("base_url = \"https://REDACTED@host.example/api\""),
            "{text}"
        );
        assert!(
            text.contains("jwks_url = \"https://REDACTED@ims.example/keys\""),
            "{text}"
        );
        assert!(!text.contains("sesame"), "{text}");
        assert!(
            text.contains("redis_url = \"rediss://REDACTED@redis.example:6380/2\""),
            "{text}"
        );
    }

    #[test]
    fn rendered_keys_are_the_file_keys_in_order() {
        let rendered = table(&Settings::default());
        let file = toml::Table::try_from(crate::config::file::FileConfig::default()).unwrap();
        let names = |table: &toml::Table| -> Vec<String> {
            table
                .iter()
                .flat_map(|(section, keys)| {
                    let keys = keys.as_table().unwrap().keys();
                    keys.map(move |key| format!("{section}.{key}"))
                })
                .collect()
        };
        assert_eq!(names(&rendered), names(&file));
        for path in crate::config::NEEDS_RESTART {
            let section = path.split('.').next().unwrap();
            assert!(
                names(&file)
                    .iter()
                    .any(|name| name == path || name.starts_with(&format!("{section}."))),
                "{path}"
            );
        }
    }

    #[test]
    fn keys_that_need_a_restart_are_found_against_the_running_settings() {
        let running = Settings::default();
        let mut next = running.clone();
        next.rate_limit.burst = 3;
        next.upstream.base_url = Url::parse("https://other.example").unwrap();
        next.log.access = false;
        assert!(next.needs_restart(&running).is_empty());
        next.server.listen = "127.0.0.1:1".parse().unwrap();
        next.cache.max_bytes = 1024;
        next.log.format = LogFormat::Json;
        next.cluster.redis_url = Some(Url::parse("redis://:a@127.0.0.1/0").unwrap());
        assert_eq!(
            next.needs_restart(&running),
            ["server.listen", "cache.max_bytes", "log.format", "cluster"]
        );
        let mut other_password = next.clone();
        other_password.cluster.redis_url = Some(Url::parse("redis://:b@127.0.0.1/0").unwrap());
        assert_eq!(other_password.needs_restart(&next), ["cluster"]);
    }
}
