use super::*;
use crate::table::Segment;

fn template(text: &str) -> QueryTemplate {
    // `sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>})` split by hand.
    let (before, rest) = text.split_once("<<.GroupBy>>").unwrap();
    let (middle, after) = rest.split_once("<<.LabelMatchers>>").unwrap();
    QueryTemplate::new(vec![
        Segment::Literal(before.into()),
        Segment::GroupBy,
        Segment::Literal(middle.into()),
        Segment::LabelMatchers,
        Segment::Literal(after.into()),
    ])
}

fn rule() -> ResourceRule {
    let templates = |name: &str| crate::table::ResourceTemplates {
        container: template(&format!(
            "sum by (<<.GroupBy>>) ({name}{{<<.LabelMatchers>>}})"
        )),
        node: template(&format!(
            "sum by (<<.GroupBy>>) (node_{name}{{<<.LabelMatchers>>}})"
        )),
    };
    ResourceRule {
        cpu: templates("cpu"),
        memory: templates("mem"),
        pod_label: "pod".into(),
        namespace_label: "namespace".into(),
        container_label: "container".into(),
        node_label: "node".into(),
        window_seconds: 180,
        backend: "default".into(),
        source: "ResourceMetrics default".into(),
    }
}

fn sample(labels: &[(&str, &str)], value: &str, at: f64) -> Sample {
    Sample {
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        timestamp: at,
        value: value.into(),
    }
}

#[test]
fn queries_name_the_pods_and_nodes_asked_for_escaped() {
    let rule = rule();
    assert_eq!(
        container_query(
            &rule,
            &rule.cpu.container,
            PodSelection::Namespace("shop", None)
        ),
        r#"sum by (namespace,pod,container) (cpu{namespace="shop",pod!=""})"#
    );
    let names = vec!["web-1".to_string(), "a.b\"c".to_string()];
    assert_eq!(
        container_query(
            &rule,
            &rule.cpu.container,
            PodSelection::Namespace("x\"y", Some(&names))
        ),
        r#"sum by (namespace,pod,container) (cpu{namespace="x\"y",pod=~"web-1|a\\.b\"c"})"#
    );
    assert_eq!(
        container_query(&rule, &rule.memory.container, PodSelection::All),
        r#"sum by (namespace,pod,container) (mem{pod!=""})"#
    );
    assert_eq!(
        node_query(&rule, &rule.cpu.node, Some("node-1")),
        r#"sum by (node) (node_cpu{node="node-1"})"#
    );
    assert_eq!(
        node_query(&rule, &rule.cpu.node, None),
        r#"sum by (node) (node_cpu{node!=""})"#
    );
}

#[test]
fn answers_become_pod_and_node_metrics_in_metrics_server_units() {
    let rule = rule();
    let cpu = [
        sample(
            &[
                ("namespace", "shop"),
                ("pod", "web-1"),
                ("container", "app"),
            ],
            "0.25",
            100.0,
        ),
        sample(
            &[
                ("namespace", "shop"),
                ("pod", "web-1"),
                ("container", "sidecar"),
            ],
            "0.000000001",
            101.0,
        ),
        // No container label: left out; a value no quantity holds: left out.
        sample(&[("namespace", "shop"), ("pod", "web-1")], "1", 100.0),
        sample(
            &[
                ("namespace", "shop"),
                ("pod", "web-2"),
                ("container", "app"),
            ],
            "NaN",
            100.0,
        ),
    ];
    let memory = [
        sample(
            &[
                ("namespace", "shop"),
                ("pod", "web-1"),
                ("container", "app"),
            ],
            "1048576",
            100.0,
        ),
        sample(
            &[
                ("namespace", "shop"),
                ("pod", "web-1"),
                ("container", "sidecar"),
            ],
            "1",
            100.0,
        ),
    ];
    let pods = pod_metrics(&rule, &cpu, &memory, "2026-01-01T00:00:00Z");
    assert_eq!(pods.len(), 1, "{pods:?}");
    let json = serde_json::to_value(&pods[0]).unwrap();
    assert_eq!(
        json,
        serde_json::json!({
            "kind": "PodMetrics",
            "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {"name": "web-1", "namespace": "shop", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "timestamp": "1970-01-01T00:01:41Z",
            "window": "180s",
            "containers": [
                {"name": "app", "usage": {"cpu": "250000000n", "memory": "1024Ki"}},
                {"name": "sidecar", "usage": {"cpu": "1n", "memory": "1Ki"}},
            ]
        })
    );
    let nodes = node_metrics(
        &rule,
        &[sample(&[("node", "n1")], "1.5", 100.0)],
        &[
            sample(&[("node", "n1")], "2048", 100.0),
            sample(&[("other", "x")], "1", 100.0),
        ],
        "2026-01-01T00:00:00Z",
    );
    assert_eq!(
        serde_json::to_value(&nodes).unwrap(),
        serde_json::json!([{
            "kind": "NodeMetrics",
            "apiVersion": "metrics.k8s.io/v1beta1",
            "metadata": {"name": "n1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "timestamp": "1970-01-01T00:01:40Z",
            "window": "180s",
            "usage": {"cpu": "1500000000n", "memory": "2Ki"},
        }])
    );
}
