//! The seed scenarios as manifests and exporter series, shared by tests and the demo.

use crate::exporter::Exporter;
use metrics_registry::definitions::{Definition, DefinitionBody, DefinitionId, DefinitionKind};
use metrics_registry_crds::MetricSpec;

/// A ServiceMetric `name` in `namespace` with `query` and nothing else set, as the
/// oracle tests compile generated templates.
pub fn service_metric(namespace: &str, name: &str, query: &str) -> Definition {
    Definition {
        id: DefinitionId {
            kind: DefinitionKind::ServiceMetric,
            namespace: Some(namespace.into()),
            name: name.into(),
        },
        generation: Some(1),
        created: None,
        body: DefinitionBody::Metric(MetricSpec {
            query: query.into(),
            ..MetricSpec::default()
        }),
    }
}

/// Seed 000: Kong's upstream latency, re-labelled as exported_namespace/exported_service,
/// averaged per Service. (The seed averages counters over 60 s; the exporter here
/// publishes the average as a gauge so the expected value is exact.)
pub const KONG_LATENCY: &str = r#"
apiVersion: metrics-registry.io/v1beta1
kind: ClusterServiceMetric
metadata:
  name: kong-upstream-latency-ms-60s-average
spec:
  metricName: kong_upstream_latency_ms_60s_average
  objectLabel: exported_service
  namespaceLabel: exported_namespace
  query: avg by (<<.GroupBy>>) (kong_upstream_latency_ms_average{<<.LabelMatchers>>})
"#;

/// Seed 004: RabbitMQ queue on a Service, php-fpm workers on Pods (pasted with « »),
/// a NamespaceMetric and an external metric declared by a recording rule.
pub const SEED_004: &str = r#"
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata:
  name: rmq-queue-forum-messages
  namespace: mynamespace
spec:
  query: sum (avg_over_time(rabbitmq_queue_messages{«.LabelMatchers»,queue=~"send_forum_message",vhost="/"}[5m])) by («.GroupBy»)
---
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata:
  name: queue-depth
  namespace: mynamespace
spec:
  query: sum(rabbitmq_queue_messages{<<.LabelMatchers>>}) by (<<.GroupBy>>)
  windowSeconds: 60
---
apiVersion: metrics-registry.io/v1beta1
kind: PodMetric
metadata:
  name: php-fpm-active-workers
  namespace: mynamespace
spec:
  query: sum (phpfpm_processes_total{state="active",«.LabelMatchers»}) by («.GroupBy»)
---
apiVersion: metrics-registry.io/v1beta1
kind: NamespaceMetric
metadata:
  name: queue-length
  namespace: mynamespace
spec:
  query: sum(namespace_queue_length{<<.LabelMatchers>>}) by (<<.GroupBy>>)
---
kind: HorizontalPodAutoscaler
apiVersion: autoscaling/v2
metadata:
  name: myhpa
  namespace: mynamespace
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: myconsumer}
  minReplicas: 1
  maxReplicas: 5
---
apiVersion: metrics-registry.io/v1beta1
kind: CustomPrometheusRules
metadata:
  name: prometheus-metrics-adapter-sqs-messages-visible
spec:
  groups:
  - name: prometheus-metrics-adapter.sqs_messages_visible
    interval: 1s
    rules:
    - record: kube_adapter_metric_sqs_messages_visible
      expr: sum (sqs_messages_visible) by (queue)
    - record: kube_adapter_metric_declared_only
      expr: sum (nothing_here) by (queue)
"#;

/// One cluster definition per remaining object kind.
pub const WORKLOADS: &str = r#"
apiVersion: metrics-registry.io/v1beta1
kind: ClusterDeploymentMetric
metadata: {name: deployment-rps}
spec: {query: 'sum(workload_rps{<<.LabelMatchers>>}) by (<<.GroupBy>>)'}
---
apiVersion: metrics-registry.io/v1beta1
kind: ClusterStatefulSetMetric
metadata: {name: statefulset-rps}
spec: {query: 'sum(workload_rps{<<.LabelMatchers>>}) by (<<.GroupBy>>)'}
---
apiVersion: metrics-registry.io/v1beta1
kind: ClusterDaemonSetMetric
metadata: {name: daemonset-rps}
spec: {query: 'sum(workload_rps{<<.LabelMatchers>>}) by (<<.GroupBy>>)'}
---
apiVersion: metrics-registry.io/v1beta1
kind: ClusterIngressMetric
metadata: {name: ingress-rps}
spec: {query: 'sum(workload_rps{<<.LabelMatchers>>}) by (<<.GroupBy>>)'}
---
apiVersion: metrics-registry.io/v1beta1
kind: ClusterPodMetric
metadata: {name: pod-value}
spec: {query: 'sum(pod_value{<<.LabelMatchers>>}) by (<<.GroupBy>>)'}
"#;

/// Series for the manifests above.
pub fn publish_seed_series(exporter: &Exporter) {
    exporter.set(
        "kong_upstream_latency_ms_average",
        &[
            ("namespace", "kong"),
            ("exported_namespace", "default"),
            ("exported_service", "echo"),
        ],
        102.312,
    );
    exporter.set(
        "kong_upstream_latency_ms_average",
        &[
            ("namespace", "kong"),
            ("exported_namespace", "default"),
            ("exported_service", "other"),
        ],
        7.0,
    );
    for (queue, value) in [("send_forum_message", 45.0), ("other_queue", 7.0)] {
        exporter.set(
            "rabbitmq_queue_messages",
            &[
                ("namespace", "mynamespace"),
                ("service", "rmq"),
                ("queue", queue),
                ("vhost", "/"),
            ],
            value,
        );
    }
    for (pod, state, value) in [
        ("web-1", "active", 3.0),
        ("web-1", "idle", 2.0),
        ("web-2", "active", 6.0),
        ("web-3", "active", f64::NAN),
    ] {
        exporter.set(
            "phpfpm_processes_total",
            &[("namespace", "mynamespace"), ("pod", pod), ("state", state)],
            value,
        );
    }
    exporter.set(
        "namespace_queue_length",
        &[("namespace", "mynamespace")],
        0.3,
    );
    for (label, name, value) in [
        ("deployment", "api", 11.0),
        ("statefulset", "db", 12.0),
        ("daemonset", "agent", 13.0),
        ("ingress", "web", 14.5),
    ] {
        exporter.set(
            "workload_rps",
            &[("namespace", "prod"), (label, name)],
            value,
        );
    }
    exporter.set("pod_value", &[("namespace", "prod"), ("pod", "p-1")], 0.1);
    exporter.set(
        "pod_value",
        &[("namespace", "prod"), ("pod", "p-2")],
        f64::INFINITY,
    );
    // Raw SQS series: the CustomPrometheusRules recording rule turns them into
    // kube_adapter_metric_sqs_messages_visible once Prometheus evaluates it.
    for (queue, value) in [("send_forum_messages", 42.0), ("other", 7.0)] {
        exporter.set(
            "sqs_messages_visible",
            &[("queue", queue), ("namespace", "sqs-exporter")],
            value,
        );
    }
    // Any series with the prefix is an external metric too, without a rule.
    exporter.set(
        "kube_adapter_metric_direct_queue",
        &[("queue", "jobs")],
        3.0,
    );
}

/// Seed 004 as the e2e test applies it to a cluster: the app team's ServiceMetric and
/// PodMetric (pasted with « ») and the SQS recording rule.
pub const SEED_004_E2E: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: mynamespace}
---
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata:
  name: rmq-queue-forum-messages
  namespace: mynamespace
spec:
  query: sum (avg_over_time(rabbitmq_queue_messages{«.LabelMatchers»,queue=~"send_forum_message",vhost="/"}[5m])) by («.GroupBy»)
---
apiVersion: metrics-registry.io/v1beta1
kind: PodMetric
metadata:
  name: php-fpm-active-workers
  namespace: mynamespace
spec:
  query: sum (phpfpm_processes_total{state="active",«.LabelMatchers»}) by («.GroupBy»)
---
apiVersion: metrics-registry.io/v1beta1
kind: CustomPrometheusRules
metadata:
  name: prometheus-metrics-adapter-sqs-messages-visible
spec:
  groups:
  - name: prometheus-metrics-adapter.sqs_messages_visible
    interval: 1s
    rules:
    - record: kube_adapter_metric_sqs_messages_visible
      expr: sum (sqs_messages_visible) by (queue)
"#;

/// The three HPAs of seed 004: Object Value, Pods AverageValue, External Value.
pub const SEED_004_HPAS: &str = r#"
kind: HorizontalPodAutoscaler
apiVersion: autoscaling/v2
metadata: {name: myconsumer, namespace: mynamespace}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: myconsumer}
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: Object
    object:
      describedObject: {apiVersion: v1, kind: Service, name: rmq}
      metric: {name: rmq-queue-forum-messages}
      target: {type: Value, value: 42}
---
kind: HorizontalPodAutoscaler
apiVersion: autoscaling/v2
metadata: {name: mybackend, namespace: mynamespace}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: mybackend}
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: Pods
    pods:
      metric: {name: php-fpm-active-workers}
      target: {type: AverageValue, averageValue: 5}
---
kind: HorizontalPodAutoscaler
apiVersion: autoscaling/v2
metadata: {name: sqsconsumer, namespace: mynamespace}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: sqsconsumer}
  minReplicas: 1
  maxReplicas: 5
  metrics:
  - type: External
    external:
      metric:
        name: sqs_messages_visible
        selector: {matchLabels: {queue: send_forum_messages}}
      target: {type: Value, value: 42}
"#;

/// Seed 000's HPA for Deployment `command` in namespace `kong`: keep the 60 s average
/// upstream latency at 40 ms, 1–10 replicas, with the seed's behavior block.
pub const KONG_HPA: &str = r#"
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: command, namespace: kong}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: command}
  minReplicas: 1
  maxReplicas: 10
  behavior:
    scaleDown:
      stabilizationWindowSeconds: 1
      policies: [{type: Percent, value: 100, periodSeconds: 10}]
    scaleUp:
      stabilizationWindowSeconds: 1
      policies:
      - {type: Percent, value: 100, periodSeconds: 2}
      - {type: Pods, value: 4, periodSeconds: 2}
      selectPolicy: Max
  metrics:
  - type: Object
    object:
      metric: {name: kong_upstream_latency_ms_60s_average}
      describedObject: {apiVersion: v1, kind: Service, name: command}
      target: {type: Value, value: "40"}
"#;

/// What the backend tests (VictoriaMetrics, Thanos) serve: an Object metric, a rate, and a
/// namespaced Pods metric.
pub const BACKEND_DEFINITIONS: &str = r#"
apiVersion: metrics-registry.io/v1beta1
kind: ClusterServiceMetric
metadata: {name: latency}
spec: {query: 'max(latency{<<.LabelMatchers>>}) by (<<.GroupBy>>)'}
---
apiVersion: metrics-registry.io/v1beta1
kind: ClusterServiceMetric
metadata: {name: requests-per-second}
spec:
  metricName: requests_per_second
  # irate: the last two samples, so the value is exact however the backend extrapolates
  # rate() over a window that is not yet full of samples.
  query: 'sum(irate(requests_total{<<.LabelMatchers>>}[10s])) by (<<.GroupBy>>)'
---
apiVersion: metrics-registry.io/v1beta1
kind: PodMetric
metadata: {name: busy-workers, namespace: shop}
spec: {query: 'sum(busy_workers{<<.LabelMatchers>>}) by (<<.GroupBy>>)'}
"#;
