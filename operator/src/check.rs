//! `metrics-registry check FILE...`: the compiler run offline, one line per problem; with
//! `--prometheus-url`, each valid definition also evaluated live ([`live`]).

pub mod live;

use crate::compiler::{CompileOptions, compile};
use crate::definitions::{DefinitionBody, DefinitionId};
use crate::sources::folder as manifests;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use metrics_registry_apiserver::external::{EXTERNAL_PREFIX, ExternalScope};
use metrics_registry_apiserver::table::{ExternalRule, MetricRule, ResourceRule, RuleTable};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// Outcome of checking files: how many definitions were read, every problem found, and
/// what the valid ones serve.
#[derive(Debug, Default)]
pub struct CheckReport {
    pub definitions: usize,
    pub problems: Vec<String>,
    pub served: Vec<Served>,
}

/// A valid definition and what it serves, in file order.
#[derive(Debug)]
pub struct Served {
    pub file: PathBuf,
    pub id: DefinitionId,
    pub what: Serves,
}

#[derive(Debug)]
pub enum Serves {
    /// A `*Metric` served as this rule.
    Metric(Arc<MetricRule>),
    /// An `ExternalMetric`/`ClusterExternalMetric` served as this live query.
    LiveExternal(Arc<ExternalRule>),
    /// The served `ResourceMetrics`.
    Resources(Arc<ResourceRule>),
    /// A recording rule of a `CustomPrometheusRules` that makes `metric` an external metric.
    External {
        metric: String,
        expr: String,
        scope: ExternalScope,
    },
}

pub fn check(files: &[PathBuf], options: CompileOptions) -> CheckReport {
    let mut report = CheckReport::default();
    let (located, problems) = manifests::read_all(files);
    report
        .problems
        .extend(problems.iter().map(ToString::to_string));
    let origin: BTreeMap<&DefinitionId, &PathBuf> = located
        .iter()
        .map(|item| (&item.definition.id, &item.file))
        .collect();
    let definitions: Vec<_> = located.iter().map(|l| l.definition.clone()).collect();
    report.definitions = definitions.len();
    let compiled = compile(&definitions, options);
    for (id, problem) in compiled.not_ready() {
        let file = origin
            .get(id)
            .map(|f| f.display().to_string())
            .unwrap_or_default();
        report.problems.push(format!(
            "{file}: {id}: {}: {}",
            problem.reason, problem.message
        ));
    }
    for item in &located {
        let definition = &item.definition;
        let Some(verdict) = compiled.verdicts.get(&definition.id) else {
            continue;
        };
        if !verdict.is_ready() {
            continue;
        }
        let served = |what| Served {
            file: item.file.clone(),
            id: definition.id.clone(),
            what,
        };
        match &definition.body {
            DefinitionBody::Metric(_) => {
                if let Some(rule) = served_rule(&compiled.table, &definition.id, verdict) {
                    report.served.push(served(Serves::Metric(rule)));
                }
            }
            DefinitionBody::External(_) => {
                let rule = verdict.metric_name.as_deref().and_then(|metric| {
                    let group = compiled.table.external_group(metric)?;
                    match &definition.id.namespace {
                        Some(namespace) => group.namespaced.get(namespace).cloned(),
                        None => group.cluster.clone(),
                    }
                });
                if let Some(rule) = rule {
                    report.served.push(served(Serves::LiveExternal(rule)));
                }
            }
            DefinitionBody::Resources(_) => {
                // Only the served one (the oldest valid); the others are Conflict.
                if let Some(rule) = compiled.table.resource_rule()
                    && rule.source == definition.id.to_string()
                {
                    report.served.push(served(Serves::Resources(rule.clone())));
                }
            }
            // Serves nothing itself; the definitions naming it are checked above.
            DefinitionBody::Backend(_) => {}
            DefinitionBody::Rules(spec) => {
                let rules = spec.groups.iter().flat_map(|group| &group.rules);
                for rule in rules {
                    let Some(metric) = rule
                        .record
                        .as_deref()
                        .and_then(|record| record.strip_prefix(EXTERNAL_PREFIX))
                        .filter(|metric| verdict.external_metrics.iter().any(|m| m == metric))
                    else {
                        continue;
                    };
                    let expr = match &rule.expr {
                        IntOrString::String(expr) => expr.clone(),
                        IntOrString::Int(number) => number.to_string(),
                    };
                    report.served.push(served(Serves::External {
                        metric: metric.to_string(),
                        expr,
                        scope: compiled.table.external_scope(metric),
                    }));
                }
            }
        }
    }
    report
}

/// The rule a served `*Metric` definition became.
fn served_rule(
    table: &RuleTable,
    id: &DefinitionId,
    verdict: &crate::compiler::Verdict,
) -> Option<Arc<MetricRule>> {
    let group = table.group(id.kind.object()?, verdict.metric_name.as_deref()?)?;
    match &id.namespace {
        Some(namespace) => group.namespaced.get(namespace).cloned(),
        None => group.cluster.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_problem_with_file_and_reason() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.yaml");
        let bad = dir.path().join("bad.yaml");
        std::fs::write(&good, "apiVersion: metrics-registry.io/v1beta1\nkind: ClusterPodMetric\nmetadata: {name: ok}\nspec: {query: 'x{<<.LabelMatchers>>}'}\n").unwrap();
        std::fs::write(&bad, "apiVersion: metrics-registry.io/v1beta1\nkind: PodMetric\nmetadata: {name: p, namespace: a}\nspec: {query: 'x{<<.Series>>}'}\n---\napiVersion: metrics-registry.io/v1beta1\nkind: PodMetric\nmetadata: {name: q, namespace: a}\nspec: {query: 'sum(x{<<.LabelMatchers>>}'}\n").unwrap();
        let report = check(std::slice::from_ref(&good), CompileOptions::default());
        assert_eq!((report.definitions, report.problems.len()), (1, 0));
        let report = check(&[good, bad], CompileOptions::default());
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
        assert!(
            report.problems[0].contains("bad.yaml: PodMetric a/p: UnknownPlaceholder:"),
            "{}",
            report.problems[0]
        );
        assert!(
            report.problems[1].contains("PodMetric a/q: InvalidQuery:"),
            "{}",
            report.problems[1]
        );
    }

    #[test]
    fn a_selector_in_an_aggregation_parameter_is_a_namespace_escape() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("escape.yaml");
        // The example: φ is another namespace's sum, so the value served is it.
        std::fs::write(&file, "apiVersion: metrics-registry.io/v1beta1\nkind: ServiceMetric\nmetadata: {name: e, namespace: a}\nspec: {query: 'quantile(scalar(sum(x{namespace=\"other\"})) / 1e4, x{<<.LabelMatchers>>})'}\n").unwrap();
        let report = check(&[file], CompileOptions::default());
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert!(
            report.problems[0].contains("ServiceMetric a/e: NamespaceEscape:")
                && report.problems[0].contains("namespace=\"other\""),
            "{}",
            report.problems[0]
        );
        assert!(report.served.is_empty());
    }
}
