//! Write invalidation: which writes through the proxy make which cached pages stale.
//!
//! Creating a connection changes its iModel's list; deleting one, or starting a run (which
//! changes its `lastRun`), changes the list of the connection's iModel. That iModel is
//! learned from the pages and answers that pass through; where it is unknown, every page is
//! evicted. Pages of the iModel are evicted for every subject, and a fill already in flight
//! does not store its older page (see [`PageCache::purge`]).

use std::sync::Arc;

use http::{Method, StatusCode};
use moka::future::Cache;
use percent_encoding::percent_decode_str;
use serde::Deserialize;

use super::store::{PageCache, Purge};
use crate::ascii::strip_prefix_ignore_case;

/// How many connection → iModel pairs are remembered.
const MAX_OWNERS: u64 = 100_000;

/// A request that changes cached lists when it succeeds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Write {
    /// `POST /export/connections`.
    CreateConnection,
    /// `DELETE /export/connections/{id}`.
    DeleteConnection(String),
    /// `POST /export/connections/{id}/runs`.
    StartRun(String),
    /// Any other non-reading request under `/export/connections`: what it changes is not
    /// known, so it evicts everything.
    Other,
}

/// How a write ended, as far as the proxy can tell.
#[derive(Debug, Clone, Copy)]
pub(crate) enum WriteOutcome<'a> {
    /// The upstream answered with this status; `body` when the proxy read the answer whole.
    Answered {
        /// The upstream's status.
        status: StatusCode,
        /// The answer's body, when read whole.
        body: Option<&'a [u8]>,
    },
    /// No answer (unreachable, timed out, broken off): the write may or may not have
    /// happened.
    Unknown,
}

impl Write {
    /// What kind of write it is, for the log.
    fn label(&self) -> &'static str {
        match self {
            Self::CreateConnection => "create connection",
            Self::DeleteConnection(_) => "delete connection",
            Self::StartRun(_) => "start run",
            Self::Other => "other",
        }
    }

    /// The write a request is, if any (`path` without query, public prefix stripped). The
    /// path is read as a server may read it: repeated `/` as one, percent-encoded unreserved
    /// characters decoded (`%63` is `c`), words ignoring ASCII case, a trailing `/` allowed.
    pub(crate) fn classify(method: &Method, path: &str) -> Option<Self> {
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return None;
        }
        let path = normalise(path);
        let prefix = "/export/connections";
        strip_prefix_ignore_case(path.as_bytes(), prefix.as_bytes())?;
        let rest = path.get(prefix.len()..)?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.is_empty() {
            return Some(match *method {
                Method::POST => Self::CreateConnection,
                _ => Self::Other,
            });
        }
        let Some(rest) = rest.strip_prefix('/') else {
            // `/export/connectionsX`: another resource.
            return None;
        };
        let mut segments = rest.split('/');
        let id = segments
            .next()
            .and_then(|id| percent_decode_str(id).decode_utf8().ok())
            .filter(|id| !id.is_empty());
        let Some(id) = id else {
            return Some(Self::Other);
        };
        let runs = segments.next();
        Some(match (method, runs, segments.next()) {
            (&Method::DELETE, None, _) => Self::DeleteConnection(id.into_owned()),
            (&Method::POST, Some(runs), None) if runs.eq_ignore_ascii_case("runs") => {
                Self::StartRun(id.into_owned())
            }
            _ => Self::Other,
        })
    }
}

/// `path` with runs of `/` collapsed and percent-encoded unreserved characters (letters,
/// digits, `-._~`) decoded: spellings that name the same resource (RFC 3986, section 6.2.2)
/// on servers that merge slashes. Other escapes (`%2F`, `%20`) stay as they are.
fn normalise(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'/' && out.ends_with('/') {
            i += 1;
            continue;
        }
        if b == b'%'
            && let Some(decoded) = path
                .get(i + 1..i + 3)
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
                .filter(|d| d.is_ascii_alphanumeric() || b"-._~".contains(d))
        {
            out.push(char::from(decoded));
            i += 3;
            continue;
        }
        // Multi-byte characters are copied whole, byte by byte via their char.
        let Some(c) = path[i..].chars().next() else {
            break;
        };
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// A connection as the upstream describes it; only what invalidation needs.
#[derive(Deserialize)]
struct Connection {
    id: String,
    #[serde(rename = "iModelId")]
    imodel_id: String,
}

#[derive(Deserialize)]
struct ConnectionList {
    connections: Vec<Connection>,
}

#[derive(Deserialize)]
struct SingleConnection {
    connection: Connection,
}

/// Remembers which iModel each seen connection belongs to, and evicts after writes.
#[derive(Clone)]
pub(crate) struct Invalidator {
    owners: Cache<Arc<str>, Arc<str>>,
}

impl std::fmt::Debug for Invalidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invalidator")
            .field("known_connections", &self.owners.entry_count())
            .finish()
    }
}

impl Default for Invalidator {
    fn default() -> Self {
        Self {
            owners: Cache::new(MAX_OWNERS),
        }
    }
}

impl Invalidator {
    /// Learns the iModel of every connection on a list page.
    pub(crate) async fn learn_from_page(&self, body: &[u8]) {
        if let Ok(page) = serde_json::from_slice::<ConnectionList>(body) {
            for connection in page.connections {
                self.learn(connection).await;
            }
        }
    }

    /// Learns the iModel of a `{"connection":{..}}` answer, and returns it.
    pub(crate) async fn learn_from_connection(&self, body: &[u8]) -> Option<String> {
        let single = serde_json::from_slice::<SingleConnection>(body).ok()?;
        let imodel_id = single.connection.imodel_id.clone();
        self.learn(single.connection).await;
        Some(imodel_id)
    }

    async fn learn(&self, connection: Connection) {
        self.owners
            .insert(connection.id.into(), connection.imodel_id.into())
            .await;
    }

    /// Evicts what `write` made stale: nothing when the upstream refused it (a 4xx or other
    /// non-success answer below 500); when it succeeded, or its outcome is unknown (no
    /// answer, or a 5xx), the pages of the iModel it touched, or every page where that is
    /// not known. Returns the purge applied, if any.
    pub(crate) async fn after_write(
        &self,
        write: &Write,
        outcome: WriteOutcome<'_>,
        cache: &PageCache,
    ) -> Option<Purge> {
        let body = match outcome {
            WriteOutcome::Answered { status, body } if status.is_success() => body,
            WriteOutcome::Answered { status, .. } if !status.is_server_error() => return None,
            WriteOutcome::Answered { .. } | WriteOutcome::Unknown => None,
        };
        let imodel_id = match write {
            Write::CreateConnection => match body {
                Some(body) => self.learn_from_connection(body).await,
                None => None,
            },
            Write::DeleteConnection(id) | Write::StartRun(id) => {
                self.owners.get(id.as_str()).await.map(|o| o.to_string())
            }
            Write::Other => None,
        };
        let purge = imodel_id.map_or(Purge::All, Purge::IModel);
        tracing::debug!(write = write.label(), %purge, "write invalidates cached pages");
        cache.purge(&purge);
        Some(purge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_are_classified() {
        let classify = Write::classify;
        let create = Some(Write::CreateConnection);
        assert_eq!(classify(&Method::POST, "/export/connections"), create);
        assert_eq!(classify(&Method::POST, "/Export/Connections/"), create);
        assert_eq!(
            classify(&Method::DELETE, "/export/connections/c%201"),
            Some(Write::DeleteConnection("c 1".into()))
        );
        for path in [
            "/export/connections/c1/runs",
            "/export/connections/c1/RUNS/",
        ] {
            assert_eq!(
                classify(&Method::POST, path),
                Some(Write::StartRun("c1".into())),
                "{path}"
            );
        }
        let other = Some(Write::Other);
        assert_eq!(
            classify(&Method::POST, "/export/connections/c1/runs/r1"),
            other
        );
        assert_eq!(classify(&Method::PATCH, "/export/connections/c1"), other);
        assert_eq!(classify(&Method::DELETE, "/export/connections/"), other);
        assert_eq!(classify(&Method::GET, "/export/connections"), None);
        assert_eq!(classify(&Method::GET, "/export/connections/c1"), None);
        assert_eq!(classify(&Method::POST, "/export/connectionsX"), None);
        for spelling in [
            "//export/connections",
            "/export//connections/",
            "/export/%63onnections",
            "/%65xport/Connection%73",
        ] {
            assert_eq!(classify(&Method::POST, spelling), create, "{spelling}");
        }
        assert_eq!(
            classify(&Method::POST, "/export/connections/c%31//runs"),
            Some(Write::StartRun("c1".into()))
        );
        assert_eq!(
            classify(&Method::DELETE, "/export/connections/a%2Fb"),
            Some(Write::DeleteConnection("a/b".into())),
            "an escaped slash stays inside the id"
        );
        assert_eq!(classify(&Method::POST, "/export/connection%2Fs"), None);
        assert_eq!(classify(&Method::POST, "/export/runs"), None);
    }

    #[tokio::test]
    async fn owners_are_learned_from_pages_and_answers() {
        let invalidator = Invalidator::default();
        invalidator
            .learn_from_page(br#"{"connections":[{"id":"c1","iModelId":"m1","x":1}],"_links":{}}"#)
            .await;
        let created = invalidator
            .learn_from_connection(br#"{"connection":{"id":"c2","iModelId":"m2"}}"#)
            .await;
        assert_eq!(created.as_deref(), Some("m2"));
        assert_eq!(invalidator.owners.get("c1").await.as_deref(), Some("m1"));
        assert_eq!(invalidator.owners.get("c2").await.as_deref(), Some("m2"));
    }
}
