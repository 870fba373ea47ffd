//! A real Prometheus server run as a child process for the duration of a test.

use std::fs::OpenOptions;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::control_plane::process::kill_and_reap;
use crate::ports::free_port;
use crate::query_api::{query_data_at, wait_for_series_at};

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const POLL_INTERVAL: Duration = Duration::from_millis(50);
const STDERR_TAIL_LINES: usize = 30;
// An early exit with this message means another process took the port between
// `free_port` and Prometheus binding it; only then is a fresh port worth a retry.
const PORT_IN_USE: &str = "address already in use";
const START_ATTEMPTS: usize = 3;
const NOT_FOUND: &str = "Prometheus not found: install the Debian package `prometheus` \
     (scripts/install-deps.sh does it) or set PROMETHEUS_BIN";

pub struct PrometheusOptions {
    pub scrape_interval_secs: u32,
    pub targets: Vec<SocketAddr>,
    /// Written into `rule_files` as given, so globs work; relative paths are
    /// taken relative to the current directory rather than the config's tempdir.
    pub rule_files: Vec<PathBuf>,
    pub evaluation_interval_secs: u32,
    /// Where it listens: loopback, or a node's address when pods must reach it.
    pub listen_ip: Ipv4Addr,
    /// `global.external_labels`: a Thanos sidecar refuses a Prometheus without them.
    pub external_labels: Vec<(String, String)>,
}

impl Default for PrometheusOptions {
    fn default() -> Self {
        PrometheusOptions {
            scrape_interval_secs: 1,
            targets: Vec::new(),
            rule_files: Vec::new(),
            evaluation_interval_secs: 1,
            listen_ip: Ipv4Addr::LOCALHOST,
            external_labels: Vec::new(),
        }
    }
}

pub struct Prometheus {
    binary: PathBuf,
    addr: SocketAddr,
    child: Option<Child>,
    client: reqwest::Client,
    // Declared last so the process is gone before its data dir is deleted.
    dir: TempDir,
}

impl Prometheus {
    /// Writes `prometheus.yml` into a tempdir, starts Prometheus on a free
    /// loopback port and waits until `/-/ready` answers 200.
    ///
    /// Ready does not mean scraped: Prometheus 2.x hands targets to the scrape
    /// manager on a fixed 5 s tick, so the first samples appear about 5 s later.
    /// Give `wait_for_series` a timeout well above that.
    pub async fn start(options: PrometheusOptions) -> anyhow::Result<Prometheus> {
        let binary = find_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("prometheus-test-")
            .tempdir()
            .context("creating the Prometheus tempdir")?;
        let config = render_config(&options)?;
        std::fs::write(dir.path().join("prometheus.yml"), config)
            .context("writing prometheus.yml")?;

        let mut prometheus = Prometheus {
            binary,
            addr: SocketAddr::from((options.listen_ip, free_port())),
            child: None,
            client: http_client()?,
            dir,
        };
        let mut attempt = 1;
        loop {
            match prometheus.launch().await {
                Ok(()) => return Ok(prometheus),
                Err(error)
                    if attempt < START_ATTEMPTS
                        && prometheus.stderr_tail().contains(PORT_IN_USE) =>
                {
                    tracing::debug!(error = %format!("{error:#}"), attempt, "Prometheus lost its port, retrying");
                    attempt += 1;
                    prometheus.addr = SocketAddr::from((options.listen_ip, free_port()));
                    // Nothing worth keeping yet, and a stale "address already in
                    // use" must not trigger the next retry.
                    let _ = std::fs::remove_file(prometheus.log_path());
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// `http://IP:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The tempdir holding `prometheus.yml`, `data/` and `prometheus.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Instant query; returns the raw `data.result`.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Value> {
        let data = self.query_data(promql).await?;
        Ok(data["result"].clone())
    }

    /// Poll until `promql` returns a non-empty instant vector.
    ///
    /// Fails at once on a PromQL syntax error or a non-vector result, since
    /// waiting longer cannot change either.
    pub async fn wait_for_series(&self, promql: &str, timeout: Duration) -> anyhow::Result<()> {
        wait_for_series_at(&self.client, &self.url(), promql, timeout, &[]).await
    }

    /// POST `/-/reload`, e.g. after rule files changed on disk.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let response = self
            .client
            .post(format!("{}/-/reload", self.url()))
            .send()
            .await
            .context("POST /-/reload")?;
        let status = response.status();
        if !status.is_success() {
            let body = response.text().await.unwrap_or_default();
            bail!("Prometheus reload failed with {status}: {}", body.trim());
        }
        Ok(())
    }

    /// SIGKILL the process and reap it. Afterwards the port refuses connections.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            kill_and_reap(child, "prometheus");
        }
    }

    /// Start again on the same port with the same data dir; the WAL replay
    /// brings back what was scraped before.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch().await
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let log = self.log_path();
        // Append so that a failed restart still shows why the previous run ended.
        let stderr = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let stdout = stderr.try_clone()?;
        let dir = self.dir.path();
        let started = Instant::now();
        let mut child = Command::new(&self.binary)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address={}", self.addr))
            .arg("--web.enable-lifecycle")
            .arg("--log.level=warn")
            // Console paths default to the working directory; pointing them into
            // the tempdir keeps Prometheus from touching wherever the test runs.
            .arg(format!(
                "--web.console.templates={}",
                dir.join("consoles").display()
            ))
            .arg(format!(
                "--web.console.libraries={}",
                dir.join("console_libraries").display()
            ))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", self.binary.display()))?;

        let ready = self.wait_ready(&mut child).await;
        self.child = Some(child);
        match ready {
            Ok(()) => {
                tracing::info!(url = %self.url(), elapsed = ?started.elapsed(), "Prometheus ready");
                Ok(())
            }
            Err(error) => {
                self.stop();
                Err(anyhow!(
                    "Prometheus at {} did not become ready: {error:#}\n\
                     --- last lines of {} ---\n{}",
                    self.url(),
                    self.log_path().display(),
                    self.stderr_tail()
                ))
            }
        }
    }

    async fn wait_ready(&self, child: &mut Child) -> anyhow::Result<()> {
        let url = format!("{}/-/ready", self.url());
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                bail!("Prometheus exited during start-up with {status}");
            }
            let probe = self
                .client
                .get(&url)
                .timeout(Duration::from_secs(1))
                .send()
                .await;
            if let Ok(response) = probe
                && response.status() == reqwest::StatusCode::OK
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!("no 200 from {url} within {READY_TIMEOUT:?}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    async fn query_data(&self, promql: &str) -> anyhow::Result<Value> {
        query_data_at(&self.client, &self.url(), promql, &[]).await
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("prometheus.log")
    }

    fn stderr_tail(&self) -> String {
        let log = self.log_path();
        match std::fs::read_to_string(&log) {
            Ok(text) => {
                let lines: Vec<&str> = text.lines().collect();
                lines[lines.len().saturating_sub(STDERR_TAIL_LINES)..].join("\n")
            }
            Err(error) => format!("(cannot read {}: {error})", log.display()),
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A plain-HTTP client for test servers.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    // reqwest is built without a default crypto provider and refuses to build a
    // client until one is installed, even for plain http.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("building the HTTP client")
}

fn find_binary() -> anyhow::Result<PathBuf> {
    if let Some(bin) = std::env::var_os("PROMETHEUS_BIN").filter(|b| !b.is_empty()) {
        let bin = PathBuf::from(bin);
        if bin.is_file() {
            return Ok(bin);
        }
        bail!(
            "{NOT_FOUND} (PROMETHEUS_BIN={} does not exist)",
            bin.display()
        );
    }
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("prometheus"))
        .find(|candidate| is_executable(candidate));
    if let Some(bin) = on_path {
        return Ok(bin);
    }
    // Debian's location, for environments that start tests with a minimal PATH.
    let debian = PathBuf::from("/usr/bin/prometheus");
    if debian.is_file() {
        return Ok(debian);
    }
    bail!(NOT_FOUND)
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn render_config(options: &PrometheusOptions) -> anyhow::Result<String> {
    let scrape_interval = format!("{}s", options.scrape_interval_secs);
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let rule_files: Vec<String> = options
        .rule_files
        .iter()
        .map(|p| cwd.join(p).to_string_lossy().into_owned())
        .collect();
    let targets: Vec<String> = options.targets.iter().map(ToString::to_string).collect();
    let external_labels: serde_json::Map<String, Value> = options
        .external_labels
        .iter()
        .map(|(name, value)| (name.clone(), Value::from(value.as_str())))
        .collect();
    // JSON is valid YAML, and serde_json takes care of quoting paths.
    let config = json!({
        "global": {
            "scrape_interval": scrape_interval,
            // The 10 s default would exceed short scrape intervals, which Prometheus rejects.
            "scrape_timeout": scrape_interval,
            "evaluation_interval": format!("{}s", options.evaluation_interval_secs),
            "external_labels": external_labels,
        },
        "rule_files": rule_files,
        "scrape_configs": [{
            "job_name": "exporter",
            // Keep namespace/service/pod labels from the exporter instead of
            // renaming clashes to exported_*.
            "honor_labels": true,
            "static_configs": [{ "targets": targets }],
        }],
    });
    Ok(serde_json::to_string_pretty(&config)?)
}
