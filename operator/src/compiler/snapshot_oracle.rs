//! The compiler's decisions between definitions — conflicts, overrides, external metrics
//! and their namespacing — worked out again the simple way, for a whole snapshot in one
//! pass, as a test oracle for [`IncrementalCompiler`] (which decides them group by group,
//! change by change). It shares only the compilation of one definition on its own, and
//! builds its table through the plain setters.

use super::*;
use crate::definitions::DefinitionBody;
use metrics_registry_apiserver::table::{ExternalGroup, MetricGroup, ObjectKind};
use std::collections::BTreeSet;

/// Most senior first, as the server decides: older (`created`), then by id.
pub(super) fn compile_snapshot(
    definitions: &[Definition],
    options: CompileOptions,
) -> CompiledSnapshot {
    let mut ordered: Vec<&Definition> = definitions.iter().collect();
    ordered.sort_by(|a, b| {
        let age = |d: &Definition| d.created.clone().unwrap_or_default();
        age(a).cmp(&age(b)).then_with(|| a.id.cmp(&b.id))
    });

    let mut groups: BTreeMap<(ObjectKind, String), MetricGroup> = BTreeMap::new();
    let mut external: BTreeSet<String> = BTreeSet::new();
    let mut compiled = CompiledSnapshot::default();
    let mut cluster_rules: Vec<(DefinitionId, ObjectKind, String)> = Vec::new();
    let mut external_groups: BTreeMap<String, ExternalGroup> = BTreeMap::new();
    let mut cluster_external: Vec<(DefinitionId, String)> = Vec::new();
    let mut resources: Option<Arc<ResourceRule>> = None;
    // Backends before anything: a definition is judged against every valid one.
    let backends: backend::BackendIndex = definitions
        .iter()
        .filter_map(|definition| match &definition.body {
            DefinitionBody::Backend(spec) => backend::compile_backend(&definition.id, spec)
                .ok()
                .map(|compiled| (definition.id.name.clone(), compiled)),
            _ => None,
        })
        .collect();
    let named = |backend: &str| (backend != DEFAULT_BACKEND).then(|| backend.to_string());
    for definition in ordered {
        let id = definition.id.clone();
        let verdict = match &definition.body {
            DefinitionBody::Metric(spec) => {
                let metric_name = spec.metric_name.clone().unwrap_or_else(|| id.name.clone());
                let mut served_from = None;
                let problem = compile_metric(&id, spec, &metric_name, options, None)
                    .and_then(|(scope, mut rule)| {
                        rule.backend =
                            backend::resolve_backend(&id, spec.backend.as_deref(), &backends)?;
                        served_from = named(&rule.backend);
                        let object = rule.object;
                        let group = groups.entry((object, metric_name.clone())).or_default();
                        let taken = match &scope {
                            Scope::Cluster => group.cluster.as_ref(),
                            Scope::Namespace(namespace) => group.namespaced.get(namespace),
                        };
                        if let Some(taken) = taken {
                            return Err(conflict(&rule, &taken.source));
                        }
                        match scope {
                            Scope::Cluster => {
                                group.cluster = Some(Arc::new(rule));
                                cluster_rules.push((id.clone(), object, metric_name.clone()));
                            }
                            Scope::Namespace(namespace) => {
                                group.namespaced.insert(namespace, Arc::new(rule));
                            }
                        }
                        Ok(())
                    })
                    .err();
                Verdict {
                    problem,
                    metric_name: Some(metric_name),
                    backend: served_from,
                    ..Verdict::default()
                }
            }
            DefinitionBody::External(spec) => {
                let metric_name = spec.metric_name.clone().unwrap_or_else(|| id.name.clone());
                let mut served_from = None;
                let problem = compile_external(&id, spec, &metric_name, options, None)
                    .and_then(|(scope, mut rule)| {
                        rule.backend =
                            backend::resolve_backend(&id, spec.backend.as_deref(), &backends)?;
                        served_from = named(&rule.backend);
                        let group = external_groups.entry(metric_name.clone()).or_default();
                        let taken = match &scope {
                            Scope::Cluster => group.cluster.as_ref(),
                            Scope::Namespace(namespace) => group.namespaced.get(namespace),
                        };
                        if let Some(taken) = taken {
                            return Err(external_conflict(&rule, &taken.source));
                        }
                        match scope {
                            Scope::Cluster => {
                                group.cluster = Some(Arc::new(rule));
                                cluster_external.push((id.clone(), metric_name.clone()));
                            }
                            Scope::Namespace(namespace) => {
                                group.namespaced.insert(namespace, Arc::new(rule));
                            }
                        }
                        Ok(())
                    })
                    .err();
                Verdict {
                    problem,
                    metric_name: Some(metric_name),
                    backend: served_from,
                    ..Verdict::default()
                }
            }
            DefinitionBody::Backend(spec) => Verdict {
                problem: backend::compile_backend(&id, spec).err(),
                ..Verdict::default()
            },
            DefinitionBody::Resources(spec) => Verdict {
                problem: compile_resources(&id, spec)
                    .and_then(|mut rule| {
                        rule.backend = backend::resolve_cluster_wide_backend(
                            &id,
                            spec.backend.as_deref(),
                            &backends,
                        )?;
                        Ok(rule)
                    })
                    .and_then(|rule| match &resources {
                        Some(taken) => Err(resources_conflict(&taken.source)),
                        None => {
                            resources = Some(Arc::new(rule));
                            Ok(())
                        }
                    })
                    .err(),
                ..Verdict::default()
            },
            DefinitionBody::Rules(spec) => match recording_rules::validate(&spec.groups) {
                Ok(names) => {
                    external.extend(names.iter().cloned());
                    compiled.rule_groups.insert(id.clone(), spec.groups.clone());
                    Verdict {
                        external_metrics: names,
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
        let overriding = groups[&(object, metric)]
            .namespaced
            .keys()
            .cloned()
            .collect();
        if let Some(verdict) = compiled.verdicts.get_mut(&id) {
            verdict.overridden_in = overriding;
        }
    }
    for (id, metric) in cluster_external {
        let overriding = external_groups[&metric]
            .namespaced
            .keys()
            .cloned()
            .collect();
        if let Some(verdict) = compiled.verdicts.get_mut(&id) {
            verdict.overridden_in = overriding;
        }
    }
    for ((object, metric), group) in groups {
        compiled.table.set_group(object, &metric, group);
    }
    for (metric, group) in external_groups {
        compiled.table.set_external_group(&metric, group);
    }
    compiled.table.set_resource_rule(resources);
    compiled.table.set_backends(
        backends
            .into_iter()
            .map(|(name, backend)| (name, backend.spec))
            .collect(),
    );
    compiled.table.set_external(external);
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
    let namespacing = recording_rules::external_namespacing(options.external_scope, declared);
    compiled.table.set_external_namespacing(namespacing);
    compiled
}
