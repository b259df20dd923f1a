//! A page loaded in headless Chromium (through `headless.py`, which drives it over the
//! DevTools protocol): what it shows, its console errors, and the status of each load.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// What a page showed once ready.
#[derive(Debug, Deserialize)]
pub struct Loaded {
    /// Whether the ready expression became true in time.
    pub ready: bool,
    /// The value of the read expression.
    pub value: serde_json::Value,
    /// Console errors, uncaught exceptions and failed loads.
    pub errors: Vec<String>,
    /// The HTTP status of every response, by URL.
    pub statuses: std::collections::HashMap<String, u16>,
}

/// Chromium, from `$CHROMIUM` or the `PATH`; `None` when it is not installed.
pub fn chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| {
            ["chromium", "chromium-browser", "google-chrome"].map(|name| dir.join(name))
        })
        .find(|candidate| candidate.is_file())
}

/// Loads `url` in `chromium`, every request with `authorization` (if any), waits until the
/// expression `ready` is true (for at most `timeout`), and reads the expression `read`.
pub async fn load(
    chromium: &Path,
    url: &str,
    authorization: Option<&str>,
    ready: &str,
    read: &str,
    timeout: Duration,
) -> Loaded {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/headless.py");
    let run = tokio::process::Command::new("python3")
        .arg(script)
        .arg(chromium)
        .arg(url)
        .arg(authorization.unwrap_or_default())
        .arg(ready)
        .arg(read)
        .arg(timeout.as_secs().to_string())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(timeout + Duration::from_secs(15), run)
        .await
        .expect("the browser finished in time")
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the page did not load: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not the driver's JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}
