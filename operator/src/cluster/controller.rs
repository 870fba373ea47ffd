//! Watches every definition kind, compiles when definitions change (bursts debounced),
//! swaps the table, and hands statuses and rules to their writers. The only place where
//! definitions meet kube.
//!
//! Every replica runs this loop and serves what it compiles; statuses go to the writer
//! only while this replica leads (see `leader`), and all stale ones are queued again
//! whenever it becomes the leader.

use super::leader::Leadership;
use super::objects::ObjectCaches;
use super::status::{desired_status, is_current};
use super::status_writer::StatusQueue;
use super::store::{DefinitionStore, WatchEvent};
use crate::compiler::{CompileOptions, Verdict, compile};
use crate::definitions::{DefinitionId, DefinitionKind};
use crate::rules_output::RuleGroups;
use crate::supervise::Spawner;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use metrics_registry_apiserver::api::Readiness;
use metrics_registry_apiserver::rules::SharedRuleTable;
use metrics_registry_apiserver::telemetry::SelfMetrics;
use metrics_registry_crds::all_crds;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Bursts (`kubectl apply -f dir/`) are folded into one compile once quiet this long…
const DEBOUNCE: Duration = Duration::from_millis(50);
/// …but never wait longer than this after the first change of a burst.
const MAX_DELAY: Duration = Duration::from_millis(500);
/// Watch events waiting to be applied; a full queue makes the watches wait, never grows.
const EVENT_QUEUE: usize = 1024;

/// The `ApiResource` of each definition kind, taken from the CRDs themselves.
pub fn api_resources() -> Vec<(DefinitionKind, ApiResource)> {
    all_crds()
        .into_iter()
        .filter_map(|crd| {
            let kind = DefinitionKind::from_name(&crd.spec.names.kind)?;
            let version = &crd.spec.versions[0].name;
            Some((
                kind,
                ApiResource {
                    group: crd.spec.group.clone(),
                    version: version.clone(),
                    api_version: format!("{}/{version}", crd.spec.group),
                    kind: crd.spec.names.kind.clone(),
                    plural: crd.spec.names.plural.clone(),
                },
            ))
        })
        .collect()
}

pub struct DefinitionController {
    /// For watches (long-lived requests, no read timeout).
    pub client: kube::Client,
    pub options: CompileOptions,
    pub table: SharedRuleTable,
    pub readiness: Readiness,
    pub objects: Arc<ObjectCaches>,
    pub statuses: StatusQueue,
    /// The latest rule groups, for the rules writer (`None` until the first compile).
    pub rules: watch::Sender<Option<Arc<RuleGroups>>>,
    pub leadership: Leadership,
    /// Starts the watches, under supervision.
    pub spawner: Spawner,
}

/// What changed since the last flush.
#[derive(Default)]
struct Pending {
    compile: bool,
    dirty: BTreeSet<DefinitionId>,
    first: Option<Instant>,
    last: Option<Instant>,
}

impl Pending {
    fn note(&mut self, now: Instant) {
        self.first.get_or_insert(now);
        self.last = Some(now);
    }

    fn deadline(&self) -> Option<Instant> {
        let (first, last) = (self.first?, self.last?);
        Some((last + DEBOUNCE).min(first + MAX_DELAY))
    }
}

impl DefinitionController {
    pub async fn run(mut self) {
        let (events_tx, mut events) = mpsc::channel::<(DefinitionKind, WatchEvent)>(EVENT_QUEUE);
        for (kind, resource) in api_resources() {
            self.spawner.spawn(
                format!("watch of {}", resource.plural),
                watch_kind(self.client.clone(), kind, resource, events_tx.clone()),
            );
        }
        drop(events_tx);
        let mut store = DefinitionStore::default();
        let mut verdicts: BTreeMap<DefinitionId, Verdict> = BTreeMap::new();
        let mut pending = Pending::default();
        loop {
            let deadline = pending.deadline();
            tokio::select! {
                event = events.recv() => {
                    let Some((kind, event)) = event else { return };
                    let applied = store.apply(kind, event);
                    if applied.definitions_changed || !applied.touched.is_empty() {
                        pending.compile |= applied.definitions_changed;
                        pending.dirty.extend(applied.touched);
                        pending.note(Instant::now());
                    }
                }
                _ = self.leadership.changed() => {
                    if self.leadership.is_leader() {
                        // Another replica may have led meanwhile, or nobody: check everything.
                        pending.dirty.extend(store.records().map(|r| r.id.clone()));
                        pending.note(Instant::now());
                    }
                }
                _ = sleep_until(deadline), if deadline.is_some() => {
                    let flushed = std::mem::take(&mut pending);
                    self.flush(&store, &mut verdicts, flushed).await;
                }
            }
        }
    }

    async fn flush(
        &self,
        store: &DefinitionStore,
        verdicts: &mut BTreeMap<DefinitionId, Verdict>,
        mut pending: Pending,
    ) {
        if !store.is_synced() {
            // Compiling a partial list would serve (and report) a partial table.
            return;
        }
        if pending.compile {
            let compiled = self.publish(store).await;
            log_verdict_changes(verdicts, &compiled);
            // A compile can change any verdict (precedence, conflicts): check every status.
            pending.dirty = store.records().map(|r| r.id.clone()).collect();
            *verdicts = compiled;
        }
        if !self.leadership.is_leader() {
            return;
        }
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        for id in pending.dirty {
            let Some(record) = store.record(&id) else {
                continue;
            };
            let desired = desired_status(record, verdicts.get(&id), &now);
            if !is_current(record, &desired) {
                self.statuses.push(id, desired);
            }
        }
    }

    /// Compiles off the async workers, swaps the table, hands the rules on.
    async fn publish(&self, store: &DefinitionStore) -> BTreeMap<DefinitionId, Verdict> {
        let started = Instant::now();
        let definitions = store.definitions();
        let count = definitions.len();
        let options = self.options;
        let compiled = tokio::task::spawn_blocking(move || compile(&definitions, options))
            .await
            .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
        let kinds: BTreeSet<_> = compiled.table.discovery().map(|(kind, _)| kind).collect();
        let not_ready =
            compiled.not_ready().count() + store.records().filter(|r| r.decoded.is_err()).count();
        self.table.store(Arc::new(compiled.table));
        SelfMetrics::global().table_swapped();
        crate::telemetry::record_verdicts(&compiled.verdicts);
        let first = !self.readiness.is_ready();
        self.readiness.set_ready();
        tracing::info!(
            definitions = count,
            not_ready,
            elapsed_us = started.elapsed().as_micros() as u64,
            "definitions published"
        );
        if first {
            tracing::info!("first full sync done; ready");
        }
        self.objects.ensure(kinds);
        self.rules
            .send_replace(Some(Arc::new(compiled.rule_groups)));
        compiled.verdicts
    }
}

/// Says what became wrong (or right) once, on every replica, whoever writes the status.
fn log_verdict_changes(
    before: &BTreeMap<DefinitionId, Verdict>,
    after: &BTreeMap<DefinitionId, Verdict>,
) {
    for (id, verdict) in after {
        let old = before.get(id).and_then(|v| v.problem.as_ref());
        match (&verdict.problem, old) {
            (Some(problem), old) if old != Some(problem) => {
                tracing::warn!(definition = %id, reason = %problem.reason, "not served: {}", problem.message);
            }
            (None, Some(_)) => tracing::info!(definition = %id, "served again"),
            _ => {}
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

async fn watch_kind(
    client: kube::Client,
    kind: DefinitionKind,
    resource: ApiResource,
    events: mpsc::Sender<(DefinitionKind, WatchEvent)>,
) {
    let api: Api<DynamicObject> = Api::all_with(client, &resource);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut last_error: Option<String> = None;
    while let Some(item) = stream.next().await {
        let event = match item {
            Ok(event) => {
                last_error = None;
                event
            }
            Err(error) => {
                // Say it once per distinct error, not once per retry.
                let text = error.to_string();
                if last_error.as_deref() != Some(text.as_str()) {
                    if text.contains("404")
                        || text.contains("NotFound")
                        || text.contains("not found")
                    {
                        tracing::error!(
                            kind = kind.name(),
                            "cannot watch: the CRD is not installed (`metrics-registry crds | kubectl apply -f -`): {text}"
                        );
                    } else if text.contains("Expired") || text.contains("too old resource version")
                    {
                        // The watcher relists by itself; nothing is lost.
                        tracing::debug!(kind = kind.name(), "watch expired; relisting");
                    } else {
                        tracing::warn!(kind = kind.name(), "watch failed, retrying: {text}");
                    }
                    last_error = Some(text);
                }
                SelfMetrics::global().watch_restarted(kind.name());
                continue;
            }
        };
        let json = |object: DynamicObject| serde_json::to_value(object).unwrap_or_default();
        let event = match event {
            watcher::Event::Init => WatchEvent::Init,
            watcher::Event::InitApply(object) => WatchEvent::InitApply(json(object)),
            watcher::Event::InitDone => WatchEvent::InitDone,
            watcher::Event::Apply(object) => WatchEvent::Apply(json(object)),
            watcher::Event::Delete(object) => WatchEvent::Delete(json(object)),
        };
        if events.send((kind, event)).await.is_err() {
            // The controller is gone; the supervisor reports that, not us.
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_debounce_waits_for_quiet_but_never_past_the_maximum() {
        let start = Instant::now();
        let mut pending = Pending::default();
        assert_eq!(
            pending.deadline(),
            None,
            "nothing pending, nothing to wait for"
        );
        pending.note(start);
        assert_eq!(pending.deadline(), Some(start + DEBOUNCE));
        // A steady trickle keeps pushing the quiet deadline…
        let mut at = start;
        while at < start + Duration::from_secs(2) {
            at += DEBOUNCE / 2;
            pending.note(at);
        }
        // …but the flush happens at most MAX_DELAY after the first change.
        assert_eq!(pending.deadline(), Some(start + MAX_DELAY));
    }
}
