//! Cluster mode: HTTPS behind the aggregator, definitions from the API server, statuses
//! and rules written by the elected leader. Each `start_*` function starts one concern;
//! `serve` puts them together and owns the shutdown sequence.

use crate::compiler::CompileOptions;
use crate::kubernetes::authconfig;
use crate::kubernetes::leader::{LeaderElection, Leadership, LeaseSettings};
use crate::kubernetes::objects::ObjectCaches;
use crate::kubernetes::reviews::ClusterReviews;
use crate::kubernetes::secrets::{self, ClusterSecrets};
use crate::publish::Publisher;
use crate::sinks::apiservice::{self, ServiceTarget};
use crate::sinks::recording_rules::RulesOutput;
use crate::sinks::status::writer::{StatusQueue, StatusWriter};
use crate::sources::watch::{DefinitionController, api_resources};
use crate::supervise::Supervisor;
use anyhow::{Context, anyhow};
use metrics_registry_apiserver::api::{ApiState, Readiness};
use metrics_registry_apiserver::auth::{CacheTtls, Guard, require_auth};
use metrics_registry_apiserver::external::ExternalCatalog;
use metrics_registry_apiserver::prometheus::{PrometheusClient, PrometheusConfig};
use metrics_registry_apiserver::router;
use metrics_registry_apiserver::serve::{ServeHandle, ServeLimits};
use metrics_registry_apiserver::table::shared_rule_table;
use metrics_registry_apiserver::telemetry::SelfMetrics;
use metrics_registry_apiserver::tls::{ReloadableTls, ServingCertificate};
use metrics_registry_apiserver::tls_acceptor::serve_https;
use metrics_registry_apiserver::upstream::{Backends, QueryOptions, Upstream};
use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Two clients to the same API server: watches are long-lived requests, everything
/// else must fail fast (a hung API server becomes a quick 503, not a request held for
/// minutes by retries).
#[derive(Clone)]
pub struct KubeClients {
    pub watch: kube::Client,
    pub request: kube::Client,
}

impl KubeClients {
    pub fn from_config(config: kube::Config, request_timeout: Duration) -> anyhow::Result<Self> {
        let watch = kube::Client::try_from(config.clone())?;
        let mut config = config;
        config.read_timeout = Some(request_timeout);
        config.write_timeout = Some(request_timeout);
        config.connect_timeout = Some(request_timeout);
        // Counted from when the request is sent, not from when a pooled connection went idle.
        config.reset_reader_on_write = true;
        config.default_retry = false;
        let request = kube::Client::try_from(config)?;
        Ok(KubeClients { watch, request })
    }
}

/// Everything cluster mode needs; built from flags or by tests.
/// How often each `MetricsBackend` is asked whether it answers (its status' `lastProbe`).
const BACKEND_PROBE_INTERVAL: Duration = Duration::from_secs(30);

pub struct ClusterMode {
    pub kube: KubeClients,
    pub prometheus: PrometheusConfig,
    /// How queries are shared, batched, cached and bounded.
    pub queries: QueryOptions,
    pub options: CompileOptions,
    pub external_refresh: Duration,
    /// CustomPrometheusRules as rule files here (takes precedence over PrometheusRule objects).
    pub rules_dir: Option<PathBuf>,
    /// Namespace and labels of PrometheusRule objects, used when that CRD is installed.
    pub prometheus_rules: Option<(String, BTreeMap<String, String>)>,
    /// Serving certificate and key files; a certificate is generated when absent.
    pub tls_files: Option<(PathBuf, PathBuf)>,
    pub tls_hosts: Vec<String>,
    /// Register the APIServices pointing at this Service (the leader does).
    pub apiservice: Option<ServiceTarget>,
    /// Also register v1beta1.metrics.k8s.io.
    pub register_resource_metrics: bool,
    /// `None`: this replica always writes (a single replica, or tests).
    pub leader_election: Option<LeaseSettings>,
    /// Timeouts, the connection cap and the grace requests in flight get at shutdown.
    pub limits: ServeLimits,
    /// What SIGTERM does, in order: readiness off; keep serving for this long (while the
    /// endpoints and the aggregator stop routing here); then `limits.shutdown_grace` for
    /// requests still open; exit.
    pub shutdown_delay: Duration,
    /// How long TokenReview and SubjectAccessReview answers are reused.
    pub auth_cache: CacheTtls,
    /// Where the Secrets `MetricsBackend`s name are (the namespace this server runs in).
    pub secrets_namespace: String,
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

    fn rules_output(&self, prometheus: &PrometheusClient) -> RulesOutput {
        let client = &self.kube.request;
        match (&self.rules_dir, &self.prometheus_rules) {
            (Some(dir), _) => RulesOutput::Files {
                dir: dir.clone(),
                prometheus: prometheus.clone(),
            },
            // Whether the PrometheusRule CRD is installed is asked at every sync: it may
            // come with prometheus-operator after this server started.
            (None, Some((namespace, labels))) => RulesOutput::PrometheusRules {
                client: client.clone(),
                namespace: namespace.clone(),
                labels: labels.clone(),
            },
            (None, None) => RulesOutput::None,
        }
    }

    /// TLS with the client CAs of the authentication ConfigMap, and the guard that
    /// authenticates and authorizes every metrics request; both follow the ConfigMap live.
    async fn start_auth(
        &self,
        supervisor: &Supervisor,
        serving: ServingCertificate,
        metrics: &Arc<SelfMetrics>,
    ) -> anyhow::Result<(Arc<ReloadableTls>, Arc<Guard>)> {
        let auth_config = authconfig::load(&self.kube.request).await?;
        let tls = Arc::new(ReloadableTls::new(serving, auth_config.client_ca_bundle())?);
        if let Some((cert, key)) = self.tls_files.clone() {
            supervisor.spawner().adopt(
                "serving certificate watch",
                tls.spawn_file_watch(cert, key, Duration::from_secs(1)),
            );
        }
        let reviews = Arc::new(ClusterReviews {
            client: self.kube.request.clone(),
        });
        let guard = Guard::with_cache_ttls(
            auth_config,
            Some(reviews.clone()),
            reviews,
            self.auth_cache,
            metrics.clone(),
        )?;
        supervisor.spawner().adopt(
            "authentication config watch",
            authconfig::spawn_watch(
                self.kube.watch.clone(),
                guard.clone(),
                tls.clone(),
                metrics.clone(),
            ),
        );
        Ok((tls, guard))
    }

    fn start_leader_election(
        &self,
        stopping: watch::Receiver<bool>,
    ) -> (Leadership, Option<tokio::task::JoinHandle<()>>) {
        match &self.leader_election {
            Some(settings) => {
                let election = LeaderElection {
                    client: self.kube.request.clone(),
                    settings: settings.clone(),
                };
                let (leadership, task) = election.start(stopping);
                (leadership, Some(task))
            }
            None => (Leadership::Always, None),
        }
    }

    /// Watches → compile → table; statuses and rules to their writers.
    async fn start_definitions(
        &self,
        supervisor: &Supervisor,
        leadership: &Leadership,
        prometheus: &PrometheusClient,
        metrics: &Arc<SelfMetrics>,
    ) -> ApiState {
        let table = shared_rule_table();
        let secrets = Arc::new(ClusterSecrets::new(self.secrets_namespace.clone()));
        let backends = Backends::new(
            Upstream::new(prometheus.clone(), self.queries, metrics.clone()),
            secrets.clone(),
        );
        supervisor.spawner().adopt(
            "MetricsBackend Secrets watch",
            secrets::spawn_watch(self.kube.watch.clone(), secrets, backends.clone()),
        );
        {
            // Every replica probes (cheap: one build-info request per backend); the leader
            // writes what it found into each MetricsBackend's status.
            let backends = backends.clone();
            supervisor.spawn("MetricsBackend probes", async move {
                let mut every = tokio::time::interval(BACKEND_PROBE_INTERVAL);
                loop {
                    tokio::select! {
                        _ = every.tick() => {}
                        () = backends.rebuilt() => {}
                    }
                    backends.probe_all().await;
                }
            });
        }
        let readiness = Readiness::default();
        let objects = ObjectCaches::new(
            self.kube.watch.clone(),
            supervisor.spawner(),
            metrics.clone(),
        );
        let statuses = StatusQueue::default();
        let (rules_tx, rules_rx) = watch::channel(None);
        supervisor.spawn(
            "status writer",
            StatusWriter {
                client: self.kube.request.clone(),
                queue: statuses.clone(),
                leadership: leadership.clone(),
                resources: api_resources(),
            }
            .run(),
        );
        supervisor.spawn(
            "rules writer",
            self.rules_output(prometheus)
                .run(rules_rx, leadership.clone()),
        );
        supervisor.spawn(
            "definition controller",
            DefinitionController {
                client: self.kube.watch.clone(),
                options: self.options,
                publisher: Publisher::new(
                    table.clone(),
                    backends.clone(),
                    readiness.clone(),
                    rules_tx,
                    metrics.clone(),
                ),
                objects: objects.clone(),
                statuses,
                metrics: metrics.clone(),
                leadership: leadership.clone(),
                spawner: supervisor.spawner(),
            }
            .run(),
        );
        ApiState {
            table,
            backends,
            objects,
            external: self.start_external_refresher(supervisor, prometheus),
            readiness,
            metrics: metrics.clone(),
        }
    }

    /// The list of external metrics (`kube_adapter_metric_*` series), refreshed in the
    /// background so that requests never wait for it; a failed refresh keeps the last list.
    fn start_external_refresher(
        &self,
        supervisor: &Supervisor,
        prometheus: &PrometheusClient,
    ) -> Arc<ExternalCatalog> {
        let external = ExternalCatalog::new();
        supervisor.spawner().adopt(
            "external metrics refresher",
            external
                .clone()
                .spawn_refresher(prometheus.clone(), self.external_refresh),
        );
        external
    }

    /// Self-registration for installs without the chart: once this server answers with a
    /// complete table (the aggregator marks a group stale for a while if discovery fails
    /// right after the APIService appears), and again whenever this replica becomes leader.
    fn start_registration(
        &self,
        supervisor: &Supervisor,
        readiness: Readiness,
        mut leadership: Leadership,
        ca_bundle: String,
    ) {
        let Some(target) = self.apiservice.clone() else {
            return;
        };
        let client = self.kube.request.clone();
        let resource_metrics = self.register_resource_metrics;
        supervisor.spawn("APIService registration", async move {
            readiness.wait_ready().await;
            loop {
                if leadership.is_leader() {
                    while let Err(error) =
                        apiservice::register(&client, &target, &ca_bundle, resource_metrics).await
                    {
                        tracing::error!("cannot register the APIServices (retrying): {error}");
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                }
                leadership.changed().await;
            }
        });
    }

    /// Serves HTTPS on `listener` until `shutdown` completes, or fails when a task the
    /// server depends on stops (a stale table must never be served as if current).
    pub async fn serve(
        self,
        listener: std::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let prometheus = PrometheusClient::new(self.prometheus.clone())
            .context("invalid Prometheus settings")?;
        let serving = self.serving_certificate()?;
        let ca_bundle = serving.ca_bundle();
        // Everything started from here on stops when this function returns, however it ends.
        let mut supervisor = Supervisor::default();
        let (stopping, stopping_rx) = watch::channel(false);
        // One set of self-metrics for the process, passed to every part that counts.
        let metrics = SelfMetrics::new();
        let (tls, guard) = self.start_auth(&supervisor, serving, &metrics).await?;
        let (leadership, election) = self.start_leader_election(stopping_rx);
        let state = self
            .start_definitions(&supervisor, &leadership, &prometheus, &metrics)
            .await;
        let readiness = state.readiness.clone();
        self.start_registration(&supervisor, readiness.clone(), leadership, ca_bundle);

        tracing::info!(
            addr = %listener.local_addr()?,
            prometheus = %self.prometheus.url,
            "serving custom.metrics.k8s.io and external.metrics.k8s.io over HTTPS"
        );
        let handle = ServeHandle::new();
        let server = tokio::spawn(serve_https(
            listener,
            router(state, guard),
            tls,
            self.limits,
            handle.signalled(),
        ));
        let mut running = Running {
            readiness,
            stopping,
            handle,
            server,
            election,
        };
        tokio::select! {
            _ = shutdown => {}
            exit = supervisor.first_exit() => {
                return Err(running.abandon(anyhow!(
                    "{exit}: stopping rather than serving a table nobody updates"
                )));
            }
            _ = ended(&mut running.election) => {
                return Err(running.abandon(anyhow!("leader election stopped")));
            }
            finished = &mut running.server => {
                return Err(anyhow!("HTTPS server stopped: {finished:?}"));
            }
        }
        running
            .shut_down(self.shutdown_delay, self.limits.shutdown_grace)
            .await
    }
}

/// Health routes open to all; metrics routes behind authentication and authorization.
fn router(state: ApiState, guard: Arc<Guard>) -> axum::Router {
    let metrics = state.metrics.clone();
    router::observed(
        router::health_routes(state.clone()).merge(
            router::metrics_routes(state)
                .layer(axum::middleware::from_fn_with_state(guard, require_auth)),
        ),
        metrics,
    )
}

/// What ending a running server touches.
struct Running {
    readiness: Readiness,
    /// Tells leader election to release the Lease.
    stopping: watch::Sender<bool>,
    handle: ServeHandle,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
    election: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Stops at once, on a failure: `error` is what the caller returns.
    fn abandon(self, error: anyhow::Error) -> anyhow::Error {
        self.readiness.begin_shutdown();
        self.handle.shutdown();
        error
    }

    /// What SIGTERM does: `/readyz` fails; requests are still served for `delay` while
    /// the endpoints and the aggregator stop routing here; requests still open then get
    /// `grace` to finish.
    async fn shut_down(mut self, delay: Duration, grace: Duration) -> anyhow::Result<()> {
        self.readiness.begin_shutdown();
        // The leader releases the Lease now, so another replica writes from the next retry.
        self.stopping.send_replace(true);
        tracing::info!(
            "shutting down: /readyz fails; still serving for {delay:?} while endpoints drop this pod"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            finished = &mut self.server => return Err(anyhow!("HTTPS server stopped: {finished:?}")),
        }
        self.handle.shutdown();
        match tokio::time::timeout(grace + Duration::from_secs(1), &mut self.server).await {
            Ok(result) => result
                .context("HTTPS server task")?
                .context("HTTPS server failed")?,
            Err(_) => tracing::warn!("requests still open after {grace:?}; closed"),
        }
        if let Some(task) = self.election {
            // Bounded: a hung API server must not hold the exit.
            let _ = tokio::time::timeout(Duration::from_secs(3), task).await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

async fn ended(task: &mut Option<tokio::task::JoinHandle<()>>) {
    match task {
        Some(task) => {
            let _ = task.await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
