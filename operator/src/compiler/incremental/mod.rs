//! The compiler fed one change at a time, for both sources of definitions: the manifest
//! folder (file diffs) and the cluster controller (watch events).
//!
//! Each definition is compiled on its own once, when it changes. What depends on other
//! definitions — which of several definitions of the same kind, scope and metric name is
//! served (conflicts) and which namespaces override a cluster definition — is decided per
//! metric group, so a change recompiles its own definition and re-decides the one or two
//! groups it leaves or joins, never the whole table.

mod entry;
mod groups;

use super::backend::{BackendIndex, compile_backend};
use super::memo::ParseMemo;
use super::{CompileOptions, Problem, Verdict, recording_rules};
use crate::definitions::{Definition, DefinitionBody, DefinitionId, DefinitionKind};
use entry::{Before, Entry, GroupKey, Member, Unit, compile_unit};
use metrics_registry_apiserver::table::{RuleTable, Scope};
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
    /// Valid `MetricsBackend`s by name, settled at the start of each batch.
    backends: BackendIndex,
    /// Which definitions name each `MetricsBackend` (valid or not), to compile again when
    /// it changes.
    backend_users: HashMap<String, BTreeSet<DefinitionId>>,
}

impl IncrementalCompiler {
    pub fn new(options: CompileOptions) -> Self {
        let mut table = RuleTable::default();
        table.set_external_namespacing(recording_rules::external_namespacing(
            options.external_scope,
            [],
        ));
        IncrementalCompiler {
            options,
            entries: BTreeMap::new(),
            groups: HashMap::new(),
            external: BTreeMap::new(),
            table: Arc::new(table),
            memo: ParseMemo::default(),
            backends: BackendIndex::new(),
            backend_users: HashMap::new(),
        }
    }

    /// Applies the batch's `MetricsBackend` changes to [`Self::backends`] and returns the
    /// names whose valid backend differs.
    fn settle_backends(&mut self, changes: &[Change]) -> BTreeSet<String> {
        let mut changed = BTreeSet::new();
        for change in changes {
            let (name, compiled) = match change {
                Change::Upsert(definition) => match &definition.body {
                    DefinitionBody::Backend(spec) => (
                        &definition.id.name,
                        compile_backend(&definition.id, spec).ok(),
                    ),
                    _ => continue,
                },
                Change::Remove(id) if id.kind == DefinitionKind::MetricsBackend => (&id.name, None),
                Change::Remove(_) => continue,
            };
            if self.backends.get(name) != compiled.as_ref() {
                match compiled {
                    Some(compiled) => self.backends.insert(name.clone(), compiled),
                    None => self.backends.remove(name),
                };
                changed.insert(name.clone());
            }
        }
        changed
    }

    /// Upserts again, compiled afresh, of the definitions naming a changed backend that
    /// the batch does not change itself.
    fn users_of(&self, backends: &BTreeSet<String>, changes: &[Change]) -> Vec<Change> {
        let named: HashSet<&DefinitionId> = changes
            .iter()
            .map(|change| match change {
                Change::Upsert(definition) => &definition.id,
                Change::Remove(id) => id,
            })
            .collect();
        backends
            .iter()
            .filter_map(|name| self.backend_users.get(name))
            .flatten()
            .filter(|id| !named.contains(id))
            .filter_map(|id| self.entries.get(id))
            .map(|entry| Change::Upsert(entry.definition.clone()))
            .collect()
    }

    fn note_backend_user(&mut self, definition: &Definition, uses: bool) {
        let Some(name) = definition.body.named_backend() else {
            return;
        };
        if uses {
            self.backend_users
                .entry(name.to_string())
                .or_default()
                .insert(definition.id.clone());
        } else if let Some(users) = self.backend_users.get_mut(name) {
            users.remove(&definition.id);
            if users.is_empty() {
                self.backend_users.remove(name);
            }
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
        let mut changes: Vec<Change> = changes.into_iter().collect();
        // Backends first, so that what names one is judged against the batch's backends;
        // what names a changed backend is compiled again even when it did not change.
        let changed_backends = self.settle_backends(&changes);
        let again = self.users_of(&changed_backends, &changes);
        let forced: HashSet<DefinitionId> = again
            .iter()
            .filter_map(|change| match change {
                Change::Upsert(definition) => Some(definition.id.clone()),
                Change::Remove(_) => None,
            })
            .collect();
        changes.extend(again);
        // Definitions that differ from what is held are compiled first, on every core
        // (a start-up load is one batch of them all); the rest is sequential.
        let (options, memo, backends) = (self.options, &self.memo, &self.backends);
        let mut compiled = crate::parallel::map(&changes, |change| match change {
            Change::Upsert(definition)
                if forced.contains(&definition.id)
                    || self.entries.get(&definition.id).map(|e| &e.definition)
                        != Some(definition) =>
            {
                Some(compile_unit(options, memo, backends, definition))
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
            if !forced.contains(&id) && old.map(|e| &e.definition) == definition.as_ref() {
                continue;
            }
            before.entry(id.clone()).or_insert_with(|| Before {
                verdict: old.map(|e| e.verdict.clone()),
                rule_groups: old.and_then(|e| e.valid_rule_groups().cloned()),
            });
            if let Some(old) = self.entries.remove(&id) {
                self.note_backend_user(&old.definition, false);
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
            let (unit, verdict) = precompiled.unwrap_or_else(|| {
                compile_unit(self.options, &self.memo, &self.backends, &definition)
            });
            self.note_backend_user(&definition, true);
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
        if !changed_backends.is_empty() {
            let backends = self
                .backends
                .iter()
                .map(|(name, backend)| (name.clone(), backend.spec.clone()))
                .collect();
            delta.table_changed |= Arc::make_mut(&mut self.table).set_backends(backends);
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
}
