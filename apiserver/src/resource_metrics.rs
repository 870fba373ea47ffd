//! metrics.k8s.io from Prometheus: the queries a `ResourceMetrics` rule renders for pods
//! and nodes, and the `PodMetrics`/`NodeMetrics` its answers become. Pure: the handler
//! sends the queries.

use crate::prometheus::Sample;
use crate::selector::{promql_string, quote_regex};
use crate::table::{QueryTemplate, ResourceRule};
use crate::wire::{
    self, ContainerMetrics, METRICS_GROUP_VERSION, NodeMetrics, PodMetrics, ResourceMetricsMeta,
    Usage,
};
use std::collections::BTreeMap;

/// Which pods a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodSelection<'a> {
    /// Every namespace's (`/pods`).
    All,
    /// One namespace's, all of them or only these names.
    Namespace(&'a str, Option<&'a [String]>),
}

/// A container query: `<<.LabelMatchers>>` names the pods, `<<.GroupBy>>` keeps namespace,
/// pod and container apart. Every value is escaped.
pub fn container_query(
    rule: &ResourceRule,
    template: &QueryTemplate,
    pods: PodSelection,
) -> String {
    let mut matchers = Vec::new();
    match pods {
        PodSelection::All => matchers.push(format!("{}!=\"\"", rule.pod_label)),
        PodSelection::Namespace(namespace, names) => {
            matchers.push(format!(
                "{}={}",
                rule.namespace_label,
                promql_string(namespace)
            ));
            match names {
                Some(names) => {
                    let alternatives: Vec<String> = names.iter().map(|n| quote_regex(n)).collect();
                    matchers.push(format!(
                        "{}=~{}",
                        rule.pod_label,
                        promql_string(&alternatives.join("|"))
                    ));
                }
                None => matchers.push(format!("{}!=\"\"", rule.pod_label)),
            }
        }
    }
    let group_by = format!(
        "{},{},{}",
        rule.namespace_label, rule.pod_label, rule.container_label
    );
    template.render(&matchers.join(","), &group_by)
}

/// A node query, for one node or every node.
pub fn node_query(rule: &ResourceRule, template: &QueryTemplate, node: Option<&str>) -> String {
    let matcher = match node {
        Some(node) => format!("{}={}", rule.node_label, promql_string(node)),
        None => format!("{}!=\"\"", rule.node_label),
    };
    template.render(&matcher, &rule.node_label)
}

/// CPU cores as a quantity in nanocores, as metrics-server writes it.
fn cpu_quantity(cores: &str) -> Option<String> {
    let cores: f64 = cores.parse().ok()?;
    (cores.is_finite() && cores >= 0.0).then(|| format!("{}n", (cores * 1e9).round() as u64))
}

/// Bytes as a quantity in Ki, as metrics-server writes it (rounded up, so a small
/// container never reads as zero).
fn memory_quantity(bytes: &str) -> Option<String> {
    let bytes: f64 = bytes.parse().ok()?;
    (bytes.is_finite() && bytes >= 0.0).then(|| format!("{}Ki", (bytes / 1024.0).ceil() as u64))
}

/// What one set of samples says per key, and the newest sample time.
struct Readings<K> {
    usage: BTreeMap<K, Usage>,
    newest: BTreeMap<K, f64>,
}

impl<K: Ord + Clone> Readings<K> {
    fn new() -> Self {
        Readings {
            usage: BTreeMap::new(),
            newest: BTreeMap::new(),
        }
    }

    fn add(&mut self, key: K, resource: &'static str, value: Option<String>, at: f64) {
        let Some(value) = value else {
            return;
        };
        self.usage
            .entry(key.clone())
            .or_default()
            .insert(resource, value);
        let newest = self.newest.entry(key).or_insert(at);
        *newest = newest.max(at);
    }
}

fn window(rule: &ResourceRule) -> String {
    format!("{}s", rule.window_seconds)
}

/// `PodMetrics` of every pod the answers name, containers in name order. A sample
/// without the pod, namespace or container label, or with a value that is no quantity,
/// is left out. `now` is the answer's creation time (RFC 3339).
pub fn pod_metrics(
    rule: &ResourceRule,
    cpu: &[Sample],
    memory: &[Sample],
    now: &str,
) -> Vec<PodMetrics> {
    // (namespace, pod) → container → usage
    let mut readings: Readings<(String, String, String)> = Readings::new();
    for (samples, resource, quantity) in [
        (cpu, "cpu", cpu_quantity as fn(&str) -> Option<String>),
        (memory, "memory", memory_quantity),
    ] {
        for sample in samples {
            let (Some(namespace), Some(pod), Some(container)) = (
                sample.labels.get(&rule.namespace_label),
                sample.labels.get(&rule.pod_label),
                sample.labels.get(&rule.container_label),
            ) else {
                continue;
            };
            let key = (
                namespace.to_string(),
                pod.to_string(),
                container.to_string(),
            );
            readings.add(key, resource, quantity(&sample.value), sample.timestamp);
        }
    }
    let mut pods: BTreeMap<(String, String), (f64, Vec<ContainerMetrics>)> = BTreeMap::new();
    for ((namespace, pod, container), usage) in readings.usage {
        let at = readings.newest[&(namespace.clone(), pod.clone(), container.clone())];
        let entry = pods.entry((namespace, pod)).or_insert((at, Vec::new()));
        entry.0 = entry.0.max(at);
        entry.1.push(ContainerMetrics {
            name: container,
            usage,
        });
    }
    pods.into_iter()
        .map(|((namespace, name), (at, containers))| PodMetrics {
            kind: "PodMetrics",
            api_version: METRICS_GROUP_VERSION,
            metadata: ResourceMetricsMeta {
                name,
                namespace: Some(namespace),
                creation_timestamp: now.to_string(),
            },
            timestamp: wire::timestamp(at),
            window: window(rule),
            containers,
        })
        .collect()
}

/// `NodeMetrics` of every node the answers name.
pub fn node_metrics(
    rule: &ResourceRule,
    cpu: &[Sample],
    memory: &[Sample],
    now: &str,
) -> Vec<NodeMetrics> {
    let mut readings: Readings<String> = Readings::new();
    for (samples, resource, quantity) in [
        (cpu, "cpu", cpu_quantity as fn(&str) -> Option<String>),
        (memory, "memory", memory_quantity),
    ] {
        for sample in samples {
            if let Some(node) = sample.labels.get(&rule.node_label) {
                readings.add(
                    node.to_string(),
                    resource,
                    quantity(&sample.value),
                    sample.timestamp,
                );
            }
        }
    }
    readings
        .usage
        .into_iter()
        .map(|(name, usage)| NodeMetrics {
            kind: "NodeMetrics",
            api_version: METRICS_GROUP_VERSION,
            timestamp: wire::timestamp(readings.newest[&name]),
            metadata: ResourceMetricsMeta {
                name,
                namespace: None,
                creation_timestamp: now.to_string(),
            },
            window: window(rule),
            usage,
        })
        .collect()
}

#[cfg(test)]
mod tests;
