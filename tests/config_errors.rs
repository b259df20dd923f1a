//! Config mistakes the binary refuses or warns about, each naming its key and, for a value
//! from the environment, its variable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::process::{Command, Output};

use http::HeaderMap;
use support::process::{BINARY, Running, free_port, temp_config};

/// `--check-config` on `text` with `vars` set (and no other override).
fn check(name: &str, text: &str, vars: &[(&str, &str)]) -> Output {
    let path = temp_config(name, text);
    let mut command = Command::new(BINARY);
    command.arg("--check-config").arg("--config").arg(&path);
    for (name, _) in std::env::vars().filter(|(name, _)| name.starts_with("ITWIN_PROXY")) {
        command.env_remove(name);
    }
    command.envs(vars.iter().copied()).output().unwrap()
}

/// The problems of a refused config, one a line.
fn refused(output: &Output) -> Vec<String> {
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8(output.stderr.clone()).unwrap();
    stderr.lines().skip(1).map(str::to_owned).collect()
}

#[test]
fn a_log_level_that_is_not_one_is_refused() {
    for level in ["verbose", "inof"] {
        let output = check("level.toml", &format!("[log]\nlevel = \"{level}\"\n"), &[]);
        let problems = refused(&output);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(&format!("log.level: \"{level}\" is not a level")),
            "{problems:?}"
        );
    }
}

#[test]
fn one_port_for_both_listeners_is_refused() {
    let text = "[server]\nlisten = \"127.0.0.1:8080\"\nadmin_listen = \"127.0.0.1:8080\"\n";
    let problems = refused(&check("ports.toml", text, &[]));
    assert_eq!(
        problems,
        ["server.admin_listen: must differ from server.listen (127.0.0.1:8080): one port each"]
    );
}

#[test]
fn a_negative_or_zero_burst_has_one_message() {
    for burst in ["-5", "0"] {
        let text = format!("[rate_limit]\nburst = {burst}\n");
        let problems = refused(&check("burst.toml", &text, &[]));
        assert_eq!(problems, ["rate_limit.burst: must be >= 1"]);
    }
}

#[test]
fn problems_from_variables_name_the_variable() {
    let output = check(
        "env.toml",
        "",
        &[
            ("ITWIN_PROXY__CACHE__TTLL", "5s"),
            ("ITWIN_PROXY__RATE_LIMIT__BURST", "-1"),
        ],
    );
    let problems = refused(&output);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].starts_with("ITWIN_PROXY__CACHE__TTLL: cache.ttll: unknown key"),
        "{problems:?}"
    );
    assert_eq!(
        problems[1],
        "ITWIN_PROXY__RATE_LIMIT__BURST: rate_limit.burst: must be >= 1"
    );
}

#[test]
fn an_audience_without_keys_to_check_it_is_refused() {
    let text = "[auth]\nissuer = \"\"\naudience = \"my-app\"\n";
    let problems = refused(&check("audience.toml", text, &[]));
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].starts_with("auth.audience: "), "{problems:?}");
}

#[tokio::test]
async fn look_alike_variables_are_warned_about() {
    let output = check(
        "stray.toml",
        "",
        &[
            ("ITWIN_PROXY_CACHE_TTL", "5s"),
            ("ITWIN_PROXY__CACHE__TTL", "5s"),
        ],
    );
    assert!(output.status.success(), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("warning: ITWIN_PROXY_CACHE_TTL: ignored: "),
        "{stderr}"
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(stdout.contains("ttl = \"5s\""), "{stdout}");

    // And in the log when the proxy starts.
    let admin = free_port();
    let path = temp_config(
        "stray-run.toml",
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
             [auth]\nissuer = \"\"\n[log]\nformat = \"json\"\n"
        ),
    );
    let running = Running::start(&path, &[("ITWIN_PROXY_CACHE_TTL", "5s")]);
    let healthz = format!("http://127.0.0.1:{admin}/healthz");
    assert_eq!(
        running.first_get(&healthz, HeaderMap::new()).await.status,
        200
    );
    let log = running.stop().await;
    let warning = log
        .lines()
        .find(|line| line.contains("ITWIN_PROXY_CACHE_TTL"))
        .unwrap_or_else(|| panic!("no warning in {log}"));
    let event: serde_json::Value = serde_json::from_str(warning).unwrap();
    assert_eq!(event["level"], "WARN", "{warning}");
    assert_eq!(event["variable"], "ITWIN_PROXY_CACHE_TTL", "{warning}");
}
