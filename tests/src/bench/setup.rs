//! What the benchmark puts in place: objects in the cluster, series on the exporter,
//! definitions for metrics-registry and the same rules for prometheus-adapter.

use anyhow::Context as _;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::discovery::ApiResource;
use serde_json::json;

use crate::exporter::Exporter;

pub const NAMESPACE: &str = "bench";
/// Pods labelled for the Pods loads: `app=a10` (10 pods), `a100`, `a1000`.
pub const POD_GROUPS: [usize; 3] = [10, 100, 1000];
pub const EXTERNAL_QUEUES: usize = 50;
/// The query both servers (and the floor) send for services, and for pods.
pub const SERVICE_SERIES: &str = "bench_latency_ms";
pub const POD_SERIES: &str = "bench_rps";

/// Sizes of a run.
#[derive(Clone, Copy, Debug)]
pub struct Scale {
    pub pods: usize,
    pub services: usize,
    pub definitions: usize,
}

/// `app` label of pod `i`.
pub fn pod_group(i: usize) -> &'static str {
    let mut start = 0;
    for (size, label) in POD_GROUPS.iter().zip(["a10", "a100", "a1000"]) {
        if i < start + size {
            return label;
        }
        start += size;
    }
    "other"
}

/// Pods that have series (those in a group).
pub fn pods_with_series(scale: Scale) -> usize {
    POD_GROUPS.iter().sum::<usize>().min(scale.pods)
}

/// Service `sI` has latency I, pod `pI` I requests per second, queue `qI` depth I.
pub fn publish(exporter: &Exporter, scale: Scale) {
    for i in 0..scale.services {
        exporter.set(
            SERVICE_SERIES,
            &[("namespace", NAMESPACE), ("service", &format!("s{i}"))],
            i as f64,
        );
    }
    for i in 0..pods_with_series(scale) {
        exporter.set(
            POD_SERIES,
            &[("namespace", NAMESPACE), ("pod", &format!("p{i}"))],
            i as f64,
        );
    }
    for i in 0..EXTERNAL_QUEUES {
        exporter.set(
            "kube_adapter_metric_bench_queue",
            &[("queue", &format!("q{i}"))],
            i as f64,
        );
    }
}

async fn create_all<T, F>(api: &Api<T>, count: usize, make: F) -> anyhow::Result<()>
where
    T: Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
    F: Fn(usize) -> T,
{
    futures::stream::iter((0..count).map(|i| {
        let object = make(i);
        async move { api.create(&PostParams::default(), &object).await.map(drop) }
    }))
    .buffer_unordered(32)
    .try_collect::<Vec<()>>()
    .await
    .map(drop)
    .context("creating objects")
}

/// The namespace, its pods and services (headless: no cluster IPs to allocate).
pub async fn objects(admin: &kube::Client, scale: Scale) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(admin.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?,
        )
        .await?;
    let pods: Api<Pod> = Api::namespaced(admin.clone(), NAMESPACE);
    create_all(&pods, scale.pods, |i| {
        serde_json::from_value(json!({
            "metadata": {"name": format!("p{i}"), "labels": {"app": pod_group(i)}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }))
        .expect("a pod")
    })
    .await?;
    let services: Api<Service> = Api::namespaced(admin.clone(), NAMESPACE);
    create_all(&services, scale.services, |i| {
        serde_json::from_value(json!({
            "metadata": {"name": format!("s{i}")},
            "spec": {"clusterIP": "None", "ports": [{"port": 80}]},
        }))
        .expect("a service")
    })
    .await
}

/// A ServiceAccount allowed to read both metrics APIs and `/metrics`, and a token of it:
/// the one caller of both servers. The account is `hpa`, bound by `bench-metrics-reader`.
pub async fn caller_token(admin: &kube::Client) -> anyhow::Result<String> {
    let roles: Api<ClusterRole> = Api::all(admin.clone());
    roles
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": READER_ROLE},
                "rules": [
                    {"apiGroups": ["custom.metrics.k8s.io", "external.metrics.k8s.io"],
                     "resources": ["*"], "verbs": ["get", "list"]},
                    {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
                ],
            }))?,
        )
        .await?;
    reader_token(admin, "hpa", READER_ROLE).await
}

/// The ClusterRole [`caller_token`] creates, and the name of its first binding.
pub const READER_ROLE: &str = "bench-metrics-reader";

/// One more caller like [`caller_token`]'s (whose role must exist): ServiceAccount
/// `account` bound to the reader role by a ClusterRoleBinding named `binding`.
pub async fn reader_token(
    admin: &kube::Client,
    account: &str,
    binding: &str,
) -> anyhow::Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), NAMESPACE);
    accounts
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": account}}))?,
        )
        .await?;
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    bindings
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": binding},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": READER_ROLE},
                "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}],
            }))?,
        )
        .await?;
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(3600),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let answer = accounts
        .create_token_request(account, &PostParams::default(), &request)
        .await?;
    answer
        .status
        .map(|status| status.token)
        .context("the TokenRequest has no token")
}

/// `max by (<<.GroupBy>>) (SERIES{<<.LabelMatchers>>})`, times `factor` when not 1.
pub fn query(series: &str, factor: u32) -> String {
    let base = format!("max by (<<.GroupBy>>) ({series}{{<<.LabelMatchers>>}})");
    if factor == 1 {
        base
    } else {
        format!("{factor} * {base}")
    }
}

fn definition(kind: &str, name: &str, metric: &str, query: &str) -> serde_json::Value {
    json!({
        "apiVersion": "metrics-registry.io/v1beta1",
        "kind": kind,
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"metricName": metric, "query": query},
    })
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "metrics-registry.io".into(),
        version: "v1beta1".into(),
        api_version: "metrics-registry.io/v1beta1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Applies (server-side) the `bench-edited` ServiceMetric reading `factor` × the latency.
pub async fn apply_edited(admin: &kube::Client, factor: u32) -> anyhow::Result<()> {
    let api: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        NAMESPACE,
        &resource("ServiceMetric", "servicemetrics"),
    );
    api.patch(
        "bench-edited",
        &PatchParams::apply("bench").force(),
        &Patch::Apply(definition(
            "ServiceMetric",
            "bench-edited",
            "bench_edited",
            &query(SERVICE_SERIES, factor),
        )),
    )
    .await?;
    Ok(())
}

/// `bench_latency` (services), `bench_rps` (pods), `bench_edited`, and fillers up to
/// `scale.definitions`.
pub async fn definitions(admin: &kube::Client, scale: Scale) -> anyhow::Result<()> {
    let services: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        NAMESPACE,
        &resource("ServiceMetric", "servicemetrics"),
    );
    let pods: Api<DynamicObject> = Api::namespaced_with(
        admin.clone(),
        NAMESPACE,
        &resource("PodMetric", "podmetrics"),
    );
    let create = |api: &Api<DynamicObject>, value: serde_json::Value| {
        let api = api.clone();
        async move {
            let object: DynamicObject = serde_json::from_value(value)?;
            api.create(&PostParams::default(), &object).await?;
            anyhow::Ok(())
        }
    };
    create(
        &services,
        definition(
            "ServiceMetric",
            "bench-latency",
            "bench_latency",
            &query(SERVICE_SERIES, 1),
        ),
    )
    .await?;
    create(
        &pods,
        definition("PodMetric", "bench-rps", "bench_rps", &query(POD_SERIES, 1)),
    )
    .await?;
    apply_edited(admin, 1).await?;
    let fillers = scale.definitions.saturating_sub(3);
    futures::stream::iter((0..fillers).map(|i| {
        create(
            &services,
            definition(
                "ServiceMetric",
                &format!("filler-{i}"),
                &format!("filler_{i}"),
                &query(SERVICE_SERIES, 1),
            ),
        )
    }))
    .buffer_unordered(32)
    .try_collect::<Vec<()>>()
    .await?;
    Ok(())
}

/// prometheus-adapter's configuration for the same metrics, the same PromQL, and as many
/// rules as there are definitions.
pub fn adapter_config(scale: Scale) -> String {
    let rule = |series: &str, label: &str, resource: &str, name: &str| {
        format!(
            "- seriesQuery: '{series}{{namespace!=\"\",{label}!=\"\"}}'\n  resources:\n    overrides:\n      namespace: {{resource: namespace}}\n      {label}: {{resource: {resource}}}\n  name: {{matches: \"^{series}$\", as: \"{name}\"}}\n  metricsQuery: 'max by (<<.GroupBy>>) ({series}{{<<.LabelMatchers>>}})'\n"
        )
    };
    let mut config = String::from("rules:\n");
    config.push_str(&rule(SERVICE_SERIES, "service", "service", "bench_latency"));
    config.push_str(&rule(POD_SERIES, "pod", "pod", "bench_rps"));
    for i in 0..scale.definitions.saturating_sub(2) {
        config.push_str(&rule(
            SERVICE_SERIES,
            "service",
            "service",
            &format!("filler_{i}"),
        ));
    }
    config.push_str(
        "externalRules:\n- seriesQuery: '{__name__=\"kube_adapter_metric_bench_queue\"}'\n  resources: {namespaced: false}\n  name: {matches: \"^kube_adapter_metric_(.*)$\", as: \"$1\"}\n  metricsQuery: 'kube_adapter_metric_bench_queue{<<.LabelMatchers>>}'\n",
    );
    config
}
