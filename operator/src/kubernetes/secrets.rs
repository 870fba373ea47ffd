//! The Secrets of the namespace metrics-registry runs in, as `MetricsBackend`s read them:
//! a watch keeps their data in memory, and every change rebuilds the backends whose
//! Secret values moved (a rotated token is used from the next query on).
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

use crate::kubernetes::backoff::WatchBackoff;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use metrics_registry_apiserver::prometheus::InlineSecret;
use metrics_registry_apiserver::table::SecretRef;
use metrics_registry_apiserver::upstream::{Backends, SecretStore};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, RwLock};

type Data = BTreeMap<String, Vec<u8>>;

pub struct ClusterSecrets {
    namespace: String,
    secrets: RwLock<HashMap<String, Data>>,
    /// A relist being received; swapped in whole when complete.
    relist: Mutex<Option<HashMap<String, Data>>>,
}

fn data(secret: &Secret) -> Option<(String, Data)> {
    let name = secret.metadata.name.clone()?;
    let data = secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key.clone(), value.0.clone()))
        .collect();
    Some((name, data))
}

impl ClusterSecrets {
    pub fn new(namespace: String) -> Self {
        ClusterSecrets {
            namespace,
            secrets: RwLock::new(HashMap::new()),
            relist: Mutex::new(None),
        }
    }

    /// Applies one watch event; returns whether the Secrets held changed.
    fn apply(&self, event: watcher::Event<Secret>) -> bool {
        let lock = |m: &Mutex<Option<HashMap<String, Data>>>| {
            m.lock().unwrap_or_else(|e| e.into_inner()).take()
        };
        match event {
            watcher::Event::Init => {
                *self.relist.lock().unwrap_or_else(|e| e.into_inner()) = Some(HashMap::new());
                false
            }
            watcher::Event::InitApply(secret) => {
                if let Some((name, data)) = data(&secret)
                    && let Some(relist) = self
                        .relist
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .as_mut()
                {
                    relist.insert(name, data);
                }
                false
            }
            watcher::Event::InitDone => {
                if let Some(relist) = lock(&self.relist) {
                    *self.secrets.write().unwrap_or_else(|e| e.into_inner()) = relist;
                }
                true
            }
            watcher::Event::Apply(secret) => data(&secret).is_some_and(|(name, data)| {
                let mut secrets = self.secrets.write().unwrap_or_else(|e| e.into_inner());
                secrets.insert(name, data.clone()) != Some(data)
            }),
            watcher::Event::Delete(secret) => secret.metadata.name.is_some_and(|name| {
                let mut secrets = self.secrets.write().unwrap_or_else(|e| e.into_inner());
                secrets.remove(&name).is_some()
            }),
        }
    }
}

impl SecretStore for ClusterSecrets {
    fn value(&self, secret: &SecretRef) -> Result<InlineSecret, String> {
        let secrets = self.secrets.read().unwrap_or_else(|e| e.into_inner());
        let origin = format!(
            "Secret {}/{} key {}",
            self.namespace, secret.name, secret.key
        );
        let Some(data) = secrets.get(&secret.name) else {
            return Err(format!(
                "Secret {}/{} not found (MetricsBackends read Secrets of the namespace metrics-registry runs in)",
                self.namespace, secret.name
            ));
        };
        let value = data.get(&secret.key).ok_or_else(|| {
            format!(
                "Secret {}/{} has no key {:?} (keys: {})",
                self.namespace,
                secret.name,
                secret.key,
                data.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        Ok(InlineSecret {
            origin,
            value: value.clone(),
        })
    }
}

/// Keeps `cache` current and `backends` built from it.
pub fn spawn_watch(
    client: kube::Client,
    cache: std::sync::Arc<ClusterSecrets>,
    backends: Backends,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<Secret> = Api::namespaced(client, &cache.namespace);
        let mut stream = watcher(api, watcher::Config::default())
            .backoff(WatchBackoff::default())
            .boxed();
        while let Some(event) = stream.next().await {
            match event {
                Ok(event) => {
                    if cache.apply(event) {
                        backends.refresh_secrets();
                    }
                }
                Err(error) => {
                    tracing::warn!(namespace = %cache.namespace, %error, "watching Secrets failed, retrying");
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;

    fn secret(name: &str, key: &str, value: &str) -> Secret {
        let mut secret = Secret::default();
        secret.metadata.name = Some(name.into());
        secret.data = Some(BTreeMap::from([(
            key.to_string(),
            ByteString(value.as_bytes().to_vec()),
        )]));
        secret
    }

    #[test]
    fn holds_what_the_watch_says_and_explains_what_is_missing() {
        let cache = ClusterSecrets::new("metrics-registry".into());
        let token = SecretRef {
            name: "auth".into(),
            key: "token".into(),
        };
        let missing = cache.value(&token).unwrap_err();
        assert!(
            missing.contains("metrics-registry/auth not found"),
            "{missing}"
        );
        assert!(!cache.apply(watcher::Event::Init));
        assert!(!cache.apply(watcher::Event::InitApply(secret("auth", "token", "a"))));
        assert!(cache.apply(watcher::Event::InitDone));
        assert_eq!(cache.value(&token).unwrap().value, b"a");
        // The same data again is no change; new data is.
        assert!(!cache.apply(watcher::Event::Apply(secret("auth", "token", "a"))));
        assert!(cache.apply(watcher::Event::Apply(secret("auth", "token", "b"))));
        assert_eq!(cache.value(&token).unwrap().value, b"b");
        let wrong_key = SecretRef {
            name: "auth".into(),
            key: "password".into(),
        };
        let error = cache.value(&wrong_key).unwrap_err();
        assert!(
            error.contains("no key \"password\" (keys: token)"),
            "{error}"
        );
        assert!(cache.apply(watcher::Event::Delete(secret("auth", "token", "b"))));
        assert!(cache.value(&token).is_err());
    }
}
