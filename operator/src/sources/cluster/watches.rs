//! One watch per kind, reading objects as the kind's resource type. An object that does
//! not parse arrives as a record saying why (kube's `DeserializeGuard`) and never stops
//! the watch.

use super::store::{ObjectRecord, WatchEvent};
use crate::cluster::backoff::WatchBackoff;
use crate::definitions::{DefinitionKind, DefinitionResource, KindVisitor};
use futures::StreamExt;
use futures::future::BoxFuture;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::{WatchStreamExt, watcher};
use metrics_registry_apiserver::telemetry::SelfMetrics;
use tokio::sync::mpsc;

/// Watches every object of `kind` and sends what happens, until the receiver is gone.
pub fn watch(
    client: kube::Client,
    kind: DefinitionKind,
    events: mpsc::Sender<(DefinitionKind, WatchEvent)>,
) -> BoxFuture<'static, ()> {
    kind.visit(Watch { client, events })
}

struct Watch {
    client: kube::Client,
    events: mpsc::Sender<(DefinitionKind, WatchEvent)>,
}

impl KindVisitor for Watch {
    type Output = BoxFuture<'static, ()>;
    fn visit<K: DefinitionResource>(self, kind: DefinitionKind) -> Self::Output {
        Box::pin(watch_typed::<K>(self.client, kind, self.events))
    }
}

async fn watch_typed<K: DefinitionResource>(
    client: kube::Client,
    kind: DefinitionKind,
    events: mpsc::Sender<(DefinitionKind, WatchEvent)>,
) {
    let api: Api<DeserializeGuard<K>> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .backoff(WatchBackoff::default())
        .boxed();
    let mut last_error: Option<String> = None;
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(event) => {
                last_error = None;
                event
            }
            Err(error) => {
                report(kind, &error.to_string(), &mut last_error);
                SelfMetrics::global().watch_restarted(kind.name());
                continue;
            }
        };
        let record = |guard| ObjectRecord::from_guard::<K>(kind, guard);
        let event = match event {
            watcher::Event::Init => Some(WatchEvent::Init),
            watcher::Event::InitApply(guard) => record(guard).map(WatchEvent::InitApply),
            watcher::Event::InitDone => Some(WatchEvent::InitDone),
            watcher::Event::Apply(guard) => record(guard).map(WatchEvent::Apply),
            watcher::Event::Delete(guard) => record(guard).map(WatchEvent::Delete),
        };
        if let Some(event) = event
            && events.send((kind, event)).await.is_err()
        {
            // The controller is gone; the supervisor reports that, not us.
            std::future::pending::<()>().await;
        }
    }
}

/// Says a watch error once per distinct error, not once per retry.
fn report(kind: DefinitionKind, text: &str, last_error: &mut Option<String>) {
    if last_error.as_deref() == Some(text) {
        return;
    }
    if text.contains("404") || text.contains("NotFound") || text.contains("not found") {
        tracing::error!(
            kind = kind.name(),
            "cannot watch: the CRD is not installed (`metrics-registry crds | kubectl apply -f -`): {text}"
        );
    } else if text.contains("Expired") || text.contains("too old resource version") {
        // The watcher relists by itself; nothing is lost.
        tracing::debug!(kind = kind.name(), "watch expired; relisting");
    } else {
        tracing::warn!(kind = kind.name(), "watch failed, retrying: {text}");
    }
    *last_error = Some(text.to_string());
}
