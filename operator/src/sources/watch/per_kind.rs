//! One watch per kind, reading objects as the kind's resource type. An object that does
//! not parse arrives as a record saying why (kube's `DeserializeGuard`) and never stops
//! the watch.

use super::store::WatchEvent;
use crate::definitions::ObjectRecord;
use crate::definitions::{DefinitionKind, DefinitionResource, KindVisitor};
use crate::kubernetes::backoff::WatchBackoff;
use futures::StreamExt;
use futures::future::BoxFuture;
use kube::api::Api;
use kube::core::DeserializeGuard;
use kube::runtime::{WatchStreamExt, watcher};
use metrics_registry_apiserver::telemetry::SelfMetrics;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Watches every object of `kind` and sends what happens, until the receiver is gone.
pub fn watch(
    client: kube::Client,
    kind: DefinitionKind,
    events: mpsc::Sender<(DefinitionKind, WatchEvent)>,
    metrics: Arc<SelfMetrics>,
) -> BoxFuture<'static, ()> {
    kind.visit(Watch {
        client,
        events,
        metrics,
    })
}

struct Watch {
    client: kube::Client,
    events: mpsc::Sender<(DefinitionKind, WatchEvent)>,
    metrics: Arc<SelfMetrics>,
}

impl KindVisitor for Watch {
    type Output = BoxFuture<'static, ()>;
    fn visit<K: DefinitionResource>(self, kind: DefinitionKind) -> Self::Output {
        Box::pin(watch_typed::<K>(
            self.client,
            kind,
            self.events,
            self.metrics,
        ))
    }
}

async fn watch_typed<K: DefinitionResource>(
    client: kube::Client,
    kind: DefinitionKind,
    events: mpsc::Sender<(DefinitionKind, WatchEvent)>,
    metrics: Arc<SelfMetrics>,
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
                report(kind, &error, &mut last_error);
                metrics.watch_restarted(kind.name());
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

/// What a watch error means for whoever reads the log.
#[derive(Debug, PartialEq, Eq)]
enum WatchTrouble {
    /// 404: the kind's CRD is not installed.
    CrdMissing,
    /// 410: the resource version is too old; the watcher relists by itself.
    Expired,
    Other,
}

/// Decided by the API server's status code, never by the error's text.
fn trouble(error: &watcher::Error) -> WatchTrouble {
    let code = match error {
        watcher::Error::InitialListFailed(error)
        | watcher::Error::WatchStartFailed(error)
        | watcher::Error::WatchFailed(error) => match error {
            kube::Error::Api(status) => Some(status.code),
            _ => None,
        },
        watcher::Error::WatchError(status) => Some(status.code),
        watcher::Error::NoResourceVersion => None,
    };
    match code {
        Some(404) => WatchTrouble::CrdMissing,
        Some(410) => WatchTrouble::Expired,
        _ => WatchTrouble::Other,
    }
}

/// Says a watch error once per distinct error, not once per retry.
fn report(kind: DefinitionKind, error: &watcher::Error, last_error: &mut Option<String>) {
    let text = error.to_string();
    if last_error.as_deref() == Some(text.as_str()) {
        return;
    }
    match trouble(error) {
        WatchTrouble::CrdMissing => tracing::error!(
            kind = kind.name(),
            "cannot watch: the CRD is not installed (`metrics-registry crds | kubectl apply -f -`): {text}"
        ),
        // The watcher relists by itself; nothing is lost.
        WatchTrouble::Expired => tracing::debug!(kind = kind.name(), "watch expired; relisting"),
        WatchTrouble::Other => tracing::warn!(kind = kind.name(), "watch failed, retrying: {text}"),
    }
    *last_error = Some(text);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::core::Status;

    fn status(code: u16, message: &str) -> Box<Status> {
        Box::new(Status::failure(message, "").with_code(code))
    }

    #[test]
    fn troubles_are_told_apart_by_status_code_not_text() {
        let missing = watcher::Error::InitialListFailed(kube::Error::Api(status(404, "")));
        assert_eq!(trouble(&missing), WatchTrouble::CrdMissing);
        let expired = watcher::Error::WatchError(status(410, "too old resource version"));
        assert_eq!(trouble(&expired), WatchTrouble::Expired);
        // A message that merely mentions 404 or "not found" is no missing CRD.
        let other = watcher::Error::WatchError(status(500, "upstream 404: not found"));
        assert_eq!(trouble(&other), WatchTrouble::Other);
        assert_eq!(
            trouble(&watcher::Error::NoResourceVersion),
            WatchTrouble::Other
        );
    }
}
