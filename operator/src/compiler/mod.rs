//! The pure compiler: a snapshot of definitions in, a [`RuleTable`] and one verdict per
//! definition out. No kube, no I/O, so every rule of precedence, conflict and validation
//! is tested by plain unit tests.

mod incremental;
mod memo;
mod promql;
mod rules;
pub mod selectors;
mod separable;
mod template;

pub use incremental::{Change, Delta, IncrementalCompiler};

pub use promql::ISOLATION_LABEL;

use crate::definitions::{Definition, DefinitionBody, DefinitionId};
pub use metrics_registry_apiserver::external::ExternalScope;
use metrics_registry_apiserver::rules::{
    MetricRule, ObjectKind, QueryTemplate, RuleTable, Scope, Segment,
};
use metrics_registry_apiserver::selector::is_prometheus_label_name;
use metrics_registry_crds::{MetricSpec, RuleGroup};
use std::collections::BTreeMap;
use std::fmt;

/// Why a definition is not served.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    InvalidMetricName,
    InvalidLabel,
    InvalidWindow,
    UnknownPlaceholder,
    MissingPlaceholder,
    InvalidQuery,
    NamespaceEscape,
    Conflict,
    InvalidRule,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub reason: Reason,
    pub message: String,
}

impl Problem {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        Problem {
            reason,
            message: message.into(),
        }
    }
}

/// The outcome for one definition, written to its status.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Verdict {
    /// `None` when served.
    pub problem: Option<Problem>,
    /// The metric name clients use (metric kinds).
    pub metric_name: Option<String>,
    /// Cluster kinds: namespaces whose own definition overrides this one.
    pub overridden_in: Vec<String>,
    /// CustomPrometheusRules: external metrics its recording rules create.
    pub external_metrics: Vec<String>,
}

impl Verdict {
    pub fn is_ready(&self) -> bool {
        self.problem.is_none()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompileOptions {
    /// Pin namespaced definitions to their namespace (on unless turned off by a flag).
    pub namespace_isolation: bool,
    /// Which series an external metric reads unless a `CustomPrometheusRules` declaring
    /// it says otherwise: by default the asking HPA's namespace and no namespace.
    pub external_scope: ExternalScope,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            namespace_isolation: true,
            external_scope: ExternalScope::default(),
        }
    }
}

/// What a snapshot compiles to.
#[derive(Debug, Default)]
pub struct Compiled {
    pub table: RuleTable,
    pub verdicts: BTreeMap<DefinitionId, Verdict>,
    /// Valid rule groups of each `CustomPrometheusRules`, to hand to Prometheus.
    pub rule_groups: BTreeMap<DefinitionId, Vec<RuleGroup>>,
}

impl Compiled {
    pub fn not_ready(&self) -> impl Iterator<Item = (&DefinitionId, &Problem)> {
        self.verdicts
            .iter()
            .filter_map(|(id, v)| v.problem.as_ref().map(|p| (id, p)))
    }
}

/// Compiles a snapshot. Order of the input does not matter: conflicts are decided by
/// age (`created`), then namespace and name, so the same snapshot always gives the same table.
pub fn compile(definitions: &[Definition], options: CompileOptions) -> Compiled {
    let mut ordered: Vec<&Definition> = definitions.iter().collect();
    ordered.sort_by(|a, b| {
        let age = |d: &Definition| d.created.clone().unwrap_or_default();
        age(a).cmp(&age(b)).then_with(|| a.id.cmp(&b.id))
    });

    let mut compiled = Compiled::default();
    let mut cluster_rules: Vec<(DefinitionId, ObjectKind, String)> = Vec::new();
    for definition in ordered {
        let id = definition.id.clone();
        let verdict = match &definition.body {
            DefinitionBody::Metric(spec) => {
                let metric_name = spec.metric_name.clone().unwrap_or_else(|| id.name.clone());
                let problem = compile_metric(&id, spec, &metric_name, options, None)
                    .and_then(|(scope, rule)| {
                        let object = rule.object;
                        compiled
                            .table
                            .insert(scope.clone(), rule)
                            .map_err(|taken| Problem::new(Reason::Conflict, taken.to_string()))?;
                        if scope == Scope::Cluster {
                            cluster_rules.push((id.clone(), object, metric_name.clone()));
                        }
                        Ok(())
                    })
                    .err();
                Verdict {
                    problem,
                    metric_name: Some(metric_name),
                    ..Verdict::default()
                }
            }
            DefinitionBody::Rules(spec) => match rules::validate(&spec.groups) {
                Ok(external) => {
                    for name in &external {
                        compiled.table.insert_external(name.clone());
                    }
                    compiled.rule_groups.insert(id.clone(), spec.groups.clone());
                    Verdict {
                        external_metrics: external,
                        ..Verdict::default()
                    }
                }
                Err(message) => Verdict {
                    problem: Some(Problem::new(Reason::InvalidRule, message)),
                    ..Verdict::default()
                },
            },
        };
        compiled.verdicts.insert(id, verdict);
    }
    for (id, object, metric) in cluster_rules {
        let overriding = compiled.table.namespaces_defining(object, &metric);
        if let Some(verdict) = compiled.verdicts.get_mut(&id) {
            verdict.overridden_in = overriding;
        }
    }
    let declared = definitions.iter().filter_map(|definition| {
        let DefinitionBody::Rules(spec) = &definition.body else {
            return None;
        };
        let verdict = compiled.verdicts.get(&definition.id)?;
        Some((
            verdict.external_metrics.as_slice(),
            spec.external_metrics_namespaced,
        ))
    });
    let namespacing = rules::external_namespacing(options.external_scope, declared);
    compiled.table.set_external_namespacing(namespacing);
    compiled
}

/// Metric names end up as URL path segments and in discovery.
fn is_metric_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | ':'))
}

/// One definition on its own; `memo` saves re-parsing templates seen before.
fn compile_metric(
    id: &DefinitionId,
    spec: &MetricSpec,
    metric_name: &str,
    options: CompileOptions,
    memo: Option<&memo::ParseMemo>,
) -> Result<(Scope, MetricRule), Problem> {
    let object = id.kind.object().expect("metric kinds describe objects");
    if !is_metric_name(metric_name) {
        return Err(Problem::new(
            Reason::InvalidMetricName,
            format!(
                "metric name {metric_name:?} may only hold letters, digits, '_', '-', '.' and ':'"
            ),
        ));
    }
    let object_label = spec
        .object_label
        .clone()
        .unwrap_or_else(|| object.default_label().to_string());
    let namespace_label = spec
        .namespace_label
        .clone()
        .unwrap_or_else(|| "namespace".to_string());
    for (field, label) in [
        ("objectLabel", &object_label),
        ("namespaceLabel", &namespace_label),
    ] {
        if !is_prometheus_label_name(label) {
            return Err(Problem::new(
                Reason::InvalidLabel,
                format!(
                    "{field} {label:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
                ),
            ));
        }
    }
    if let Some(window) = spec.window_seconds
        && window <= 0
    {
        return Err(Problem::new(
            Reason::InvalidWindow,
            format!("windowSeconds must be positive, not {window}"),
        ));
    }
    let segments = template::split_placeholders(&spec.query)
        .map_err(|m| Problem::new(Reason::UnknownPlaceholder, m))?;
    if !segments.contains(&Segment::LabelMatchers) {
        return Err(Problem::new(
            Reason::MissingPlaceholder,
            "the query has no <<.LabelMatchers>>, so it cannot tell objects apart; put it in the selector, e.g. x{<<.LabelMatchers>>}",
        ));
    }
    match memo {
        Some(memo) => memo.validate(&segments, &namespace_label, &object_label),
        None => promql::validate(&segments, &namespace_label, &object_label),
    }
    .map_err(|m| Problem::new(Reason::InvalidQuery, m))?;

    let separable = match memo {
        Some(memo) => memo.separable(&segments, &object_label),
        None => separable::separable(&segments, &object_label),
    };
    let scope = match &id.namespace {
        Some(namespace) if id.kind.is_namespaced() => Scope::Namespace(namespace.clone()),
        _ => Scope::Cluster,
    };
    let segments = match (&scope, options.namespace_isolation) {
        (Scope::Namespace(namespace), true) => match memo {
            Some(memo) => memo.isolate(&segments, namespace),
            None => promql::isolate(&segments, namespace),
        }
        .map_err(|m| Problem::new(Reason::NamespaceEscape, m))?,
        _ => segments,
    };
    Ok((
        scope,
        MetricRule {
            object,
            metric: metric_name.to_string(),
            template: QueryTemplate::new(segments),
            object_label,
            namespace_label,
            window_seconds: spec.window_seconds,
            separable,
            source: id.to_string(),
        },
    ))
}

#[cfg(test)]
mod incremental_tests;
#[cfg(test)]
mod isolation_tests;
#[cfg(test)]
mod tests;
