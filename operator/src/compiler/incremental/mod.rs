//! The compiler fed one change at a time, for both sources of definitions: the manifest
//! folder (file diffs) and the cluster controller (watch events).
//!
//! Each definition is compiled on its own once, when it changes. What depends on other
//! definitions — which of several definitions of the same kind, scope and metric name is
//! served (conflicts) and which namespaces override a cluster definition — is decided per
//! metric group, so a change recompiles its own definition and re-decides the one or two
//! groups it leaves or joins, never the whole table.

use super::memo::ParseMemo;
use super::{CompileOptions, Problem, Reason, Verdict, compile_metric, rules};
use crate::definitions::{Definition, DefinitionBody, DefinitionId};
use metrics_registry_apiserver::external::ExternalNamespacing;
use metrics_registry_apiserver::rules::{
    MetricGroup, MetricRule, ObjectKind, RuleTable, Scope, SlotTaken,
};
use metrics_registry_crds::RuleGroup;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

/// One change from a source of definitions.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Shared, so a source that keeps its own copy (the manifest folder) does not double
    /// the memory definitions take.
    Upsert(Arc<Definition>),
    Remove(DefinitionId),
}

/// What one batch of changes did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delta {
    /// Definitions whose verdict changed, appeared or went away (then
    /// [`IncrementalCompiler::verdict`] is `None`): the only ones whose status needs writing.
    pub changed: BTreeSet<DefinitionId>,
    /// Whether the served table differs, i.e. [`IncrementalCompiler::table`] is worth publishing.
    pub table_changed: bool,
    /// Whether the valid rule groups of `CustomPrometheusRules` differ.
    pub rules_changed: bool,
}

impl Delta {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && !self.table_changed && !self.rules_changed
    }

    /// Folds a later delta into this one.
    pub fn merge(&mut self, other: Delta) {
        self.changed.extend(other.changed);
        self.table_changed |= other.table_changed;
        self.rules_changed |= other.rules_changed;
    }
}

/// A definition compiled on its own, before any other definition is looked at.
#[derive(Debug)]
enum Unit {
    Metric {
        metric_name: String,
        compiled: Result<(Scope, Arc<MetricRule>), Problem>,
    },
    Rules(Result<Vec<String>, Problem>),
}

type GroupKey = (ObjectKind, String);

/// A group member, ordered as conflicts are decided: older first (`created`), then by
/// id, as in [`super::compile`].
#[derive(Clone, Debug)]
struct Member(Arc<Definition>);

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
struct Entry {
    definition: Arc<Definition>,
    unit: Unit,
    verdict: Verdict,
}

impl Entry {
    fn group_key(&self) -> Option<(GroupKey, Scope)> {
        match &self.unit {
            Unit::Metric {
                compiled: Ok((scope, rule)),
                ..
            } => Some(((rule.object, rule.metric.clone()), scope.clone())),
            _ => None,
        }
    }

    fn valid_rule_groups(&self) -> Option<&Vec<RuleGroup>> {
        match (&self.unit, &self.definition.body) {
            (Unit::Rules(Ok(_)), DefinitionBody::Rules(spec)) => Some(&spec.groups),
            _ => None,
        }
    }

    fn external_metrics(&self) -> &[String] {
        match &self.unit {
            Unit::Rules(Ok(names)) => names,
            _ => &[],
        }
    }
}

struct Before {
    verdict: Option<Verdict>,
    rule_groups: Option<Vec<RuleGroup>>,
}

/// A definition compiled on its own; members of a group get their verdict when the
/// group is decided.
fn compile_unit(
    options: CompileOptions,
    memo: &ParseMemo,
    definition: &Definition,
) -> (Unit, Verdict) {
    let id = &definition.id;
    let unit = match &definition.body {
        DefinitionBody::Metric(spec) => {
            let metric_name = spec.metric_name.clone().unwrap_or_else(|| id.name.clone());
            let compiled = compile_metric(id, spec, &metric_name, options, Some(memo))
                .map(|(scope, rule)| (scope, Arc::new(rule)));
            Unit::Metric {
                metric_name,
                compiled,
            }
        }
        DefinitionBody::Rules(spec) => Unit::Rules(
            rules::validate(&spec.groups).map_err(|m| Problem::new(Reason::InvalidRule, m)),
        ),
    };
    let verdict = match &unit {
        Unit::Metric {
            metric_name,
            compiled: Err(problem),
        } => Verdict {
            problem: Some(problem.clone()),
            metric_name: Some(metric_name.clone()),
            ..Verdict::default()
        },
        Unit::Metric { .. } => Verdict::default(),
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

/// Definitions in, a table and verdicts out, kept up to date change by change.
#[derive(Debug)]
pub struct IncrementalCompiler {
    options: CompileOptions,
    entries: BTreeMap<DefinitionId, Entry>,
    /// Valid metric definitions by group and scope, most senior first.
    groups: HashMap<GroupKey, BTreeMap<Scope, BTreeSet<Member>>>,
    /// How many valid `CustomPrometheusRules` declare each external metric.
    external: BTreeMap<String, usize>,
    table: Arc<RuleTable>,
    memo: ParseMemo,
}

impl IncrementalCompiler {
    pub fn new(options: CompileOptions) -> Self {
        let mut table = RuleTable::default();
        table.set_external_namespacing(rules::external_namespacing(
            options.external_metrics_namespaced,
            [],
        ));
        IncrementalCompiler {
            options,
            entries: BTreeMap::new(),
            groups: HashMap::new(),
            external: BTreeMap::new(),
            table: Arc::new(table),
            memo: ParseMemo::default(),
        }
    }

    pub fn options(&self) -> CompileOptions {
        self.options
    }

    /// Adds or replaces one definition.
    pub fn upsert(&mut self, definition: Definition) -> Delta {
        self.apply([Change::Upsert(Arc::new(definition))])
    }

    /// Removes one definition (unknown ids change nothing).
    pub fn remove(&mut self, id: &DefinitionId) -> Delta {
        self.apply([Change::Remove(id.clone())])
    }

    /// Applies a batch; each affected metric group is re-decided once, however many of
    /// its definitions the batch touches (a start-up load is one batch).
    pub fn apply(&mut self, changes: impl IntoIterator<Item = Change>) -> Delta {
        let mut delta = Delta::default();
        // Verdicts and valid rule groups before the batch of every definition it names.
        let mut before: HashMap<DefinitionId, Before> = HashMap::new();
        let mut dirty_groups: HashSet<GroupKey> = HashSet::new();
        let mut external_dirty = false;
        // Whether a valid CustomPrometheusRules came or went, so which external metrics
        // are namespaced may differ. There are few such objects: recomputed whole.
        let mut namespacing_dirty = false;
        let changes: Vec<Change> = changes.into_iter().collect();
        // Definitions that differ from what is held are compiled first, on every core
        // (a start-up load is one batch of them all); the rest is sequential.
        let (options, memo) = (self.options, &self.memo);
        let mut compiled = crate::parallel::map(&changes, |change| match change {
            Change::Upsert(definition)
                if self.entries.get(&definition.id).map(|e| &e.definition) != Some(definition) =>
            {
                Some(compile_unit(options, memo, definition))
            }
            _ => None,
        })
        .into_iter();
        for change in changes {
            let precompiled = compiled.next().flatten();
            let (id, definition) = match change {
                Change::Upsert(definition) => (definition.id.clone(), Some(definition)),
                Change::Remove(id) => (id, None),
            };
            let old = self.entries.get(&id);
            if old.map(|e| &e.definition) == definition.as_ref() {
                continue;
            }
            before.entry(id.clone()).or_insert_with(|| Before {
                verdict: old.map(|e| e.verdict.clone()),
                rule_groups: old.and_then(|e| e.valid_rule_groups().cloned()),
            });
            if let Some(old) = self.entries.remove(&id) {
                if let Some((key, scope)) = old.group_key() {
                    self.leave_group(&key, &scope, &Member(old.definition.clone()));
                    dirty_groups.insert(key);
                }
                external_dirty |= self.count_external(old.external_metrics(), false);
                namespacing_dirty |= matches!(old.unit, Unit::Rules(Ok(_)));
            }
            let Some(definition) = definition else {
                continue;
            };
            // Only a definition named twice in one batch is compiled here.
            let (unit, verdict) =
                precompiled.unwrap_or_else(|| compile_unit(self.options, &self.memo, &definition));
            let entry = Entry {
                definition,
                unit,
                verdict,
            };
            if let Some((key, scope)) = entry.group_key() {
                self.groups
                    .entry(key.clone())
                    .or_default()
                    .entry(scope)
                    .or_default()
                    .insert(Member(entry.definition.clone()));
                dirty_groups.insert(key);
            }
            external_dirty |= self.count_external(entry.external_metrics(), true);
            namespacing_dirty |= matches!(entry.unit, Unit::Rules(Ok(_)));
            self.entries.insert(id, entry);
        }
        for key in dirty_groups {
            let (changed, table_changed) = self.decide_group(&key);
            delta.table_changed |= table_changed;
            // Definitions the batch named are compared with their verdict before it, below.
            delta
                .changed
                .extend(changed.into_iter().filter(|id| !before.contains_key(id)));
        }
        if external_dirty {
            let names: BTreeSet<String> = self.external.keys().cloned().collect();
            delta.table_changed |= Arc::make_mut(&mut self.table).set_external(names);
        }
        if namespacing_dirty {
            let namespacing = self.external_namespacing();
            // Compared first: `make_mut` copies a table that published snapshots share.
            if *self.table.external_namespacing() != namespacing {
                delta.table_changed |=
                    Arc::make_mut(&mut self.table).set_external_namespacing(namespacing);
            }
        }
        for (id, old) in before {
            let now = self.entries.get(&id);
            delta.rules_changed |=
                old.rule_groups.as_ref() != now.and_then(|e| e.valid_rule_groups());
            if old.verdict.as_ref() != now.map(|e| &e.verdict) {
                delta.changed.insert(id);
            }
        }
        delta
    }

    /// The table as it stands; cheap (a pointer), shares everything with earlier snapshots
    /// that did not change.
    pub fn table(&self) -> Arc<RuleTable> {
        self.table.clone()
    }

    pub fn verdict(&self, id: &DefinitionId) -> Option<&Verdict> {
        self.entries.get(id).map(|e| &e.verdict)
    }

    pub fn verdicts(&self) -> impl Iterator<Item = (&DefinitionId, &Verdict)> {
        self.entries.iter().map(|(id, e)| (id, &e.verdict))
    }

    pub fn not_ready(&self) -> impl Iterator<Item = (&DefinitionId, &Problem)> {
        self.verdicts()
            .filter_map(|(id, v)| v.problem.as_ref().map(|p| (id, p)))
    }

    pub fn definition(&self, id: &DefinitionId) -> Option<&Definition> {
        self.entries.get(id).map(|e| &*e.definition)
    }

    /// Number of definitions held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Valid rule groups of each `CustomPrometheusRules`, to hand to Prometheus.
    pub fn rule_groups(&self) -> BTreeMap<DefinitionId, Vec<RuleGroup>> {
        self.entries
            .iter()
            .filter_map(|(id, e)| e.valid_rule_groups().map(|g| (id.clone(), g.clone())))
            .collect()
    }

    fn external_namespacing(&self) -> ExternalNamespacing {
        let declared = self.entries.values().filter_map(|entry| {
            let DefinitionBody::Rules(spec) = &entry.definition.body else {
                return None;
            };
            let Unit::Rules(Ok(names)) = &entry.unit else {
                return None;
            };
            Some((names.as_slice(), spec.external_metrics_namespaced))
        });
        rules::external_namespacing(self.options.external_metrics_namespaced, declared)
    }

    fn leave_group(&mut self, key: &GroupKey, scope: &Scope, member: &Member) {
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
    fn count_external(&mut self, names: &[String], add: bool) -> bool {
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
    fn decide_group(&mut self, key: &GroupKey) -> (Vec<DefinitionId>, bool) {
        let (object, metric) = key;
        let mut served = MetricGroup::default();
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
            let mut winner: Option<&Arc<MetricRule>> = None;
            for Member(definition) in members {
                let id = &definition.id;
                let entry = &self.entries[id];
                let Unit::Metric {
                    metric_name,
                    compiled: Ok((_, rule)),
                } = &entry.unit
                else {
                    unreachable!("only valid metric definitions join groups");
                };
                let mut verdict = Verdict {
                    metric_name: Some(metric_name.clone()),
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
                        let taken = SlotTaken {
                            metric: rule.metric.clone(),
                            resource: rule.object.resource(),
                            existing: existing.source.clone(),
                        };
                        verdict.problem = Some(Problem::new(Reason::Conflict, taken.to_string()));
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
        let table_changed = self.table.group(*object, metric) != Some(&served)
            && Arc::make_mut(&mut self.table).set_group(*object, metric, served);
        (changed, table_changed)
    }
}
