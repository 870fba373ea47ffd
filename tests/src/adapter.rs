//! prometheus-adapter v0.12.0 — built from its Go module by `scripts/build-adapter.sh` —
//! run as a child process against a test control plane and Prometheus, and called as the
//! aggregator calls it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use tempfile::TempDir;
use tokio::sync::OnceCell;

use crate::control_plane::ControlPlane;
use crate::control_plane::process::{Process, start_on_free_ports};
use crate::parity::MetricsClient;
use crate::ports::free_port;
use crate::third_party::script_folder;

const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// `ADAPTER_DIR` if set, else the folder `scripts/build-adapter.sh` prints on its last line
/// (building the adapter the first time, which takes minutes). Holds `adapter` and
/// `source`, the module's files. Run once per test binary.
pub async fn build_dir() -> anyhow::Result<PathBuf> {
    static DIR: OnceCell<PathBuf> = OnceCell::const_new();
    DIR.get_or_try_init(find_build_dir).await.cloned()
}

/// The prometheus-adapter module's files (docs/, deploy/), read by tests, never copied.
pub async fn module_source() -> anyhow::Result<PathBuf> {
    Ok(build_dir().await?.join("source"))
}

async fn find_build_dir() -> anyhow::Result<PathBuf> {
    script_folder(
        "ADAPTER_DIR",
        "build-adapter.sh",
        &["adapter", "source/go.mod"],
    )
    .await
}

pub struct Adapter {
    process: Process,
    port: u16,
    log_path: PathBuf,
    // Declared last so the process is gone before its files are deleted.
    _dir: TempDir,
}

impl Adapter {
    /// Starts the adapter with `config` (the file's text) and waits for `/readyz`. It
    /// lists objects and reviews access as the control plane's admin, serves a certificate
    /// from the cluster CA, and relists series every second.
    pub async fn start(
        plane: &ControlPlane,
        prometheus_url: &str,
        config: &str,
        client: &MetricsClient,
    ) -> anyhow::Result<Adapter> {
        Self::start_with(plane, prometheus_url, config, client, &[]).await
    }

    /// [`Adapter::start`] with `extra_args` after the harness' own (a repeated flag
    /// overrides the harness' value).
    pub async fn start_with(
        plane: &ControlPlane,
        prometheus_url: &str,
        config: &str,
        client: &MetricsClient,
        extra_args: &[String],
    ) -> anyhow::Result<Adapter> {
        let binary = build_dir().await?.join("adapter");
        let dir = tempfile::Builder::new()
            .prefix("prometheus-adapter-")
            .tempdir()?;
        let config_path = dir.path().join("config.yaml");
        std::fs::write(&config_path, config)?;
        let (cert_path, key_path) = plane
            .certs()
            .write_loopback_serving_cert("prometheus-adapter", dir.path())?;
        let kubeconfig = plane.kubeconfig_path().display().to_string();
        let log_path = dir.path().join("adapter.log");
        let (process, _, port) = start_on_free_ports(
            |args| Process::spawn("prometheus-adapter", &binary, args, &log_path, dir.path()),
            "prometheus-adapter /readyz",
            READY_TIMEOUT,
            || {
                let port = free_port();
                let args = vec![
                    format!("--secure-port={port}"),
                    "--bind-address=127.0.0.1".to_owned(),
                    format!("--tls-cert-file={}", cert_path.display()),
                    format!("--tls-private-key-file={}", key_path.display()),
                    format!("--lister-kubeconfig={kubeconfig}"),
                    format!("--authentication-kubeconfig={kubeconfig}"),
                    format!("--authorization-kubeconfig={kubeconfig}"),
                    format!("--prometheus-url={prometheus_url}"),
                    format!("--config={}", config_path.display()),
                    "--metrics-relist-interval=1s".to_owned(),
                    "--metrics-max-age=10m".to_owned(),
                    // The default 5 queries per second to kube-apiserver throttle the pod LIST
                    // each wildcard request makes; a test asking dozens of them would wait.
                    "--client-qps=100".to_owned(),
                    "--client-burst=200".to_owned(),
                    // --v=6 logs every query sent to Prometheus, shown when a comparison fails.
                    "--v=6".to_owned(),
                ];
                let args = args.into_iter().chain(extra_args.iter().cloned()).collect();
                (args, port)
            },
            |port| async move {
                match client
                    .get(&format!("https://127.0.0.1:{port}"), "/readyz")
                    .await
                {
                    Ok(answer) if answer.status == 200 => Ok(()),
                    Ok(answer) => Err(format!("{} {}", answer.status, answer.body)),
                    Err(error) => Err(format!("{error:#}")),
                }
            },
        )
        .await?;
        Ok(Adapter {
            process,
            port,
            log_path,
            _dir: dir,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `https://127.0.0.1:PORT`
    pub fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The adapter's log lines that mention `needle` (its queries are logged at --v=6).
    pub fn log_lines(&self, needle: &str, limit: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(needle)).collect();
        lines[lines.len().saturating_sub(limit)..].join("\n")
    }

    pub fn stop(&mut self) {
        self.process.stop();
    }
}

/// Runs the adapter binary with only `--config` and returns what it printed when it
/// exited, for configurations it refuses before contacting anything.
pub async fn refusal(config: &str) -> anyhow::Result<String> {
    let binary = build_dir().await?.join("adapter");
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config)?;
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new(&binary)
            .arg(format!("--config={}", path.display()))
            .arg("--prometheus-url=http://127.0.0.1:9")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .context("the adapter did not exit within 30 s")??;
    if output.status.success() {
        bail!("the adapter exited successfully");
    }
    Ok(String::from_utf8_lossy(&output.stderr).into_owned())
}
