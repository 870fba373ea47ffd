//! A real single-node VictoriaMetrics (Debian package `victoria-metrics`) scraping
//! exporters the tests control, queried through its Prometheus-compatible API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::json;
use tempfile::TempDir;

use crate::control_plane::process::{Process, start_on_free_ports};
use crate::ports::free_addr;
use crate::prometheus::http_client;
use crate::query_api::wait_for_series_at;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const LOG_TAIL_LINES: usize = 30;
const NOT_FOUND: &str = "victoria-metrics not found: install the Debian package \
     `victoria-metrics` (scripts/install-deps.sh does it) or set VICTORIA_METRICS_BIN";

pub struct VictoriaMetrics {
    process: Process,
    addr: SocketAddr,
    client: reqwest::Client,
    // Declared last so the process is gone before its data is deleted.
    _dir: TempDir,
}

impl VictoriaMetrics {
    /// Starts VictoriaMetrics on a free loopback port, scraping `targets` every second
    /// (labels of the exporter kept as exposed), and waits for `/health`.
    pub async fn start(targets: &[SocketAddr]) -> anyhow::Result<VictoriaMetrics> {
        let binary = find_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("victoria-metrics-")
            .tempdir()?;
        let targets: Vec<String> = targets.iter().map(ToString::to_string).collect();
        // The same scrape configuration as the test Prometheus' (JSON is valid YAML).
        let config = json!({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [{
                "job_name": "exporter",
                "honor_labels": true,
                "static_configs": [{"targets": targets}],
            }],
        });
        let config_path = dir.path().join("scrape.yml");
        std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)?;
        let log_path = dir.path().join("victoria-metrics.log");
        let client = http_client()?;
        let (process, _, addr) = start_on_free_ports(
            |args| Process::spawn("victoria-metrics", &binary, args, &log_path, dir.path()),
            "victoria-metrics /health",
            READY_TIMEOUT,
            || {
                let addr = free_addr();
                let args = vec![
                    format!("-httpListenAddr={addr}"),
                    format!("-storageDataPath={}", dir.path().join("data").display()),
                    format!("-promscrape.config={}", config_path.display()),
                    // By default the last 30 s are hidden from queries, as not yet complete;
                    // a test that waits for its first scrape would wait that long.
                    "-search.latencyOffset=0s".to_owned(),
                    // Answers must follow the exporter, not a response cache.
                    "-search.disableCache".to_owned(),
                    "-loggerLevel=WARN".to_owned(),
                ];
                (args, addr)
            },
            |addr| {
                let client = client.clone();
                async move {
                    match client.get(format!("http://{addr}/health")).send().await {
                        Ok(response) if response.status().is_success() => Ok(()),
                        Ok(response) => Err(format!("{}", response.status())),
                        Err(error) => Err(format!("{error:#}")),
                    }
                }
            },
        )
        .await?;
        Ok(VictoriaMetrics {
            process,
            addr,
            client,
            _dir: dir,
        })
    }

    /// `http://IP:PORT`, the root of its Prometheus-compatible API (`/api/v1/...`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Polls until `promql` returns a non-empty vector (scraped and searchable).
    pub async fn wait_for_series(&self, promql: &str, timeout: Duration) -> anyhow::Result<()> {
        wait_for_series_at(&self.client, &self.url(), promql, timeout, &[])
            .await
            .with_context(|| {
                format!(
                    "--- victoria-metrics log ---\n{}",
                    self.process.log_tail(LOG_TAIL_LINES)
                )
            })
    }

    /// SIGKILL and reap: afterwards its port refuses connections.
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("VICTORIA_METRICS_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        bail!(
            "{NOT_FOUND} (VICTORIA_METRICS_BIN={} does not exist)",
            bin.display()
        );
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("victoria-metrics"))
        .find(|candidate| candidate.is_file());
    // Debian's location, for environments that start tests with a minimal PATH.
    on_path
        .or_else(|| Some(PathBuf::from("/usr/bin/victoria-metrics")).filter(|p| p.is_file()))
        .ok_or_else(|| anyhow::anyhow!(NOT_FOUND))
}
