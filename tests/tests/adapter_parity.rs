//! Integration (needs the prometheus-adapter build, `scripts/build-adapter.sh`, and the
//! control plane, `scripts/build-k8s.sh`): a configuration converted with `metrics-registry
//! convert` serves the values prometheus-adapter v0.12.0 serves for it.
//!
//! One real Prometheus scrapes an exporter this test sets; one real control plane holds the
//! namespaces, Pods and Services the requests name. For each configuration the adapter runs
//! with the original, metrics-registry (cluster mode) with the converted definitions, and
//! both are asked the same paths — Object, Pods with labelSelector, Namespace and External,
//! custom metrics in v1beta1 and v1beta2 — through the front-proxy identity.
//!
//! Values are chosen without a sub-milli part below .5, where the adapter's truncation
//! (`int64(v*1000)`) and metrics-registry's rounding agree; counters carry their scrape
//! timestamp, so `rate` and `irate` are exact and both servers see the same value.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject};
use metrics_registry::check::check;
use metrics_registry::compiler::CompileOptions;
use metrics_registry::convert::discovery::Discovery;
use metrics_registry::convert::output::{self, Document};
use metrics_registry::convert::series::SeriesLister;
use metrics_registry::convert::{ExternalRulesAs, Options, Scope, config, convert, series_queries};
use metrics_registry_tests::adapter::{Adapter, module_source};
use metrics_registry_tests::adapter_examples::{adapter_config_file, examples, repair_quoting};
use metrics_registry_tests::control_plane::{ControlPlane, ControlPlaneOptions};
use metrics_registry_tests::e2e::apply_yaml;
use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::parity::{
    ClusterRegistry, MetricsClient, compare_custom, compare_external, discovery,
};
use metrics_registry_tests::registry::Answer;

const CUSTOM: [&str; 2] = [
    "/apis/custom.metrics.k8s.io/v1beta1",
    "/apis/custom.metrics.k8s.io/v1beta2",
];
const EXTERNAL: &str = "/apis/external.metrics.k8s.io/v1beta1";
/// Resources metrics-registry has definition kinds for; the adapter's other ones
/// (jobs.batch, nodes, custom resources) are reported by convert instead.
const SERVED: [&str; 7] = [
    "pods/",
    "services/",
    "namespaces/",
    "ingresses.networking.k8s.io/",
    "deployments.apps/",
    "statefulsets.apps/",
    "daemonsets.apps/",
];

const OBJECTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: kong}
---
apiVersion: v1
kind: Namespace
metadata: {name: nginx}
---
apiVersion: v1
kind: Namespace
metadata: {name: production}
---
apiVersion: v1
kind: Namespace
metadata: {name: queue}
---
apiVersion: v1
kind: Service
metadata: {name: command, namespace: kong, labels: {app: command}}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: other, namespace: kong, labels: {app: other}}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-1, namespace: nginx, labels: {app: web}}
spec: {containers: [{name: app, image: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: web-2, namespace: nginx, labels: {app: web}}
spec: {containers: [{name: app, image: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: api-1, namespace: nginx, labels: {app: api}}
spec: {containers: [{name: app, image: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend-server-abcd-0123, namespace: production, labels: {app: frontend}}
spec: {containers: [{name: app, image: app}]}
---
apiVersion: v1
kind: Pod
metadata: {name: frontend-server-abcd-4567, namespace: production, labels: {app: frontend}}
spec: {containers: [{name: app, image: app}]}
---
# The resource sample-config.yaml's cheddar rule names; the adapter refuses to start
# when a rule names a resource the cluster does not have.
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: brands.cheese.io}
spec:
  group: cheese.io
  names: {kind: Brand, listKind: BrandList, plural: brands, singular: brand}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#;

/// The series every configuration below reads.
fn publish(exporter: &Exporter) {
    // Seeds 001/002: Kong's latency sum and count per Service, as the operator enriches them.
    for (service, latency_ms, requests_per_second) in
        [("command", 102.3124, 2.0), ("other", 7.0004, 3.0)]
    {
        let labels = [
            ("exported_namespace", "kong"),
            ("exported_service", service),
            ("kubernetes_namespace", "kong-system"),
            ("kubernetes_name", "kong"),
            ("kubernetes_kind", "Service"),
        ];
        exporter.set_growing(
            "kong_upstream_latency_ms_sum",
            &labels,
            latency_ms * requests_per_second,
        );
        exporter.set_growing(
            "kong_upstream_latency_ms_count",
            &labels,
            requests_per_second,
        );
    }
    // Seed 003 and the walkthrough: nginx requests per Pod.
    for (pod, per_second) in [("web-1", 0.0101), ("web-2", 0.0201), ("api-1", 0.0301)] {
        exporter.set_growing(
            "nginx_http_requests_total",
            &[("namespace", "nginx"), ("pod", pod)],
            per_second,
        );
    }
    // The configuration walkthrough's relabelled series.
    for (pod, per_second) in [
        ("frontend-server-abcd-0123", 0.0161),
        ("frontend-server-abcd-4567", 0.0221),
    ] {
        exporter.set_growing(
            "http_requests_total",
            &[
                ("kubernetes_namespace", "production"),
                ("kubernetes_pod_name", pod),
            ],
            per_second,
        );
    }
    // cAdvisor-style series of sample-config.yaml, with a pause container to leave out.
    for (pod, container, per_second) in [
        ("frontend-server-abcd-0123", "app", 0.2501),
        ("frontend-server-abcd-0123", "POD", 5.0),
        ("frontend-server-abcd-4567", "app", 0.1201),
    ] {
        exporter.set_growing(
            "container_cpu_usage_seconds_total",
            &[
                ("namespace", "production"),
                ("pod", pod),
                ("container", container),
            ],
            per_second,
        );
    }
    exporter.set_growing(
        "container_network_receive_bytes_total",
        &[
            ("namespace", "production"),
            ("pod", "frontend-server-abcd-0123"),
            ("container", "app"),
        ],
        1024.1001,
    );
    exporter.set("cheddar", &[("sharp", "true"), ("brand", "gouda")], 3.0);
    // External metrics: consumer lag in two namespaces, queue depth over two topics.
    for (name, namespace, lag) in [
        ("orders", "queue", 12.0),
        ("billing", "queue", 3.25),
        ("orders", "other", 100.0),
    ] {
        exporter.set(
            "queue_consumer_lag",
            &[("name", name), ("namespace", namespace)],
            lag,
        );
    }
    for (topic, depth) in [("t1", 7.0), ("t2", 8.5)] {
        exporter.set(
            "queue_depth",
            &[("name", "jobs"), ("topic", topic), ("namespace", "queue")],
            depth,
        );
    }
}

/// An external metric asked of both: metrics-registry gets `ours` (the adapter's path plus
/// what the convert notes say to add), and its items may carry the `kept` labels on top.
struct ExternalPath {
    adapter: &'static str,
    ours: &'static str,
    kept: &'static [&'static str],
}

#[derive(Clone)]
struct Case {
    name: &'static str,
    text: String,
    /// NamespaceMetrics go here (there is no cluster-wide kind for them).
    namespaces: &'static [&'static str],
    /// How long Prometheus must have scraped before the values are final: `rate(…[2m])`
    /// is exact only once its window is full.
    data_for: Duration,
    custom: &'static [&'static str],
    external: &'static [ExternalPath],
    /// External paths where the adapter fails and metrics-registry answers.
    adapter_fails: &'static [&'static str],
    /// Custom paths of NamespaceMetrics whose series keep the namespace in another label
    /// than `namespace`: namespace isolation pins their query to `namespace="<ns>"`, so
    /// metrics-registry answers 404 where the adapter answers, as the convert note says.
    isolated: &'static [&'static str],
    /// What `externalRules` are converted into.
    external_rules_as: ExternalRulesAs,
}

fn fixture(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../operator/tests/fixtures/adapter")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cases(source: &Path) -> Vec<Case> {
    let docs = examples(source).expect("the adapter's docs");
    let example = |origin: &str| {
        docs.iter()
            .find(|e| e.origin == origin)
            .unwrap_or_else(|| panic!("no example {origin}"))
            .text
            .clone()
    };
    let window = Duration::from_secs(125);
    let mut cases = vec![
        Case {
            name: "seed 001 (seed 002 has the same rules)",
            text: fixture("seed-001-values.yaml"),
            namespaces: &["kong"],
            data_for: Duration::from_secs(30),
            custom: &[
                "namespaces/kong/services/command/kong_upstream_latency_ms_60s_average",
                "namespaces/kong/services/*/kong_upstream_latency_ms_60s_average",
                "namespaces/kong/services/*/kong_upstream_latency_ms_60s_average?labelSelector=app%3Dother",
                "namespaces/kong/metrics/kong_upstream_latency_ms_60s_average",
            ],
            external: &[],
            adapter_fails: &[],
            isolated: &[],
            external_rules_as: ExternalRulesAs::LiveQueries,
        },
        Case {
            name: "docs/externalmetrics.md yaml block 1",
            text: example("docs/externalmetrics.md yaml block 1"),
            namespaces: &[],
            data_for: Duration::ZERO,
            custom: &[],
            external: &[
                // The conversion pins the metric to the HPA's namespace, as the adapter does.
                ExternalPath {
                    adapter: "namespaces/queue/queue_consumer_lag?labelSelector=name%3Dorders",
                    ours: "namespaces/queue/queue_consumer_lag?labelSelector=name%3Dorders",
                    kept: &["namespace"],
                },
                ExternalPath {
                    adapter: "namespaces/queue/queue_consumer_lag",
                    ours: "namespaces/queue/queue_consumer_lag",
                    kept: &["namespace"],
                },
                ExternalPath {
                    adapter: "namespaces/other/queue_consumer_lag",
                    ours: "namespaces/other/queue_consumer_lag",
                    kept: &["namespace"],
                },
            ],
            adapter_fails: &[],
            isolated: &[],
            external_rules_as: ExternalRulesAs::LiveQueries,
        },
        Case {
            name: "docs/externalmetrics.md yaml block 2",
            text: example("docs/externalmetrics.md yaml block 2"),
            namespaces: &[],
            data_for: Duration::ZERO,
            custom: &[],
            external: &[
                ExternalPath {
                    adapter: "namespaces/default/queue_depth",
                    ours: "namespaces/default/queue_depth",
                    kept: &[],
                },
                ExternalPath {
                    adapter: "namespaces/queue/queue_depth?labelSelector=name%3Djobs",
                    ours: "namespaces/queue/queue_depth?labelSelector=name%3Djobs",
                    kept: &[],
                },
            ],
            adapter_fails: &[],
            isolated: &[],
            external_rules_as: ExternalRulesAs::LiveQueries,
        },
        Case {
            name: "docs/walkthrough.md (ConfigMap)",
            text: example("docs/walkthrough.md yaml block 5"),
            namespaces: &["nginx"],
            data_for: Duration::from_secs(5),
            custom: &[
                "namespaces/nginx/pods/*/nginx_http_requests?labelSelector=app%3Dweb",
                "namespaces/nginx/pods/api-1/nginx_http_requests",
                "namespaces/nginx/metrics/nginx_http_requests",
            ],
            external: &[],
            adapter_fails: &[],
            isolated: &[],
            external_rules_as: ExternalRulesAs::LiveQueries,
        },
        Case {
            name: "seed 003",
            text: fixture("seed-003-values.yaml"),
            namespaces: &["nginx"],
            data_for: window,
            custom: &[
                "namespaces/nginx/pods/*/nginx_http_requests_per_second?labelSelector=app%3Dweb",
                "namespaces/nginx/pods/web-2/nginx_http_requests_per_second",
                "namespaces/nginx/metrics/nginx_http_requests_per_second",
            ],
            external: &[],
            adapter_fails: &[],
            isolated: &[],
            external_rules_as: ExternalRulesAs::LiveQueries,
        },
        Case {
            name: "docs/config-walkthrough.md yaml block 5",
            text: example("docs/config-walkthrough.md yaml block 5"),
            namespaces: &["production"],
            data_for: window,
            custom: &[
                "namespaces/production/pods/*/http_requests_per_second?labelSelector=app%3Dfrontend",
                "namespaces/production/pods/frontend-server-abcd-4567/http_requests_per_second",
            ],
            external: &[],
            adapter_fails: &[],
            isolated: &["namespaces/production/metrics/http_requests_per_second"],
            external_rules_as: ExternalRulesAs::LiveQueries,
        },
        Case {
            name: "docs/sample-config.yaml, quoting repaired",
            text: repair_quoting(&example("docs/sample-config.yaml")),
            namespaces: &["production", "nginx"],
            data_for: window,
            custom: &[
                "namespaces/production/pods/*/cpu_usage?labelSelector=app%3Dfrontend",
                "namespaces/production/metrics/cpu_usage",
                "namespaces/production/pods/frontend-server-abcd-0123/network_receive_bytes",
                "namespaces/production/pods/*/container_cpu_usage_seconds",
                "namespaces/nginx/pods/*/nginx_http_requests?labelSelector=app%3Dweb",
                "namespaces/nginx/metrics/nginx_http_requests",
            ],
            external: &[ExternalPath {
                adapter: "namespaces/default/queue_depth",
                ours: "namespaces/default/queue_depth",
                kept: &[],
            }],
            adapter_fails: &["namespaces/queue/queue_consumer_lag"],
            isolated: &[],
            external_rules_as: ExternalRulesAs::LiveQueries,
        },
    ];
    // The adapter's external examples once more, converted as recording rules: the same
    // answers through `kube_adapter_metric_*` series (the `kept` labels are the ones the
    // recordings add).
    let recorded: Vec<Case> = cases
        .iter()
        .filter(|case| case.name.starts_with("docs/externalmetrics.md"))
        .map(|case| Case {
            name: if case.name.ends_with("block 1") {
                "docs/externalmetrics.md yaml block 1, as recording rules"
            } else {
                "docs/externalmetrics.md yaml block 2, as recording rules"
            },
            external_rules_as: ExternalRulesAs::RecordingRules,
            ..case.clone()
        })
        .collect();
    cases.extend(recorded);
    cases
}

// Fields drop in order: metrics-registry goes before the control plane it watches.
struct World {
    registry: ClusterRegistry,
    plane: ControlPlane,
    admin: kube::Client,
    client: MetricsClient,
    prometheus_url: String,
    lister: SeriesLister,
    scraping_since: Instant,
    report: Vec<String>,
    failures: Vec<String>,
}

impl World {
    fn note(&mut self, line: String) {
        println!("{line}");
        self.report.push(line);
    }

    fn fail(&mut self, line: String) {
        println!("MISMATCH {line}");
        self.failures.push(line);
    }

    async fn both(&self, adapter: &Adapter, path: &str) -> (Answer, Answer) {
        let theirs = self.client.get(&adapter.base_url(), path).await;
        let ours = self.client.get(self.registry.base_url(), path).await;
        (
            theirs.expect("adapter answers"),
            ours.expect("metrics-registry answers"),
        )
    }

    /// Waits until metrics-registry lists what the adapter lists on the resources it serves.
    async fn wait_for_same_discovery(&mut self, case: &Case, adapter: &Adapter) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (theirs, ours) = self.both(adapter, CUSTOM[1]).await;
            let served: BTreeSet<String> = discovery(&theirs)
                .into_iter()
                .filter(|r| SERVED.iter().any(|p| r.starts_with(p)))
                .collect();
            let ours = discovery(&ours);
            if !served.is_empty() && served == ours {
                self.note(format!("  discovery: both list {served:?}"));
                return;
            }
            if Instant::now() > deadline {
                self.fail(format!(
                    "{}: discovery differs: adapter {served:?}, metrics-registry {ours:?}",
                    case.name
                ));
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    async fn run(&mut self, case: &Case) {
        let wait = (self.scraping_since + case.data_for).saturating_duration_since(Instant::now());
        if !wait.is_zero() {
            println!("waiting {wait:?} for {} of data", humanize(case.data_for));
            tokio::time::sleep(wait).await;
        }
        self.note(format!("== {}", case.name));
        let adapter_config = adapter_config_file(&case.text).expect("an adapter configuration");
        let mut adapter = Adapter::start(
            &self.plane,
            &self.prometheus_url,
            &adapter_config,
            &self.client,
        )
        .await
        .expect("prometheus-adapter starts");

        let documents = self.converted(case).await;
        let yaml = output::to_yaml(case.name, &documents);
        apply_yaml(&self.admin, &yaml)
            .await
            .expect("definitions apply");
        if !case.custom.is_empty() {
            self.wait_for_same_discovery(case, &adapter).await;
        }
        for path in case.custom {
            for version in CUSTOM {
                let path = format!("{version}/{path}");
                let (theirs, ours) = self.both(&adapter, &path).await;
                match compare_custom(&theirs, &ours) {
                    Ok(both) => self.note(format!("  same  {path}: {both}")),
                    Err(difference) => self.fail(format!(
                        "{}: {path}: {difference}\n--- adapter queries ---\n{}",
                        case.name,
                        adapter.log_lines("query", 5)
                    )),
                }
            }
        }
        for external in case.external {
            let theirs = format!("{EXTERNAL}/{}", external.adapter);
            let ours = format!("{EXTERNAL}/{}", external.ours);
            // Recording rules take an evaluation or two to produce their series.
            let ours_answer = self.wait_for_items(&ours).await;
            let adapter_answer = self
                .client
                .get(&adapter.base_url(), &theirs)
                .await
                .expect("adapter answers");
            match compare_external(&adapter_answer, &ours_answer, external.kept) {
                Ok(both) => self.note(format!("  same  {theirs} | {ours}: {both}")),
                Err(difference) => {
                    self.fail(format!("{}: {theirs} | {ours}: {difference}", case.name))
                }
            }
        }
        for path in case.adapter_fails {
            let path = format!("{EXTERNAL}/{path}");
            let ours = self.wait_for_items(&path).await;
            let theirs = self
                .client
                .get(&adapter.base_url(), &path)
                .await
                .expect("adapter answers");
            if theirs.status == 500 && ours.status == 200 && !ours.items().is_empty() {
                self.note(format!(
                    "  known difference {path}: adapter {} {}; metrics-registry answers {} item(s)",
                    theirs.status,
                    theirs.message(),
                    ours.items().len()
                ));
            } else {
                self.fail(format!(
                    "{}: {path}: expected the adapter to fail and metrics-registry to answer; adapter {} {}, metrics-registry {} {}",
                    case.name, theirs.status, theirs.body, ours.status, ours.body
                ));
            }
        }
        for path in case.isolated {
            for version in CUSTOM {
                let path = format!("{version}/{path}");
                let (theirs, ours) = self.both(&adapter, &path).await;
                if theirs.status == 200
                    && !theirs.items().is_empty()
                    && ours.status == 404
                    && ours.message().contains("namespace=\"")
                {
                    self.note(format!(
                        "  known difference {path}: adapter {}; metrics-registry 404: {}",
                        theirs.value(0),
                        ours.message()
                    ));
                } else {
                    self.fail(format!(
                        "{}: {path}: expected the adapter to answer and namespace isolation to stop metrics-registry; adapter {} {}, metrics-registry {} {}",
                        case.name, theirs.status, theirs.body, ours.status, ours.body
                    ));
                }
            }
        }
        self.delete(&documents).await;
        adapter.stop();
    }

    /// The case's configuration converted against the live Prometheus, checked as
    /// `metrics-registry check` would.
    async fn converted(&mut self, case: &Case) -> Vec<Document> {
        let (adapter_config, source) = config::parse(&case.text).expect("convert reads it");
        let listed = self
            .lister
            .list_all(&series_queries(&adapter_config), Duration::from_secs(600))
            .await
            .expect("Prometheus lists series");
        let options = Options {
            scope: Scope::Cluster,
            namespaces: case.namespaces.iter().map(|n| n.to_string()).collect(),
            external_rules_as: case.external_rules_as,
        };
        let conversion = convert(
            &adapter_config,
            &source,
            Discovery::Listed(&listed),
            &options,
        );
        for note in &conversion.notes {
            self.note(format!("  note  {note}"));
        }
        assert!(
            !conversion.documents.is_empty(),
            "{}: nothing converted",
            case.name
        );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("converted.yaml");
        std::fs::write(&file, output::to_yaml(case.name, &conversion.documents)).unwrap();
        let report = check(&[file], CompileOptions::default());
        assert!(
            report.problems.is_empty(),
            "{}: {:?}",
            case.name,
            report.problems
        );
        conversion.documents
    }

    async fn wait_for_items(&self, path: &str) -> Answer {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answer = self
                .client
                .get(self.registry.base_url(), path)
                .await
                .expect("metrics-registry answers");
            if (answer.status == 200 && !answer.items().is_empty()) || Instant::now() > deadline {
                return answer;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Removes the case's definitions and waits until metrics-registry serves none.
    async fn delete(&self, documents: &[Document]) {
        let resources = metrics_registry::sources::watch::api_resources();
        for document in documents {
            let (_, resource) = resources
                .iter()
                .find(|(kind, _)| *kind == document.kind)
                .expect("a definition kind");
            let api: Api<DynamicObject> = match &document.namespace {
                Some(namespace) => Api::namespaced_with(self.admin.clone(), namespace, resource),
                None => Api::all_with(self.admin.clone(), resource),
            };
            api.delete(&document.name, &DeleteParams::default())
                .await
                .expect("definition deleted");
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let answer = self
                .client
                .get(self.registry.base_url(), CUSTOM[1])
                .await
                .expect("metrics-registry answers");
            if discovery(&answer).is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("metrics-registry still serves definitions 30 s after they were deleted");
    }
}

fn humanize(duration: Duration) -> String {
    format!("{} s", duration.as_secs())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus, the control plane built from Go and prometheus-adapter: run through scripts/test.sh"]
async fn converted_configurations_serve_what_prometheus_adapter_serves() {
    metrics_registry_tests::init_test_logging();
    let source: PathBuf = module_source().await.expect("prometheus-adapter build");
    let cases = cases(&source);
    assert_eq!(
        config::parse(&fixture("seed-001-values.yaml")).unwrap().0,
        config::parse(&fixture("seed-002-values.yaml")).unwrap().0,
        "seeds 001 and 002 are compared once because their rules are the same"
    );

    let exporter = Exporter::start().await.expect("exporter");
    publish(&exporter);
    let (prometheus, rules) = metrics_registry_tests::stack::scraping(&exporter, "queue_depth")
        .await
        .expect("Prometheus scrapes");
    let scraping_since = Instant::now();
    let plane = ControlPlane::start(ControlPlaneOptions::default())
        .await
        .expect("control plane starts");
    let admin = plane.admin_client().await.expect("admin client");
    apply_yaml(&admin, OBJECTS).await.expect("objects created");
    let client = MetricsClient::new(&plane).expect("client");
    let registry = ClusterRegistry::start(
        &plane,
        &admin,
        &prometheus.url(),
        rules.path().to_path_buf(),
        &client,
    )
    .await
    .expect("metrics-registry starts");
    let lister = SeriesLister::new(&prometheus.url(), &[], None, Duration::from_secs(10))
        .expect("series lister");
    let mut world = World {
        registry,
        plane,
        admin,
        client,
        prometheus_url: prometheus.url(),
        lister,
        scraping_since,
        report: Vec::new(),
        failures: Vec::new(),
    };
    for case in &cases {
        world.run(case).await;
    }
    let compared = world
        .report
        .iter()
        .filter(|l| l.starts_with("  same"))
        .count();
    let known = world
        .report
        .iter()
        .filter(|l| l.starts_with("  known difference"))
        .count();
    println!(
        "\n{compared} answers the same, {known} known differences, {} unexpected",
        world.failures.len()
    );
    assert!(
        world.failures.is_empty(),
        "converted configurations answer differently:\n{}",
        world.failures.join("\n")
    );
    let planned: usize = cases
        .iter()
        .map(|c| c.custom.len() * CUSTOM.len() + c.external.len())
        .sum();
    assert_eq!(compared, planned, "every planned comparison ran");
}
