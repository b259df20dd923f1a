//! Header hygiene between client and upstream: hop-by-hop headers removed both ways and the
//! `X-Forwarded-*` headers that tell the upstream who asked.

use std::net::IpAddr;

use http::{HeaderMap, HeaderName, HeaderValue, header};

/// Headers that describe one connection, not the message (RFC 9110 section 7.6.1), plus the
/// `Proxy-*` family. They never cross the proxy.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    HeaderName::from_static("keep-alive"),
];

/// Removes every hop-by-hop header: the fixed set, every `Proxy-*` header, and the headers
/// named in `Connection`.
pub(crate) fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed.iter().chain(HOP_BY_HOP.iter()) {
        headers.remove(name);
    }
    let proxy_headers: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("proxy-"))
        .cloned()
        .collect();
    for name in proxy_headers {
        headers.remove(name);
    }
}

/// Appends the client address to `X-Forwarded-For` and sets `X-Forwarded-Proto` and
/// `X-Forwarded-Host` to what the client used to reach the proxy (`https` when the proxy's
/// public URL is, as behind a TLS-terminating gateway).
pub(crate) fn add_forwarded(
    headers: &mut HeaderMap,
    client: IpAddr,
    host: Option<&HeaderValue>,
    https: bool,
) {
    let x_forwarded_for = HeaderName::from_static("x-forwarded-for");
    let chain = match headers.get(&x_forwarded_for).and_then(|v| v.to_str().ok()) {
        Some(previous) if !previous.trim().is_empty() => format!("{previous}, {client}"),
        _ => client.to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert(x_forwarded_for, value);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(if https { "https" } else { "http" }),
    );
    let x_forwarded_host = HeaderName::from_static("x-forwarded-host");
    match host {
        Some(host) => {
            headers.insert(x_forwarded_host, host.clone());
        }
        None => {
            headers.remove(x_forwarded_host);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_fixed_listed_and_proxy_headers() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("close, X-Secret"),
        );
        headers.insert("x-secret", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        headers.insert("proxy-connection", HeaderValue::from_static("keep-alive"));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        remove_hop_by_hop(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert!(headers.contains_key(header::ACCEPT));
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut headers = HeaderMap::new();
        headers.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9"));
        let host = HeaderValue::from_static("proxy.example:8080");
        add_forwarded(
            &mut headers,
            "127.0.0.1".parse().unwrap(),
            Some(&host),
            false,
        );
        assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "proxy.example:8080");
        add_forwarded(&mut headers, "127.0.0.1".parse().unwrap(), None, true);
        assert_eq!(headers["x-forwarded-proto"], "https");
        assert!(!headers.contains_key("x-forwarded-host"));
    }
}
