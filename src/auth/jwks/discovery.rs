//! Where the signing keys come from: `auth.jwks_url`, or the `jwks_uri` of the issuer's
//! OpenID discovery document, fetched with a timeout and a size cap.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION};
use http::{HeaderValue, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use percent_encoding::percent_decode_str;
use serde::Deserialize;
use url::Url;

use super::keys::KeySet;
use crate::body::ProxyBody;
use crate::config::is_secure_or_loopback;
use crate::upstream::describe_error;

/// Time allowed for one fetch, from sending the request to the end of the body.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The largest discovery document or key set read.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Path of the discovery document under the issuer.
const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Why the keys could not be obtained.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("{0}: no answer within {FETCH_TIMEOUT:?}")]
    Timeout(String),
    #[error("{0}: {1}")]
    Http(String, String),
    #[error("{0}: status {1}")]
    Status(String, StatusCode),
    #[error("{0}: body larger than {MAX_BODY_BYTES} bytes or cut short: {1}")]
    Body(String, String),
    #[error("{0}: not a JSON {1}")]
    Json(String, &'static str),
    #[error("{0}: jwks_uri {1:?} is not an https URL (or http on a loopback host)")]
    JwksUri(String, String),
    #[error("{0}: names issuer {1:?}, not the configured one")]
    Issuer(String, String),
    #[error("{0}: {1}")]
    KeySet(String, String),
}

/// An http(s) URI to GET, with the basic credentials its URL carried.
#[derive(Clone)]
pub(crate) struct Endpoint {
    uri: Uri,
    authorization: Option<HeaderValue>,
}

impl Endpoint {
    /// The endpoint of an http(s) URL; its credentials, if any, become `Authorization: Basic`.
    pub(crate) fn of(url: &Url) -> Result<Self, String> {
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err("not an http(s) URL".to_owned());
        }
        let authorization = if url.username().is_empty() && url.password().is_none() {
            None
        } else {
            let decode = |s: &str| percent_decode_str(s).decode_utf8_lossy().into_owned();
            let pair = format!(
                "{}:{}",
                decode(url.username()),
                decode(url.password().unwrap_or_default())
            );
            let value = format!("Basic {}", STANDARD.encode(pair));
            let mut value = HeaderValue::try_from(value).map_err(|e| e.to_string())?;
            value.set_sensitive(true);
            Some(value)
        };
        let mut bare = url.clone();
        // Only fails for URLs that cannot have credentials, which were refused above.
        let _ = bare.set_username("");
        let _ = bare.set_password(None);
        let uri = Uri::try_from(bare.as_str()).map_err(|e| e.to_string())?;
        Ok(Self { uri, authorization })
    }

    /// Scheme, host and path, for logs (no credentials, no query).
    pub(crate) fn describe(&self) -> String {
        let scheme = self.uri.scheme_str().unwrap_or_default();
        let host = self.uri.host().unwrap_or_default();
        let port = self.uri.port().map(|p| format!(":{p}")).unwrap_or_default();
        format!("{scheme}://{host}{port}{}", self.uri.path())
    }
}

/// Where the key set is.
pub(crate) enum Location {
    /// The key set itself (`auth.jwks_url`).
    Jwks(Endpoint),
    /// The issuer's discovery document, naming the key set.
    Discovery(Endpoint, String),
}

impl Location {
    /// The discovery document of `issuer` (its URL without a trailing slash, plus the
    /// well-known path).
    pub(crate) fn discovery(issuer: &str) -> Result<Self, String> {
        let url = format!("{}{DISCOVERY_PATH}", issuer.trim_end_matches('/'));
        let url = Url::parse(&url).map_err(|e| e.to_string())?;
        Endpoint::of(&url).map(|endpoint| Self::Discovery(endpoint, issuer.to_owned()))
    }

    /// Where it is, for logs.
    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Jwks(endpoint) => endpoint.describe(),
            Self::Discovery(endpoint, _) => format!("discovery at {}", endpoint.describe()),
        }
    }
}

#[derive(Deserialize)]
struct DiscoveryDocument {
    jwks_uri: String,
    issuer: Option<String>,
}

/// Fetches the key set from a [`Location`].
pub(crate) struct Fetcher {
    client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
    location: Location,
}

impl Fetcher {
    /// A fetcher using `client`.
    pub(crate) fn new(
        client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
        location: Location,
    ) -> Self {
        Self { client, location }
    }

    /// Where it fetches from.
    pub(crate) fn location(&self) -> &Location {
        &self.location
    }

    /// Fetches the key set, reading the discovery document first when there is one.
    pub(crate) async fn fetch(&self) -> Result<KeySet, FetchError> {
        let jwks = match &self.location {
            Location::Jwks(endpoint) => endpoint.clone(),
            Location::Discovery(endpoint, issuer) => {
                let body = self.get(endpoint).await?;
                let what = endpoint.describe();
                let document: DiscoveryDocument = serde_json::from_slice(&body)
                    .map_err(|_| FetchError::Json(what.clone(), "discovery document"))?;
                // OpenID Connect Discovery 1.0, section 4.3: the document must name the
                // issuer it was fetched for.
                if let Some(named) = &document.issuer
                    && named.trim_end_matches('/') != issuer.trim_end_matches('/')
                {
                    return Err(FetchError::Issuer(what, named.clone()));
                }
                Url::parse(&document.jwks_uri)
                    .ok()
                    .filter(is_secure_or_loopback)
                    .and_then(|url| Endpoint::of(&url).ok())
                    .ok_or(FetchError::JwksUri(what, document.jwks_uri))?
            }
        };
        let body = self.get(&jwks).await?;
        KeySet::parse(&body).map_err(|e| FetchError::KeySet(jwks.describe(), e.to_string()))
    }

    /// GETs `endpoint` and reads its 2xx body, within the timeout and size cap.
    async fn get(&self, endpoint: &Endpoint) -> Result<Bytes, FetchError> {
        let what = endpoint.describe();
        let mut request = Request::get(endpoint.uri.clone())
            .header(ACCEPT, "application/json")
            .body(crate::body::empty())
            .map_err(|e| FetchError::Http(what.clone(), e.to_string()))?;
        if let Some(authorization) = &endpoint.authorization {
            request
                .headers_mut()
                .insert(AUTHORIZATION, authorization.clone());
        }
        let exchange = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| FetchError::Http(what.clone(), describe_error(&e)))?;
            let status = response.status();
            if !status.is_success() {
                return Err(FetchError::Status(what.clone(), status));
            }
            let body = Limited::new(response.into_body(), MAX_BODY_BYTES);
            let body = body
                .collect()
                .await
                .map_err(|e| FetchError::Body(what.clone(), e.to_string()))?;
            Ok(body.to_bytes())
        };
        tokio::time::timeout(FETCH_TIMEOUT, exchange)
            .await
            .map_err(|_| FetchError::Timeout(what.clone()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_become_basic_authorization_and_leave_the_uri() {
        let url = Url::parse("https://user:p%40ss@ims.example:8443/keys?x=1").unwrap();
        let endpoint = Endpoint::of(&url).unwrap();
        assert_eq!(
            endpoint.uri.to_string(),
            "https://ims.example:8443/keys?x=1"
        );
        let expected = format!("Basic {}", STANDARD.encode("user:p@ss"));
        assert_eq!(endpoint.describe(), "https://ims.example:8443/keys");
        assert_eq!(endpoint.authorization.unwrap(), expected.as_str());
    }

    #[test]
    fn discovery_is_under_the_issuer() {
        let Location::Discovery(endpoint, _) = Location::discovery("https://ims.example/").unwrap()
        else {
            panic!("not a discovery location");
        };
        assert_eq!(
            endpoint.uri.to_string(),
            "https://ims.example/.well-known/openid-configuration"
        );
        assert!(Location::discovery("ims.example").is_err());
        assert!(is_secure_or_loopback(
            &Url::parse("https://ims.example/k").unwrap()
        ));
        assert!(is_secure_or_loopback(
            &Url::parse("http://127.0.0.1:9/k").unwrap()
        ));
        assert!(!is_secure_or_loopback(
            &Url::parse("http://ims.example/k").unwrap()
        ));
        assert!(Endpoint::of(&Url::parse("ftp://ims.example/keys").unwrap()).is_err());
    }
}
