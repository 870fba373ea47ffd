//! The pure compiler: definitions in, a [`RuleTable`] and one verdict per definition
//! out, change by change ([`IncrementalCompiler`]) or for a whole snapshot ([`compile`],
//! the same compiler fed everything at once). No kube, no I/O, so every rule of precedence, conflict and validation
//! is tested by plain unit tests.

mod backend;
mod incremental;
mod memo;
mod promql;
mod recording_rules;
pub mod selectors;
mod separable;
mod template;

pub use incremental::{Change, Delta, IncrementalCompiler};

pub use promql::ISOLATION_LABEL;

use crate::definitions::{Definition, DefinitionId};
pub use metrics_registry_apiserver::external::ExternalScope;
use metrics_registry_apiserver::selector::is_prometheus_label_name;
use metrics_registry_apiserver::table::{
    DEFAULT_BACKEND, ExternalRule, MetricRule, QueryBounds, QueryTemplate, ResourceRule,
    ResourceTemplates, RuleTable, Scope, Segment,
};
use metrics_registry_crds::{
    ExternalSpec, MetricSpec, ResourceMetricsSpec, ResourceQueries, RuleGroup,
};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

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
    InvalidBackend,
    UnknownBackend,
    BackendNotAllowed,
    InvalidDuration,
}

impl Reason {
    pub const ALL: [Reason; 13] = [
        Reason::InvalidMetricName,
        Reason::InvalidLabel,
        Reason::InvalidWindow,
        Reason::UnknownPlaceholder,
        Reason::MissingPlaceholder,
        Reason::InvalidQuery,
        Reason::NamespaceEscape,
        Reason::Conflict,
        Reason::InvalidRule,
        Reason::InvalidBackend,
        Reason::UnknownBackend,
        Reason::BackendNotAllowed,
        Reason::InvalidDuration,
    ];

    /// The condition's `reason`, as the status and `check` print it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidMetricName => "InvalidMetricName",
            Reason::InvalidLabel => "InvalidLabel",
            Reason::InvalidWindow => "InvalidWindow",
            Reason::UnknownPlaceholder => "UnknownPlaceholder",
            Reason::MissingPlaceholder => "MissingPlaceholder",
            Reason::InvalidQuery => "InvalidQuery",
            Reason::NamespaceEscape => "NamespaceEscape",
            Reason::Conflict => "Conflict",
            Reason::InvalidRule => "InvalidRule",
            Reason::InvalidBackend => "InvalidBackend",
            Reason::UnknownBackend => "UnknownBackend",
            Reason::BackendNotAllowed => "BackendNotAllowed",
            Reason::InvalidDuration => "InvalidDuration",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
    /// A served definition that names a `MetricsBackend`: its name.
    pub backend: Option<String>,
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
pub struct CompiledSnapshot {
    pub table: RuleTable,
    pub verdicts: BTreeMap<DefinitionId, Verdict>,
    /// Valid rule groups of each `CustomPrometheusRules`, to hand to Prometheus.
    pub rule_groups: BTreeMap<DefinitionId, Vec<RuleGroup>>,
}

impl CompiledSnapshot {
    pub fn not_ready(&self) -> impl Iterator<Item = (&DefinitionId, &Problem)> {
        self.verdicts
            .iter()
            .filter_map(|(id, v)| v.problem.as_ref().map(|p| (id, p)))
    }
}

/// Compiles a snapshot: every definition applied at once to an empty
/// [`IncrementalCompiler`], the compiler the server runs, so that `check`, `convert` and
/// the fuzz targets judge definitions exactly as the server does. Order of the input
/// does not matter: conflicts are decided by age (`created`), then namespace and name.
pub fn compile(definitions: &[Definition], options: CompileOptions) -> CompiledSnapshot {
    let mut compiler = IncrementalCompiler::new(options);
    compiler.apply(
        definitions
            .iter()
            .map(|definition| Change::Upsert(Arc::new(definition.clone()))),
    );
    let verdicts = compiler
        .verdicts()
        .map(|(id, verdict)| (id.clone(), verdict.clone()))
        .collect();
    let rule_groups = compiler.rule_groups();
    let table = compiler.table();
    drop(compiler);
    CompiledSnapshot {
        // The compiler is gone, so the table is not shared and is not copied.
        table: Arc::unwrap_or_clone(table),
        verdicts,
        rule_groups,
    }
}

/// `rule` cannot be served: its (kind, metric, scope) is taken by the definition `holder`.
fn conflict(rule: &MetricRule, holder: &str) -> Problem {
    Problem::new(
        Reason::Conflict,
        format!(
            "metric {:?} for {} is already defined by {holder}",
            rule.metric,
            rule.object.resource()
        ),
    )
}

/// `rule` cannot be served: its external metric name in its scope is taken by `holder`.
fn external_conflict(rule: &ExternalRule, holder: &str) -> Problem {
    Problem::new(
        Reason::Conflict,
        format!(
            "external metric {:?} is already defined by {holder}",
            rule.metric
        ),
    )
}

/// A second `ResourceMetrics`: only one says how `metrics.k8s.io` is served.
fn resources_conflict(holder: &str) -> Problem {
    Problem::new(
        Reason::Conflict,
        format!("metrics.k8s.io is already served as {holder}; only the oldest ResourceMetrics is"),
    )
}

/// A metric name clients can ask for, or `InvalidMetricName`.
fn check_metric_name(metric_name: &str) -> Result<(), Problem> {
    if is_metric_name(metric_name) {
        return Ok(());
    }
    Err(Problem::new(
        Reason::InvalidMetricName,
        format!("metric name {metric_name:?} may only hold letters, digits, '_', '-', '.' and ':'"),
    ))
}

/// The definition's scope, and its template pinned to its namespace when it is a
/// namespaced one (and isolation is on); `NamespaceEscape` when it cannot be pinned.
fn scoped(
    id: &DefinitionId,
    segments: Vec<Segment>,
    options: CompileOptions,
    memo: Option<&memo::ParseMemo>,
) -> Result<(Scope, Vec<Segment>), Problem> {
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
    Ok((scope, segments))
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
    check_metric_name(metric_name)?;
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
    let (scope, segments) = scoped(id, segments, options, memo)?;
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
            backend: DEFAULT_BACKEND.to_string(),
            bounds: query_bounds(spec.timeout.as_deref(), spec.max_age.as_deref())?,
            source: id.to_string(),
        },
    ))
}

/// `spec.timeout` and `spec.maxAge` of a definition.
fn query_bounds(timeout: Option<&str>, max_age: Option<&str>) -> Result<QueryBounds, Problem> {
    let parse = |field: &str, text: Option<&str>| {
        text.map(|text| {
            backend::parse_duration(text).ok_or_else(|| {
                Problem::new(
                    Reason::InvalidDuration,
                    format!("{field} {text:?} is not a positive duration such as 500ms, 5s or 1m"),
                )
            })
        })
        .transpose()
    };
    Ok(QueryBounds {
        timeout: parse("timeout", timeout)?,
        max_age: parse("maxAge", max_age)?,
    })
}

/// One `ExternalMetric`/`ClusterExternalMetric` on its own: the template may hold
/// `<<.LabelMatchers>>` (the request's selector) and nothing else; a namespaced one is
/// pinned to its namespace like every namespaced definition.
fn compile_external(
    id: &DefinitionId,
    spec: &ExternalSpec,
    metric_name: &str,
    options: CompileOptions,
    memo: Option<&memo::ParseMemo>,
) -> Result<(Scope, ExternalRule), Problem> {
    check_metric_name(metric_name)?;
    if let Some(label) = &spec.namespace_label
        && !is_prometheus_label_name(label)
    {
        return Err(Problem::new(
            Reason::InvalidLabel,
            format!(
                "namespaceLabel {label:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
            ),
        ));
    }
    let segments = template::split_placeholders(&spec.query)
        .map_err(|m| Problem::new(Reason::UnknownPlaceholder, m))?;
    if segments.contains(&Segment::GroupBy) {
        return Err(Problem::new(
            Reason::UnknownPlaceholder,
            "an external metric has no object to group by, so <<.GroupBy>> means nothing here; name the labels to keep, e.g. sum by (queue) (…)",
        ));
    }
    promql::validate_external(&segments).map_err(|m| Problem::new(Reason::InvalidQuery, m))?;
    let (scope, segments) = scoped(id, segments, options, memo)?;
    Ok((
        scope,
        ExternalRule {
            metric: metric_name.to_string(),
            template: QueryTemplate::new(segments),
            namespace_label: spec.namespace_label.clone(),
            backend: DEFAULT_BACKEND.to_string(),
            bounds: query_bounds(spec.timeout.as_deref(), spec.max_age.as_deref())?,
            source: id.to_string(),
        },
    ))
}

/// A `ResourceMetrics` on its own: four templates, each needing both placeholders (which
/// objects, and the labels that tell them apart), and four label names.
fn compile_resources(
    id: &DefinitionId,
    spec: &ResourceMetricsSpec,
) -> Result<ResourceRule, Problem> {
    let label = |field: &str, value: &Option<String>, default: &str| {
        let label = value.clone().unwrap_or_else(|| default.to_string());
        if is_prometheus_label_name(&label) {
            Ok(label)
        } else {
            Err(Problem::new(
                Reason::InvalidLabel,
                format!(
                    "{field} {label:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
                ),
            ))
        }
    };
    let pod_label = label("podLabel", &spec.pod_label, "pod")?;
    let namespace_label = label("namespaceLabel", &spec.namespace_label, "namespace")?;
    let container_label = label("containerLabel", &spec.container_label, "container")?;
    let node_label = label("nodeLabel", &spec.node_label, "node")?;
    let window_seconds = spec.window_seconds.unwrap_or(180);
    if window_seconds <= 0 {
        return Err(Problem::new(
            Reason::InvalidWindow,
            format!("windowSeconds must be positive, not {window_seconds}"),
        ));
    }
    let template = |field: &str, query: &str, object_label: &str| {
        let segments = template::split_placeholders(query)
            .map_err(|m| Problem::new(Reason::UnknownPlaceholder, format!("{field}: {m}")))?;
        for (placeholder, needed) in [
            (
                Segment::LabelMatchers,
                "<<.LabelMatchers>> (which objects are asked for)",
            ),
            (
                Segment::GroupBy,
                "<<.GroupBy>> (the labels that tell them apart)",
            ),
        ] {
            if !segments.contains(&placeholder) {
                return Err(Problem::new(
                    Reason::MissingPlaceholder,
                    format!("{field} has no {needed}"),
                ));
            }
        }
        promql::validate(&segments, &namespace_label, object_label)
            .map_err(|m| Problem::new(Reason::InvalidQuery, format!("{field}: {m}")))?;
        Ok(QueryTemplate::new(segments))
    };
    let templates =
        |field: &str, queries: &ResourceQueries| -> Result<ResourceTemplates, Problem> {
            Ok(ResourceTemplates {
                container: template(
                    &format!("{field}.containerQuery"),
                    &queries.container_query,
                    &pod_label,
                )?,
                node: template(
                    &format!("{field}.nodeQuery"),
                    &queries.node_query,
                    &node_label,
                )?,
            })
        };
    Ok(ResourceRule {
        cpu: templates("cpu", &spec.cpu)?,
        memory: templates("memory", &spec.memory)?,
        pod_label,
        namespace_label,
        container_label,
        node_label,
        window_seconds,
        backend: DEFAULT_BACKEND.to_string(),
        source: id.to_string(),
    })
}

#[cfg(test)]
mod incremental_tests;
#[cfg(test)]
mod isolation_tests;
#[cfg(test)]
mod snapshot_oracle;
#[cfg(test)]
mod tests;
