//! The one function that decides which requests share a cached page.
//!
//! Cache poisoning and data leaks are born here, so the rule is strict: a request is cacheable
//! only when its query holds exactly the parameters the upstream documents (`imodelId`, and
//! optionally `$top` and `$skip`), each once, spelled exactly so after percent-decoding.
//! Anything else is forwarded untouched. The key holds everything that can change the page:
//! the subject, the decoded parameters, and the `Accept` and `Prefer` headers as the upstream
//! gets them (a header the request names in `Connection` is hop-by-hop and never sent, so it
//! does not key either).

use std::borrow::Cow;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, HeaderValue, header};
use percent_encoding::percent_decode_str;

use crate::auth::Subject;

/// The parameters of a cacheable connections-list query, percent-decoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageQuery {
    /// `imodelId`.
    pub imodel_id: Arc<str>,
    /// `$top`, as sent.
    pub top: Option<Box<str>>,
    /// `$skip`, as sent.
    pub skip: Option<Box<str>>,
}

impl PageQuery {
    /// The cacheable reading of `query`, or `None` when the query is anything other than
    /// `imodelId` plus optional `$top` and `$skip`, each exactly once, in any order.
    pub fn parse(query: Option<&str>) -> Option<Self> {
        let (mut imodel_id, mut top, mut skip) = (None, None, None);
        for pair in query?.split('&').filter(|pair| !pair.is_empty()) {
            // Servers disagree on whether `+` means a space; such a query is not keyed.
            if pair.contains('+') {
                return None;
            }
            let (name, value) = pair.split_once('=')?;
            let (name, value) = (decoded(name)?, decoded(value)?);
            let slot = match name.as_ref() {
                "imodelId" => &mut imodel_id,
                "$top" => &mut top,
                "$skip" => &mut skip,
                _ => return None,
            };
            if slot.replace(value).is_some() {
                return None;
            }
        }
        Some(Self {
            imodel_id: Arc::from(&*imodel_id.filter(|id| !id.is_empty())?),
            top: top.map(|top| Box::from(&*top)),
            // The first page, as the upstream's own first-page links name it.
            skip: skip
                .filter(|skip| skip != "0")
                .map(|skip| Box::from(&*skip)),
        })
    }
}

/// `text` percent-decoded, `None` when that is not UTF-8; text without `%` as it is.
fn decoded(text: &str) -> Option<Cow<'_, str>> {
    if !text.as_bytes().contains(&b'%') {
        return Some(Cow::Borrowed(text));
    }
    percent_decode_str(text).decode_utf8().ok()
}

/// Identifies one cached page: whose it is, which page, and in which representation.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// The subject the page was fetched for.
    pub subject: Subject,
    /// Which page of which iModel.
    pub query: PageQuery,
    /// The `Accept` values, joined.
    pub accept: Option<HeaderValue>,
    /// The `Prefer` values, joined.
    pub prefer: Option<HeaderValue>,
}

impl CacheKey {
    /// The key of a request by `subject` for `query` with these request headers.
    pub fn new(subject: Subject, query: PageQuery, headers: &HeaderMap) -> Self {
        Self {
            subject,
            query,
            accept: joined(headers, &header::ACCEPT),
            prefer: joined(headers, &HeaderName::from_static("prefer")),
        }
    }

    /// Approximate bytes the key takes in memory, for the cache's weigher.
    pub fn weight(&self) -> usize {
        let subject = match &self.subject {
            Subject::Claim(sub) => sub.len(),
            Subject::Opaque(_) => 32,
        };
        let header = |v: &Option<HeaderValue>| v.as_ref().map_or(0, HeaderValue::len);
        subject
            + self.query.imodel_id.len()
            + self.query.top.as_deref().map_or(0, str::len)
            + self.query.skip.as_deref().map_or(0, str::len)
            + header(&self.accept)
            + header(&self.prefer)
            + std::mem::size_of::<Self>()
    }
}

/// All values of a header as one, so that two headers and one comma-joined header key alike;
/// none when `Connection` names the header.
fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    if hop_by_hop(headers, name) {
        return None;
    }
    let mut values = headers.get_all(name).iter().peekable();
    let first = values.next()?;
    if values.peek().is_none() {
        // The common case, on every request of the cached route: no allocation.
        return Some(first.clone());
    }
    let mut all = first.as_bytes().to_vec();
    for value in values {
        all.extend_from_slice(b", ");
        all.extend_from_slice(value.as_bytes());
    }
    HeaderValue::from_bytes(&all).ok()
}

/// Whether `Connection` lists `name`, so that the header is removed before forwarding.
fn hop_by_hop(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|listed| listed.trim().eq_ignore_ascii_case(name.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Option<PageQuery> {
        PageQuery::parse(Some(q))
    }

    #[test]
    fn order_and_encoding_do_not_matter() {
        assert_eq!(
            parse("imodelId=m1&$top=10&$skip=0"),
            parse("imodelId=m1&$top=10"),
            "skipping none is the first page"
        );
        assert_ne!(parse("imodelId=m1&$skip=00"), parse("imodelId=m1"));
        let a = parse("imodelId=m1&$top=10&$skip=20").unwrap();
        let b = parse("%24skip=20&%24top=10&imodelId=m%31").unwrap();
        assert_eq!(a, b);
        assert_eq!(&*a.imodel_id, "m1");
        assert_eq!(a.top.as_deref(), Some("10"));
    }

    #[test]
    fn anything_else_is_not_cacheable() {
        assert!(parse("imodelId=m1&$top=1&$top=2").is_none(), "repeated");
        assert!(parse("imodelId=m1&other=1").is_none(), "unknown");
        assert!(parse("imodelid=m1").is_none(), "another case");
        assert!(parse("imodelId=m1&$Top=1").is_none(), "another case");
        assert!(parse("$top=1").is_none(), "no iModel");
        assert!(parse("imodelId=").is_none(), "empty iModel");
        assert!(parse("imodelId").is_none(), "no value");
        assert!(parse("imodelId=%ff").is_none(), "not UTF-8");
        assert!(parse("imodelId=a+b").is_none(), "+ is ambiguous");
        assert!(PageQuery::parse(None).is_none());
        assert!(parse("imodelId=m1&").is_some(), "a trailing & is harmless");
    }

    #[test]
    fn accept_and_prefer_split_keys() {
        let query = parse("imodelId=m1").unwrap();
        let subject = Subject::Claim("alice".into());
        let mut headers = HeaderMap::new();
        let plain = CacheKey::new(subject.clone(), query.clone(), &headers);
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let accept = CacheKey::new(subject.clone(), query.clone(), &headers);
        headers.insert("prefer", HeaderValue::from_static("return=minimal"));
        let prefer = CacheKey::new(subject.clone(), query.clone(), &headers);
        assert_ne!(plain, accept);
        assert_ne!(accept, prefer);
        let other = CacheKey::new(Subject::Claim("bob".into()), query, &headers);
        assert_ne!(prefer, other);
    }

    #[test]
    fn headers_named_in_connection_do_not_key() {
        let query = parse("imodelId=m1").unwrap();
        let subject = Subject::Claim("alice".into());
        let plain = CacheKey::new(subject.clone(), query.clone(), &HeaderMap::new());
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, Accept"),
        );
        headers.insert("prefer", HeaderValue::from_static("return=minimal"));
        headers.append(header::CONNECTION, HeaderValue::from_static("prefer"));
        assert_eq!(CacheKey::new(subject, query, &headers), plain);
    }

    #[test]
    fn repeated_headers_join() {
        let mut two = HeaderMap::new();
        two.append(header::ACCEPT, HeaderValue::from_static("a/b"));
        two.append(header::ACCEPT, HeaderValue::from_static("c/d"));
        let mut one = HeaderMap::new();
        one.insert(header::ACCEPT, HeaderValue::from_static("a/b, c/d"));
        let query = parse("imodelId=m1").unwrap();
        let subject = Subject::Claim("alice".into());
        assert_eq!(
            CacheKey::new(subject.clone(), query.clone(), &two),
            CacheKey::new(subject, query, &one)
        );
    }
}
