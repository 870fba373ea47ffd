//! The end-to-end stack: a real control plane (with the kubelet stand-in), a real
//! Prometheus scraping a test exporter, and metrics-registry in cluster mode behind the
//! aggregator through an ExternalName Service — installed from the Helm chart's RBAC.

use crate::cluster::{
    CertAuthority, ControlPlane, ControlPlaneOptions, KubeletStandin, start_kubelet_standin,
};
use crate::exporter::Exporter;
use crate::prometheus::Prometheus;
use anyhow::{Context, bail};
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use metrics_registry::cluster::apiservice::ServiceTarget;
use metrics_registry::compiler::CompileOptions;
use metrics_registry::run::{ClusterMode, PrometheusConfig};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const NAMESPACE: &str = "metrics-registry";
pub const IDENTITY: &str = "system:serviceaccount:metrics-registry:metrics-registry";

// Fields drop in order: clients of the control plane go before it.
pub struct E2e {
    _kubelet: KubeletStandin,
    pub control_plane: ControlPlane,
    pub admin: kube::Client,
    pub exporter: Arc<Exporter>,
    pub prometheus: Prometheus,
    pub registry_addr: SocketAddr,
    pub serving_ca: String,
    pub rules: TempDir,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

impl E2e {
    /// Stops metrics-registry gracefully before the control plane goes away.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(10), &mut self.server).await;
    }
}

impl Drop for E2e {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.server.abort();
    }
}

/// A readable record of what the HPA did.
pub struct Timeline {
    title: String,
    started: Instant,
    lines: Vec<String>,
    live: bool,
}

impl Timeline {
    pub fn new(title: &str) -> Timeline {
        Timeline {
            title: title.to_string(),
            started: Instant::now(),
            lines: Vec::new(),
            live: false,
        }
    }
    /// Prints each line as it happens (the demo) instead of at the end (tests).
    pub fn live(title: &str) -> Timeline {
        println!("\n== {title} ==");
        Timeline {
            live: true,
            ..Timeline::new(title)
        }
    }
    pub fn note(&mut self, text: &str) {
        let line = format!("{:>6.1}s  {text}", self.started.elapsed().as_secs_f64());
        if self.live {
            println!("{line}");
        }
        self.lines.push(line);
    }
    pub fn print(&self) {
        if self.live {
            return;
        }
        println!("\n== {} ==", self.title);
        for line in &self.lines {
            println!("{line}");
        }
    }
}

async fn helm_template() -> anyhow::Result<String> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let bin_dir = crate::cluster::binary_dir().await?;
    let output = std::process::Command::new(bin_dir.join("helm"))
        .args(["template", "metrics-registry"])
        .arg(repo.join("charts/metrics-registry"))
        .args(["--namespace", NAMESPACE])
        .output()
        .context("helm template")?;
    if !output.status.success() {
        bail!(
            "helm template failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

impl E2e {
    pub async fn start(publish: impl FnOnce(&Exporter)) -> anyhow::Result<E2e> {
        crate::init_test_logging();
        metrics_registry::install_crypto_provider();
        let control_plane = ControlPlane::start(ControlPlaneOptions {
            hpa_sync_period: Duration::from_secs(1),
            ..Default::default()
        })
        .await?;
        let admin = control_plane.admin_client().await?;
        let kubelet = start_kubelet_standin(admin.clone()).await?;

        // CRDs, then the chart's RBAC (everything but the Deployment and the Service: no kubelet
        // runs containers here, so metrics-registry runs in the test and an ExternalName Service points at it).
        let crds: Api<CustomResourceDefinition> = Api::all(admin.clone());
        for crd in metrics_registry_crds::all_crds() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            let mut body = serde_json::to_value(&crd)?;
            body["apiVersion"] = "apiextensions.k8s.io/v1".into();
            body["kind"] = "CustomResourceDefinition".into();
            crds.patch(
                &name,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&body),
            )
            .await?;
        }
        let mut stack_setup =
            String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: metrics-registry}\n");
        for document in helm_template().await?.split("\n---") {
            if document.contains("\nkind: Deployment") || document.contains("\nkind: Service\n") {
                continue;
            }
            stack_setup.push_str("\n---\n");
            stack_setup.push_str(document);
        }
        apply_yaml(&admin, &stack_setup).await?;

        let exporter = Arc::new(Exporter::start().await?);
        publish(&exporter);
        let (prometheus, rules) = crate::stack::scraping(&exporter, "up").await?;

        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let registry_addr = listener.local_addr()?;
        apply_yaml(
            &admin,
            &format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: metrics-registry, namespace: {NAMESPACE}}}\nspec:\n  type: ExternalName\n  externalName: localhost\n  ports: [{{name: https, port: {port}}}]\n",
                port = registry_addr.port()
            ),
        )
        .await?;
        let identity = control_plane
            .client_for(
                IDENTITY,
                &[
                    "system:serviceaccounts",
                    "system:serviceaccounts:metrics-registry",
                ],
            )
            .await?;
        let mode = ClusterMode {
            client: identity,
            prometheus: PrometheusConfig::new(prometheus.url()),
            options: CompileOptions::default(),
            external_refresh: Duration::from_secs(1),
            rules_dir: Some(rules.path().to_path_buf()),
            prometheus_rules: None,
            tls_files: None,
            tls_hosts: vec![],
            apiservice: Some(ServiceTarget {
                namespace: NAMESPACE.into(),
                name: "metrics-registry".into(),
                port: registry_addr.port().into(),
            }),
        };
        let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(mode.serve(listener, async move {
            let _ = signal.await;
        }));

        let apiservices: Api<APIService> = Api::all(admin.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let list = apiservices
                .list(
                    &ListParams::default().labels("app.kubernetes.io/managed-by=metrics-registry"),
                )
                .await?;
            let available = list
                .items
                .iter()
                .filter(|s| {
                    s.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| {
                            c.iter()
                                .any(|c| c.type_ == "Available" && c.status == "True")
                        })
                })
                .count();
            if available == 3 {
                let ca = list.items[0]
                    .spec
                    .as_ref()
                    .and_then(|s| s.ca_bundle.as_ref())
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                    .unwrap_or_default();
                return Ok(E2e {
                    control_plane,
                    admin,
                    exporter,
                    prometheus,
                    registry_addr,
                    serving_ca: ca,
                    rules,
                    _kubelet: kubelet,
                    server,
                    shutdown: Some(shutdown),
                });
            }
            if server.is_finished() {
                bail!("metrics-registry stopped: {:?}", server.await);
            }
            if Instant::now() > deadline {
                let conditions: Vec<_> = list
                    .items
                    .iter()
                    .map(|s| format!("{:?}: {:?}", s.metadata.name, s.status))
                    .collect();
                bail!(
                    "APIServices not Available within 60 s: {conditions:#?}\n{}",
                    control_plane.log_tail("kube-apiserver", 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn apply_yaml(&self, text: &str) -> anyhow::Result<()> {
        apply_yaml(&self.admin, text).await
    }

    /// Namespace + Deployment (label app=<name>) + Service of the same name.
    pub fn workload(&self, namespace: &str, name: &str, replicas: i32) -> String {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{containers: [{{name: app, image: registry.invalid/app}}]}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {{selector: {{app: {name}}}, ports: [{{port: 80}}]}}\n"
        )
    }

    /// GET through kube-apiserver (and so through the aggregator) as admin.
    pub async fn get_raw(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let request = http::Request::get(path).body(Vec::new())?;
        Ok(self.admin.request::<serde_json::Value>(request).await?)
    }

    /// Polls `get_raw` until `done`; returns how long it took.
    pub async fn wait_raw(
        &self,
        path: &str,
        timeout: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let last = self.get_raw(path).await;
            if let Ok(body) = &last
                && done(body)
            {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!("{path}: condition not met within {timeout:?}; last answer {last:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn watch_replicas(
        &self,
        namespace: &str,
        name: &str,
        timeout: Duration,
        timeline: &mut Timeline,
        done: impl Fn(i32) -> bool,
    ) -> anyhow::Result<Duration> {
        let deployments: Api<Deployment> = Api::namespaced(self.admin.clone(), namespace);
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(self.admin.clone(), namespace);
        let started = Instant::now();
        let mut last = String::new();
        loop {
            let replicas = deployments
                .get(name)
                .await?
                .spec
                .and_then(|s| s.replicas)
                .unwrap_or(0);
            let metric = hpas
                .get_opt(name)
                .await?
                .and_then(|h| h.status)
                .and_then(|s| s.current_metrics)
                .map(|m| serde_json::to_value(m).unwrap_or_default())
                .map(|m| {
                    let current = &m[0];
                    let value = current["object"]["current"]["value"]
                        .as_str()
                        .or(current["pods"]["current"]["averageValue"].as_str())
                        .or(current["external"]["current"]["value"].as_str())
                        .unwrap_or("?");
                    value.to_string()
                })
                .unwrap_or_else(|| "?".to_string());
            let line = format!("{namespace}/{name}: metric {metric}, replicas {replicas}");
            if line != last {
                timeline.note(&line);
                last = line;
            }
            if done(replicas) {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!(
                    "{namespace}/{name} did not reach the wanted replicas within {timeout:?} (now {replicas})"
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn wait_replicas(
        &self,
        namespace: &str,
        name: &str,
        replicas: i32,
        timeout: Duration,
        timeline: &mut Timeline,
    ) -> anyhow::Result<Duration> {
        self.watch_replicas(namespace, name, timeout, timeline, |r| r == replicas)
            .await
    }

    pub async fn wait_replicas_at_least(
        &self,
        namespace: &str,
        name: &str,
        replicas: i32,
        timeout: Duration,
        timeline: &mut Timeline,
    ) -> anyhow::Result<Duration> {
        self.watch_replicas(namespace, name, timeout, timeline, |r| r >= replicas)
            .await
    }

    /// The HPA's conditions, for failure messages.
    pub async fn hpa_conditions(&self, namespace: &str, name: &str) -> String {
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(self.admin.clone(), namespace);
        let status = match hpas.get(name).await {
            Ok(hpa) => serde_json::to_string_pretty(&hpa.status).unwrap_or_default(),
            Err(error) => error.to_string(),
        };
        let log = self.control_plane.log_tail("kube-controller-manager", 400);
        let relevant: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("horizontal") || l.contains("metrics") || l.contains(name))
            .take(30)
            .collect();
        format!(
            "{status}\n--- kube-controller-manager ---\n{}",
            relevant.join("\n")
        )
    }

    fn definitions(&self, kind: &str, namespace: Option<&str>) -> Api<DynamicObject> {
        let resources = metrics_registry::cluster::controller::api_resources();
        let (_, resource) = resources
            .iter()
            .find(|(k, _)| k.name() == kind)
            .expect("a definition kind");
        match namespace {
            Some(namespace) => Api::namespaced_with(self.admin.clone(), namespace, resource),
            None => Api::all_with(self.admin.clone(), resource),
        }
    }

    /// `.status` of a definition.
    pub async fn status(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> serde_json::Value {
        let object = self
            .definitions(kind, namespace)
            .get(name)
            .await
            .expect("definition exists");
        object.data["status"].clone()
    }

    /// Polls `.status` until `done` holds (at most 5 s); returns the last status seen.
    pub async fn wait_status(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let status = self.status(kind, namespace, name).await;
            if done(&status) || Instant::now() > deadline {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    pub async fn delete(
        &self,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> anyhow::Result<()> {
        self.definitions(kind, namespace)
            .delete(name, &DeleteParams::default())
            .await?;
        Ok(())
    }

    /// Keeps calling `publish(pod)` for every pod matching `selector`, as an exporter per pod would.
    pub fn feed_pod_series(
        &self,
        namespace: &str,
        selector: &str,
        publish: impl Fn(&str) + Send + Sync + 'static,
    ) -> AbortOnDrop {
        let pods: Api<Pod> = Api::namespaced(self.admin.clone(), namespace);
        let selector = selector.to_string();
        AbortOnDrop(tokio::spawn(async move {
            loop {
                if let Ok(list) = pods.list(&ListParams::default().labels(&selector)).await {
                    for pod in list.items {
                        if let Some(name) = pod.metadata.name {
                            publish(&name);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }))
    }

    /// Status code of a request straight to metrics-registry (bypassing kube-apiserver).
    pub async fn direct_status(
        &self,
        path: &str,
        identity: Option<(String, String)>,
        headers: &[(&str, &str)],
    ) -> u16 {
        let ca = reqwest::Certificate::from_pem(self.serving_ca.as_bytes()).expect("serving CA");
        let mut builder = reqwest::Client::builder()
            .tls_certs_only([ca])
            .timeout(Duration::from_secs(10));
        if let Some((cert, key)) = identity {
            builder = builder.identity(
                reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity"),
            );
        }
        let client = builder.build().expect("client");
        let mut request = client.get(format!(
            "https://localhost:{}{path}",
            self.registry_addr.port()
        ));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        match request.send().await {
            Ok(response) => response.status().as_u16(),
            // A handshake refused over the certificate never reached the API: as unauthenticated as it gets.
            Err(_) => 401,
        }
    }

    /// A client certificate from a CA nobody trusts.
    pub fn foreign_client_cert(&self) -> (String, String) {
        crate::cluster::foreign_client_cert("front-proxy-client").expect("foreign cert")
    }

    /// A client certificate signed by the front-proxy CA with this CN.
    pub fn front_proxy_cert(&self, cn: &str) -> (String, String) {
        self.control_plane
            .certs()
            .sign_client_cert(CertAuthority::FrontProxy, cn, &[])
            .expect("front-proxy cert")
    }
}

pub struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Server-side applies every document of a multi-document YAML text.
pub fn apply_yaml<'a>(
    client: &'a kube::Client,
    text: &'a str,
) -> BoxFuture<'a, anyhow::Result<()>> {
    Box::pin(async move {
        let documents: Vec<serde_json::Value> = serde_saphyr::from_multiple(text)?;
        for document in documents.into_iter().filter(|d| d.is_object()) {
            let api_version = document["apiVersion"].as_str().unwrap_or_default();
            let kind = document["kind"].as_str().unwrap_or_default();
            let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
            let gvk = GroupVersionKind::gvk(group, version, kind);
            let (resource, capabilities) = kube::discovery::pinned_kind(client, &gvk)
                .await
                .with_context(|| format!("discovering {api_version} {kind}"))?;
            let name = document["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let api: Api<DynamicObject> = match (
                capabilities.scope,
                document["metadata"]["namespace"].as_str(),
            ) {
                (Scope::Namespaced, Some(namespace)) => {
                    Api::namespaced_with(client.clone(), namespace, &resource)
                }
                (Scope::Namespaced, None) => {
                    Api::default_namespaced_with(client.clone(), &resource)
                }
                (Scope::Cluster, _) => Api::all_with(client.clone(), &resource),
            };
            api.patch(
                &name,
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&document),
            )
            .await
            .with_context(|| format!("applying {kind} {name}"))?;
        }
        Ok(())
    })
}
