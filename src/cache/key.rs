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

use http::{HeaderMap, HeaderName, HeaderValue, header};
use percent_encoding::percent_decode_str;

use super::page_headers::PageHeaders;
use crate::ascii;
use crate::auth::Subject;

/// The parameters of a cacheable connections-list query, percent-decoded, held in one
/// allocation (a key is built on every request of the cached route).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageQuery {
    /// The values one after another: `imodelId`, then `$top`, then `$skip` where given.
    values: Box<str>,
    /// Where `$top` and `$skip` end in `values`, when given (each starts where the one
    /// before ends).
    top_end: Option<u32>,
    skip_end: Option<u32>,
    /// Where `imodelId` ends in `values`.
    imodel_end: u32,
}

impl PageQuery {
    /// The cacheable reading of `query`, or `None` when the query is anything other than
    /// `imodelId` plus optional `$top` and `$skip`, each exactly once, in any order.
    pub fn parse(query: Option<&str>) -> Option<Self> {
        let query = query?;
        let mut values = [None, None, None];
        // One pass, from one special byte to the next: this runs on every request of the
        // cached route.
        let bytes = query.as_bytes();
        let (mut start, mut equals, mut escaped) = (0, None, false);
        let mut at = 0;
        loop {
            at = ascii::find_any(bytes, at, [b'&', b'=', b'%', b'+']);
            match bytes.get(at) {
                None | Some(b'&') => {
                    if at > start {
                        take(&query[start..at], equals, escaped, &mut values)?;
                    }
                    if at == bytes.len() {
                        break;
                    }
                    (start, equals, escaped) = (at + 1, None, false);
                }
                Some(b'=') => {
                    equals = equals.or(Some(at - start));
                }
                Some(b'%') => escaped = true,
                // `+`: servers disagree on whether it means a space; such a query is not keyed.
                _ => return None,
            }
            at += 1;
        }
        let [imodel_id, top, skip] = values;
        let imodel_id = imodel_id.filter(|id| !id.is_empty())?;
        // The first page, as the upstream's own first-page links name it.
        let skip = skip.filter(|skip| skip != "0");
        let length = |v: &Option<Cow<'_, str>>| v.as_ref().map_or(0, |v| v.len());
        let mut values = String::with_capacity(imodel_id.len() + length(&top) + length(&skip));
        let imodel_end = push(&mut values, &imodel_id)?;
        let top_end = match &top {
            Some(top) => Some(push(&mut values, top)?),
            None => None,
        };
        let skip_end = match &skip {
            Some(skip) => Some(push(&mut values, skip)?),
            None => None,
        };
        Some(Self {
            values: values.into_boxed_str(),
            top_end,
            skip_end,
            imodel_end,
        })
    }

    /// `imodelId`.
    pub fn imodel_id(&self) -> &str {
        &self.values[..self.imodel_end as usize]
    }

    /// `$top`, as sent.
    pub fn top(&self) -> Option<&str> {
        let start = self.imodel_end as usize;
        self.top_end.map(|end| &self.values[start..end as usize])
    }

    /// `$skip`, as sent; `None` for the first page (`$skip=0` included).
    pub fn skip(&self) -> Option<&str> {
        let start = self.top_end.unwrap_or(self.imodel_end) as usize;
        self.skip_end.map(|end| &self.values[start..end as usize])
    }

    /// Bytes of the values.
    fn len(&self) -> usize {
        self.values.len()
    }
}

/// Takes one `name=value` pair (`=` at `equals`; percent-encoded if `escaped`) into its
/// slot of `values` (`imodelId`, `$top`, `$skip`); `None` for any other name, a pair without
/// `=`, or a name given twice.
fn take<'q>(
    pair: &'q str,
    equals: Option<usize>,
    escaped: bool,
    values: &mut [Option<Cow<'q, str>>; 3],
) -> Option<()> {
    let at = equals?;
    let (name, value) = (&pair[..at], &pair[at + 1..]);
    let (name, value) = match escaped {
        true => (decoded(name)?, decoded(value)?),
        false => (Cow::Borrowed(name), Cow::Borrowed(value)),
    };
    let slot = match name.as_ref() {
        "imodelId" => 0,
        "$top" => 1,
        "$skip" => 2,
        _ => return None,
    };
    values[slot].replace(value).is_none().then_some(())
}

/// Appends `value`; where it now ends.
fn push(values: &mut String, value: &str) -> Option<u32> {
    values.push_str(value);
    u32::try_from(values.len()).ok()
}

/// `text` percent-decoded, `None` when that is not UTF-8.
fn decoded(text: &str) -> Option<Cow<'_, str>> {
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
        Self::asked(subject, query, &PageHeaders::of(headers))
    }

    /// The key of a request by `subject` for `query` whose headers are `asked`.
    pub(crate) fn asked(subject: Subject, query: PageQuery, asked: &PageHeaders<'_>) -> Self {
        Self {
            subject,
            query,
            accept: asked.accept(),
            prefer: asked.prefer(),
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
            + self.query.len()
            + header(&self.accept)
            + header(&self.prefer)
            + std::mem::size_of::<Self>()
    }
}

/// All values of a header as one, so that two headers and one comma-joined header key alike;
/// none when `Connection` names the header.
pub(super) fn joined(headers: &HeaderMap, name: &HeaderName) -> Option<HeaderValue> {
    let mut values = headers.get_all(name).iter().peekable();
    let first = values.next()?;
    if hop_by_hop(headers, name) {
        return None;
    }
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
        assert_eq!(a.imodel_id(), "m1");
        assert_eq!(a.top(), Some("10"));
        assert_eq!(a.skip(), Some("20"));
        let b = parse("$skip=3&imodelId=m2").unwrap();
        assert_eq!((b.imodel_id(), b.top(), b.skip()), ("m2", None, Some("3")));
        let c = parse("$top=&imodelId=m2").unwrap();
        assert_eq!((c.imodel_id(), c.top(), c.skip()), ("m2", Some(""), None));
        assert_ne!(
            c,
            parse("imodelId=m2").unwrap(),
            "an empty $top is not none"
        );
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
