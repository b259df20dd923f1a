//! The one upstream: a pooled HTTP client (HTTPS over rustls with ALPN h2 and http/1.1, plain
//! HTTP for a local upstream), the URIs it may be sent to, timeouts, and the classification of
//! its failures.
//!
//! Every outbound URI is built here from `upstream.base_url` plus the request's path and
//! query, so no request can name another host.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::body::ProxyBody;
use crate::config::UpstreamSettings;
use crate::error::ProxyError;
use crate::request_body::RequestBodyError;

/// The upstream client could not be built from the settings.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamSetupError {
    /// `upstream.ca_file` could not be read as PEM certificates.
    #[error("upstream.ca_file: {0}")]
    CaFile(String),
    /// The TLS configuration was refused.
    #[error("upstream TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    /// `upstream.base_url` has no usable scheme or authority.
    #[error("upstream.base_url: {0}")]
    BaseUrl(String),
}

/// The client and address of the upstream.
#[derive(Clone)]
pub(crate) struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, ProxyBody>,
    scheme: Scheme,
    authority: Authority,
    path_prefix: Arc<str>,
    request_timeout: Duration,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority.host())
            .finish()
    }
}

impl Upstream {
    /// A client for `settings.base_url` with its timeouts and trusted roots.
    pub(crate) fn new(settings: &UpstreamSettings) -> Result<Self, UpstreamSetupError> {
        let base = &settings.base_url;
        let scheme = Scheme::try_from(base.scheme())
            .map_err(|e| UpstreamSetupError::BaseUrl(e.to_string()))?;
        let host = base
            .host_str()
            .ok_or_else(|| UpstreamSetupError::BaseUrl("no host".into()))?;
        let authority = match base.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let authority = Authority::try_from(authority.as_str())
            .map_err(|e| UpstreamSetupError::BaseUrl(e.to_string()))?;

        let client = pooled_client(settings.connect_timeout, settings.ca_file.as_deref())?;
        Ok(Self {
            client,
            scheme,
            authority,
            path_prefix: base.path().trim_end_matches('/').into(),
            request_timeout: settings.request_timeout,
        })
    }

    /// The upstream URI for a request path and query (which must be in origin form).
    pub(crate) fn uri_for(&self, path_and_query: &PathAndQuery) -> Result<Uri, ProxyError> {
        let joined = format!("{}{}", self.path_prefix, path_and_query.as_str());
        Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(joined)
            .build()
            .map_err(|_| ProxyError::InvalidRequest("The request target is not valid."))
    }

    /// The upstream authority, for the `Host` header.
    pub(crate) fn authority(&self) -> &Authority {
        &self.authority
    }

    /// How long a request may wait for the upstream's answer.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Sends `request` and waits for the response head, at most `request_timeout`. A failure
    /// tells whether anything was sent (see [`FailureClass`]).
    pub(crate) async fn send(
        &self,
        request: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamFailure> {
        match tokio::time::timeout(self.request_timeout, self.client.request(request)).await {
            Err(_) => Err(UpstreamFailure {
                class: FailureClass::Timeout,
                detail: "no response head within upstream.request_timeout".into(),
            }),
            Ok(Err(error)) => Err(UpstreamFailure {
                class: FailureClass::of(&error),
                detail: describe_error(&error),
            }),
            Ok(Ok(response)) => Ok(response),
        }
    }
}

/// Why an upstream call got no answer: the `status` label of
/// `itwin_proxy_upstream_requests_total` when no status came.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureClass {
    /// The upstream's name did not resolve.
    Dns,
    /// No TCP connection could be made (refused, unreachable, connect timeout).
    Connect,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// No response head within `upstream.request_timeout`.
    Timeout,
    /// The connection was made but broke off before a response head came.
    Reset,
    /// The client's request body failed while it was being sent: the upstream got only part
    /// of the request.
    Client(ClientFault),
}

/// How the client's request body failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientFault {
    /// It passed `server.max_request_body`.
    TooLarge {
        /// The limit.
        max: u64,
    },
    /// The client stalled for `server.client_timeout`.
    Stalled,
    /// The client's connection failed.
    Broken,
}

impl FailureClass {
    /// The class of a client error: connection set-up failures by what failed, everything
    /// after the connection was made a reset.
    fn of(error: &hyper_util::client::legacy::Error) -> Self {
        if let Some(fault) = Self::client_fault(error) {
            return Self::Client(fault);
        }
        if !error.is_connect() {
            return Self::Reset;
        }
        Self::of_connect_failure(error)
    }

    /// The client's body failure among the causes of `error`, if it is one.
    fn client_fault(error: &(dyn std::error::Error + 'static)) -> Option<ClientFault> {
        let mut cause = Some(error);
        while let Some(current) = cause {
            if let Some(body) = current.downcast_ref::<RequestBodyError>() {
                return Some(match body {
                    RequestBodyError::TooLarge { max } => ClientFault::TooLarge { max: *max },
                    RequestBodyError::Stalled => ClientFault::Stalled,
                    RequestBodyError::Read(_) => ClientFault::Broken,
                });
            }
            cause = current.source();
        }
        None
    }

    /// The class of a failure to set up a connection, from its chain of causes.
    fn of_connect_failure(error: &(dyn std::error::Error + 'static)) -> Self {
        let mut cause = Some(error);
        while let Some(current) = cause {
            if is_tls(current) {
                return Self::Tls;
            }
            // hyper-util's connector names resolution failures so; its type is private.
            if current.to_string() == "dns error" {
                return Self::Dns;
            }
            cause = current.source();
        }
        Self::Connect
    }

    /// The label value.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Dns => "dns",
            Self::Connect => "connect",
            Self::Tls => "tls",
            Self::Timeout => "timeout",
            Self::Reset => "reset",
            Self::Client(_) => "client",
        }
    }
}

/// Whether `error` is rustls's, possibly inside io::Errors (whose inner error is not their
/// `source`).
fn is_tls(error: &(dyn std::error::Error + 'static)) -> bool {
    if error.is::<rustls::Error>() {
        return true;
    }
    error
        .downcast_ref::<std::io::Error>()
        .and_then(std::io::Error::get_ref)
        .is_some_and(|inner| is_tls(inner))
}

/// An upstream call that got no answer.
#[derive(Debug, thiserror::Error)]
#[error("{detail}")]
pub(crate) struct UpstreamFailure {
    /// What kind of failure.
    pub class: FailureClass,
    /// The error and its causes, for the log.
    pub detail: String,
}

impl From<UpstreamFailure> for ProxyError {
    fn from(failure: UpstreamFailure) -> Self {
        let detail = || format!("{}: {}", failure.class.label(), failure.detail);
        match failure.class {
            FailureClass::Timeout => Self::UpstreamTimeout,
            FailureClass::Dns | FailureClass::Connect | FailureClass::Tls => {
                Self::UpstreamUnreachable(detail())
            }
            FailureClass::Reset => Self::UpstreamUnavailable(detail()),
            FailureClass::Client(ClientFault::TooLarge { max }) => Self::PayloadTooLarge { max },
            FailureClass::Client(ClientFault::Stalled) => Self::RequestTimeout,
            FailureClass::Client(ClientFault::Broken) => {
                Self::InvalidRequest("The request body could not be read.")
            }
        }
    }
}

/// A pooled HTTP client (HTTPS over rustls with ALPN h2 and http/1.1, or plain HTTP), with
/// the web roots plus `ca_file` trusted. Also used for the proxy's own calls, such as
/// fetching signing keys.
pub(crate) fn pooled_client(
    connect_timeout: Duration,
    ca_file: Option<&Path>,
) -> Result<Client<HttpsConnector<HttpConnector>, ProxyBody>, UpstreamSetupError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(root_store(ca_file)?)
        .with_no_client_auth();
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_all_versions()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(connector))
}

/// The error and its causes on one line, for the log.
pub(crate) fn describe_error(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn root_store(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, UpstreamSetupError> {
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    if let Some(path) = ca_file {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| UpstreamSetupError::CaFile(format!("{}: {e}", path.display())))?;
        let mut added = 0;
        for cert in certs {
            let cert = cert.map_err(|e| UpstreamSetupError::CaFile(e.to_string()))?;
            roots.add(cert)?;
            added += 1;
        }
        if added == 0 {
            return Err(UpstreamSetupError::CaFile(format!(
                "{}: no certificate found",
                path.display()
            )));
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(base: &str) -> UpstreamSettings {
        UpstreamSettings {
            base_url: base.parse().unwrap(),
            link_origins: vec![],
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
            ca_file: None,
            max_rewrite_bytes: 1024,
        }
    }

    #[test]
    fn uris_always_name_the_upstream() {
        let upstream = Upstream::new(&settings("https://api.bentley.com")).unwrap();
        let uri = upstream
            .uri_for(&PathAndQuery::from_static("//evil.example/x?y=1"))
            .unwrap();
        assert_eq!(uri.host(), Some("api.bentley.com"));
        assert_eq!(
            uri.to_string(),
            "https://api.bentley.com//evil.example/x?y=1"
        );
    }

    #[test]
    fn a_base_path_prefixes_every_request() {
        let upstream = Upstream::new(&settings("http://127.0.0.1:9/api/")).unwrap();
        let uri = upstream
            .uri_for(&PathAndQuery::from_static("/export/connections?imodelId=1"))
            .unwrap();
        assert_eq!(
            uri.to_string(),
            "http://127.0.0.1:9/api/export/connections?imodelId=1"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_unavailable() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let upstream = Upstream::new(&settings(&format!("http://{addr}"))).unwrap();
        let uri = upstream.uri_for(&PathAndQuery::from_static("/")).unwrap();
        let request = Request::get(uri).body(crate::body::empty()).unwrap();
        let failure = upstream.send(request).await.unwrap_err();
        assert_eq!(failure.class, FailureClass::Connect, "{failure}");
        assert!(
            matches!(
                ProxyError::from(failure),
                ProxyError::UpstreamUnreachable(_)
            ),
            "a connection failure is a 502, and nothing was sent"
        );
    }

    #[derive(Debug)]
    struct Named(
        &'static str,
        Option<Box<dyn std::error::Error + Send + Sync>>,
    );

    impl std::fmt::Display for Named {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Named {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn connect_failures_are_classified_by_their_causes() {
        let dns = Named(
            "client error (Connect)",
            Some(Box::new(Named("dns error", None))),
        );
        assert_eq!(FailureClass::of_connect_failure(&dns), FailureClass::Dns);
        let tls = Named(
            "client error (Connect)",
            Some(Box::new(std::io::Error::other(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
            )))),
        );
        assert_eq!(FailureClass::of_connect_failure(&tls), FailureClass::Tls);
        let refused = Named(
            "client error (Connect)",
            Some(Box::new(Named(
                "tcp connect error",
                Some(Box::new(std::io::Error::from(
                    std::io::ErrorKind::ConnectionRefused,
                ))),
            ))),
        );
        assert_eq!(
            FailureClass::of_connect_failure(&refused),
            FailureClass::Connect
        );
    }

    #[test]
    fn a_missing_ca_file_is_reported() {
        let mut settings = settings("https://api.bentley.com");
        settings.ca_file = Some("/nonexistent/ca.pem".into());
        let error = Upstream::new(&settings).unwrap_err();
        assert!(error.to_string().starts_with("upstream.ca_file"), "{error}");
    }
}
