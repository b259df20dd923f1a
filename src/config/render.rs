//! Rendering: [`Settings`] back to the file model and TOML, for `--check-config`, with
//! credentials inside URLs redacted.

use std::time::Duration;

use url::Url;

use super::file::{
    AuthFile, CacheFile, ClusterFile, FileConfig, LogFile, RateLimitFile, ServerFile, UpstreamFile,
};
use super::{LogFormat, RateLimitKey, Settings};

/// What replaces the credentials of a URL.
const REDACTED: &str = "REDACTED";

impl Settings {
    /// The effective config as TOML (every key, durations as humantime strings like "30s",
    /// credentials inside URLs and `server.admin_token` replaced by "REDACTED"), parseable
    /// back by `load` to equal settings but for those.
    pub fn to_toml(&self) -> String {
        toml::to_string(&self.to_file())
            .unwrap_or_else(|error| format!("# the configuration cannot be shown: {error}\n"))
    }

    fn to_file(&self) -> FileConfig {
        let (server, upstream, cache) = (&self.server, &self.upstream, &self.cache);
        let (rate_limit, auth, log) = (&self.rate_limit, &self.auth, &self.log);
        let cluster = &self.cluster;
        FileConfig {
            server: ServerFile {
                listen: server.listen.to_string(),
                public_base_url: redacted(&server.public_base_url),
                admin_listen: server.admin_listen.to_string(),
                shutdown_grace: duration(server.shutdown_grace),
                admin_token: server
                    .admin_token
                    .as_ref()
                    .map(|_| REDACTED.to_owned())
                    .unwrap_or_default(),
                max_request_body: server.max_request_body,
                client_timeout: duration(server.client_timeout),
            },
            upstream: UpstreamFile {
                base_url: redacted(&upstream.base_url),
                link_origins: upstream.link_origins.iter().map(redacted).collect(),
                connect_timeout: duration(upstream.connect_timeout),
                request_timeout: duration(upstream.request_timeout),
                ca_file: (upstream.ca_file.as_ref())
                    .map(|path| path.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                max_rewrite_bytes: upstream.max_rewrite_bytes,
            },
            cache: CacheFile {
                ttl: duration(cache.ttl),
                stale_if_error: duration(cache.stale_if_error),
                stale_while_revalidate: duration(cache.stale_while_revalidate),
                max_bytes: cache.max_bytes,
            },
            rate_limit: RateLimitFile {
                requests_per_second: rate_limit.requests_per_second,
                burst: rate_limit.burst,
                requests_per_hour: rate_limit.requests_per_hour.unwrap_or(0),
                max_wait: duration(rate_limit.max_wait),
                max_pause: duration(rate_limit.max_pause),
                key: match rate_limit.key {
                    RateLimitKey::ClientId => "client_id",
                    RateLimitKey::Global => "global",
                }
                .to_owned(),
                unverified_per_second: rate_limit.unverified_per_second,
                unverified_burst: rate_limit.unverified_burst,
            },
            auth: AuthFile {
                jwks_url: auth.jwks_url.as_ref().map(redacted).unwrap_or_default(),
                issuer: auth.issuer.clone().unwrap_or_default(),
                audience: auth.audience.clone().unwrap_or_default(),
                accepted_scopes: auth.accepted_scopes.clone(),
                reject_unverified: auth.reject_unverified,
            },
            cluster: ClusterFile {
                redis_url: cluster.redis_url.as_ref().map(redacted).unwrap_or_default(),
                key_prefix: cluster.key_prefix.clone(),
                timeout: duration(cluster.timeout),
                replicas_hint: cluster.replicas_hint,
                shared_cache: cluster.shared_cache,
            },
            log: LogFile {
                level: log.level.clone(),
                format: match log.format {
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                }
                .to_owned(),
                access: log.access,
            },
        }
    }
}

fn duration(value: Duration) -> String {
    humantime::format_duration(value).to_string()
}

/// The URL with any user name and password replaced by [`REDACTED`].
fn redacted(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() {
        return url.to_string();
    }
    let mut url = url.clone();
    if url.set_password(None).is_err() || url.set_username(REDACTED).is_err() {
        return REDACTED.to_owned();
    }
    url.to_string()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::config::tests::load_text;

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
}
