//! Runtime wiring of `metrics-registry run`.

use crate::args::{self, RunArgs};
use crate::compiler::CompileOptions;
use crate::reload::ManifestSource;
use anyhow::{Context, bail};
use metrics_registry_apiserver::api::{ApiState, Readiness};
use metrics_registry_apiserver::external::ExternalCatalog;
use metrics_registry_apiserver::objects::NoCluster;
use metrics_registry_apiserver::prometheus::PrometheusClient;
pub use metrics_registry_apiserver::prometheus::PrometheusConfig;
use metrics_registry_apiserver::rules::shared_rule_table;
use metrics_registry_apiserver::server;
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
    pub options: CompileOptions,
    pub external_refresh: Duration,
    /// Write `CustomPrometheusRules` as rule files here and reload Prometheus.
    pub rules_dir: Option<PathBuf>,
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
        let source = ManifestSource {
            dir: self.manifests.clone(),
            options: self.options,
            table: table.clone(),
            readiness: readiness.clone(),
            rule_files: self.rules_dir.clone().map(|dir| (dir, prometheus.clone())),
        };
        let reloader = tokio::spawn(async move {
            if let Err(error) = source.run().await {
                tracing::error!("watching the manifests folder failed: {error:#}");
            }
        });
        let refresher = external
            .clone()
            .spawn_refresher(prometheus.clone(), self.external_refresh);
        let state = ApiState {
            rules: table,
            prometheus,
            objects: Arc::new(NoCluster),
            external,
            readiness,
        };
        tracing::info!(
            addr = %listener.local_addr()?,
            manifests = %self.manifests.display(),
            prometheus = %self.prometheus.url,
            "serving custom.metrics.k8s.io and external.metrics.k8s.io over plain HTTP (standalone)"
        );
        let result = axum::serve(listener, server::insecure_router(state))
            .with_graceful_shutdown(shutdown)
            .await;
        reloader.abort();
        refresher.abort();
        result.context("HTTP server failed")
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let Some(manifests) = &args.definitions.manifests else {
        bail!(
            "reading definitions from the cluster is not available in this build yet: pass --manifests DIR"
        );
    };
    let Some(addr) = args.serving.insecure_listen else {
        bail!(
            "--manifests mode serves plain HTTP on loopback: pass --insecure-listen 127.0.0.1:PORT"
        );
    };
    let addr = args::require_loopback(addr)?;
    let standalone = Standalone {
        manifests: args::manifests_dir(manifests)?,
        prometheus: args.prometheus.config(),
        options: CompileOptions {
            namespace_isolation: !args.definitions.disable_namespace_isolation,
        },
        external_refresh: args.prometheus.external_refresh_interval,
        rules_dir: args.definitions.rules_dir.clone(),
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    standalone.serve(listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}
