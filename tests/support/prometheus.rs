//! Reading `/metrics` with Prometheus' own parsers (its Python client, installed into a
//! throwaway virtualenv under the target directory on first use), so that a test sees the
//! exposition as a scraper would.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

/// The Python client's version the tests parse with.
const CLIENT: &str = "prometheus_client==0.26.0";

/// One metric family as the parser read it.
#[derive(Debug, serde::Deserialize)]
pub struct Family {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub samples: Vec<Sample>,
}

/// One sample.
#[derive(Debug, serde::Deserialize)]
pub struct Sample {
    pub name: String,
    pub labels: std::collections::BTreeMap<String, String>,
    /// `None` for an infinite value.
    pub value: Option<f64>,
}

/// Parses `exposition` as the Prometheus text format 0.0.4 (`openmetrics` false) or as
/// OpenMetrics; panics (failing the test) when Python, the client or the parse fails.
pub fn parse(exposition: &str, openmetrics: bool) -> Vec<Family> {
    let python = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/parse_metrics.py");
    let format = if openmetrics { "openmetrics" } else { "text" };
    let mut child = Command::new(python)
        .arg(script)
        .arg(format)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the Prometheus parser starts");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("the exposition is written to the parser");
    let output = child.wait_with_output().expect("the parser ends");
    assert!(
        output.status.success(),
        "the Prometheus {format} parser refused the exposition: {}\n{exposition}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the parser's JSON")
}

/// The virtualenv's Python with the client installed, made once per test binary.
fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("prometheus-venv");
        let python = venv.join("bin/python");
        let installed = Command::new(&python)
            .args(["-c", "import prometheus_client"])
            .output()
            .is_ok_and(|o| o.status.success());
        if !installed {
            run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
            run(Command::new(&python).args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                CLIENT,
            ]));
        }
        python
    })
}

fn run(command: &mut Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?} (python3 with venv is needed): {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The value of the sample `name` with exactly `labels` among `families`.
pub fn value(families: &[Family], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    families
        .iter()
        .flat_map(|f| &f.samples)
        .find(|s| {
            s.name == name
                && s.labels.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .and_then(|s| s.value)
}

/// The type the parser gave the family `name`.
pub fn kind<'f>(families: &'f [Family], name: &str) -> Option<&'f str> {
    families
        .iter()
        .find(|f| f.name == name)
        .map(|f| f.kind.as_str())
}
