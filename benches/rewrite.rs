//! Link rewriting over a list page of 1,000 export connections (about 600 KB, shaped like the
//! API reference's example): with links to rewrite, without any that match (validation
//! only), and `serde_json`'s own parse of the same bytes for scale.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt::Write;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use itwin_proxy::rewrite::LinkRewriter;
use url::Url;

/// A pretty-printed page of `count` connections whose links point at `origin`.
fn page(count: usize, origin: &str) -> Vec<u8> {
    let mut body = String::from("{\n    \"connections\": [");
    for i in 0..count {
        let sep = if i == 0 { "" } else { "," };
        let id = format!("fc226d0d-1647-48d7-8c11-{i:012x}");
        write!(
            body,
            r#"{sep}{{
        "id": "{id}",
        "iModelId": "7dbd531d-6967-47b2-8945-a722a437ad7a",
        "iTwinId": "7dbd531d-6967-47b2-8945-a722a437ad7a",
        "displayName": "Connection {i}",
        "authenticationType": "User",
        "_links": {{
            "iModel": {{
                "href": "{origin}/imodels/5db42812-ebb8-4c58-98a4-2eaa99e0d8b6"
            }},
            "iTwin": {{
                "href": "{origin}/itwins/4tb42812-ebb8-4c58-98a4-2eaa99e0d8b6"
            }},
            "lastRun": {{
                "href": "{origin}/export/connections/{id}/runs/de626d0d-1647-48d7-8c11-f1f74f2d4523"
            }}
        }}
    }}"#
        )
        .unwrap();
    }
    write!(
        body,
        r#"],
    "_links": {{
        "self": {{
            "href": "{origin}/export/connections?$skip=1000&$top=1000"
        }},
        "prev": {{
            "href": "{origin}/export/connections?$skip=0&$top=1000"
        }},
        "next": {{
            "href": "{origin}/export/connections?$skip=2000&$top=1000"
        }}
    }}
}}"#
    )
    .unwrap();
    body.into_bytes()
}

fn bench(c: &mut Criterion) {
    let rewriter = LinkRewriter::new(
        &[Url::parse("https://api.bentley.com").unwrap()],
        &Url::parse("http://127.0.0.1:8080/").unwrap(),
    );
    let matching = page(1_000, "https://api.bentley.com");
    let foreign = page(1_000, "https://example.bentley.com");
    assert!(rewriter.rewrite_json(&matching).is_some());
    assert!(rewriter.rewrite_json(&foreign).is_none());

    let mut group = c.benchmark_group("rewrite_json");
    group.throughput(Throughput::Bytes(matching.len() as u64));
    group.bench_function("1000_connections_matching", |b| {
        b.iter(|| rewriter.rewrite_json(black_box(&matching)));
    });
    group.throughput(Throughput::Bytes(foreign.len() as u64));
    group.bench_function("1000_connections_no_match", |b| {
        b.iter(|| rewriter.rewrite_json(black_box(&foreign)));
    });
    group.throughput(Throughput::Bytes(matching.len() as u64));
    group.bench_function("serde_json_value_parse_for_scale", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&matching)).unwrap());
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
