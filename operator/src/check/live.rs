//! `check --prometheus-url`: each valid definition evaluated against a live Prometheus
//! with a sample request — every object of the definition's namespace (or of every
//! namespace, for a cluster-wide definition) — printing the query and what it would serve.
//! Recording rules of `CustomPrometheusRules` are evaluated as the series they would
//! record, since Prometheus has not loaded them yet in CI.

use super::{Served, Serves};
use metrics_registry_apiserver::external::{EXTERNAL_PREFIX, ExternalScope};
use metrics_registry_apiserver::prometheus::{PrometheusClient, Sample};
use metrics_registry_apiserver::quantity::milli_quantity;
use metrics_registry_apiserver::render::{ObjectSelection, RenderRequest, render_query};
use metrics_registry_apiserver::resource_metrics::{PodSelection, container_query, pod_metrics};
use metrics_registry_apiserver::table::{ExternalRule, MetricRule, ObjectKind, ResourceRule};
use std::collections::HashSet;
use std::fmt;

/// How the sample requests are made.
#[derive(Clone, Debug)]
pub struct SampleOptions {
    /// Namespace asked for cluster-wide definitions; `None`: every namespace.
    pub namespace: Option<String>,
    /// Objects (or series) printed per definition; the rest are counted.
    pub max_lines: usize,
}

impl Default for SampleOptions {
    fn default() -> Self {
        SampleOptions {
            namespace: None,
            max_lines: 20,
        }
    }
}

/// One definition's sample request and its answer.
#[derive(Debug)]
pub struct Evaluation {
    /// `file: Kind ns/name: what is asked`.
    pub heading: String,
    pub query: String,
    pub outcome: Outcome,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// What would be served, one line per object or series, plus remarks (series that
    /// cannot be served, lines left out).
    Data {
        lines: Vec<String>,
        remarks: Vec<String>,
    },
    /// Prometheus answered, but nothing would be served; why.
    NoData(String),
    /// Prometheus failed; the error as the API would report it.
    Failed(String),
}

impl fmt::Display for Evaluation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.heading)?;
        write!(f, "  query: {}", self.query.trim())?;
        match &self.outcome {
            Outcome::Data { lines, remarks } => {
                for line in lines.iter().chain(remarks) {
                    write!(f, "\n  {line}")?;
                }
                Ok(())
            }
            Outcome::NoData(why) => write!(f, "\n  no data: {why}"),
            Outcome::Failed(error) => write!(f, "\n  error: {error}"),
        }
    }
}

/// Evaluates every served definition, one query each, in order.
pub async fn evaluate(
    served: &[Served],
    prometheus: &PrometheusClient,
    options: &SampleOptions,
) -> Vec<Evaluation> {
    let mut evaluations = Vec::with_capacity(served.len());
    for item in served {
        let sample = SampleRequest::new(item, options);
        let outcome = match prometheus.query(&sample.query).await {
            Ok(samples) => sample.outcome(&samples, options.max_lines),
            Err(error) => Outcome::Failed(error.to_string()),
        };
        evaluations.push(Evaluation {
            heading: format!("{}: {}: {}", item.file.display(), item.id, sample.asks),
            query: sample.query,
            outcome,
        });
    }
    evaluations
}

/// The request a definition is tried with.
struct SampleRequest<'a> {
    served: &'a Serves,
    /// The namespace asked, `None` for every namespace.
    namespace: Option<String>,
    asks: String,
    query: String,
}

impl<'a> SampleRequest<'a> {
    fn new(item: &'a Served, options: &SampleOptions) -> Self {
        match &item.what {
            Serves::Metric(rule) => {
                let namespace = item.id.namespace.clone().or(options.namespace.clone());
                let place = match &namespace {
                    Some(namespace) => format!("in namespace {namespace}"),
                    None => "in every namespace".to_string(),
                };
                let objects = match rule.object {
                    ObjectKind::Namespace => "the namespace".to_string(),
                    kind => format!("every {}", kind.kind()),
                };
                SampleRequest {
                    served: &item.what,
                    asks: format!(
                        "{}/{} of {objects} {place}",
                        rule.object.resource(),
                        rule.metric
                    ),
                    query: sample_query(rule, namespace.as_deref()),
                    namespace,
                }
            }
            Serves::LiveExternal(rule) => {
                let namespace = item.id.namespace.clone().or(options.namespace.clone());
                let (place, query) = match &namespace {
                    Some(namespace) => (
                        format!("in namespace {namespace}"),
                        rule.query(&[], namespace),
                    ),
                    // Every namespace's series: without the namespace matcher.
                    None => (
                        "in every namespace".to_string(),
                        ExternalRule {
                            namespace_label: None,
                            ..ExternalRule::clone(rule)
                        }
                        .query(&[], ""),
                    ),
                };
                SampleRequest {
                    served: &item.what,
                    namespace,
                    asks: format!(
                        "external metric {} {place}, the live query without a selector",
                        rule.metric
                    ),
                    query,
                }
            }
            Serves::Resources(rule) => {
                let (place, pods) = match &options.namespace {
                    Some(namespace) => (
                        format!("in namespace {namespace}"),
                        PodSelection::Namespace(namespace, None),
                    ),
                    None => ("in every namespace".to_string(), PodSelection::All),
                };
                SampleRequest {
                    served: &item.what,
                    namespace: options.namespace.clone(),
                    asks: format!("metrics.k8s.io: the CPU of every pod {place}"),
                    query: container_query(rule, &rule.cpu.container, pods),
                }
            }
            Serves::External {
                metric,
                expr,
                scope,
            } => SampleRequest {
                served: &item.what,
                namespace: None,
                asks: format!(
                    "external metric {metric}, the series {EXTERNAL_PREFIX}{metric} would hold ({})",
                    match scope {
                        ExternalScope::Namespace =>
                            "namespaced: an HPA reads only those of its own namespace",
                        ExternalScope::NamespaceOrUnlabelled =>
                            "an HPA reads those of its own namespace and those without a namespace label",
                        ExternalScope::Cluster => "an HPA in any namespace reads them all",
                    }
                ),
                query: expr.clone(),
            },
        }
    }

    fn outcome(&self, samples: &[Sample], max_lines: usize) -> Outcome {
        match self.served {
            Serves::Metric(rule) => {
                metric_outcome(rule, self.namespace.as_deref(), samples, max_lines)
            }
            Serves::External { scope, .. } => external_outcome(*scope, samples, max_lines),
            // Pinned, if namespaced, by the compiler: every series it returns is served.
            Serves::LiveExternal(_) => external_outcome(ExternalScope::Cluster, samples, max_lines),
            Serves::Resources(rule) => resource_outcome(rule, samples, max_lines),
        }
    }
}

/// The query of a request for every object with data: in `namespace`, as the API renders
/// it; in every namespace (`None`), with the namespace label matched and grouped by too,
/// so objects of the same name in different namespaces stay apart.
pub fn sample_query(rule: &MetricRule, namespace: Option<&str>) -> String {
    match namespace {
        Some(namespace) => {
            let objects = if rule.object == ObjectKind::Namespace {
                ObjectSelection::One(namespace)
            } else {
                ObjectSelection::All
            };
            render_query(
                rule,
                &RenderRequest {
                    namespace,
                    objects,
                    metric_matchers: &[],
                },
            )
        }
        None => {
            let (object, namespace) = (&rule.object_label, &rule.namespace_label);
            if object == namespace {
                rule.template.render(&format!("{object}!=\"\""), object)
            } else {
                rule.template.render(
                    &format!("{namespace}!=\"\",{object}!=\"\""),
                    &format!("{object},{namespace}"),
                )
            }
        }
    }
}

/// Turns served values into lines, at most `max_lines` of them.
fn lines_of(values: Vec<String>, max_lines: usize, remarks: &mut Vec<String>) -> Vec<String> {
    let total = values.len();
    let mut lines = values;
    if total > max_lines {
        lines.truncate(max_lines);
        remarks.push(format!("… and {} more", total - max_lines));
    }
    lines
}

fn value_text(sample: &Sample) -> String {
    match milli_quantity(&sample.value) {
        Ok(quantity) => quantity,
        Err(problem) => format!("not served ({problem})"),
    }
}

fn metric_outcome(
    rule: &MetricRule,
    namespace: Option<&str>,
    samples: &[Sample],
    max_lines: usize,
) -> Outcome {
    if samples.is_empty() {
        return Outcome::NoData("Prometheus returned no series for this query".to_string());
    }
    let label = &rule.object_label;
    let mut remarks = Vec::new();
    let mut values = Vec::new();
    let mut usable = 0;
    if let (ObjectKind::Namespace, Some(namespace)) = (rule.object, namespace) {
        // As the API picks it: the namespace's series, or a single unlabelled one.
        let found = samples
            .iter()
            .find(|s| s.labels.get(label) == Some(namespace))
            .or(match samples {
                [one] if !one.labels.contains(label) => Some(one),
                _ => None,
            });
        let Some(sample) = found else {
            return Outcome::NoData(format!(
                "Prometheus returned {} series but none with {label}={namespace:?}",
                samples.len()
            ));
        };
        usable += usize::from(milli_quantity(&sample.value).is_ok());
        values.push(format!("{namespace}: {}", value_text(sample)));
    } else {
        let mut seen = HashSet::new();
        let mut unlabelled = 0;
        for sample in samples {
            let Some(name) = sample.labels.get(label) else {
                unlabelled += 1;
                continue;
            };
            let object = match namespace {
                Some(_) => name.to_string(),
                None => format!(
                    "{}/{name}",
                    sample.labels.get(&rule.namespace_label).unwrap_or("")
                ),
            };
            if seen.insert(object.clone()) {
                usable += usize::from(milli_quantity(&sample.value).is_ok());
                values.push(format!("{object}: {}", value_text(sample)));
            }
        }
        if unlabelled > 0 {
            remarks.push(format!(
                "{unlabelled} series without a {label} label are not served: group the query by (<<.GroupBy>>)"
            ));
        }
    }
    if usable == 0 {
        let mut why = format!(
            "Prometheus returned {} series, none of them servable",
            samples.len()
        );
        for line in values.iter().chain(&remarks) {
            why.push_str("; ");
            why.push_str(line);
        }
        return Outcome::NoData(why);
    }
    let lines = lines_of(values, max_lines, &mut remarks);
    Outcome::Data { lines, remarks }
}

fn external_outcome(scope: ExternalScope, samples: &[Sample], max_lines: usize) -> Outcome {
    if samples.is_empty() {
        return Outcome::NoData("Prometheus returned no series for this expression".to_string());
    }
    let mut remarks = Vec::new();
    let values: Vec<String> = samples
        .iter()
        .map(|sample| {
            let labels: Vec<String> = sample
                .labels
                .iter()
                .filter(|(name, _)| *name != "__name__")
                .map(|(name, value)| format!("{name}={value:?}"))
                .collect();
            format!("{{{}}}: {}", labels.join(","), value_text(sample))
        })
        .collect();
    if scope == ExternalScope::Namespace {
        let without = samples
            .iter()
            .filter(|s| !s.labels.contains("namespace"))
            .count();
        if without > 0 {
            remarks.push(format!(
                "{without} series without a namespace label: no HPA reads them (keep `namespace` in the recording)"
            ));
        }
    }
    let lines = lines_of(values, max_lines, &mut remarks);
    Outcome::Data { lines, remarks }
}

/// The pods' containers and their CPU, as `PodMetrics` would hold them.
fn resource_outcome(rule: &ResourceRule, samples: &[Sample], max_lines: usize) -> Outcome {
    let pods = pod_metrics(rule, samples, &[], "");
    if pods.is_empty() {
        return Outcome::NoData(format!(
            "no series with the labels {}, {} and {}",
            rule.namespace_label, rule.pod_label, rule.container_label
        ));
    }
    let mut remarks = Vec::new();
    let values: Vec<String> = pods
        .iter()
        .flat_map(|pod| {
            pod.containers.iter().map(move |container| {
                format!(
                    "{}/{} {}: cpu {}",
                    pod.metadata.namespace.as_deref().unwrap_or_default(),
                    pod.metadata.name,
                    container.name,
                    container
                        .usage
                        .get("cpu")
                        .map(String::as_str)
                        .unwrap_or("?")
                )
            })
        })
        .collect();
    let lines = lines_of(values, max_lines, &mut remarks);
    Outcome::Data { lines, remarks }
}

#[cfg(test)]
mod tests;
