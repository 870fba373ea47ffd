//! The end-to-end stack: a real control plane with a real node (containerd + kubelet), a
//! real Prometheus scraping a test exporter, and metrics-registry in cluster mode behind
//! the aggregator — either installed with `helm install` from the chart and the built
//! image ([`E2e::install`]), or run in the test process with the chart's RBAC behind a
//! Service whose EndpointSlice points at it ([`E2e::start`]; rule files on the local disk
//! and direct access to its internals).

use crate::control_plane::{
    CertAuthority, ControlPlane, ControlPlaneOptions, WORKLOAD_IMAGE, product_image,
};
use crate::exporter::Exporter;
use crate::prometheus::Prometheus;
use anyhow::{Context, bail};
use futures::future::BoxFuture;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::Scope;
use metrics_registry::compiler::CompileOptions;
use metrics_registry::run::{ClusterMode, KubeClients, PrometheusConfig};
use metrics_registry::sinks::apiservice::{API_VERSIONS, ServiceTarget};
use metrics_registry_apiserver::serve::ServeLimits;
use metrics_registry_apiserver::upstream::QueryOptions;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub const NAMESPACE: &str = "metrics-registry";
pub const RELEASE: &str = "metrics-registry";
pub const IDENTITY: &str = "system:serviceaccount:metrics-registry:metrics-registry";
/// The name the aggregator expects in metrics-registry's serving certificate.
pub const SERVICE_HOST: &str = "metrics-registry.metrics-registry.svc";
/// Requests through kube-apiserver fail fast instead of being retried for minutes.
const RAW_TIMEOUT: Duration = Duration::from_secs(15);

/// How metrics-registry runs in this stack.
enum Registry {
    InProcess {
        addr: SocketAddr,
        server: tokio::task::JoinHandle<anyhow::Result<()>>,
        shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    },
    Chart,
}

// Fields drop in order: metrics-registry and the clients go before the control plane.
pub struct E2e {
    registry: Registry,
    pub admin: kube::Client,
    /// Admin client without retries and with a read timeout, for raw requests.
    raw: kube::Client,
    pub exporter: Arc<Exporter>,
    pub prometheus: Prometheus,
    pub serving_ca: String,
    /// Chart only: from `helm install` to the APIServices Available.
    pub install_took: Option<Duration>,
    pub rules: TempDir,
    pub control_plane: ControlPlane,
}

impl E2e {
    /// Stops metrics-registry gracefully, then the cluster (pods deleted through the API).
    pub async fn stop(mut self) {
        if let Registry::InProcess {
            server, shutdown, ..
        } = &mut self.registry
        {
            if let Some(shutdown) = shutdown.take() {
                let _ = shutdown.send(());
            }
            let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
        }
        let E2e { control_plane, .. } = self;
        control_plane.shutdown().await;
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Registry::InProcess {
            server, shutdown, ..
        } = self
        {
            if let Some(shutdown) = shutdown.take() {
                let _ = shutdown.send(());
            }
            server.abort();
        }
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

pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/metrics-registry")
}

/// Runs the pinned helm against `kubeconfig`; returns stdout, or an error with stderr.
pub async fn helm(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<String> {
    let bin_dir = crate::control_plane::binary_dir().await?;
    let output = tokio::process::Command::new(bin_dir.join("helm"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env(
            "HELM_CACHE_HOME",
            std::env::temp_dir().join("metrics-registry-helm/cache"),
        )
        .env(
            "HELM_CONFIG_HOME",
            std::env::temp_dir().join("metrics-registry-helm/config"),
        )
        .env(
            "HELM_DATA_HOME",
            std::env::temp_dir().join("metrics-registry-helm/data"),
        )
        .output()
        .await
        .context("running helm")?;
    if !output.status.success() {
        bail!(
            "helm {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// Control plane with a node, a Prometheus the pods can reach, and the exporter.
async fn boot(
    publish: impl FnOnce(&Exporter),
    images: Vec<PathBuf>,
) -> anyhow::Result<(ControlPlane, Exporter, Prometheus, TempDir)> {
    crate::init_test_logging();
    metrics_registry::install_crypto_provider();
    let control_plane = ControlPlane::start(ControlPlaneOptions {
        hpa_sync_period: Duration::from_secs(1),
        node: true,
        images,
        ..Default::default()
    })
    .await?;
    let exporter = Exporter::start().await?;
    publish(&exporter);
    let node_ip = control_plane.network().expect("a node's network").node_ip;
    let (prometheus, rules) = crate::stack::scraping_on(&exporter, "up", node_ip).await?;
    Ok((control_plane, exporter, prometheus, rules))
}

/// The three APIServices Available; returns the `caBundle` they trust.
pub async fn wait_apiservices_available(
    admin: &kube::Client,
    timeout: Duration,
) -> anyhow::Result<String> {
    let apiservices: Api<APIService> = Api::all(admin.clone());
    let deadline = Instant::now() + timeout;
    loop {
        let mut available = Vec::new();
        let mut states = Vec::new();
        for (group, version, _) in API_VERSIONS {
            let name = format!("{version}.{group}");
            let service = apiservices.get_opt(&name).await?;
            let is_available = service
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c.type_ == "Available" && c.status == "True")
                });
            states.push(format!(
                "{name}: {:?}",
                service.as_ref().and_then(|s| s.status.clone())
            ));
            if is_available {
                available.push(service.expect("exists"));
            }
        }
        if available.len() == API_VERSIONS.len() {
            return Ok(available[0]
                .spec
                .as_ref()
                .and_then(|s| s.ca_bundle.as_ref())
                .map(|b| String::from_utf8_lossy(&b.0).into_owned())
                .unwrap_or_default());
        }
        if Instant::now() > deadline {
            bail!("APIServices not Available within {timeout:?}: {states:#?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Polls a SelfSubjectAccessReview of `config`'s user until `verb` on `resource` is allowed.
async fn wait_until_allowed(
    config: &kube::Config,
    verb: &str,
    group: &str,
    resource: &str,
) -> anyhow::Result<()> {
    use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
    let client = kube::Client::try_from(config.clone())?;
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client);
    let review: SelfSubjectAccessReview = serde_json::from_value(serde_json::json!({
        "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource}}
    }))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let answer = reviews.create(&Default::default(), &review).await?;
        if answer.status.is_some_and(|s| s.allowed) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{verb} {resource}.{group} still not allowed after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn raw_client(control_plane: &ControlPlane) -> anyhow::Result<kube::Client> {
    Ok(KubeClients::from_config(control_plane.admin_config().await?, RAW_TIMEOUT)?.request)
}

impl E2e {
    /// metrics-registry in this process, behind a Service whose EndpointSlice points at it;
    /// the chart's RBAC (and its ServiceAccount's identity) apply.
    pub async fn start(publish: impl FnOnce(&Exporter)) -> anyhow::Result<E2e> {
        let (control_plane, exporter, prometheus, rules) = boot(publish, Vec::new()).await?;
        let admin = control_plane.admin_client().await?;
        crate::cluster_mode::install_crds(&admin).await?;
        // The chart's RBAC; the server itself runs here, not as the chart's Deployment.
        let template = helm(
            control_plane.kubeconfig_path(),
            &[
                "template",
                RELEASE,
                &chart_dir().display().to_string(),
                "--namespace",
                NAMESPACE,
            ],
        )
        .await?;
        let mut setup =
            String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: metrics-registry}\n");
        for document in template.split("\n---") {
            let rbac = [
                "ServiceAccount",
                "ClusterRole",
                "ClusterRoleBinding",
                "Role",
                "RoleBinding",
            ]
            .iter()
            .any(|kind| document.contains(&format!("\nkind: {kind}\n")));
            let hook = document.contains("helm.sh/hook");
            if rbac && !hook {
                setup.push_str("\n---\n");
                setup.push_str(document);
            }
        }
        // Not in the chart (it manages the APIServices itself): what a server that
        // registers them (`--register-apiservices`) needs on top.
        setup.push_str(&format!(
            "\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: metrics-registry-self-registration}}\nrules: [{{apiGroups: [apiregistration.k8s.io], resources: [apiservices], verbs: [get, list, create, update, patch]}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: metrics-registry-self-registration}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: metrics-registry-self-registration}}\nsubjects: [{{kind: ServiceAccount, name: metrics-registry, namespace: {NAMESPACE}}}]\n"
        ));
        apply_yaml(&admin, &setup).await?;

        let node_ip = control_plane.network().expect("network").node_ip;
        let listener = std::net::TcpListener::bind((node_ip, 0))?;
        let registry_addr = listener.local_addr()?;
        apply_yaml(
            &admin,
            &format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: metrics-registry, namespace: {NAMESPACE}}}\nspec:\n  ports: [{{name: https, port: 443, targetPort: {port}}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata:\n  name: metrics-registry-in-test\n  namespace: {NAMESPACE}\n  labels: {{kubernetes.io/service-name: metrics-registry}}\naddressType: IPv4\nports: [{{name: https, port: {port}, protocol: TCP}}]\nendpoints: [{{addresses: [\"{ip}\"], conditions: {{ready: true}}}}]\n",
                port = registry_addr.port(),
                ip = registry_addr.ip(),
            ),
        )
        .await?;
        let identity = control_plane
            .config_for(
                IDENTITY,
                &[
                    "system:serviceaccounts",
                    "system:serviceaccounts:metrics-registry",
                ],
            )
            .await?;
        // RBAC takes effect a moment after it is written; starting before would only fill
        // the log with refused watches and grow their retry delays.
        wait_until_allowed(&identity, "watch", "metrics-registry.io", "servicemetrics").await?;
        let mode = ClusterMode {
            kube: KubeClients::from_config(identity, Duration::from_secs(10))?,
            prometheus: PrometheusConfig::new(prometheus.url()),
            queries: QueryOptions::default(),
            options: CompileOptions::default(),
            external_refresh: Duration::from_secs(1),
            rules_dir: Some(rules.path().to_path_buf()),
            prometheus_rules: None,
            tls_files: None,
            tls_hosts: vec![],
            apiservice: Some(ServiceTarget {
                namespace: NAMESPACE.into(),
                name: "metrics-registry".into(),
                port: 443,
            }),
            // No metrics-server here: metrics.k8s.io is free to take.
            register_resource_metrics: true,
            leader_election: None,
            limits: ServeLimits {
                shutdown_grace: Duration::from_secs(2),
                ..ServeLimits::default()
            },
            shutdown_delay: Duration::ZERO,
            auth_cache: Default::default(),
            secrets_namespace: "metrics-registry".into(),
        };
        let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
        let mut server = tokio::spawn(mode.serve(listener, async move {
            let _ = signal.await;
        }));
        let serving_ca = tokio::select! {
            ca = wait_apiservices_available(&admin, Duration::from_secs(60)) => ca.map_err(|e| {
                anyhow::anyhow!("{e:#}\n{}", control_plane.log_tail("kube-apiserver", 30))
            })?,
            stopped = &mut server => bail!("metrics-registry stopped: {stopped:?}"),
        };
        let raw = raw_client(&control_plane).await?;
        Ok(E2e {
            registry: Registry::InProcess {
                addr: registry_addr,
                server,
                shutdown: Some(shutdown),
            },
            admin,
            raw,
            exporter: Arc::new(exporter),
            prometheus,
            serving_ca,
            install_took: None,
            rules,
            control_plane,
        })
    }

    /// `helm install` of the chart with the image built by `scripts/build-image.sh`,
    /// Prometheus' address and `values` (`--set NAME=VALUE` each); waits for the
    /// Deployment and the APIServices.
    pub async fn install(
        publish: impl FnOnce(&Exporter),
        values: &[(&str, &str)],
    ) -> anyhow::Result<E2e> {
        let image = product_image().await?;
        let (control_plane, exporter, prometheus, rules) =
            boot(publish, vec![image.clone()]).await?;
        let admin = control_plane.admin_client().await?;
        let raw = raw_client(&control_plane).await?;
        let mut e2e = E2e {
            registry: Registry::Chart,
            admin,
            raw,
            exporter: Arc::new(exporter),
            prometheus,
            serving_ca: String::new(),
            install_took: None,
            rules,
            control_plane,
        };
        let started = Instant::now();
        let mut args = vec!["install".to_string(), RELEASE.to_string()];
        args.extend(e2e.chart_args(values));
        args.push("--create-namespace".into());
        e2e.helm(&args.iter().map(String::as_str).collect::<Vec<_>>())
            .await
            .map_err(|e| anyhow::anyhow!("{e:#}\n{}", e2e.pod_diagnostics_blocking()))?;
        e2e.serving_ca = wait_apiservices_available(&e2e.admin, Duration::from_secs(60)).await?;
        e2e.install_took = Some(started.elapsed());
        Ok(e2e)
    }

    /// `--namespace`, the chart, the image and Prometheus, `values`, and `--wait`: the
    /// arguments `helm install` and `helm upgrade` share.
    pub fn chart_args(&self, values: &[(&str, &str)]) -> Vec<String> {
        let version = env!("CARGO_PKG_VERSION");
        let mut args = vec![
            chart_dir().display().to_string(),
            "--namespace".into(),
            NAMESPACE.into(),
            "--set".into(),
            format!("image.tag={version}"),
            "--set".into(),
            "image.pullPolicy=Never".into(),
            "--set".into(),
            format!("prometheus.url={}", self.prometheus.url()),
        ];
        for (name, value) in values {
            args.push("--set".into());
            args.push(format!("{name}={value}"));
        }
        args.extend(["--wait".into(), "--timeout".into(), "180s".into()]);
        args
    }

    pub async fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        helm(self.control_plane.kubeconfig_path(), args).await
    }

    /// Pods of `namespace` with their state and last log lines, and the kubelet's log
    /// tail: what a failure message needs.
    pub async fn diagnostics(&self, namespace: &str) -> String {
        let pods: Api<Pod> = Api::namespaced(self.admin.clone(), namespace);
        let mut out = String::new();
        for pod in pods
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
        {
            let name = pod.metadata.name.clone().unwrap_or_default();
            let status = pod.status.clone().unwrap_or_default();
            out.push_str(&format!(
                "--- pod {name}: phase {:?}, containers {}\n",
                status.phase,
                serde_json::to_string(&status.container_statuses).unwrap_or_default()
            ));
            let logs = pods
                .logs(
                    &name,
                    &kube::api::LogParams {
                        tail_lines: Some(20),
                        ..Default::default()
                    },
                )
                .await
                .unwrap_or_else(|e| format!("(no logs: {e})"));
            out.push_str(&logs);
            out.push('\n');
        }
        out.push_str(&self.pod_diagnostics_blocking());
        out
    }

    /// Pod phases and the kubelet's log tail, for failure messages.
    fn pod_diagnostics_blocking(&self) -> String {
        match self.control_plane.node() {
            Some(node) => format!("--- kubelet ---\n{}", node.log_tail("kubelet", 30)),
            None => String::new(),
        }
    }

    pub async fn apply_yaml(&self, text: &str) -> anyhow::Result<()> {
        apply_yaml(&self.admin, text).await
    }

    /// Namespace + Deployment (label app=<name>) + Service of the same name.
    pub fn workload(&self, namespace: &str, name: &str, replicas: i32) -> String {
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {namespace}}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec: {{terminationGracePeriodSeconds: 2, containers: [{{name: app, image: {WORKLOAD_IMAGE}, imagePullPolicy: Never}}]}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {namespace}}}\nspec: {{selector: {{app: {name}}}, ports: [{{port: 80}}]}}\n"
        )
    }

    /// GET through kube-apiserver (and so through the aggregator) as admin.
    pub async fn get_raw(&self, path: &str) -> anyhow::Result<serde_json::Value> {
        let request = http::Request::get(path).body(Vec::new())?;
        Ok(self.raw.request::<serde_json::Value>(request).await?)
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
        let resources = metrics_registry::sources::watch::api_resources();
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

    /// The admin client that fails fast (read timeout, no retries).
    pub fn raw_client(&self) -> kube::Client {
        self.raw.clone()
    }

    /// HTTPS straight to one server at `addr`, trusting the serving CA and checking the
    /// name the aggregator uses.
    pub fn direct_client_to(&self, addr: SocketAddr) -> reqwest::Client {
        let ca = reqwest::Certificate::from_pem(self.serving_ca.as_bytes()).expect("serving CA");
        reqwest::Client::builder()
            .tls_certs_only([ca])
            .resolve(SERVICE_HOST, addr)
            .timeout(Duration::from_secs(5))
            .build()
            .expect("client")
    }

    /// Where metrics-registry listens: this process's server, or each Ready pod of the chart.
    pub async fn server_addrs(&self) -> Vec<SocketAddr> {
        match &self.registry {
            Registry::InProcess { addr, .. } => vec![*addr],
            Registry::Chart => {
                let pods: Api<Pod> = Api::namespaced(self.admin.clone(), NAMESPACE);
                let list = pods
                    .list(&ListParams::default().labels("app.kubernetes.io/name=metrics-registry"))
                    .await
                    .expect("listing metrics-registry pods");
                list.items
                    .iter()
                    .filter(|pod| pod_ready(pod))
                    .filter_map(|pod| pod.status.as_ref()?.pod_ip.as_ref()?.parse().ok())
                    .map(|ip| SocketAddr::new(ip, 6443))
                    .collect()
            }
        }
    }

    /// Status code of a request straight to metrics-registry (bypassing kube-apiserver).
    pub async fn direct_status(
        &self,
        path: &str,
        identity: Option<(String, String)>,
        headers: &[(&str, &str)],
    ) -> u16 {
        let (client, base) = self.direct_client(identity).await;
        let mut request = client.get(format!("{base}{path}"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        match request.send().await {
            Ok(response) => response.status().as_u16(),
            // A handshake refused over the certificate never reached the API: as unauthenticated as it gets.
            Err(_) => 401,
        }
    }

    /// A client straight to (the first) metrics-registry server, presenting `identity`
    /// (certificate and key PEM) if given, and the base URL to use with it; owned, so it
    /// can outlive a borrow of this stack.
    pub async fn direct_client(
        &self,
        identity: Option<(String, String)>,
    ) -> (reqwest::Client, String) {
        let ca = reqwest::Certificate::from_pem(self.serving_ca.as_bytes()).expect("serving CA");
        let mut builder = reqwest::Client::builder()
            .tls_certs_only([ca])
            .timeout(Duration::from_secs(10));
        if let Some((cert, key)) = identity {
            builder = builder.identity(
                reqwest::Identity::from_pem(format!("{cert}{key}").as_bytes()).expect("identity"),
            );
        }
        let addr = self.server_addrs().await[0];
        // Dialled by address, checked against the name the aggregator uses.
        let client = builder.resolve(SERVICE_HOST, addr).build().expect("client");
        (client, format!("https://{SERVICE_HOST}:{}", addr.port()))
    }

    /// A client certificate from a CA nobody trusts.
    pub fn foreign_client_cert(&self) -> (String, String) {
        crate::control_plane::foreign_client_cert("front-proxy-client").expect("foreign cert")
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

pub fn pod_ready(pod: &Pod) -> bool {
    pod.metadata.deletion_timestamp.is_none()
        && pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
