//! What depends on more than one definition: which member of a metric group is served,
//! where a cluster definition is overridden, and which external metrics exist and are
//! namespaced.

use super::super::{
    Problem, Verdict, conflict, external_conflict, recording_rules, resources_conflict,
};
use super::IncrementalCompiler;
use super::entry::{GroupKey, Member, Unit};
use crate::definitions::{DefinitionBody, DefinitionId};
use metrics_registry_apiserver::external::ExternalNamespacing;
use metrics_registry_apiserver::table::{
    DEFAULT_BACKEND, ExternalRule, MetricRule, ResourceRule, Scope, ScopedRules,
};
use std::collections::BTreeMap;
use std::sync::Arc;

impl IncrementalCompiler {
    pub(super) fn external_namespacing(&self) -> ExternalNamespacing {
        let declared = self.entries.values().filter_map(|entry| {
            let DefinitionBody::Rules(spec) = &entry.definition.body else {
                return None;
            };
            let Unit::Rules(Ok(names)) = &entry.unit else {
                return None;
            };
            Some((names.as_slice(), spec.external_metrics_namespaced))
        });
        recording_rules::external_namespacing(self.options.external_scope, declared)
    }

    pub(super) fn leave_group(&mut self, key: &GroupKey, scope: &Scope, member: &Member) {
        if let Some(scopes) = self.groups.get_mut(key) {
            if let Some(members) = scopes.get_mut(scope) {
                members.remove(member);
                if members.is_empty() {
                    scopes.remove(scope);
                }
            }
            if scopes.is_empty() {
                self.groups.remove(key);
            }
        }
    }

    /// Returns whether the set of external names may have changed.
    pub(super) fn count_external(&mut self, names: &[String], add: bool) -> bool {
        let mut changed = false;
        for name in names {
            if add {
                let count = self.external.entry(name.clone()).or_default();
                changed |= *count == 0;
                *count += 1;
            } else if let Some(count) = self.external.get_mut(name) {
                *count -= 1;
                if *count == 0 {
                    self.external.remove(name);
                    changed = true;
                }
            }
        }
        changed
    }

    /// Serves the most senior definition of each scope, marks the others `Conflict`, and
    /// tells the cluster definition where it is overridden.
    /// Returns the members whose verdict changed and whether the table changed.
    pub(super) fn decide_group(&mut self, key: &GroupKey) -> (Vec<DefinitionId>, bool) {
        let (verdicts, table_changed) = match key {
            GroupKey::Object(object, metric) => {
                let (served, verdicts) = self.decide(key, |unit| match unit {
                    Unit::Metric {
                        metric_name,
                        compiled: Ok((_, rule)),
                    } => Some((Some(metric_name), rule)),
                    _ => None,
                });
                let changed = self.table.group(*object, metric) != Some(&served)
                    && Arc::make_mut(&mut self.table).set_group(*object, metric, served);
                (verdicts, changed)
            }
            GroupKey::External(metric) => {
                let (served, verdicts) = self.decide(key, |unit| match unit {
                    Unit::External {
                        metric_name,
                        compiled: Ok((_, rule)),
                    } => Some((Some(metric_name), rule)),
                    _ => None,
                });
                let changed = self.table.external_group(metric) != Some(&served)
                    && Arc::make_mut(&mut self.table).set_external_group(metric, served);
                (verdicts, changed)
            }
            GroupKey::Resources => {
                let (served, verdicts) = self.decide(key, |unit| match unit {
                    Unit::Resources(Ok(rule)) => Some((None, rule)),
                    _ => None,
                });
                let changed = self.table.resource_rule() != served.cluster.as_ref()
                    && Arc::make_mut(&mut self.table).set_resource_rule(served.cluster);
                (verdicts, changed)
            }
        };
        let mut changed = Vec::new();
        for (id, verdict) in verdicts {
            let entry = self
                .entries
                .get_mut(&id)
                .expect("group members are entries");
            if entry.verdict != verdict {
                entry.verdict = verdict;
                changed.push(id);
            }
        }
        (changed, table_changed)
    }

    /// The rules a group serves and the verdict of each member; `rule_of` reads a
    /// member's compiled rule (every member has one: only valid definitions join).
    fn decide<R: Served>(
        &self,
        key: &GroupKey,
        rule_of: impl Fn(&Unit) -> Option<(Option<&String>, &Arc<R>)>,
    ) -> (ScopedRules<R>, Vec<(DefinitionId, Verdict)>) {
        let mut served = ScopedRules::default();
        let mut verdicts: Vec<(DefinitionId, Verdict)> = Vec::new();
        let no_members = BTreeMap::new();
        let scopes = self.groups.get(key).unwrap_or(&no_members);
        let overriding: Vec<String> = scopes
            .keys()
            .filter_map(|scope| match scope {
                Scope::Namespace(namespace) => Some(namespace.clone()),
                Scope::Cluster => None,
            })
            .collect();
        for (scope, members) in scopes {
            let mut winner: Option<&Arc<R>> = None;
            for Member(definition) in members {
                let id = &definition.id;
                let (metric_name, rule) = rule_of(&self.entries[id].unit)
                    .expect("only valid definitions of the group's kind join it");
                let mut verdict = Verdict {
                    metric_name: metric_name.cloned(),
                    backend: rule.named_backend().map(str::to_string),
                    ..Verdict::default()
                };
                match winner {
                    None => {
                        winner = Some(rule);
                        if *scope == Scope::Cluster {
                            verdict.overridden_in = overriding.clone();
                        }
                    }
                    Some(existing) => {
                        verdict.problem = Some(rule.conflict(existing.source()));
                    }
                }
                verdicts.push((id.clone(), verdict));
            }
            let rule = winner.expect("a scope in a group has members").clone();
            match scope {
                Scope::Cluster => served.cluster = Some(rule),
                Scope::Namespace(namespace) => {
                    served.namespaced.insert(namespace.clone(), rule);
                }
            }
        }
        (served, verdicts)
    }
}

/// What a group serves: a rule that can name where it comes from and say what a
/// second definition of it conflicts with.
trait Served {
    fn source(&self) -> &str;
    fn conflict(&self, holder: &str) -> Problem;
    /// The `MetricsBackend` it reads, unless it is the default backend.
    fn named_backend(&self) -> Option<&str> {
        None
    }
}

fn named(backend: &str) -> Option<&str> {
    (backend != DEFAULT_BACKEND).then_some(backend)
}

impl Served for MetricRule {
    fn source(&self) -> &str {
        &self.source
    }
    fn named_backend(&self) -> Option<&str> {
        named(&self.backend)
    }
    fn conflict(&self, holder: &str) -> Problem {
        conflict(self, holder)
    }
}

impl Served for ResourceRule {
    fn source(&self) -> &str {
        &self.source
    }
    fn conflict(&self, holder: &str) -> Problem {
        resources_conflict(holder)
    }
}

impl Served for ExternalRule {
    fn source(&self) -> &str {
        &self.source
    }
    fn named_backend(&self) -> Option<&str> {
        named(&self.backend)
    }
    fn conflict(&self, holder: &str) -> Problem {
        external_conflict(self, holder)
    }
}
