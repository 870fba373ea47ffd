//! Metadata-only watch caches of the objects wildcard requests name, started for the
//! kinds that have definitions. `labelSelector` is resolved here, never by a LIST per
//! request, and only over the namespace asked for.

use crate::kubernetes::backoff::WatchBackoff;
use crate::supervise::Spawner;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::Resource;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use metrics_registry_apiserver::objects::{ObjectIndex, ObjectIndexError};
use metrics_registry_apiserver::selector::LabelSelector;
use metrics_registry_apiserver::table::ObjectKind;
use metrics_registry_apiserver::telemetry::SelfMetrics;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

trait KindCache: Send + Sync {
    fn select(&self, namespace: Option<&str>, selector: &LabelSelector) -> Option<Vec<String>>;
    /// The value of `label` on the object `name` of `namespace` (`""` for cluster-scoped
    /// kinds); `None` while not synced.
    fn label(&self, namespace: &str, name: &str, label: &str) -> Option<Option<String>>;
}

/// Names and labels of one kind's objects, by namespace (`""` for cluster-scoped ones):
/// all a `labelSelector` needs. Annotations, managedFields and everything else of the
/// watched metadata are dropped before an object gets here.
type Labels = BTreeMap<String, String>;
type ByNamespace = HashMap<String, BTreeMap<String, Labels>>;

#[derive(Default)]
struct NamespaceIndex {
    objects: RwLock<ByNamespace>,
    /// A relist being received; swapped in whole when complete.
    relist: Mutex<Option<ByNamespace>>,
    ready: AtomicBool,
}

fn key_of<K: Resource>(object: &PartialObjectMeta<K>) -> Option<(String, String)> {
    let name = object.metadata.name.clone()?;
    Some((object.metadata.namespace.clone().unwrap_or_default(), name))
}

impl NamespaceIndex {
    fn apply<K: Resource>(&self, event: watcher::Event<PartialObjectMeta<K>>) {
        let labels =
            |object: &PartialObjectMeta<K>| object.metadata.labels.clone().unwrap_or_default();
        match event {
            watcher::Event::Init => {
                *self.relist.lock().unwrap_or_else(|e| e.into_inner()) = Some(HashMap::new());
            }
            watcher::Event::InitApply(object) => {
                if let Some((namespace, name)) = key_of(&object)
                    && let Some(relist) = self
                        .relist
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .as_mut()
                {
                    relist
                        .entry(namespace)
                        .or_default()
                        .insert(name, labels(&object));
                }
            }
            watcher::Event::InitDone => {
                if let Some(relist) = self.relist.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    *self.objects.write().unwrap_or_else(|e| e.into_inner()) = relist;
                }
                self.ready.store(true, Ordering::Release);
            }
            watcher::Event::Apply(object) => {
                if let Some((namespace, name)) = key_of(&object) {
                    self.objects
                        .write()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(namespace)
                        .or_default()
                        .insert(name, labels(&object));
                }
            }
            watcher::Event::Delete(object) => {
                if let Some((namespace, name)) = key_of(&object) {
                    let mut objects = self.objects.write().unwrap_or_else(|e| e.into_inner());
                    if let Some(names) = objects.get_mut(&namespace) {
                        names.remove(&name);
                        if names.is_empty() {
                            objects.remove(&namespace);
                        }
                    }
                }
            }
        }
    }
}

impl KindCache for NamespaceIndex {
    fn select(&self, namespace: Option<&str>, selector: &LabelSelector) -> Option<Vec<String>> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        let objects = self.objects.read().unwrap_or_else(|e| e.into_inner());
        let matching = |names: &BTreeMap<String, Labels>| -> Vec<String> {
            names
                .iter()
                .filter(|(_, labels)| selector.matches(labels))
                .map(|(name, _)| name.clone())
                .collect()
        };
        // Only the namespace asked for is looked at, however many objects others hold.
        let mut names = match namespace {
            Some(namespace) => objects.get(namespace).map(matching).unwrap_or_default(),
            None => objects.values().flat_map(matching).collect(),
        };
        names.sort();
        Some(names)
    }

    fn label(&self, namespace: &str, name: &str, label: &str) -> Option<Option<String>> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        let objects = self.objects.read().unwrap_or_else(|e| e.into_inner());
        Some(
            objects
                .get(namespace)
                .and_then(|names| names.get(name))
                .and_then(|labels| labels.get(label))
                .cloned(),
        )
    }
}

fn start<K>(
    client: kube::Client,
    kind: ObjectKind,
    tasks: &Spawner,
    metrics: Arc<SelfMetrics>,
) -> Arc<dyn KindCache>
where
    K: Resource<DynamicType = ()>
        + Clone
        + Debug
        + Send
        + Sync
        + serde::de::DeserializeOwned
        + 'static,
{
    // An Api of PartialObjectMeta watches metadata only: no specs ever arrive.
    let api: Api<PartialObjectMeta<K>> = Api::all(client);
    let index = Arc::new(NamespaceIndex::default());
    let cache = index.clone();
    let stream = watcher(api, watcher::Config::default()).backoff(WatchBackoff::default());
    tasks.spawn(format!("object cache of {}", kind.resource()), async move {
        let mut stream = stream.boxed();
        while let Some(item) = stream.next().await {
            match item {
                Ok(event) => {
                    let done = matches!(event, watcher::Event::InitDone);
                    let first = done && !index.ready.load(Ordering::Acquire);
                    index.apply(event);
                    if first {
                        tracing::info!(resource = kind.resource(), "object cache synced");
                    }
                }
                Err(error) => {
                    metrics.watch_restarted(kind.resource());
                    tracing::warn!(resource = kind.resource(), %error, "object cache watch error");
                }
            }
        }
    });
    cache
}

/// Caches per object kind, created on first need.
pub struct ObjectCaches {
    client: kube::Client,
    caches: Mutex<HashMap<ObjectKind, Arc<dyn KindCache>>>,
    tasks: Spawner,
    /// Counts watch restarts.
    metrics: Arc<SelfMetrics>,
}

impl ObjectCaches {
    /// Watches are started through `tasks`, so one that ends stops the process.
    pub fn new(client: kube::Client, tasks: Spawner, metrics: Arc<SelfMetrics>) -> Arc<Self> {
        Arc::new(ObjectCaches {
            client,
            caches: Mutex::new(HashMap::new()),
            tasks,
            metrics,
        })
    }

    /// Starts caches for kinds that gained definitions; existing ones keep running.
    pub fn ensure(&self, kinds: impl IntoIterator<Item = ObjectKind>) {
        for kind in kinds {
            self.cache(kind);
        }
    }

    fn cache(&self, kind: ObjectKind) -> Arc<dyn KindCache> {
        let mut caches = self.caches.lock().expect("object cache lock");
        caches
            .entry(kind)
            .or_insert_with(|| {
                let client = self.client.clone();
                let tasks = &self.tasks;
                let metrics = self.metrics.clone();
                match kind {
                    ObjectKind::Pod => start::<Pod>(client, kind, tasks, metrics),
                    ObjectKind::Service => start::<Service>(client, kind, tasks, metrics),
                    ObjectKind::Ingress => start::<Ingress>(client, kind, tasks, metrics),
                    ObjectKind::Deployment => start::<Deployment>(client, kind, tasks, metrics),
                    ObjectKind::StatefulSet => start::<StatefulSet>(client, kind, tasks, metrics),
                    ObjectKind::DaemonSet => start::<DaemonSet>(client, kind, tasks, metrics),
                    ObjectKind::Namespace => start::<Namespace>(client, kind, tasks, metrics),
                }
            })
            .clone()
    }
}

impl ObjectIndex for ObjectCaches {
    fn select(
        &self,
        kind: ObjectKind,
        namespace: Option<&str>,
        selector: &LabelSelector,
    ) -> Result<Vec<String>, ObjectIndexError> {
        self.cache(kind).select(namespace, selector).ok_or_else(|| {
            ObjectIndexError::NotReady(format!(
                "the cache of {} is still loading; retry in a moment",
                kind.resource()
            ))
        })
    }

    fn namespace_label(
        &self,
        namespace: &str,
        label: &str,
    ) -> Result<Option<String>, ObjectIndexError> {
        self.cache(ObjectKind::Namespace)
            .label("", namespace, label)
            .ok_or_else(|| {
                ObjectIndexError::NotReady(
                    "the cache of namespaces is still loading; retry in a moment".to_owned(),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, ObjectMeta};

    fn pod(namespace: &str, name: &str, app: &str) -> PartialObjectMeta<Pod> {
        PartialObjectMeta::<Pod> {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some(namespace.into()),
                labels: Some(BTreeMap::from([("app".to_string(), app.to_string())])),
                annotations: Some(BTreeMap::from([("big".to_string(), "x".repeat(10_000))])),
                managed_fields: Some(vec![ManagedFieldsEntry::default()]),
                ..ObjectMeta::default()
            },
            ..Default::default()
        }
    }

    fn selector(text: &str) -> LabelSelector {
        LabelSelector::parse(text).unwrap()
    }

    #[test]
    fn selects_within_the_namespace_from_names_and_labels_only() {
        let index = NamespaceIndex::default();
        assert_eq!(
            index.select(Some("a"), &selector("app=web")),
            None,
            "not synced"
        );
        index.apply(watcher::Event::<PartialObjectMeta<Pod>>::Init);
        index.apply(watcher::Event::InitApply(pod("a", "web-1", "web")));
        index.apply(watcher::Event::InitApply(pod("b", "web-2", "web")));
        index.apply(watcher::Event::<PartialObjectMeta<Pod>>::InitDone);
        index.apply(watcher::Event::Apply(pod("a", "web-3", "web")));
        index.apply(watcher::Event::Apply(pod("a", "db-1", "db")));
        assert_eq!(
            index.select(Some("a"), &selector("app=web")),
            Some(vec!["web-1".to_string(), "web-3".to_string()])
        );
        assert_eq!(index.select(None, &selector("app=web")).unwrap().len(), 3);
        index.apply(watcher::Event::Delete(pod("a", "web-1", "web")));
        assert_eq!(
            index.select(Some("a"), &selector("app=web")),
            Some(vec!["web-3".to_string()])
        );
        // What is kept per object: its name and labels, nothing else.
        let objects = index.objects.read().unwrap();
        let kept: &Labels = &objects["a"]["web-3"];
        assert_eq!(
            kept,
            &BTreeMap::from([("app".to_string(), "web".to_string())])
        );
    }

    #[test]
    fn a_relist_replaces_the_index_when_complete() {
        let index = NamespaceIndex::default();
        index.apply(watcher::Event::<PartialObjectMeta<Pod>>::Init);
        index.apply(watcher::Event::InitApply(pod("a", "gone", "web")));
        index.apply(watcher::Event::<PartialObjectMeta<Pod>>::InitDone);
        index.apply(watcher::Event::<PartialObjectMeta<Pod>>::Init);
        index.apply(watcher::Event::InitApply(pod("a", "new", "web")));
        // Until the relist is complete, the previous objects are served.
        assert_eq!(
            index.select(Some("a"), &selector("app=web")),
            Some(vec!["gone".to_string()])
        );
        index.apply(watcher::Event::<PartialObjectMeta<Pod>>::InitDone);
        assert_eq!(
            index.select(Some("a"), &selector("app=web")),
            Some(vec!["new".to_string()])
        );
    }
}
