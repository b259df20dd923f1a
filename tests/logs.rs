//! The request line as an operator searches it: the binary run with JSON or text logs, its
//! lines read back. Each request's line carries its id, path, client address, user agent,
//! bytes sent and upstream time (on a 502 too), a hostile user agent kept inside its quotes;
//! the log filter and `log.access` turn it off, and a filter that keeps the request span out
//! keeps its fields off the line; the signing keys are fetched and logged at
//! start.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use itwin_proxy_sim::{Failure, SimConfig, Simulator, TokenSpec};
use serde_json::Value;
use support::process::{Running, free_port, proxy_config};
use support::{bearer, client, page, request, within};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_lines_carry_what_an_operator_searches_for() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let token = sim.token(&TokenSpec::new("alice"));
    let (port, admin) = (free_port(), free_port());
    let base = sim.base_url();
    let config = proxy_config(
        "json.toml",
        port,
        admin,
        &base,
        &format!(
            "[auth]\njwks_url = \"{base}/.well-known/jwks.json\"\n\
             [log]\nformat = \"json\"\nlevel = \"info\"\n"
        ),
    );
    let proxy = Running::start(&config, &[] as &[(&str, &str)]);
    let page = format!("http://127.0.0.1:{port}{}", page(2));
    let with_id = |id: &str| {
        let mut headers = bearer(&token);
        headers.insert("x-request-id", id.parse().unwrap());
        headers.insert("user-agent", "log-test/1.0".parse().unwrap());
        headers
    };
    let first = proxy.first_get(&page, with_id("first")).await;
    assert_eq!(first.status, 200);
    let client = client();
    // The keys are fetched in the background from start-up; once counted, their line is written.
    let metrics = format!("http://127.0.0.1:{admin}/metrics");
    within(async {
        loop {
            let scraped = request(
                &client,
                Method::GET,
                &metrics,
                HeaderMap::new(),
                Bytes::new(),
            );
            let text = String::from_utf8_lossy(&scraped.await.body).into_owned();
            let fetched = text
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("itwin_proxy_signing_key_fetches_total{result=\"ok\"} ")
                })
                .any(|count| count != "0");
            if fetched {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let hit = request(&client, Method::GET, &page, with_id("second"), Bytes::new()).await;
    let hit_bytes = hit.body.len();
    sim.fail_next(1, Failure::Close);
    let mut no_cache = bearer(&token);
    no_cache.insert("x-request-id", "broken".parse().unwrap());
    no_cache.insert("cache-control", "no-cache".parse().unwrap());
    let broken = request(&client, Method::GET, &page, no_cache, Bytes::new()).await;
    assert_eq!(broken.status, 502);

    let log = proxy.stop().await;
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}")))
        .collect();
    let message = |line: &Value| line["message"].as_str().unwrap_or_default().to_owned();
    let keys_at = lines
        .iter()
        .position(|l| message(l) == "signing keys fetched")
        .expect("the keys were fetched and logged at start");
    let completed = |id: &str| {
        lines
            .iter()
            .position(|l| message(l) == "request completed" && l["span"]["request_id"] == id)
            .unwrap_or_else(|| panic!("no request line for {id} in\n{log}"))
    };
    assert!(keys_at < completed("first") || lines[keys_at]["need"] == "first");

    let hit = &lines[completed("second")];
    assert_eq!(hit["span"]["http.path"], "/export/connections", "{hit}");
    assert_eq!(hit["span"]["client.address"], "127.0.0.1");
    assert_eq!(hit["span"]["user_agent"], "log-test/1.0");
    assert_eq!(hit["span"]["cache"], "hit");
    assert_eq!(hit["bytes"], hit_bytes as u64);
    assert_eq!(hit["complete"], true);

    let broken = &lines[completed("broken")];
    assert_eq!(broken["span"]["http.status"], 502, "{broken}");
    assert!(
        broken["span"]["upstream_ms"].is_u64(),
        "upstream time on a 502: {broken}"
    );
    let failed = lines
        .iter()
        .find(|l| message(l) == "request failed")
        .expect("the failure is logged");
    assert_eq!(
        failed["span"]["request_id"], "broken",
        "the warning is in the request's span"
    );

    for line in log.lines() {
        assert!(!line.contains("Some("), "Rust debug formatting in {line}");
        for segment in token.split('.').skip(1) {
            assert!(!line.contains(segment), "a token reached the log");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_false_turns_the_request_line_off() {
    let log = log_of_a_miss_and_a_hit("off.toml", "access = false\n", &[]).await;
    assert!(
        log.contains("itwin-proxy listening") && log.contains("\"stopped\""),
        "other lines are still written, the last ones on shutdown:\n{log}"
    );
    assert!(!log.contains("request completed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_request_lines_keep_a_hostile_user_agent_in_its_quotes() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let token = sim.token(&TokenSpec::new("alice"));
    let port = free_port();
    let config = proxy_config(
        "text.toml",
        port,
        0,
        &sim.base_url(),
        "[auth]\nissuer = \"\"\n[log]\nformat = \"text\"\nlevel = \"info\"\n",
    );
    let proxy = Running::start(&config, &[] as &[(&str, &str)]);
    let page = format!("http://127.0.0.1:{port}{}", page(2));
    assert_eq!(proxy.first_get(&page, bearer(&token)).await.status, 200);
    let mut headers = bearer(&token);
    headers.insert("x-request-id", "hostile".parse().unwrap());
    headers.insert(
        "user-agent",
        r#"x\" cache="forged"}: itwin_proxy: request completed"#
            .parse()
            .unwrap(),
    );
    let hit = request(&client(), Method::GET, &page, headers, Bytes::new()).await;
    assert_eq!(hit.status, 200);

    let log = proxy.stop().await;
    let line = log
        .lines()
        .find(|l| l.contains("request_id=\"hostile\""))
        .unwrap_or_else(|| panic!("no request line in\n{log}"));
    // Escaped as tracing escaped it: the user agent cannot close its quotes or add fields.
    assert!(
        line.contains(r#" user_agent="x\\\" cache=\"forged\"}: itwin_proxy: request completed" "#),
        "{line}"
    );
    assert_eq!(line.matches(" cache=\"hit\"").count(), 1, "{line}");
    assert!(
        line.contains("}: itwin_proxy::pipeline::access: request completed duration_ms="),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_filter_turns_the_request_line_off() {
    let env = [("RUST_LOG", "itwin_proxy=warn")];
    let log = log_of_a_miss_and_a_hit("filtered.toml", "", &env).await;
    assert!(!log.contains("request completed"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filter_that_keeps_the_span_out_keeps_the_line_and_drops_its_span_fields() {
    let env = [("RUST_LOG", "warn,itwin_proxy::pipeline::access=info")];
    let log = log_of_a_miss_and_a_hit("line-only.toml", "", &env).await;
    let lines: Vec<Value> = log
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .filter(|line: &Value| line["message"] == "request completed")
        .collect();
    assert_eq!(lines.len(), 2, "a line per request in\n{log}");
    for line in &lines {
        assert_eq!(line["target"], "itwin_proxy::pipeline::access", "{line}");
        assert!(line.get("span").is_none(), "no span fields: {line}");
        assert_eq!(line["complete"], true);
    }
}

/// The log of a proxy writing JSON lines at `info` (`log` adds to its `[log]` table), run with
/// `env`, that served one page twice: a miss, then a hit.
async fn log_of_a_miss_and_a_hit(name: &str, log: &str, env: &[(&str, &str)]) -> String {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let token = sim.token(&TokenSpec::new("alice"));
    let port = free_port();
    let config = proxy_config(
        name,
        port,
        0,
        &sim.base_url(),
        &format!("[auth]\nissuer = \"\"\n[log]\nformat = \"json\"\nlevel = \"info\"\n{log}"),
    );
    let proxy = Running::start(&config, env);
    let page = format!("http://127.0.0.1:{port}{}", page(2));
    assert_eq!(proxy.first_get(&page, bearer(&token)).await.status, 200);
    let hit = request(&client(), Method::GET, &page, bearer(&token), Bytes::new()).await;
    assert_eq!(hit.status, 200);
    proxy.stop().await
}
