//! Cost of the cache-hit path: reading the key from the request, and looking up a fresh
//! page among many, which is what a hit costs beyond the socket work.

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderMap, HeaderValue, header};
use itwin_proxy::auth::Subject;
use itwin_proxy::cache::{CacheKey, CachedPage, Lookup, PageCache, PageQuery};
use itwin_proxy::config::CacheSettings;

const PAGES: u32 = 10_000;
const IMODEL: &str = "5db42812-ebb8-4c58-98a4-2eaa99e0d8b6";

fn headers() -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::ACCEPT,
        HeaderValue::from_static("application/vnd.bentley.itwin-platform.v1+json"),
    );
    headers
}

fn key(subject: &str, skip: u32) -> Option<CacheKey> {
    let query = format!("imodelId={IMODEL}&$top=50&$skip={skip}");
    let query = PageQuery::parse(Some(&query))?;
    Some(CacheKey::new(
        Subject::Claim(subject.into()),
        query,
        &headers(),
    ))
}

fn hit(c: &mut Criterion) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    else {
        return;
    };
    let cache = PageCache::new(&CacheSettings {
        ttl: Duration::from_secs(3600),
        stale_if_error: Duration::ZERO,
        stale_while_revalidate: Duration::ZERO,
        max_bytes: 1 << 30,
    });
    let body = Bytes::from(vec![b' '; 40_000]);
    let mut page_headers = HeaderMap::new();
    page_headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    runtime.block_on(async {
        for skip in 0..PAGES {
            if let Some(key) = key("alice", skip) {
                let page =
                    CachedPage::new(&page_headers, body.clone(), tokio::time::Instant::now());
                cache.store(key, page, cache.epoch());
            }
        }
    });

    let request_headers = headers();
    c.bench_function("cache_key/from_request", |b| {
        b.iter(|| {
            let query = PageQuery::parse(black_box(Some(
                "%24skip=100&imodelId=5db42812-ebb8-4c58-98a4-2eaa99e0d8b6&%24top=50",
            )));
            query.map(|query| {
                black_box(CacheKey::new(
                    Subject::Claim("alice".into()),
                    query,
                    &request_headers,
                ))
            })
        });
    });
    let keys: Vec<CacheKey> = (0..PAGES).filter_map(|skip| key("alice", skip)).collect();
    let mut next = keys.iter().cycle();
    c.bench_function("cache_lookup/fresh_hit_among_10k", |b| {
        b.to_async(&runtime).iter(|| {
            let key = next.next();
            let cache = &cache;
            async move {
                if let Some(key) = key
                    && let Lookup::Fresh(held) = cache.lookup(key, tokio::time::Instant::now())
                {
                    black_box(held.page.body.clone());
                }
            }
        });
    });
}

criterion_group!(benches, hit);
criterion_main!(benches);
