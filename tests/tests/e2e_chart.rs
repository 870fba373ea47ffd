//! The chart as users install it: `helm install` of `charts/metrics-registry` with the
//! image `scripts/build-image.sh` builds, on a real node, behind the real aggregator,
//! read by the real HPA controller. One cluster, phases in order: install and seed
//! 000–002, a rolling upgrade under HPA load, the leader killed, `helm uninstall`.

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams};
use kube::discovery::ApiResource;
use metrics_registry_tests::e2e::{E2e, NAMESPACE, RELEASE, pod_ready};
use metrics_registry_tests::scenarios::{KONG_PATH, events, kong_latency, set_latency};
use metrics_registry_tests::third_party::prometheus_rule_crd;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Short enough for a test to wait out, long enough for a loaded 2-core machine.
const LEASE: Duration = Duration::from_secs(6);
const RETRY: Duration = Duration::from_secs(1);
const INSTANCE: &str = "app.kubernetes.io/instance=metrics-registry";

fn chart_values() -> Vec<(&'static str, &'static str)> {
    vec![
        ("leaderElection.leaseDuration", "6s"),
        ("leaderElection.renewDeadline", "4s"),
        ("leaderElection.retryPeriod", "1s"),
    ]
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real node: run through scripts/test.sh (network namespace, containerd, kubelet)"]
async fn chart_install_upgrade_failover_uninstall() {
    let started = Instant::now();
    let e2e = E2e::install(|exporter| set_latency(exporter, 100.0), &chart_values())
        .await
        .expect("helm install brings metrics-registry up");
    println!(
        "stack and chart up in {:.1}s; helm install → APIServices Available in {:.1}s",
        started.elapsed().as_secs_f64(),
        e2e.install_took.unwrap().as_secs_f64()
    );
    installed_as_specified(&e2e).await;
    seed_kong_through_the_chart(&e2e).await;
    rolling_upgrade_loses_no_fetch(&e2e).await;
    leader_killed(&e2e).await;
    uninstall_leaves_nothing(&e2e).await;
    e2e.stop().await;
}

async fn metrics_registry_pods(e2e: &E2e) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(e2e.admin.clone(), NAMESPACE);
    pods.list(&ListParams::default().labels("app.kubernetes.io/name=metrics-registry"))
        .await
        .expect("listing pods")
        .items
}

/// Host processes of a pod's containers (their cgroups name the pod's UID).
fn pod_processes(pod: &Pod) -> Vec<u32> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let marker = format!("pod{uid}");
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            cgroup.contains(&marker)
                && String::from_utf8_lossy(&cmdline).contains("metrics-registry")
        })
        .collect()
}

/// The pod of a holder identity (`<pod>_<per-process nonce>`).
fn holder_pod(holder: &str) -> &str {
    holder.rsplit_once('_').map_or(holder, |(pod, _)| pod)
}

async fn lease_holder(e2e: &E2e) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(e2e.admin.clone(), NAMESPACE);
    leases
        .get_opt(RELEASE)
        .await
        .ok()
        .flatten()
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty())
}

/// Two replicas from the built image, non-root, one of them holding the Lease.
async fn installed_as_specified(e2e: &E2e) {
    let pods = metrics_registry_pods(e2e).await;
    assert_eq!(pods.len(), 2, "two replicas by default");
    for pod in &pods {
        assert!(pod_ready(pod), "{:?}", pod.status);
        let container = &pod.spec.as_ref().unwrap().containers[0];
        assert_eq!(
            container.image.as_deref(),
            Some(format!("localhost/metrics-registry:{}", env!("CARGO_PKG_VERSION")).as_str())
        );
        let security = container.security_context.as_ref().unwrap();
        assert_eq!(security.read_only_root_filesystem, Some(true));
        let processes = pod_processes(pod);
        assert!(
            !processes.is_empty(),
            "the container's process runs on this node"
        );
        for pid in processes {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
            assert!(
                uid.split_whitespace().skip(1).all(|id| id == "65532"),
                "runs as the image's non-root user: {uid}"
            );
        }
    }
    let names: BTreeSet<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let deadline = Instant::now() + LEASE * 2;
    loop {
        if let Some(holder) = lease_holder(e2e).await {
            assert!(
                names.contains(holder_pod(&holder)),
                "holder {holder} is one of {names:?}"
            );
            println!("install: 2 replicas Ready as uid 65532; {holder} holds the Lease");
            break;
        }
        assert!(Instant::now() < deadline, "no replica took the Lease");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn seed_kong_through_the_chart(e2e: &E2e) {
    let run = kong_latency(e2e, false).await.unwrap_or_else(|e| {
        panic!("seed 000–002 through the chart: {e:#}");
    });
    assert!(
        run.events.iter().any(|m| m.contains("above target")),
        "{:?}",
        run.events
    );
    assert!(
        run.events
            .iter()
            .any(|m| m.contains("All metrics below target")),
        "{:?}",
        run.events
    );
    println!(
        "seed 000–002 through the chart: served {:?} after apply; 1→10 in {:.1}s; 10→1 in {:.1}s",
        run.served_after,
        run.scale_up.as_secs_f64(),
        run.scale_down.as_secs_f64()
    );
}

/// Watches what the HPA and a client see while something happens to the servers.
struct Watch {
    fetches: Arc<AtomicUsize>,
    failures: Arc<AtomicUsize>,
    first_failure: Arc<std::sync::Mutex<Option<String>>>,
    scaling_inactive: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Watch {
    /// Fetches seed 000's metric through the aggregator every 100 ms (as an HPA would,
    /// ten times as often) and reads the HPA's ScalingActive condition every 200 ms.
    fn start(e2e: &E2e) -> Watch {
        let watch = Watch {
            fetches: Arc::default(),
            failures: Arc::default(),
            first_failure: Arc::default(),
            scaling_inactive: Arc::default(),
            stop: Arc::default(),
            tasks: Vec::new(),
        };
        let raw = e2e.raw_client();
        let (fetches, failures, first, stop) = (
            watch.fetches.clone(),
            watch.failures.clone(),
            watch.first_failure.clone(),
            watch.stop.clone(),
        );
        let fetcher = tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let request = http::Request::get(KONG_PATH).body(Vec::new()).unwrap();
                let answer = raw.request::<serde_json::Value>(request).await;
                fetches.fetch_add(1, Ordering::Relaxed);
                let ok = matches!(&answer, Ok(body) if body["items"][0]["value"].is_string());
                if !ok {
                    failures.fetch_add(1, Ordering::Relaxed);
                    first.lock().unwrap().get_or_insert(format!("{answer:?}"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        let hpas: Api<HorizontalPodAutoscaler> = Api::namespaced(e2e.admin.clone(), "kong");
        let (inactive, stop) = (watch.scaling_inactive.clone(), watch.stop.clone());
        let condition = tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(hpa) = hpas.get("command").await {
                    let conditions = hpa.status.and_then(|s| s.conditions).unwrap_or_default();
                    if conditions
                        .iter()
                        .any(|c| c.type_ == "ScalingActive" && c.status == "False")
                    {
                        inactive.store(true, Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
        Watch {
            tasks: vec![fetcher, condition],
            ..watch
        }
    }

    async fn finish(self) -> (usize, usize, Option<String>, bool) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
        (
            self.fetches.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
            self.first_failure.lock().unwrap().clone(),
            self.scaling_inactive.load(Ordering::Relaxed),
        )
    }
}

/// `helm upgrade` with a changed value replaces both pods while the HPA polls every
/// second: not one fetch may fail.
async fn rolling_upgrade_loses_no_fetch(e2e: &E2e) {
    let failed_before = events(e2e, "kong", "command", "FailedGetObjectMetric")
        .await
        .len();
    let ca_before = e2e.serving_ca.clone();
    let old: BTreeSet<String> = metrics_registry_pods(e2e)
        .await
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    let watch = Watch::start(e2e);
    // Polling has begun before the upgrade does.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let mut values = chart_values();
    values.push(("logLevel", "debug"));
    let mut args = vec!["upgrade".to_string(), RELEASE.to_string()];
    args.extend(e2e.chart_args(&values));
    e2e.helm(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .await
        .expect("helm upgrade");
    // --wait returns once the new pods are Ready; the old ones may still be draining.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let pods = metrics_registry_pods(e2e).await;
        let names: BTreeSet<String> = pods
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        if names.is_disjoint(&old) && pods.len() == 2 && pods.iter().all(pod_ready) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rollout did not finish: {names:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rolled = started.elapsed();
    // The HPA's next polls after the last old pod is gone count too.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (fetches, failures, first, inactive) = watch.finish().await;
    let failed_after = events(e2e, "kong", "command", "FailedGetObjectMetric").await;
    println!(
        "rolling upgrade: both pods replaced in {:.1}s; {failures} of {fetches} fetches failed; \
         FailedGetObjectMetric events {}; ScalingActive False seen: {inactive}",
        rolled.as_secs_f64(),
        failed_after.len() - failed_before
    );
    assert_eq!(failures, 0, "first failure: {first:?}");
    assert_eq!(failed_after.len(), failed_before, "{failed_after:?}");
    assert!(!inactive, "the HPA's ScalingActive turned False");
    let ca_after =
        metrics_registry_tests::e2e::wait_apiservices_available(&e2e.admin, Duration::from_secs(5))
            .await
            .unwrap();
    assert_eq!(
        ca_after, ca_before,
        "the upgrade kept the serving certificate's CA"
    );
}

fn prometheus_rule_api(e2e: &E2e) -> Api<DynamicObject> {
    Api::all_with(
        e2e.admin.clone(),
        &ApiResource {
            group: "monitoring.coreos.com".into(),
            version: "v1".into(),
            api_version: "monitoring.coreos.com/v1".into(),
            kind: "PrometheusRule".into(),
            plural: "prometheusrules".into(),
        },
    )
}

async fn prometheus_rule_names(e2e: &E2e) -> BTreeSet<String> {
    prometheus_rule_api(e2e)
        .list(&ListParams::default().labels("app.kubernetes.io/managed-by=metrics-registry"))
        .await
        .map(|l| {
            l.items
                .into_iter()
                .filter_map(|o| o.metadata.name)
                .collect()
        })
        .unwrap_or_default()
}

/// SIGKILL of the leader's process: it cannot release the Lease, so the other replica
/// takes over once the lease has not been renewed for its duration, and writes what
/// changed meanwhile; it never stopped serving.
async fn leader_killed(e2e: &E2e) {
    let crd = prometheus_rule_crd().await.unwrap();
    e2e.apply_yaml(&crd).await.unwrap();
    e2e.apply_yaml("apiVersion: v1\nkind: Namespace\nmetadata: {name: monitoring}\n")
        .await
        .unwrap();
    e2e.apply_yaml(
        "apiVersion: metrics-registry.io/v1beta1\nkind: CustomPrometheusRules\nmetadata: {name: before-kill}\nspec:\n  groups:\n  - name: a\n    rules: [{record: kube_adapter_metric_a, expr: 'sum(up)'}]\n",
    )
    .await
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !prometheus_rule_names(e2e)
        .await
        .contains("metrics-registry-before-kill")
    {
        assert!(
            Instant::now() < deadline,
            "the leader wrote no PrometheusRule"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let holder = lease_holder(e2e).await.expect("a leader");
    let pods = metrics_registry_pods(e2e).await;
    let leader = pods
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(holder_pod(&holder)))
        .unwrap();
    let survivor = pods
        .iter()
        .find(|p| p.metadata.name.as_deref() != Some(holder_pod(&holder)))
        .unwrap()
        .clone();
    let survivor_ip: std::net::IpAddr = survivor
        .status
        .as_ref()
        .unwrap()
        .pod_ip
        .as_ref()
        .unwrap()
        .parse()
        .unwrap();
    let direct = e2e.direct_client_to(std::net::SocketAddr::new(survivor_ip, 6443));

    let watch = Watch::start(e2e);
    let processes = pod_processes(leader);
    assert!(!processes.is_empty());
    let killed_at = Instant::now();
    for pid in &processes {
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
    }
    // Changes made right after the kill: only a leader may write them.
    e2e.apply_yaml(
        "apiVersion: metrics-registry.io/v1beta1\nkind: CustomPrometheusRules\nmetadata: {name: after-kill}\nspec:\n  groups:\n  - name: b\n    rules: [{record: kube_adapter_metric_b, expr: 'sum(up)'}]\n---\napiVersion: metrics-registry.io/v1beta1\nkind: ServiceMetric\nmetadata: {name: broken-after-kill, namespace: kong}\nspec: {query: 'sum(rate(x{<<.LabelMatchers>>}[1m]) by (<<.GroupBy>>'}\n",
    )
    .await
    .unwrap();
    let mut direct_failures = 0;
    let mut direct_fetches = 0;
    let (mut took_over, mut status_written, mut rule_written) = (None, None, None);
    let mut new_holder = String::new();
    while took_over.is_none() || status_written.is_none() || rule_written.is_none() {
        assert!(
            killed_at.elapsed() < LEASE * 4,
            "no takeover: holder {:?}, status {status_written:?}, rule {rule_written:?}",
            lease_holder(e2e).await
        );
        let ok = direct
            .get(format!(
                "https://{}:6443{KONG_PATH}",
                metrics_registry_tests::e2e::SERVICE_HOST
            ))
            .header("X-Remote-User", "ignored-without-front-proxy-cert")
            .send()
            .await
            .map(|r| r.status().as_u16());
        direct_fetches += 1;
        // Without credentials a live server says 401; a dead one does not answer.
        if !matches!(ok, Ok(401)) {
            direct_failures += 1;
        }
        // The survivor, or the killed pod's restarted container (a new holder identity).
        if took_over.is_none()
            && let Some(now) = lease_holder(e2e).await
            && now != holder
        {
            took_over = Some(killed_at.elapsed());
            new_holder = now;
        }
        if status_written.is_none() {
            let status = e2e
                .status("ServiceMetric", Some("kong"), "broken-after-kill")
                .await;
            if status["conditions"][0]["reason"] == "InvalidQuery" {
                status_written = Some(killed_at.elapsed());
            }
        }
        if rule_written.is_none()
            && prometheus_rule_names(e2e)
                .await
                .contains("metrics-registry-after-kill")
        {
            rule_written = Some(killed_at.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (fetches, failures, first, _) = watch.finish().await;
    let bound = LEASE + RETRY + Duration::from_secs(3);
    println!(
        "leader killed: {new_holder} took the Lease after {:.1}s, wrote the new status after {:.1}s and the \
         PrometheusRule after {:.1}s (lease {LEASE:?}); survivor answered {} of {direct_fetches} \
         direct requests; through the aggregator {failures} of {fetches} fetches failed \
         (first: {first:?})",
        took_over.unwrap().as_secs_f64(),
        status_written.unwrap().as_secs_f64(),
        rule_written.unwrap().as_secs_f64(),
        direct_fetches - direct_failures,
    );
    assert_eq!(direct_failures, 0, "the surviving replica kept serving");
    assert!(
        took_over.unwrap() <= bound,
        "takeover within the lease duration"
    );
    assert!(status_written.unwrap() <= bound);
    assert!(rule_written.unwrap() <= bound);
    assert!(
        status_written.unwrap() >= took_over.unwrap() - RETRY,
        "nobody writes before a live replica holds the Lease"
    );
    e2e.delete("ServiceMetric", Some("kong"), "broken-after-kill")
        .await
        .unwrap();
}

async fn uninstall_leaves_nothing(e2e: &E2e) {
    let started = Instant::now();
    if let Err(error) = e2e
        .helm(&[
            "uninstall",
            RELEASE,
            "--namespace",
            NAMESPACE,
            "--wait",
            "--timeout",
            "180s",
        ])
        .await
    {
        panic!(
            "helm uninstall: {error:#}\n{}",
            e2e.diagnostics(NAMESPACE).await
        );
    }
    println!(
        "uninstall: helm uninstall took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let apiservices: Api<APIService> = Api::all(e2e.admin.clone());
    let left: Vec<String> = apiservices
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .filter(|n| n.ends_with("metrics.k8s.io"))
        .collect();
    assert!(left.is_empty(), "APIServices left: {left:?}");
    let by_label = ListParams::default().labels(INSTANCE);
    let cluster_roles: Api<ClusterRole> = Api::all(e2e.admin.clone());
    let bindings: Api<ClusterRoleBinding> = Api::all(e2e.admin.clone());
    let roles: Api<Role> = Api::all(e2e.admin.clone());
    let role_bindings: Api<RoleBinding> = Api::all(e2e.admin.clone());
    assert!(
        cluster_roles
            .list(&by_label)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(bindings.list(&by_label).await.unwrap().items.is_empty());
    assert!(roles.list(&by_label).await.unwrap().items.is_empty());
    assert!(
        role_bindings
            .list(&by_label)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let rules = prometheus_rule_names(e2e).await;
    assert!(rules.is_empty(), "PrometheusRules left: {rules:?}");
    let leases: Api<Lease> = Api::namespaced(e2e.admin.clone(), NAMESPACE);
    assert!(
        leases.get_opt(RELEASE).await.unwrap().is_none(),
        "the Lease is gone"
    );
    assert!(metrics_registry_pods(e2e).await.is_empty(), "no pod left");

    // A stale APIService would make namespace deletion hang on discovery.
    let namespaces: Api<Namespace> = Api::all(e2e.admin.clone());
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "after-uninstall"}}))
            .unwrap();
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .unwrap();
    let started = Instant::now();
    namespaces
        .delete("after-uninstall", &DeleteParams::default())
        .await
        .unwrap();
    while namespaces
        .get_opt("after-uninstall")
        .await
        .unwrap()
        .is_some()
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "namespace deletion hangs"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "uninstall: no APIService, RBAC object, PrometheusRule, Lease or pod left; a namespace was deleted in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
