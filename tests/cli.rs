//! The binary: `--version`, `--check-config`, config errors that name their keys, and a run
//! that ends cleanly on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use itwin_proxy_sim::{SimConfig, Simulator, TokenSpec};
use support::process::{BINARY, Running, free_port, proxy_config, temp_config};
use support::{bearer, page};

#[test]
fn version_is_printed() {
    let output = Command::new(BINARY).arg("--version").output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}

#[test]
fn the_bundled_config_checks_and_prints_toml() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/default.toml");
    let output = Command::new(BINARY)
        .args(["--config", config, "--check-config"])
        .env_remove("ITWIN_PROXY__UPSTREAM__BASE_URL")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    let parsed: toml::Table = toml::from_str(&text).unwrap();
    let base_url = parsed["upstream"]["base_url"].as_str().unwrap();
    assert_eq!(base_url.trim_end_matches('/'), "https://api.bentley.com");
    assert_eq!(parsed["rate_limit"]["burst"].as_integer(), Some(10));
}

#[test]
fn every_problem_is_reported_with_its_key() {
    let path = temp_config(
        "bad.toml",
        "[upstream]\nbase_url = \"not a url\"\n[rate_limit]\nburst = 0\n[cache]\nttl = \"5 parsecs\"\n",
    );
    let output = Command::new(BINARY)
        .args(["--check-config", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let errors = String::from_utf8(output.stderr).unwrap();
    for key in [
        "upstream.base_url",
        "rate_limit.burst: must be >= 1",
        "cache.ttl",
    ] {
        assert!(errors.contains(key), "{key} not named in:\n{errors}");
    }
}

#[test]
fn env_overrides_apply_and_secrets_are_redacted() {
    let output = Command::new(BINARY)
        .arg("--check-config")
        .env(
            "ITWIN_PROXY__UPSTREAM__BASE_URL",
            "https://user:hunter2@upstream.example",
        )
        .env("ITWIN_PROXY__RATE_LIMIT__REQUESTS_PER_SECOND", "2.5")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("upstream.example"));
    assert!(text.contains("requests_per_second = 2.5"), "{text}");
}

#[test]
fn the_binary_reloads_on_sighup_and_stops_cleanly_on_sigterm() {
    let path = temp_config(
        "run.toml",
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\n[auth]\nissuer = \"\"\n[log]\nformat = \"json\"\n",
    );
    let mut child = Command::new(BINARY)
        .arg("--config")
        .arg(&path)
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let listening = lines
        .by_ref()
        .take(50)
        .map_while(Result::ok)
        .find(|line| line.contains("itwin-proxy listening"))
        .expect("a start-up line");
    let event: serde_json::Value = serde_json::from_str(&listening).unwrap();
    assert!(event["addr"].as_str().unwrap().starts_with("127.0.0.1:"));

    std::fs::write(
        &path,
        "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"\nshutdown_grace = \"5s\"\npublic_base_url = \"http://gw.test/x\"\n[auth]\nissuer = \"\"\n[log]\nformat = \"json\"\n",
    )
    .unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let reloaded = lines
        .by_ref()
        .take(50)
        .map_while(Result::ok)
        .find(|line| line.contains("configuration reloaded"))
        .expect("a reload line");
    let event: serde_json::Value = serde_json::from_str(&reloaded).unwrap();
    assert_eq!(event["cache_emptied"], true, "{reloaded}");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|line| line.contains("stopped")), "{rest:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_reaches_a_log_line_even_at_trace_level() {
    let sim = Simulator::start(SimConfig::default()).await.unwrap();
    let token = sim.token(&TokenSpec::new("alice"));
    let port = free_port();
    let path = proxy_config(
        "trace.toml",
        port,
        0,
        &sim.base_url(),
        "[auth]\nissuer = \"\"\n",
    );
    let proxy = Running::start(&path, &[("RUST_LOG", "trace")]);
    let answer = proxy
        .first_get(
            &format!("http://127.0.0.1:{port}{}", page(1)),
            bearer(&token),
        )
        .await;
    assert_eq!(answer.status, 200);
    let log = proxy.stop().await;
    assert!(log.contains("request completed"), "the request was logged");
    for segment in token.split('.').skip(1) {
        assert!(!log.contains(segment), "a token reached the log");
    }
}
