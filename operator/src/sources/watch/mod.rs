//! Watches every definition kind, compiles when definitions change (bursts debounced),
//! swaps the table, and hands statuses and rules to their writers. The only place where
//! definitions meet kube.
//!
//! Every replica runs this loop and serves what it compiles; statuses go to the writer
//! only while this replica leads (see `leader`), and all stale ones are queued again
//! whenever it becomes the leader.

mod per_kind;
pub mod store;

use self::store::{DefinitionStore, WatchEvent};
use crate::compiler::{Change, CompileOptions, Delta, IncrementalCompiler};
use crate::definitions::{DefinitionId, DefinitionKind};
use crate::kubernetes::leader::Leadership;
use crate::kubernetes::objects::ObjectCaches;
use crate::publish::Publisher;
use crate::sinks::status::writer::StatusQueue;
use crate::sinks::status::{desired_status, is_current};
use crate::supervise::Spawner;
use kube::api::ApiResource;
use metrics_registry_apiserver::table::{ObjectKind, TenantValue};
use metrics_registry_apiserver::telemetry::SelfMetrics;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Bursts (`kubectl apply -f dir/`) are folded into one compile once quiet this long…
const DEBOUNCE: Duration = Duration::from_millis(50);
/// …but never wait longer than this after the first change of a burst.
const MAX_DELAY: Duration = Duration::from_millis(500);
/// Watch events waiting to be applied; a full queue makes the watches wait, never grows.
const EVENT_QUEUE: usize = 1024;

/// The `ApiResource` of each definition kind.
pub fn api_resources() -> Vec<(DefinitionKind, ApiResource)> {
    DefinitionKind::ALL
        .into_iter()
        .map(|kind| (kind, kind.api_resource()))
        .collect()
}

pub struct DefinitionController {
    /// For watches (long-lived requests, no read timeout).
    pub client: kube::Client,
    pub options: CompileOptions,
    /// The table, readiness and rule groups (nothing is published before every kind has
    /// been listed once: a partial table would serve and report a partial truth).
    pub publisher: Publisher,
    pub objects: Arc<ObjectCaches>,
    pub statuses: StatusQueue,
    /// Counts watch restarts.
    pub metrics: Arc<SelfMetrics>,
    pub leadership: Leadership,
    /// Starts the watches, under supervision.
    pub spawner: Spawner,
}

/// What changed since the last flush.
#[derive(Default)]
struct Pending {
    /// For the compiler, in the order they happened.
    changes: Vec<Change>,
    /// Records whose status may need a write.
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

/// The compiler and what it changed that is not published yet, owned by the loop.
struct CompilerState {
    /// `None` only while a batch compiles off the async workers.
    compiler: Option<IncrementalCompiler>,
    /// What changed since the last publish.
    unpublished: Delta,
}

impl DefinitionController {
    pub async fn run(self) {
        let (events_tx, events) = mpsc::channel::<(DefinitionKind, WatchEvent)>(EVENT_QUEUE);
        for kind in DefinitionKind::ALL {
            self.spawner.spawn(
                format!("watch of {}", kind.api_resource().plural),
                per_kind::watch(
                    self.client.clone(),
                    kind,
                    events_tx.clone(),
                    self.metrics.clone(),
                ),
            );
        }
        drop(events_tx);
        self.process(events).await;
    }

    /// The loop: events in; table, statuses and rules out. Ends when every watch is gone.
    async fn process(mut self, mut events: mpsc::Receiver<(DefinitionKind, WatchEvent)>) {
        let mut store = DefinitionStore::default();
        let mut compiled = CompilerState {
            compiler: Some(IncrementalCompiler::new(self.options)),
            unpublished: Delta::default(),
        };
        let mut pending = Pending::default();
        let mut probe_rounds = self.publisher.backends().probe_rounds();
        loop {
            let deadline = pending.deadline();
            tokio::select! {
                Ok(()) = probe_rounds.changed() => {
                    // Backends were probed: their statuses carry the result, and those of
                    // the definitions naming them the backend's condition.
                    let affected = store
                        .records()
                        .filter(|r| {
                            r.id.kind == DefinitionKind::MetricsBackend
                                || r.decoded.as_ref().is_ok_and(|d| d.body.named_backend().is_some())
                        })
                        .map(|r| r.id.clone());
                    pending.dirty.extend(affected);
                    pending.note(Instant::now());
                }
                event = events.recv() => {
                    let Some((kind, event)) = event else { return };
                    let applied = store.apply(kind, event);
                    if applied.definitions_changed() || !applied.touched.is_empty() {
                        pending.changes.extend(applied.changes);
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
                    self.flush(&store, &mut compiled, flushed).await;
                }
            }
        }
    }

    async fn flush(
        &mut self,
        store: &DefinitionStore,
        compiled: &mut CompilerState,
        pending: Pending,
    ) {
        let mut dirty = pending.dirty;
        if !pending.changes.is_empty() {
            let started = Instant::now();
            let batch = pending.changes.len();
            let mut compiler = compiled.compiler.take().expect("the compiler is home");
            // Off the async workers: a large batch must not hold up requests.
            let (compiler, delta) = tokio::task::spawn_blocking(move || {
                let delta = compiler.apply(pending.changes);
                (compiler, delta)
            })
            .await
            .unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
            tracing::debug!(
                changes = batch,
                verdicts_changed = delta.changed.len(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "definitions compiled"
            );
            compiled.compiler = Some(compiler);
            compiled.unpublished.merge(delta);
        }
        if !store.is_synced() {
            return;
        }
        let compiler = compiled.compiler.as_ref().expect("the compiler is home");
        let delta = std::mem::take(&mut compiled.unpublished);
        let published = self.publisher.publish(compiler, &delta);
        let first = published.first;
        if published.table_swapped {
            let unreadable = store.records().filter(|r| r.decoded.is_err()).count();
            tracing::info!(
                definitions = compiler.len(),
                not_ready = compiler.not_ready().count() + unreadable,
                "definitions published"
            );
            if first {
                tracing::info!("first full sync done; ready");
            }
            // Object caches for the kinds the table now serves, and namespaces when a
            // backend's tenant is a namespace label.
            let table = compiler.table();
            self.objects.ensure(table.discovery().map(|(kind, _)| kind));
            let labelled_tenants = table.backends().values().any(|backend| {
                backend
                    .tenant
                    .as_ref()
                    .is_some_and(|t| matches!(t.value, TenantValue::NamespaceLabel(_)))
            });
            if labelled_tenants {
                self.objects.ensure([ObjectKind::Namespace]);
            }
        }
        if first {
            // Every status may be stale: check them all once.
            dirty.extend(store.records().map(|r| r.id.clone()));
        }
        // Only definitions whose verdict changed, and records that changed, need a look.
        dirty.extend(delta.changed);
        if !self.leadership.is_leader() {
            return;
        }
        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        for id in dirty {
            let Some(record) = store.record(&id) else {
                continue;
            };
            // A backend's own probe, or the probe of the backend a served definition reads.
            let verdict = compiler.verdict(&id);
            let probed = match id.kind {
                DefinitionKind::MetricsBackend => Some(id.name.as_str()),
                _ => verdict.and_then(|v| v.backend.as_deref()),
            };
            let probe = probed.and_then(|name| self.publisher.backends().last_probe(name));
            let desired = desired_status(record, verdict, probe.as_ref(), &now);
            if !is_current(record, &desired) {
                self.statuses.push(id, desired);
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
