//! Standalone mode: compile the manifest folder, publish the table, and do it again
//! whenever a file changes. A folder that cannot be read keeps the last good table.

use crate::compiler::{CompileOptions, Compiled, compile};
use crate::definitions::DefinitionId;
use crate::manifests::{self, ManifestError};
use crate::rules_output::RulesOutput;
use metrics_registry_apiserver::api::Readiness;
use metrics_registry_apiserver::rules::SharedRuleTable;
use metrics_registry_crds::RuleGroup;
use notify::{RecursiveMode, Watcher};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Bursts of file events (editors write, rename and chmod) are folded into one reload.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// Safety net for file systems that miss events (some network and overlay mounts).
const RESCAN: Duration = Duration::from_secs(5);

pub struct ManifestSource {
    pub dir: PathBuf,
    pub options: CompileOptions,
    pub table: SharedRuleTable,
    pub readiness: Readiness,
    /// Where valid `CustomPrometheusRules` go.
    pub rules: RulesOutput,
}

/// What one load did, for logs and tests.
#[derive(Debug)]
pub enum LoadOutcome {
    Published {
        definitions: usize,
        not_ready: usize,
        rule_groups: BTreeMap<DefinitionId, Vec<RuleGroup>>,
    },
    Unchanged,
    KeptLastGood(Vec<ManifestError>),
}

impl ManifestSource {
    /// Loads once; publishes only if every file could be read.
    pub fn load(&self, last: &mut Option<Vec<crate::definitions::Definition>>) -> LoadOutcome {
        let located = match manifests::read_dir(&self.dir) {
            Ok(located) => located,
            Err(errors) => return LoadOutcome::KeptLastGood(errors),
        };
        let definitions: Vec<_> = located.into_iter().map(|l| l.definition).collect();
        if last.as_ref() == Some(&definitions) {
            return LoadOutcome::Unchanged;
        }
        let compiled: Compiled = compile(&definitions, self.options);
        for (id, problem) in compiled.not_ready() {
            tracing::warn!(definition = %id, reason = %problem.reason, "not served: {}", problem.message);
        }
        let not_ready = compiled.not_ready().count();
        self.table.store(Arc::new(compiled.table));
        self.readiness.set_ready();
        let count = definitions.len();
        *last = Some(definitions);
        LoadOutcome::Published {
            definitions: count,
            not_ready,
            rule_groups: compiled.rule_groups,
        }
    }

    /// Initial load, then reloads on every change until the task is dropped.
    pub async fn run(self) -> anyhow::Result<()> {
        let (events_tx, mut events) = mpsc::unbounded_channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if event.is_ok() {
                    let _ = events_tx.send(());
                }
            })?;
        watcher.watch(&self.dir, RecursiveMode::Recursive)?;

        let mut last = None;
        let outcome = self.load(&mut last);
        self.after(outcome, Duration::ZERO).await;
        let mut rescan = tokio::time::interval(RESCAN);
        rescan.tick().await;
        loop {
            tokio::select! {
                event = events.recv() => {
                    if event.is_none() {
                        return Ok(());
                    }
                    let started = Instant::now();
                    tokio::time::sleep(DEBOUNCE).await;
                    while events.try_recv().is_ok() {}
                    let outcome = self.load(&mut last);
                    self.after(outcome, started.elapsed()).await;
                }
                _ = rescan.tick() => {
                    let outcome = self.load(&mut last);
                    if !matches!(outcome, LoadOutcome::Unchanged) {
                        self.after(outcome, Duration::ZERO).await;
                    }
                }
            }
        }
    }

    /// Hands the rules on, then logs the outcome.
    async fn after(&self, outcome: LoadOutcome, elapsed: Duration) {
        if let LoadOutcome::Published { rule_groups, .. } = &outcome {
            self.rules.sync(rule_groups).await;
        }
        self.log(outcome, elapsed);
    }

    fn log(&self, outcome: LoadOutcome, elapsed: Duration) {
        match outcome {
            LoadOutcome::Published {
                definitions,
                not_ready,
                ..
            } => tracing::info!(
                dir = %self.dir.display(),
                definitions,
                not_ready,
                elapsed_ms = elapsed.as_millis() as u64,
                "definitions published"
            ),
            LoadOutcome::Unchanged => tracing::debug!("manifests unchanged"),
            LoadOutcome::KeptLastGood(errors) => {
                for error in errors {
                    tracing::error!("keeping the last good definitions: {error}");
                }
            }
        }
    }
}
