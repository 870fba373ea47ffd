//! What the watches have seen: one record per object, typed as its kind's resource; an
//! object that does not parse is a record with the reason, never a broken stream. Pure:
//! tested by pushing events in.

use crate::compiler::Change;
use crate::definitions::{Definition, DefinitionId, DefinitionKind, ObjectRecord};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A watch event, independent of kube's types.
#[derive(Clone, Debug)]
pub enum WatchEvent {
    /// The watch (re)started: a full list follows.
    Init,
    InitApply(ObjectRecord),
    InitDone,
    Apply(ObjectRecord),
    Delete(ObjectRecord),
}

/// What one event changed.
#[derive(Debug, Default, PartialEq)]
pub struct Applied {
    /// For the compiler: definitions that appeared, changed or went away (an object that
    /// became unreadable goes away: it cannot be served). Status-only changes (our own
    /// writes coming back) add nothing here.
    pub changes: Vec<Change>,
    /// The first full list of a kind arrived: until every kind has one, the table is partial.
    pub kind_synced: bool,
    /// Objects whose record changed in any way (their status may need a write).
    pub touched: Vec<DefinitionId>,
}

impl Applied {
    pub fn definitions_changed(&self) -> bool {
        self.kind_synced || !self.changes.is_empty()
    }
}

/// What the compiler must be told when a record goes from `old` to `new`.
fn change(
    id: &DefinitionId,
    old: Option<&ObjectRecord>,
    new: Option<&ObjectRecord>,
) -> Option<Change> {
    fn served(record: Option<&ObjectRecord>) -> Option<&Definition> {
        record.and_then(|r| r.decoded.as_ref().ok())
    }
    match (served(old), served(new)) {
        (Some(before), Some(now)) if before == now => None,
        (_, Some(now)) => Some(Change::Upsert(Arc::new(now.clone()))),
        (Some(_), None) => Some(Change::Remove(id.clone())),
        (None, None) => None,
    }
}

#[derive(Debug, Default)]
pub struct DefinitionStore {
    objects: BTreeMap<DefinitionId, ObjectRecord>,
    relisting: BTreeMap<DefinitionKind, Vec<ObjectRecord>>,
    synced: BTreeSet<DefinitionKind>,
}

impl DefinitionStore {
    pub fn apply(&mut self, kind: DefinitionKind, event: WatchEvent) -> Applied {
        match event {
            WatchEvent::Init => {
                self.relisting.insert(kind, Vec::new());
                Applied::default()
            }
            WatchEvent::InitApply(record) => {
                self.relisting.entry(kind).or_default().push(record);
                Applied::default()
            }
            WatchEvent::InitDone => {
                let listed = self.relisting.remove(&kind).unwrap_or_default();
                let mut before: BTreeMap<DefinitionId, ObjectRecord> = BTreeMap::new();
                self.objects.retain(|id, record| {
                    if id.kind == kind {
                        before.insert(id.clone(), record.clone());
                        false
                    } else {
                        true
                    }
                });
                let mut applied = Applied {
                    kind_synced: self.synced.insert(kind),
                    ..Applied::default()
                };
                for record in listed {
                    let old = before.remove(&record.id);
                    if old.as_ref() != Some(&record) {
                        applied
                            .changes
                            .extend(change(&record.id, old.as_ref(), Some(&record)));
                        applied.touched.push(record.id.clone());
                    }
                    self.objects.insert(record.id.clone(), record);
                }
                // Whatever was not listed again is gone.
                for (id, old) in before {
                    applied.changes.extend(change(&id, Some(&old), None));
                }
                applied
            }
            WatchEvent::Apply(record) => {
                let id = record.id.clone();
                let old = self.objects.insert(id.clone(), record.clone());
                if old.as_ref() == Some(&record) {
                    return Applied::default();
                }
                Applied {
                    changes: change(&id, old.as_ref(), Some(&record))
                        .into_iter()
                        .collect(),
                    kind_synced: false,
                    touched: vec![id],
                }
            }
            WatchEvent::Delete(record) => {
                let old = self.objects.remove(&record.id);
                Applied {
                    changes: change(&record.id, old.as_ref(), None).into_iter().collect(),
                    ..Applied::default()
                }
            }
        }
    }

    pub fn record(&self, id: &DefinitionId) -> Option<&ObjectRecord> {
        self.objects.get(id)
    }

    /// Every kind has been listed once: the table built now is complete.
    pub fn is_synced(&self) -> bool {
        self.synced.len() == DefinitionKind::ALL.len()
    }

    pub fn records(&self) -> impl Iterator<Item = &ObjectRecord> {
        self.objects.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn served(store: &DefinitionStore) -> usize {
        store.records().filter(|r| r.decoded.is_ok()).count()
    }

    /// What a watch would make of `object`.
    fn rec(object: impl std::borrow::Borrow<serde_json::Value>) -> ObjectRecord {
        let object = object.borrow();
        let kind = DefinitionKind::from_name(object["kind"].as_str().unwrap()).unwrap();
        ObjectRecord::from_json(kind, object).unwrap()
    }

    fn object(kind: &str, name: &str, query: serde_json::Value) -> serde_json::Value {
        json!({"apiVersion": "metrics-registry.io/v1beta1", "kind": kind,
               "metadata": {"name": name, "namespace": "a", "generation": 1}, "spec": {"query": query}})
    }

    #[test]
    fn synced_only_after_every_kind_listed_once() {
        let mut store = DefinitionStore::default();
        for kind in DefinitionKind::ALL {
            assert!(!store.is_synced());
            store.apply(kind, WatchEvent::Init);
            store.apply(kind, WatchEvent::InitDone);
        }
        assert!(store.is_synced());
    }

    #[test]
    fn a_malformed_object_is_a_record_not_a_failure() {
        let mut store = DefinitionStore::default();
        let kind = DefinitionKind::PodMetric;
        store.apply(kind, WatchEvent::Init);
        store.apply(
            kind,
            WatchEvent::InitApply(rec(object(
                "PodMetric",
                "good",
                json!("x{<<.LabelMatchers>>}"),
            ))),
        );
        store.apply(
            kind,
            WatchEvent::InitApply(rec(object("PodMetric", "bad", json!(42)))),
        );
        assert!(
            store
                .apply(kind, WatchEvent::InitDone)
                .definitions_changed()
        );
        assert_eq!(served(&store), 1);
        let bad = store.records().find(|r| r.id.name == "bad").unwrap();
        assert!(
            bad.decoded.as_ref().unwrap_err().contains("invalid spec"),
            "{:?}",
            bad.decoded
        );
    }

    #[test]
    fn relist_replaces_only_its_kind_and_deletes_vanish() {
        let mut store = DefinitionStore::default();
        let good = object("PodMetric", "p", json!("x{<<.LabelMatchers>>}"));
        assert!(
            store
                .apply(
                    DefinitionKind::PodMetric,
                    WatchEvent::Apply(rec(good.clone()))
                )
                .definitions_changed()
        );
        assert_eq!(
            store.apply(
                DefinitionKind::PodMetric,
                WatchEvent::Apply(rec(good.clone()))
            ),
            Applied::default(),
            "same object, no change"
        );
        store.apply(
            DefinitionKind::ServiceMetric,
            WatchEvent::Apply(rec(object(
                "ServiceMetric",
                "s",
                json!("x{<<.LabelMatchers>>}"),
            ))),
        );
        store.apply(DefinitionKind::PodMetric, WatchEvent::Init);
        assert!(
            store
                .apply(DefinitionKind::PodMetric, WatchEvent::InitDone)
                .definitions_changed()
        );
        assert_eq!(
            served(&store),
            1,
            "the relist dropped the pod metric, kept the service one"
        );
        assert!(
            store
                .apply(
                    DefinitionKind::ServiceMetric,
                    WatchEvent::Delete(rec(object("ServiceMetric", "s", json!(""))))
                )
                .definitions_changed()
        );
        assert!(served(&store) == 0);
    }

    #[test]
    fn our_own_status_writes_coming_back_do_not_recompile() {
        let mut store = DefinitionStore::default();
        let kind = DefinitionKind::PodMetric;
        let fresh = object("PodMetric", "p", json!("x{<<.LabelMatchers>>}"));
        // The first full list of a kind is a change by itself (the table becomes complete).
        store.apply(kind, WatchEvent::Init);
        store.apply(kind, WatchEvent::InitApply(rec(fresh.clone())));
        assert!(
            store
                .apply(kind, WatchEvent::InitDone)
                .definitions_changed()
        );
        let mut with_status = fresh.clone();
        with_status["status"] = json!({"observedGeneration": 1});
        let applied = store.apply(kind, WatchEvent::Apply(rec(with_status.clone())));
        assert!(!applied.definitions_changed(), "only the status changed");
        assert_eq!(
            applied.touched.len(),
            1,
            "but the record did: check its status"
        );
        // The same holds when the echo arrives in a relist.
        store.apply(kind, WatchEvent::Init);
        with_status["status"] = json!({"observedGeneration": 2});
        store.apply(kind, WatchEvent::InitApply(rec(with_status)));
        let relisted = store.apply(kind, WatchEvent::InitDone);
        assert!(!relisted.definitions_changed());
        assert_eq!(relisted.touched.len(), 1);
        // A spec change is a definition change, told to the compiler as an upsert.
        let mut edited = fresh;
        edited["spec"]["query"] = json!("y{<<.LabelMatchers>>}");
        assert!(
            store
                .apply(kind, WatchEvent::Apply(rec(edited)))
                .definitions_changed()
        );
    }

    #[test]
    fn the_compiler_hears_of_upserts_and_removals_only() {
        let mut store = DefinitionStore::default();
        let kind = DefinitionKind::PodMetric;
        let good = object("PodMetric", "p", json!("x{<<.LabelMatchers>>}"));
        let applied = store.apply(kind, WatchEvent::Apply(rec(good.clone())));
        assert!(matches!(applied.changes.as_slice(), [Change::Upsert(d)] if d.id.name == "p"));
        // Becoming unreadable takes it out of the table; readable again puts it back.
        let broken = object("PodMetric", "p", json!(42));
        let applied = store.apply(kind, WatchEvent::Apply(rec(broken)));
        assert!(matches!(applied.changes.as_slice(), [Change::Remove(id)] if id.name == "p"));
        let applied = store.apply(kind, WatchEvent::Apply(rec(good.clone())));
        assert!(matches!(applied.changes.as_slice(), [Change::Upsert(_)]));
        // A relist that no longer has it removes it.
        store.apply(kind, WatchEvent::Init);
        let applied = store.apply(kind, WatchEvent::InitDone);
        assert!(applied.kind_synced);
        assert!(matches!(applied.changes.as_slice(), [Change::Remove(id)] if id.name == "p"));
    }
}
