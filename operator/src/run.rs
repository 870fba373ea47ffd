//! Runtime wiring of `metrics-registry run`.

use crate::args::{self, RunArgs};
use crate::cluster::apiservice::{self, ServiceTarget};
use crate::cluster::authconfig;
use crate::cluster::controller::DefinitionController;
use crate::cluster::objects::ObjectCaches;
use crate::cluster::reviews::ClusterReviews;
use crate::compiler::CompileOptions;
use crate::reload::ManifestSource;
use crate::rules_output::{RulesOutput, prometheus_rules_installed};
use crate::tasks::TaskGuard;
use anyhow::{Context, bail};
use metrics_registry_apiserver::api::{ApiState, Readiness};
use metrics_registry_apiserver::auth::{Guard, require_auth};
use metrics_registry_apiserver::external::ExternalCatalog;
use metrics_registry_apiserver::https::serve_https;
use metrics_registry_apiserver::objects::NoCluster;
use metrics_registry_apiserver::prometheus::PrometheusClient;
pub use metrics_registry_apiserver::prometheus::PrometheusConfig;
use metrics_registry_apiserver::rules::shared_rule_table;
use metrics_registry_apiserver::serve::{PlainHttp, ServeHandle, ServeLimits, serve};
use metrics_registry_apiserver::server;
use metrics_registry_apiserver::tls::{ReloadableTls, ServingCertificate};
use std::collections::BTreeMap;
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
        let source = ManifestSource {
            dir: self.manifests.clone(),
            options: self.options,
            table: table.clone(),
            readiness: readiness.clone(),
            rules: match &self.rules_dir {
                Some(dir) => RulesOutput::Files {
                    dir: dir.clone(),
                    prometheus: prometheus.clone(),
                },
                None => RulesOutput::None,
            },
        };
        // Stops with serving, also when this future is cancelled.
        let mut background = TaskGuard::default();
        background.push(tokio::spawn(async move {
            if let Err(error) = source.run().await {
                tracing::error!("watching the manifests folder failed: {error:#}");
            }
        }));
        background.push(
            external
                .clone()
                .spawn_refresher(prometheus.clone(), self.external_refresh),
        );
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
        serve(
            listener,
            server::insecure_router(state),
            PlainHttp,
            self.limits,
            shutdown,
        )
        .await
        .context("HTTP server failed")
    }
}

/// Everything cluster mode needs; built from flags or by tests.
pub struct ClusterMode {
    pub client: kube::Client,
    pub prometheus: PrometheusConfig,
    pub options: CompileOptions,
    pub external_refresh: Duration,
    /// CustomPrometheusRules as rule files here (takes precedence over PrometheusRule objects).
    pub rules_dir: Option<PathBuf>,
    /// Namespace and labels of PrometheusRule objects, used when that CRD is installed.
    pub prometheus_rules: Option<(String, BTreeMap<String, String>)>,
    /// Serving certificate and key files; a certificate is generated when absent.
    pub tls_files: Option<(PathBuf, PathBuf)>,
    pub tls_hosts: Vec<String>,
    /// Register the APIServices pointing at this Service.
    pub apiservice: Option<ServiceTarget>,
}

impl ClusterMode {
    fn serving_certificate(&self) -> anyhow::Result<ServingCertificate> {
        if let Some((cert, key)) = &self.tls_files {
            return Ok(ServingCertificate::from_files(cert, key)?);
        }
        let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
        if let Some(target) = &self.apiservice {
            hosts.push(format!("{}.{}.svc", target.name, target.namespace));
            hosts.push(format!(
                "{}.{}.svc.cluster.local",
                target.name, target.namespace
            ));
        }
        hosts.extend(self.tls_hosts.iter().cloned());
        Ok(ServingCertificate::self_signed(&hosts)?)
    }

    async fn rules_output(&self, prometheus: &PrometheusClient) -> RulesOutput {
        match (&self.rules_dir, &self.prometheus_rules) {
            (Some(dir), _) => RulesOutput::Files {
                dir: dir.clone(),
                prometheus: prometheus.clone(),
            },
            (None, Some((namespace, labels))) if prometheus_rules_installed(&self.client).await => {
                RulesOutput::PrometheusRules {
                    client: self.client.clone(),
                    namespace: namespace.clone(),
                    labels: labels.clone(),
                }
            }
            _ => {
                tracing::warn!(
                    "CustomPrometheusRules are validated but not handed to Prometheus: no PrometheusRule CRD and no --rules-dir"
                );
                RulesOutput::None
            }
        }
    }

    /// Serves HTTPS on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: std::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let prometheus = PrometheusClient::new(self.prometheus.clone())
            .context("invalid Prometheus settings")?;
        let serving = self.serving_certificate()?;
        let ca_bundle = serving.ca_bundle();
        let auth_config = authconfig::load(&self.client).await?;
        let tls = Arc::new(ReloadableTls::new(serving, auth_config.client_ca_bundle())?);
        // Everything spawned from here on stops when serving ends, however it ends.
        let mut background = TaskGuard::default();
        if let Some((cert, key)) = self.tls_files.clone() {
            background.push(tls.spawn_file_watch(cert, key, Duration::from_secs(1)));
        }
        let reviews = Arc::new(ClusterReviews {
            client: self.client.clone(),
        });
        let guard = Guard::new(auth_config, Some(reviews.clone()), reviews)?;
        background.push(authconfig::spawn_watch(
            self.client.clone(),
            guard.clone(),
            tls.clone(),
        ));

        let table = shared_rule_table();
        let readiness = Readiness::default();
        let external = ExternalCatalog::new();
        let objects = ObjectCaches::new(self.client.clone());
        let controller = DefinitionController {
            client: self.client.clone(),
            options: self.options,
            table: table.clone(),
            readiness: readiness.clone(),
            objects: objects.clone(),
            rules: self.rules_output(&prometheus).await,
        };
        background.push(tokio::spawn(controller.run()));
        background.push(
            external
                .clone()
                .spawn_refresher(prometheus.clone(), self.external_refresh),
        );
        let state = ApiState {
            rules: table,
            prometheus,
            objects,
            external,
            readiness: readiness.clone(),
        };
        let app = server::health_routes(state.clone()).merge(
            server::metrics_routes(state)
                .layer(axum::middleware::from_fn_with_state(guard, require_auth)),
        );
        tracing::info!(
            addr = %listener.local_addr()?,
            prometheus = %self.prometheus.url,
            "serving custom.metrics.k8s.io and external.metrics.k8s.io over HTTPS"
        );
        let handle = ServeHandle::new();
        let stopper = handle.clone();
        tokio::spawn(async move {
            shutdown.await;
            stopper.shutdown();
        });
        let limits = ServeLimits::default();
        let mut server = tokio::spawn(serve_https(listener, app, tls, limits, handle.signalled()));
        // The aggregator fetches discovery as soon as an APIService appears and, if that
        // fails, marks the group stale for up to a minute (HPAs then see no metrics API):
        // register only once this server answers with a complete table.
        if let Some(target) = &self.apiservice {
            tokio::select! {
                _ = readiness.wait_ready() => {}
                finished = &mut server => {
                    return Err(anyhow::anyhow!("HTTPS server stopped before the first sync: {finished:?}"));
                }
            }
            if let Err(error) = apiservice::register(&self.client, target, &ca_bundle).await {
                handle.shutdown();
                return Err(anyhow::Error::new(error).context("cannot register the APIServices"));
            }
        }
        let result = server.await.context("HTTPS server task")?;
        result.context("HTTPS server failed")
    }
}

async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?
        }
        None => kube::Config::infer()
            .await
            .context("no Kubernetes config (in-cluster, $KUBECONFIG or ~/.kube/config)")?,
    };
    Ok(kube::Client::try_from(config)?)
}

async fn run_cluster(args: RunArgs) -> anyhow::Result<()> {
    let client = kube_client(args.cluster.kubeconfig.as_deref()).await?;
    let tls_files = args
        .serving
        .tls_cert_file
        .clone()
        .zip(args.serving.tls_private_key_file.clone());
    let mode = ClusterMode {
        client,
        prometheus: args.prometheus.config(),
        options: CompileOptions {
            namespace_isolation: !args.definitions.disable_namespace_isolation,
        },
        external_refresh: args.prometheus.external_refresh_interval,
        rules_dir: args.definitions.rules_dir.clone(),
        prometheus_rules: Some((
            args.cluster.prometheus_rules_namespace.clone(),
            args.cluster
                .prometheus_rule_labels
                .iter()
                .cloned()
                .collect(),
        )),
        tls_files,
        tls_hosts: args.serving.tls_hosts.clone(),
        apiservice: args.cluster.register_apiservices.then(|| ServiceTarget {
            namespace: args.cluster.service_namespace.clone(),
            name: args.cluster.service_name.clone(),
            port: args.cluster.service_port,
        }),
    };
    let listener = std::net::TcpListener::bind(args.serving.listen)
        .with_context(|| format!("cannot listen on {}", args.serving.listen))?;
    mode.serve(listener, shutdown_signal()).await
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let Some(manifests) = &args.definitions.manifests else {
        return run_cluster(args).await;
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
        limits: args.serving.limits(),
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
