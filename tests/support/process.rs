//! The real binary run as a child process: a config file written for it, its stderr collected,
//! requests sent once it answers, SIGTERM and the whole log at the end.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

use super::{Answer, client, try_request, within};

/// The proxy binary built with the tests.
pub const BINARY: &str = env!("CARGO_BIN_EXE_itwin-proxy");

/// Writes `text` to a file named `name` in a directory of this test process, and returns its path.
pub fn temp_config(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("itwin-proxy-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Writes a config named `name` for the binary listening on `port` (its admin port on
/// `admin`, 0 for any) in front of the upstream at `base_url`, then the sections in `rest`.
pub fn proxy_config(name: &str, port: u16, admin: u16, base_url: &str, rest: &str) -> PathBuf {
    temp_config(
        name,
        &format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nadmin_listen = \"127.0.0.1:{admin}\"\n\
             [upstream]\nbase_url = \"{base_url}\"\n{rest}"
        ),
    )
}

/// A loopback port free at the time of asking (for a child that must be told its port).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The binary running on a config file, its stderr being collected.
pub struct Running {
    child: Child,
    log: JoinHandle<String>,
}

impl Running {
    /// Starts the binary with `--config config`, the environment given (and `RUST_LOG` unset
    /// unless given), its stderr collected.
    pub fn start<K: AsRef<OsStr>, V: AsRef<OsStr>>(config: &Path, env: &[(K, V)]) -> Self {
        let mut command = Command::new(BINARY);
        command
            .arg("--config")
            .arg(config)
            .env_remove("RUST_LOG")
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let log = tokio::spawn(async move {
            let mut text = String::new();
            stderr.read_to_string(&mut text).await.ok();
            text
        });
        Self { child, log }
    }

    /// Sends `GET uri` with `headers` until the binary answers (it may still be starting).
    pub async fn first_get(&self, uri: &str, headers: HeaderMap) -> Answer {
        let client = client();
        within(async {
            loop {
                match try_request(&client, Method::GET, uri, headers.clone(), Bytes::new()).await {
                    Ok(answer) => return answer,
                    Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                }
            }
        })
        .await
    }

    /// Sends SIGTERM, waits for a clean exit, and returns everything written to stderr.
    pub async fn stop(mut self) -> String {
        let pid = self.child.id().unwrap().to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = within(self.child.wait()).await.unwrap();
        assert!(exit.success(), "exit status {exit:?}");
        self.log.await.unwrap()
    }
}
