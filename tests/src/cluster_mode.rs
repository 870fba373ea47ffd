//! metrics-registry's cluster mode in this process against a control plane without a
//! node: the operator as it runs in a cluster — watches, statuses, PrometheusRule
//! objects — for tests of what it writes to the API server. Nothing routes metrics
//! requests to it (no APIService), so no node and no network namespace are needed.

use metrics_registry_apiserver::upstream::QueryOptions;
use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context as _, bail};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams};
use metrics_registry::compiler::CompileOptions;
use metrics_registry::run::{ClusterMode, KubeClients, PrometheusConfig};
use metrics_registry_apiserver::serve::ServeLimits;
use tokio::sync::oneshot;

use crate::control_plane::ControlPlane;

/// Server-side applies every definition CRD and waits until each is Established.
pub async fn install_crds(admin: &kube::Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
    let mut names = Vec::new();
    for crd in metrics_registry::definitions::DefinitionKind::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        let mut body = serde_json::to_value(&crd)?;
        body["apiVersion"] = "apiextensions.k8s.io/v1".into();
        body["kind"] = "CustomResourceDefinition".into();
        crds.patch(
            &name,
            &PatchParams::apply("test").force(),
            &Patch::Apply(&body),
        )
        .await
        .with_context(|| format!("applying CRD {name}"))?;
        names.push(name);
    }
    for name in names {
        wait_established(&crds, &name).await?;
    }
    Ok(())
}

/// Polls until the CRD `name` has the condition Established=True.
pub async fn wait_established(
    crds: &Api<CustomResourceDefinition>,
    name: &str,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let crd = crds.get(name).await?;
        let established = crd
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        if established {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("CRD {name} not Established within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A running cluster mode; stopped on `stop` or when dropped.
pub struct InProcessOperator {
    /// Where it serves HTTPS (a certificate of its own making).
    pub addr: std::net::SocketAddr,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl InProcessOperator {
    /// Runs cluster mode as the control plane's admin, serving on a loopback port, with
    /// Prometheus at `prometheus_url` and CustomPrometheusRules written as PrometheusRule
    /// objects into `prometheus_rules` (namespace, labels) when given.
    pub async fn start(
        plane: &ControlPlane,
        prometheus_url: &str,
        prometheus_rules: Option<(String, BTreeMap<String, String>)>,
    ) -> anyhow::Result<InProcessOperator> {
        let mode = ClusterMode {
            kube: KubeClients::from_config(plane.admin_config().await?, Duration::from_secs(10))?,
            prometheus: PrometheusConfig::new(prometheus_url),
            queries: QueryOptions::default(),
            options: CompileOptions::default(),
            external_refresh: Duration::from_secs(1),
            rules_dir: None,
            prometheus_rules,
            tls_files: None,
            tls_hosts: Vec::new(),
            apiservice: None,
            register_resource_metrics: false,
            leader_election: None,
            limits: ServeLimits {
                shutdown_grace: Duration::from_secs(1),
                ..ServeLimits::default()
            },
            shutdown_delay: Duration::ZERO,
            auth_cache: Default::default(),
            secrets_namespace: "metrics-registry".into(),
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let (shutdown, signal) = oneshot::channel::<()>();
        let task = tokio::spawn(mode.serve(listener, async move {
            let _ = signal.await;
        }));
        Ok(InProcessOperator {
            addr,
            task,
            shutdown: Some(shutdown),
        })
    }

    /// Fails if cluster mode stopped by itself (it exits rather than serve a stale table).
    pub fn check_running(&self) -> anyhow::Result<()> {
        if self.task.is_finished() {
            bail!("metrics-registry's cluster mode stopped; its error is in the test log");
        }
        Ok(())
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.task).await;
    }
}

impl Drop for InProcessOperator {
    fn drop(&mut self) {
        self.task.abort();
    }
}
