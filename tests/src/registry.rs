//! metrics-registry in standalone mode, served in-process on a loopback port with a
//! manifest folder the test writes to — the same `Standalone::serve` the binary runs.

use anyhow::{Context, bail};
use metrics_registry::compiler::{CompileOptions, ExternalScope};
use metrics_registry::run::{PrometheusConfig, Standalone};
use metrics_registry_apiserver::serve::ServeLimits;
use metrics_registry_apiserver::upstream::QueryOptions;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Knobs tests turn; everything else is the binary's default.
#[derive(Clone, Debug)]
pub struct RegistryOptions {
    pub prometheus_url: String,
    pub prometheus_timeout: Duration,
    pub prometheus_max_response_bytes: usize,
    pub namespace_isolation: bool,
    /// `--external-metrics-namespaced` (`Namespace`), `--external-metrics-cluster-wide`
    /// (`Cluster`) or neither.
    pub external_scope: ExternalScope,
    pub external_refresh: Duration,
    pub rules_dir: Option<std::path::PathBuf>,
    /// Sent with every request to Prometheus (`--prometheus-header NAME=VALUE`).
    pub prometheus_headers: Vec<(String, String)>,
    pub limits: ServeLimits,
    /// Serve `--manifests` through a symlink to the real folder, as a mounted volume
    /// whose link is re-pointed on update ([`Registry::repoint`]).
    pub manifests_via_symlink: bool,
    /// Single flight, batching, cache and in-flight bound (`--prometheus-cache-max-age`, ...).
    pub queries: QueryOptions,
    /// `--secrets-dir`: MetricsBackends' Secrets as `DIR/<name>/<key>`.
    pub secrets_dir: Option<std::path::PathBuf>,
}

impl RegistryOptions {
    pub fn new(prometheus_url: impl Into<String>) -> Self {
        RegistryOptions {
            prometheus_url: prometheus_url.into(),
            prometheus_timeout: Duration::from_secs(5),
            prometheus_max_response_bytes:
                metrics_registry_apiserver::prometheus::DEFAULT_MAX_RESPONSE_BYTES,
            namespace_isolation: true,
            external_scope: ExternalScope::default(),
            external_refresh: Duration::from_millis(500),
            rules_dir: None,
            prometheus_headers: Vec::new(),
            limits: ServeLimits::default(),
            manifests_via_symlink: false,
            queries: QueryOptions::default(),
            secrets_dir: None,
        }
    }
}

pub struct Registry {
    base: String,
    root: TempDir,
    /// The `--manifests` path (a symlink with `manifests_via_symlink`).
    dir: PathBuf,
    versions: std::sync::atomic::AtomicUsize,
    client: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Status code and JSON body of one answer.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
}

impl Answer {
    /// The `value` of item `index`, for short assertions.
    pub fn value(&self, index: usize) -> &str {
        self.body["items"][index]["value"]
            .as_str()
            .unwrap_or("<no value>")
    }
    pub fn items(&self) -> &[Value] {
        self.body["items"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
    pub fn message(&self) -> &str {
        self.body["message"].as_str().unwrap_or("")
    }
}

impl Registry {
    /// Writes `files` into a fresh manifest folder and serves it; returns once `/readyz` is 200.
    pub async fn start(
        options: RegistryOptions,
        files: &[(&str, &str)],
    ) -> anyhow::Result<Registry> {
        metrics_registry::install_crypto_provider();
        let root = tempfile::tempdir()?;
        let dir = root.path().join("defs");
        if options.manifests_via_symlink {
            std::fs::create_dir(root.path().join("v0"))?;
            std::os::unix::fs::symlink("v0", &dir)?;
        } else {
            std::fs::create_dir(&dir)?;
        }
        for (name, content) in files {
            std::fs::write(dir.join(name), content)?;
        }
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let mut prometheus = PrometheusConfig::new(options.prometheus_url.clone());
        prometheus.timeout = options.prometheus_timeout;
        prometheus.headers = options.prometheus_headers.clone();
        prometheus.max_response_bytes = options.prometheus_max_response_bytes;
        let standalone = Standalone {
            manifests: dir.clone(),
            prometheus,
            queries: options.queries,
            options: CompileOptions {
                namespace_isolation: options.namespace_isolation,
                external_scope: options.external_scope,
            },
            external_refresh: options.external_refresh,
            rules_dir: options.rules_dir.clone(),
            secrets_dir: options.secrets_dir.clone(),
            limits: options.limits,
        };
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(standalone.serve(listener, async move {
            let _ = signal.await;
        }));
        let registry = Registry {
            base,
            root,
            dir,
            versions: std::sync::atomic::AtomicUsize::new(1),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            shutdown: Some(shutdown),
            task,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(response) = registry
                .client
                .get(format!("{}/readyz", registry.base))
                .send()
                .await
                && response.status().is_success()
            {
                return Ok(registry);
            }
            if Instant::now() > deadline {
                bail!("metrics-registry did not become ready within 10 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    pub fn manifests(&self) -> &Path {
        &self.dir
    }

    /// Replaces a manifest file atomically (write + rename), as editors and ConfigMaps do.
    pub fn write(&self, name: &str, content: &str) {
        let tmp = self.dir.join(format!(".{name}.tmp"));
        std::fs::write(&tmp, content).expect("write manifest");
        std::fs::rename(&tmp, self.dir.join(name)).expect("rename manifest");
    }

    pub fn remove(&self, name: &str) {
        std::fs::remove_file(self.dir.join(name)).expect("remove manifest");
    }

    /// A new folder with `files` takes the old one's place (moved away, new one moved in).
    pub fn replace_folder(&self, files: &[(&str, &str)]) {
        let new = self.new_version(files);
        let old = self.root.path().join("replaced");
        std::fs::rename(&self.dir, &old).expect("move the folder away");
        std::fs::rename(new, &self.dir).expect("move the new folder in");
        std::fs::remove_dir_all(old).expect("remove the old folder");
    }

    /// Points the `--manifests` symlink at a new folder holding `files`, atomically.
    pub fn repoint(&self, files: &[(&str, &str)]) {
        let new = self.new_version(files);
        let link = self.root.path().join("defs.tmp");
        std::os::unix::fs::symlink(new.file_name().unwrap(), &link).expect("symlink");
        std::fs::rename(&link, &self.dir).expect("re-point the symlink");
    }

    fn new_version(&self, files: &[(&str, &str)]) -> PathBuf {
        let n = self
            .versions
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let new = self.root.path().join(format!("v{n}"));
        std::fs::create_dir(&new).expect("create folder");
        for (name, content) in files {
            std::fs::write(new.join(name), content).expect("write manifest");
        }
        new
    }

    /// GET a path (with query string) and decode the JSON body.
    pub async fn get(&self, path: &str) -> Answer {
        let response = self
            .client
            .get(format!("{}{}", self.base, path))
            .send()
            .await
            .with_context(|| format!("GET {path}"))
            .expect("metrics-registry answers");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Answer { status, body }
    }

    /// Polls `path` until `done` holds; returns how long it took.
    pub async fn wait_until(
        &self,
        path: &str,
        timeout: Duration,
        done: impl Fn(&Answer) -> bool,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let answer = self.get(path).await;
            if done(&answer) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!(
                    "{path} did not reach the expected state within {timeout:?}; last answer: {} {}",
                    answer.status,
                    answer.body
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.task.abort();
    }
}
