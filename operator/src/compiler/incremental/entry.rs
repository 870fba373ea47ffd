//! One definition as the incremental compiler holds it: compiled on its own, and the
//! key of the metric group it competes in.

use super::super::backend::{
    BackendIndex, CompiledBackend, compile_backend, resolve_backend, resolve_cluster_wide_backend,
};
use super::super::memo::ParseMemo;
use super::super::{
    CompileOptions, Problem, Reason, Verdict, compile_external, compile_metric, compile_resources,
    recording_rules,
};
use crate::definitions::{Definition, DefinitionBody};
use metrics_registry_apiserver::table::{
    ExternalRule, MetricRule, ObjectKind, ResourceRule, Scope,
};
use metrics_registry_crds::RuleGroup;
use std::sync::Arc;

/// A definition compiled on its own, before any other definition is looked at.
#[derive(Debug)]
pub(super) enum Unit {
    Metric {
        metric_name: String,
        compiled: Result<(Scope, Arc<MetricRule>), Problem>,
    },
    External {
        metric_name: String,
        compiled: Result<(Scope, Arc<ExternalRule>), Problem>,
    },
    Resources(Result<Arc<ResourceRule>, Problem>),
    Rules(Result<Vec<String>, Problem>),
    Backend(Result<CompiledBackend, Problem>),
}

/// What the definitions of one group compete for: a metric name of one object kind, or
/// an external metric name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) enum GroupKey {
    Object(ObjectKind, String),
    External(String),
    /// Every `ResourceMetrics`: one is served.
    Resources,
}

/// A group member, ordered as conflicts are decided: older first (`created`), then by
/// id.
#[derive(Clone, Debug)]
pub(super) struct Member(pub(super) Arc<Definition>);

impl Ord for Member {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        fn created(definition: &Definition) -> &str {
            definition.created.as_deref().unwrap_or("")
        }
        let (a, b) = (&self.0, &other.0);
        created(a).cmp(created(b)).then_with(|| a.id.cmp(&b.id))
    }
}

impl PartialOrd for Member {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Member {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for Member {}

#[derive(Debug)]
pub(super) struct Entry {
    pub(super) definition: Arc<Definition>,
    pub(super) unit: Unit,
    pub(super) verdict: Verdict,
}

impl Entry {
    pub(super) fn group_key(&self) -> Option<(GroupKey, Scope)> {
        match &self.unit {
            Unit::Metric {
                compiled: Ok((scope, rule)),
                ..
            } => Some((
                GroupKey::Object(rule.object, rule.metric.clone()),
                scope.clone(),
            )),
            Unit::External {
                compiled: Ok((scope, rule)),
                ..
            } => Some((GroupKey::External(rule.metric.clone()), scope.clone())),
            Unit::Resources(Ok(_)) => Some((GroupKey::Resources, Scope::Cluster)),
            _ => None,
        }
    }

    pub(super) fn valid_rule_groups(&self) -> Option<&Vec<RuleGroup>> {
        match (&self.unit, &self.definition.body) {
            (Unit::Rules(Ok(_)), DefinitionBody::Rules(spec)) => Some(&spec.groups),
            _ => None,
        }
    }

    pub(super) fn external_metrics(&self) -> &[String] {
        match &self.unit {
            Unit::Rules(Ok(names)) => names,
            _ => &[],
        }
    }
}

pub(super) struct Before {
    pub(super) verdict: Option<Verdict>,
    pub(super) rule_groups: Option<Vec<RuleGroup>>,
}

/// A definition compiled on its own; members of a group get their verdict when the
/// group is decided.
/// `backends` are the valid `MetricsBackend`s as of the batch being applied (they are
/// settled before anything naming them is compiled).
pub(super) fn compile_unit(
    options: CompileOptions,
    memo: &ParseMemo,
    backends: &BackendIndex,
    definition: &Definition,
) -> (Unit, Verdict) {
    let id = &definition.id;
    let unit =
        match &definition.body {
            DefinitionBody::Metric(spec) => {
                let metric_name = spec.metric_name.clone().unwrap_or_else(|| id.name.clone());
                let compiled = compile_metric(id, spec, &metric_name, options, Some(memo))
                    .and_then(|(scope, mut rule)| {
                        rule.backend = resolve_backend(id, spec.backend.as_deref(), backends)?;
                        Ok((scope, Arc::new(rule)))
                    });
                Unit::Metric {
                    metric_name,
                    compiled,
                }
            }
            DefinitionBody::External(spec) => {
                let metric_name = spec.metric_name.clone().unwrap_or_else(|| id.name.clone());
                let compiled = compile_external(id, spec, &metric_name, options, Some(memo))
                    .and_then(|(scope, mut rule)| {
                        rule.backend = resolve_backend(id, spec.backend.as_deref(), backends)?;
                        Ok((scope, Arc::new(rule)))
                    });
                Unit::External {
                    metric_name,
                    compiled,
                }
            }
            DefinitionBody::Resources(spec) => Unit::Resources(
                compile_resources(id, spec)
                    .and_then(|mut rule| {
                        rule.backend =
                            resolve_cluster_wide_backend(id, spec.backend.as_deref(), backends)?;
                        Ok(rule)
                    })
                    .map(Arc::new),
            ),
            DefinitionBody::Rules(spec) => Unit::Rules(
                recording_rules::validate(&spec.groups)
                    .map_err(|m| Problem::new(Reason::InvalidRule, m)),
            ),
            DefinitionBody::Backend(spec) => Unit::Backend(compile_backend(id, spec)),
        };
    let verdict = match &unit {
        Unit::Metric {
            metric_name,
            compiled: Err(problem),
        }
        | Unit::External {
            metric_name,
            compiled: Err(problem),
        } => Verdict {
            problem: Some(problem.clone()),
            metric_name: Some(metric_name.clone()),
            ..Verdict::default()
        },
        Unit::Metric { .. }
        | Unit::External { .. }
        | Unit::Resources(Ok(_))
        | Unit::Backend(Ok(_)) => Verdict::default(),
        Unit::Resources(Err(problem)) | Unit::Backend(Err(problem)) => Verdict {
            problem: Some(problem.clone()),
            ..Verdict::default()
        },
        Unit::Rules(Ok(external)) => Verdict {
            external_metrics: external.clone(),
            ..Verdict::default()
        },
        Unit::Rules(Err(problem)) => Verdict {
            problem: Some(problem.clone()),
            ..Verdict::default()
        },
    };
    (unit, verdict)
}
