//! Writes definition statuses on a task of its own, so a slow API server never holds up
//! compiling and serving. Only the leader writes; what is queued is the latest desired
//! status per object (a newer one replaces an older one), so the queue is bounded by the
//! number of definitions however fast they change.

use super::super::FIELD_MANAGER;
use crate::definitions::{DefinitionId, DefinitionKind, DefinitionStatus};
use crate::kubernetes::leader::Leadership;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// Writes in flight at once: enough to keep up with bulk changes, few enough not to
/// crowd the API server.
const CONCURRENT_WRITES: usize = 8;
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Who owns the status fields, for server-side apply.

#[derive(Default)]
struct Queue {
    pending: Mutex<BTreeMap<DefinitionId, DefinitionStatus>>,
    wake: Notify,
}

/// The controller's end: hands over desired statuses.
#[derive(Clone, Default)]
pub struct StatusQueue(Arc<Queue>);

impl StatusQueue {
    pub fn push(&self, id: DefinitionId, status: DefinitionStatus) {
        self.0
            .pending
            .lock()
            .expect("status queue")
            .insert(id, status);
        self.0.wake.notify_one();
    }

    pub fn len(&self) -> usize {
        self.0.pending.lock().expect("status queue").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// What is queued, emptying the queue (what the writer would write next).
    #[cfg(test)]
    pub fn drain_for_test(&self) -> Vec<(DefinitionId, DefinitionStatus)> {
        self.take().into_iter().collect()
    }

    fn take(&self) -> BTreeMap<DefinitionId, DefinitionStatus> {
        std::mem::take(&mut *self.0.pending.lock().expect("status queue"))
    }

    /// Puts a failed write back unless a newer status arrived meanwhile.
    fn retry(&self, id: DefinitionId, status: DefinitionStatus) {
        self.0
            .pending
            .lock()
            .expect("status queue")
            .entry(id)
            .or_insert(status);
    }

    fn clear(&self) {
        self.0.pending.lock().expect("status queue").clear();
    }
}

pub struct StatusWriter {
    pub client: kube::Client,
    pub queue: StatusQueue,
    pub leadership: Leadership,
    pub resources: Vec<(DefinitionKind, ApiResource)>,
}

impl StatusWriter {
    pub async fn run(mut self) {
        loop {
            tokio::select! {
                _ = self.queue.0.wake.notified() => {}
                _ = self.leadership.changed() => {}
            }
            if !self.leadership.is_leader() {
                // The controller queues everything stale again when we lead again.
                self.queue.clear();
                continue;
            }
            let batch = self.queue.take();
            let this = &self;
            let failed = futures::stream::iter(batch)
                .map(|(id, status)| async move {
                    match this.write(&id, &status).await {
                        Ok(()) => None,
                        Err(retry) => retry.then_some((id, status)),
                    }
                })
                .buffer_unordered(CONCURRENT_WRITES)
                .filter_map(|failed| async move { failed })
                .collect::<Vec<_>>()
                .await;
            if !failed.is_empty() {
                for (id, status) in failed {
                    self.queue.retry(id, status);
                }
                tokio::time::sleep(RETRY_AFTER).await;
                self.queue.0.wake.notify_one();
            }
        }
    }

    /// `Err(true)` when the write may succeed later.
    async fn write(&self, id: &DefinitionId, status: &DefinitionStatus) -> Result<(), bool> {
        // Fenced: past the renew deadline nothing is sent; kept for a retry, which the
        // loop drops if the Lease is lost for good.
        if !self.leadership.is_leader() {
            return Err(true);
        }
        let Some((_, resource)) = self.resources.iter().find(|(k, _)| *k == id.kind) else {
            return Ok(());
        };
        let api: Api<DynamicObject> = match &id.namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, resource),
            None => Api::all_with(self.client.clone(), resource),
        };
        // Server-side apply of the typed status: fields it leaves out that we set before are
        // removed, fields other managers own are left alone.
        let patch = serde_json::json!({
            "apiVersion": resource.api_version,
            "kind": resource.kind,
            "metadata": {"name": id.name, "namespace": id.namespace},
            "status": status,
        });
        match api
            .patch_status(
                &id.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Deleted meanwhile: nothing to write any more.
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(error) => {
                tracing::warn!(definition = %id, %error, "could not write status; retrying");
                Err(true)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn st(generation: i64) -> DefinitionStatus {
        DefinitionStatus::Metric(metrics_registry_crds::MetricStatus {
            observed_generation: Some(generation),
            ..Default::default()
        })
    }

    fn id(name: &str) -> DefinitionId {
        DefinitionId {
            kind: DefinitionKind::PodMetric,
            namespace: Some("a".into()),
            name: name.into(),
        }
    }

    #[test]
    fn the_latest_status_per_object_wins_and_retries_never_override_it() {
        let queue = StatusQueue::default();
        queue.push(id("x"), st(1));
        queue.push(id("x"), st(2));
        queue.push(id("y"), st(1));
        assert_eq!(queue.len(), 2, "one entry per object");
        let batch = queue.take();
        assert_eq!(batch[&id("x")], st(2));
        queue.push(id("x"), st(3));
        queue.retry(id("x"), st(2));
        queue.retry(id("y"), st(1));
        let again = queue.take();
        assert_eq!(again[&id("x")], st(3), "a failed older write is dropped");
        assert_eq!(again[&id("y")], st(1), "a failed write is retried");
    }

    mod against_the_api {
        use super::*;
        use crate::kubernetes::leader::Leadership;
        use crate::kubernetes::mock_api::{Exchange, scripted, status};
        use crate::sources::watch::api_resources;
        use http::Method;

        const STATUS: &str = "/apis/metrics-registry.io/v1beta1/namespaces/a/podmetrics/x/status?&force=true&fieldManager=metrics-registry";

        #[tokio::test]
        async fn the_leader_applies_the_typed_status_and_skips_deleted_objects() {
            // Queued objects are written in id order.
            let (client, played) = scripted(vec![
                Exchange::new(
                    Method::PATCH,
                    "/apis/metrics-registry.io/v1beta1/namespaces/a/podmetrics/gone/status?&force=true&fieldManager=metrics-registry",
                    404,
                    status(404, "NotFound"),
                ),
                Exchange::new(Method::PATCH, STATUS, 200, json!({})).with_body(|body| {
                    assert_eq!(
                        body,
                        &json!({
                            "apiVersion": "metrics-registry.io/v1beta1",
                            "kind": "PodMetric",
                            "metadata": {"name": "x", "namespace": "a"},
                            "status": {"observedGeneration": 2},
                        })
                    );
                }),
            ]);
            let queue = StatusQueue::default();
            queue.push(id("x"), st(2));
            queue.push(id("gone"), st(1));
            let writer = tokio::spawn(
                StatusWriter {
                    client,
                    queue: queue.clone(),
                    leadership: Leadership::Always,
                    resources: api_resources(),
                }
                .run(),
            );
            played.await.expect("every expected request, nothing else");
            assert!(queue.is_empty(), "a deleted object is not retried");
            writer.abort();
        }

        #[tokio::test]
        async fn a_follower_writes_nothing_and_forgets_what_was_queued() {
            let (client, played) = scripted(vec![]);
            let (_elected, receiver) = tokio::sync::watch::channel(None);
            let queue = StatusQueue::default();
            queue.push(id("x"), st(2));
            let writer = tokio::spawn(
                StatusWriter {
                    client,
                    queue: queue.clone(),
                    leadership: Leadership::Elected(receiver),
                    resources: api_resources(),
                }
                .run(),
            );
            played.await.expect("no request at all");
            assert!(queue.is_empty());
            writer.abort();
        }
    }
}
