//! Watches every definition kind, compiles on change (bursts debounced), swaps the
//! table and writes statuses back. The only place where definitions meet kube.

use super::objects::ObjectCaches;
use super::status::{desired_status, is_current};
use super::store::{DefinitionStore, ObjectRecord, WatchEvent};
use crate::compiler::{CompileOptions, compile};
use crate::definitions::DefinitionKind;
use crate::rules_output::RulesOutput;
use crate::tasks::TaskGuard;
use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use metrics_registry_apiserver::api::Readiness;
use metrics_registry_apiserver::rules::SharedRuleTable;
use metrics_registry_crds::all_crds;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Bursts (kubectl apply -f dir/) are folded into one compile.
const DEBOUNCE: Duration = Duration::from_millis(50);

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
    pub client: kube::Client,
    pub options: CompileOptions,
    pub table: SharedRuleTable,
    pub readiness: Readiness,
    pub objects: Arc<ObjectCaches>,
    pub rules: RulesOutput,
}

impl DefinitionController {
    pub async fn run(self) {
        let (events_tx, mut events) = mpsc::unbounded_channel::<(DefinitionKind, WatchEvent)>();
        let resources = api_resources();
        // The watches stop with this loop.
        let mut watches = TaskGuard::default();
        for (kind, resource) in &resources {
            watches.push(tokio::spawn(watch_kind(
                self.client.clone(),
                *kind,
                resource.clone(),
                events_tx.clone(),
            )));
        }
        drop(events_tx);
        let mut store = DefinitionStore::default();
        let mut pending = false;
        loop {
            let event = if pending {
                match tokio::time::timeout(DEBOUNCE, events.recv()).await {
                    Ok(event) => event,
                    Err(_) => {
                        pending = false;
                        if store.is_synced() {
                            self.publish(&store, &resources).await;
                        }
                        continue;
                    }
                }
            } else {
                events.recv().await
            };
            let Some((kind, event)) = event else { return };
            pending |= store.apply(kind, event);
        }
    }

    async fn publish(&self, store: &DefinitionStore, resources: &[(DefinitionKind, ApiResource)]) {
        let started = Instant::now();
        let definitions = store.definitions();
        let compiled = compile(&definitions, self.options);
        let kinds: BTreeSet<_> = compiled.table.discovery().map(|(kind, _)| kind).collect();
        let not_ready =
            compiled.not_ready().count() + store.records().filter(|r| r.decoded.is_err()).count();
        let rule_groups = compiled.rule_groups.clone();
        self.table.store(Arc::new(compiled.table));
        let first = !self.readiness.is_ready();
        self.readiness.set_ready();
        tracing::info!(
            definitions = definitions.len(),
            not_ready,
            elapsed_us = started.elapsed().as_micros() as u64,
            "definitions published"
        );
        if first {
            tracing::info!("first full sync done; ready");
        }
        self.objects.ensure(kinds);
        self.rules.sync(&rule_groups).await;

        let now = jiff::Timestamp::now()
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        for record in store.records() {
            let verdict = compiled.verdicts.get(&record.id);
            let desired = desired_status(record, verdict, &now);
            if is_current(record, &desired) {
                continue;
            }
            if let Some(problem) = verdict.and_then(|v| v.problem.as_ref()) {
                tracing::warn!(definition = %record.id, reason = %problem.reason, "not served: {}", problem.message);
            } else if let Err(message) = &record.decoded {
                tracing::warn!(definition = %record.id, "unreadable: {message}");
            }
            if let Some((_, resource)) = resources.iter().find(|(k, _)| *k == record.id.kind) {
                self.write_status(record, resource, desired).await;
            }
        }
    }

    async fn write_status(
        &self,
        record: &ObjectRecord,
        resource: &ApiResource,
        status: serde_json::Value,
    ) {
        let api: Api<DynamicObject> = match &record.id.namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, resource),
            None => Api::all_with(self.client.clone(), resource),
        };
        let patch = serde_json::json!({ "status": status });
        if let Err(error) = api
            .patch_status(
                &record.id.name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            tracing::warn!(definition = %record.id, %error, "could not write status");
        }
    }
}

async fn watch_kind(
    client: kube::Client,
    kind: DefinitionKind,
    resource: ApiResource,
    events: mpsc::UnboundedSender<(DefinitionKind, WatchEvent)>,
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
        if events.send((kind, event)).is_err() {
            return;
        }
    }
}
