//! Standalone mode: definitions from a manifest folder, plain HTTP on loopback without
//! authentication, no cluster.

use crate::compiler::CompileOptions;
use crate::sinks::recording_rules::RulesOutput;
use crate::sources::folder::ManifestSource;
use crate::sources::folder::secrets::FolderSecrets;
use crate::supervise::Supervisor;
use anyhow::{Context, anyhow};
use metrics_registry_apiserver::api::{ApiState, Readiness};
use metrics_registry_apiserver::external::ExternalCatalog;
use metrics_registry_apiserver::objects::NoCluster;
use metrics_registry_apiserver::prometheus::{PrometheusClient, PrometheusConfig};
use metrics_registry_apiserver::router;
use metrics_registry_apiserver::serve::{PlainHttp, ServeLimits, serve};
use metrics_registry_apiserver::table::shared_rule_table;
use metrics_registry_apiserver::telemetry::SelfMetrics;
use metrics_registry_apiserver::upstream::{
    Backends, NoSecrets, QueryOptions, SecretStore, Upstream,
};

/// How often `--secrets-dir` is read again for rotated credentials.
const SECRETS_RESCAN: Duration = Duration::from_secs(5);
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Everything standalone mode needs; built from flags or by tests.
#[derive(Debug, Clone)]
pub struct Standalone {
    pub manifests: PathBuf,
    pub prometheus: PrometheusConfig,
    /// How queries are shared, batched, cached and bounded.
    pub queries: QueryOptions,
    pub options: CompileOptions,
    pub external_refresh: Duration,
    /// Write `CustomPrometheusRules` as rule files here and reload Prometheus.
    pub rules_dir: Option<PathBuf>,
    /// MetricsBackends' Secrets, as `DIR/<name>/<key>`.
    pub secrets_dir: Option<PathBuf>,
    pub limits: ServeLimits,
}

impl Standalone {
    /// Serves on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let prometheus = PrometheusClient::new(self.prometheus.clone())
            .context("invalid Prometheus settings")?;
        let table = shared_rule_table();
        let readiness = Readiness::default();
        let external = ExternalCatalog::new();
        // One set of self-metrics for the process, passed to every part that counts.
        let metrics = SelfMetrics::new();
        let secrets: Arc<dyn SecretStore> = match &self.secrets_dir {
            Some(dir) => Arc::new(FolderSecrets { dir: dir.clone() }),
            None => Arc::new(NoSecrets(
                "standalone mode reads Secrets from --secrets-dir, which is not set",
            )),
        };
        let backends = Backends::new(
            Upstream::new(prometheus.clone(), self.queries, metrics.clone()),
            secrets,
        );
        let source = ManifestSource {
            dir: self.manifests.clone(),
            options: self.options,
            table: table.clone(),
            backends: backends.clone(),
            readiness: readiness.clone(),
            metrics: metrics.clone(),
            rules: match &self.rules_dir {
                Some(dir) => RulesOutput::Files {
                    dir: dir.clone(),
                    prometheus: prometheus.clone(),
                },
                None => RulesOutput::None,
            },
        };
        // Stops with serving, also when this future is cancelled; if the folder's watch
        // stops, serving stops too rather than go on with a table nobody updates.
        let mut supervisor = Supervisor::default();
        supervisor.spawn("manifest folder watch", async move {
            if let Err(error) = source.run().await {
                tracing::error!("watching the manifests folder failed: {error:#}");
            }
        });
        if self.secrets_dir.is_some() {
            let backends = backends.clone();
            supervisor.spawn("secrets folder rescan", async move {
                let mut every = tokio::time::interval(SECRETS_RESCAN);
                loop {
                    every.tick().await;
                    backends.refresh_secrets();
                }
            });
        }
        supervisor.spawner().adopt(
            "external metrics refresher",
            external
                .clone()
                .spawn_refresher(prometheus.clone(), self.external_refresh),
        );
        let state = ApiState {
            table,
            backends,
            objects: Arc::new(NoCluster),
            external,
            readiness,
            metrics: metrics.clone(),
        };
        tracing::info!(
            addr = %listener.local_addr()?,
            manifests = %self.manifests.display(),
            prometheus = %self.prometheus.url,
            "serving custom.metrics.k8s.io and external.metrics.k8s.io over plain HTTP (standalone)"
        );
        let served = serve(
            listener,
            router::observed(router::insecure_router(state), metrics),
            PlainHttp,
            self.limits,
            shutdown,
        );
        tokio::select! {
            result = served => result.context("HTTP server failed"),
            exit = supervisor.first_exit() => Err(anyhow!("{exit}: stopping rather than serving a table nobody updates")),
        }
    }
}
