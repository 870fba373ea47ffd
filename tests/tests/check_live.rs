//! `metrics-registry check --prometheus-url` as the real binary against a real Prometheus
//! scraping an exporter the test sets: the query each definition would send and the values
//! it would serve, a query that returns nothing, and a Prometheus that cannot be reached.

use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::prometheus::{Prometheus, PrometheusOptions};
use metrics_registry_tests::registry_process::binary;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const DEFINITIONS: &str = r#"apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {name: queue-depth, namespace: shop}
spec:
  query: sum(rabbitmq_queue_messages{«.LabelMatchers»,vhost="/"}) by («.GroupBy»)
---
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {name: queue-depth-typo, namespace: shop}
spec:
  metricName: queue_depth_typo
  query: sum(rabbitmq_queue_mesages{<<.LabelMatchers>>}) by (<<.GroupBy>>)
---
apiVersion: metrics-registry.io/v1beta1
kind: ClusterServiceMetric
metadata: {name: queue-depth-everywhere}
spec:
  metricName: queue_depth_everywhere
  query: max(rabbitmq_queue_messages{<<.LabelMatchers>>}) by (<<.GroupBy>>)
---
apiVersion: metrics-registry.io/v1beta1
kind: CustomPrometheusRules
metadata: {name: queues}
spec:
  externalMetricsNamespaced: true
  groups:
  - name: queues
    rules:
    - record: kube_adapter_metric_queue_messages
      expr: sum by (namespace) (rabbitmq_queue_messages)
"#;

fn publish(exporter: &Exporter) {
    for (namespace, service, messages) in [
        ("shop", "orders", 7.0),
        ("shop", "billing", 2.5),
        ("tools", "orders", 40.0),
    ] {
        exporter.set(
            "rabbitmq_queue_messages",
            &[
                ("namespace", namespace),
                ("service", service),
                ("vhost", "/"),
            ],
            messages,
        );
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
}

fn check(args: &[&str], files: &[&Path]) -> Run {
    let Output { status, stdout, .. } =
        std::process::Command::new(binary().expect("the metrics-registry binary"))
            .arg("check")
            .args(args)
            .args(files)
            .output()
            .unwrap();
    let stdout = String::from_utf8(stdout).unwrap();
    println!("$ metrics-registry check {}\n{stdout}", args.join(" "));
    Run {
        code: status.code(),
        stdout,
    }
}

/// The lines from the heading naming `what` up to the next heading.
fn section<'a>(stdout: &'a str, what: &str) -> Vec<&'a str> {
    let mut lines = stdout.lines().skip_while(|l| !l.contains(what));
    let heading = lines
        .next()
        .unwrap_or_else(|| panic!("no {what} in\n{stdout}"));
    std::iter::once(heading)
        .chain(lines.take_while(|l| l.starts_with("  ")))
        .collect()
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn definitions_are_tried_against_a_live_prometheus() {
    let exporter = Exporter::start().await.unwrap();
    publish(&exporter);
    let prometheus = Prometheus::start(PrometheusOptions {
        targets: vec![exporter.addr()],
        ..PrometheusOptions::default()
    })
    .await
    .unwrap();
    prometheus
        .wait_for_series("rabbitmq_queue_messages", Duration::from_secs(30))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "defs.yaml", DEFINITIONS);
    let url = prometheus.url();

    let run = check(&["--prometheus-url", &url], &[&file]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    assert_eq!(run.stdout.lines().next(), Some("4 definitions OK"));

    // The namespaced definition: every Service of its namespace, as the API renders it.
    let depth = section(&run.stdout, "ServiceMetric shop/queue-depth:");
    assert_eq!(
        depth,
        vec![
            &format!(
                "{}: ServiceMetric shop/queue-depth: services/queue-depth of every Service in namespace shop",
                file.display()
            ),
            // The isolation pass reprints the query, pinned to the namespace.
            r#"  query: sum by (service) (rabbitmq_queue_messages{namespace="shop",service!="",namespace="shop",vhost="/"})"#,
            "  billing: 2500m",
            "  orders: 7",
        ]
    );

    // A metric name with a typo: Prometheus answers, with nothing to serve.
    let typo = section(&run.stdout, "ServiceMetric shop/queue-depth-typo:");
    assert_eq!(typo.len(), 3, "{typo:?}");
    assert_eq!(
        typo[2],
        "  no data: Prometheus returned no series for this query"
    );

    // The cluster-wide definition: every namespace, objects named with theirs.
    let everywhere = section(&run.stdout, "ClusterServiceMetric queue-depth-everywhere:");
    assert!(
        everywhere[0]
            .ends_with("services/queue_depth_everywhere of every Service in every namespace"),
        "{everywhere:?}"
    );
    assert_eq!(
        everywhere[1],
        r#"  query: max(rabbitmq_queue_messages{namespace!="",service!=""}) by (service,namespace)"#
    );
    assert_eq!(
        everywhere[2..],
        [
            "  shop/billing: 2500m",
            "  shop/orders: 7",
            "  tools/orders: 40"
        ]
    );

    // The recording rule, as the series it would record.
    let external = section(&run.stdout, "CustomPrometheusRules queues:");
    assert!(
        external[0].contains("external metric queue_messages")
            && external[0].contains("namespaced"),
        "{external:?}"
    );
    assert_eq!(
        external[1..],
        [
            "  query: sum by (namespace) (rabbitmq_queue_messages)",
            r#"  {namespace="shop"}: 9500m"#,
            r#"  {namespace="tools"}: 40"#,
        ]
    );
    assert_eq!(
        run.stdout.lines().last(),
        Some(format!("4 evaluated against {url}: 3 with data, 1 without, 0 failed").as_str())
    );

    // Cluster-wide definitions can be tried in one namespace instead.
    let run = check(
        &["--prometheus-url", &url, "--namespace", "tools"],
        &[&file],
    );
    let everywhere = section(&run.stdout, "ClusterServiceMetric queue-depth-everywhere:");
    assert_eq!(everywhere[2..], ["  orders: 40"]);

    // In CI, a query that returns nothing can fail the check.
    let run = check(&["--prometheus-url", &url, "--require-data"], &[&file]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);

    // An invalid definition is reported as offline, and the valid ones are still tried.
    let broken = write(
        dir.path(),
        "broken.yaml",
        "apiVersion: metrics-registry.io/v1beta1\nkind: ServiceMetric\nmetadata: {name: broken, namespace: shop}\nspec: {query: 'sum(x{<<.LabelMatchers>>}'}\n",
    );
    let run = check(&["--prometheus-url", &url], &[&file, &broken]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let first = run.stdout.lines().next().unwrap();
    assert!(
        first.starts_with(&format!(
            "{}: ServiceMetric shop/broken: InvalidQuery:",
            broken.display()
        )),
        "{first}"
    );
    assert!(run.stdout.contains("  orders: 7"), "{}", run.stdout);
    assert!(
        run.stdout.ends_with(&format!(
            "4 evaluated against {url}: 3 with data, 1 without, 0 failed\n"
        )),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn an_unreachable_prometheus_fails_the_check_with_its_address() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "defs.yaml", DEFINITIONS);
    // A port nobody listens on any more.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");

    let run = check(&["--prometheus-url", &url], &[&file]);
    assert_eq!(run.code, Some(1), "{}", run.stdout);
    let errors: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("  error: "))
        .collect();
    assert_eq!(errors.len(), 4, "{}", run.stdout);
    for error in errors {
        assert!(
            error.starts_with(&format!("  error: Prometheus at {url} is unreachable: ")),
            "{error}"
        );
    }
    assert!(
        run.stdout.ends_with("0 with data, 0 without, 4 failed\n"),
        "{}",
        run.stdout
    );

    // Offline, the same files pass: the check needs Prometheus only when asked to.
    let run = check(&[], &[&file]);
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), "4 definitions OK\n")
    );
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn live_external_and_resource_definitions_are_tried_too() {
    let exporter = Exporter::start().await.unwrap();
    publish(&exporter);
    for (pod, container, cores) in [("web-1", "app", 0.25), ("web-1", "proxy", 0.125)] {
        exporter.set(
            "container_cpu_cores",
            &[
                ("namespace", "shop"),
                ("pod", pod),
                ("container", container),
            ],
            cores,
        );
    }
    let prometheus = Prometheus::start(PrometheusOptions {
        targets: vec![exporter.addr()],
        ..PrometheusOptions::default()
    })
    .await
    .unwrap();
    prometheus
        .wait_for_series("container_cpu_cores", Duration::from_secs(30))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "defs.yaml",
        r#"
apiVersion: metrics-registry.io/v1beta1
kind: ExternalMetric
metadata: {name: queue-total, namespace: shop}
spec:
  query: sum(rabbitmq_queue_messages{<<.LabelMatchers>>})
---
apiVersion: metrics-registry.io/v1beta1
kind: ResourceMetrics
metadata: {name: default}
spec:
  cpu:
    containerQuery: sum by (<<.GroupBy>>) (container_cpu_cores{<<.LabelMatchers>>})
    nodeQuery: sum by (<<.GroupBy>>) (node_cpu_cores{<<.LabelMatchers>>})
  memory:
    containerQuery: sum by (<<.GroupBy>>) (container_memory_bytes{<<.LabelMatchers>>})
    nodeQuery: sum by (<<.GroupBy>>) (node_memory_bytes{<<.LabelMatchers>>})
"#,
    );
    let run = check(&["--prometheus-url", &prometheus.url()], &[&file]);
    assert_eq!(run.code, Some(0), "{}", run.stdout);
    // Pinned to shop: 7 + 2.5, not tools' 40.
    let external = section(&run.stdout, "ExternalMetric shop/queue-total:");
    assert_eq!(external[2..], ["  {}: 9500m"], "{}", run.stdout);
    let resources = section(&run.stdout, "ResourceMetrics default:");
    assert_eq!(
        resources[2..],
        [
            "  shop/web-1 app: cpu 250000000n",
            "  shop/web-1 proxy: cpu 125000000n"
        ],
        "{}",
        run.stdout
    );
}
