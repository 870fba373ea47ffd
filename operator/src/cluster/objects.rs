//! Metadata-only watch caches of the objects wildcard requests name, started for the
//! kinds that have definitions. `labelSelector` is resolved here, never by a LIST per request.

use crate::cluster::backoff::WatchBackoff;
use crate::supervise::Spawner;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::Resource;
use kube::api::{Api, PartialObjectMeta};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use metrics_registry_apiserver::objects::{ObjectIndex, ObjectIndexError};
use metrics_registry_apiserver::rules::ObjectKind;
use metrics_registry_apiserver::selector::LabelSelector;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

trait KindCache: Send + Sync {
    fn select(&self, namespace: Option<&str>, selector: &LabelSelector) -> Option<Vec<String>>;
}

struct MetaCache<K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static> {
    store: Store<PartialObjectMeta<K>>,
    ready: Arc<AtomicBool>,
}

impl<K> KindCache for MetaCache<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    fn select(&self, namespace: Option<&str>, selector: &LabelSelector) -> Option<Vec<String>> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        let empty = BTreeMap::new();
        let mut names: Vec<String> = self
            .store
            .state()
            .iter()
            .filter(|object| {
                namespace.is_none() || object.metadata.namespace.as_deref() == namespace
            })
            .filter(|object| selector.matches(object.metadata.labels.as_ref().unwrap_or(&empty)))
            .filter_map(|object| object.metadata.name.clone())
            .collect();
        names.sort();
        Some(names)
    }
}

fn start<K>(client: kube::Client, kind: ObjectKind, tasks: &Spawner) -> Arc<dyn KindCache>
where
    K: Resource<DynamicType = ()>
        + Clone
        + Debug
        + Send
        + Sync
        + serde::de::DeserializeOwned
        + 'static,
{
    // An Api of PartialObjectMeta watches metadata only: no specs held in memory.
    let api: Api<PartialObjectMeta<K>> = Api::all(client);
    let (reader, writer) = reflector::store();
    let ready = Arc::new(AtomicBool::new(false));
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default()).backoff(WatchBackoff::default()),
    );
    tasks.spawn(format!("object cache of {}", kind.resource()), async move {
        let mut stream = stream.boxed();
        while let Some(item) = stream.next().await {
            if let Err(error) = item {
                tracing::warn!(resource = kind.resource(), %error, "object cache watch error");
            }
        }
    });
    let flag = ready.clone();
    let waiting = reader.clone();
    // Not supervised: it ends by design once the cache has synced.
    tokio::spawn(async move {
        if waiting.wait_until_ready().await.is_ok() {
            flag.store(true, Ordering::Release);
            tracing::info!(resource = kind.resource(), "object cache synced");
        }
    });
    Arc::new(MetaCache::<K> {
        store: reader,
        ready,
    })
}

/// Caches per object kind, created on first need.
pub struct ObjectCaches {
    client: kube::Client,
    caches: Mutex<HashMap<ObjectKind, Arc<dyn KindCache>>>,
    tasks: Spawner,
}

impl ObjectCaches {
    /// Watches are started through `tasks`, so one that ends stops the process.
    pub fn new(client: kube::Client, tasks: Spawner) -> Arc<Self> {
        Arc::new(ObjectCaches {
            client,
            caches: Mutex::new(HashMap::new()),
            tasks,
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
                match kind {
                    ObjectKind::Pod => start::<Pod>(client, kind, tasks),
                    ObjectKind::Service => start::<Service>(client, kind, tasks),
                    ObjectKind::Ingress => start::<Ingress>(client, kind, tasks),
                    ObjectKind::Deployment => start::<Deployment>(client, kind, tasks),
                    ObjectKind::StatefulSet => start::<StatefulSet>(client, kind, tasks),
                    ObjectKind::DaemonSet => start::<DaemonSet>(client, kind, tasks),
                    ObjectKind::Namespace => start::<Namespace>(client, kind, tasks),
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
}
