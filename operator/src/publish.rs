//! The one way a compiled batch reaches everything downstream, for both sources of
//! definitions (the manifest folder and the cluster's watches): the table is swapped in
//! and readiness set, the verdict gauges are updated, what became wrong (or right) is
//! logged once, and the rule groups are handed to the rules writer
//! ([`crate::sinks::recording_rules::RulesOutput::run`]). Statuses are the cluster source's own:
//! only it has objects to write them to.

use crate::compiler::{Delta, IncrementalCompiler};
use crate::sinks::recording_rules::RuleGroups;
use metrics_registry_apiserver::api::Readiness;
use metrics_registry_apiserver::table::SharedRuleTable;
use metrics_registry_apiserver::telemetry::SelfMetrics;
use metrics_registry_apiserver::upstream::Backends;
use std::sync::Arc;
use tokio::sync::watch;

pub struct Publisher {
    table: SharedRuleTable,
    /// Made to match the table's backends before the table naming them is swapped in.
    backends: Backends,
    readiness: Readiness,
    /// The latest rule groups (`None` until the first publish, so that nothing is written
    /// or deleted as an orphan before the first complete compile).
    rules: watch::Sender<Option<Arc<RuleGroups>>>,
    metrics: Arc<SelfMetrics>,
    published: bool,
}

/// What one [`Publisher::publish`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Published {
    /// The first publish: everything was published, whatever the delta said.
    pub first: bool,
    /// A new table is being served.
    pub table_swapped: bool,
}

impl Publisher {
    pub fn new(
        table: SharedRuleTable,
        backends: Backends,
        readiness: Readiness,
        rules: watch::Sender<Option<Arc<RuleGroups>>>,
        metrics: Arc<SelfMetrics>,
    ) -> Self {
        Publisher {
            table,
            backends,
            readiness,
            rules,
            metrics,
            published: false,
        }
    }

    /// Publishes what `delta` says changed in `compiler` (everything, the first time),
    /// and marks the server ready: a source calls it once it has read everything.
    pub fn publish(&mut self, compiler: &IncrementalCompiler, delta: &Delta) -> Published {
        let first = !self.published;
        let table_swapped = first || delta.table_changed;
        if table_swapped {
            let table = compiler.table();
            self.backends.sync(table.backends());
            self.table.store(table);
            self.metrics.table_swapped();
        }
        if first || delta.rules_changed {
            self.rules
                .send_replace(Some(Arc::new(compiler.rule_groups())));
        }
        log_verdict_changes(compiler, delta);
        if first || !delta.changed.is_empty() {
            crate::telemetry::record_verdicts(&self.metrics, compiler.verdicts());
        }
        self.readiness.set_ready();
        self.published = true;
        Published {
            first,
            table_swapped,
        }
    }

    /// The backends it keeps in step with the table.
    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    /// Whether the rules writer has gone (the process is stopping).
    pub fn is_closed(&self) -> bool {
        self.rules.is_closed()
    }
}

/// Says what became wrong (or right) once, on every replica, whoever writes the status:
/// an unchanged bad definition was reported already.
fn log_verdict_changes(compiler: &IncrementalCompiler, delta: &Delta) {
    for id in &delta.changed {
        match compiler.verdict(id).and_then(|v| v.problem.as_ref()) {
            Some(problem) => {
                tracing::warn!(definition = %id, reason = %problem.reason, "not served: {}", problem.message);
            }
            None if compiler.verdict(id).is_some() => {
                tracing::debug!(definition = %id, "served");
            }
            None => {}
        }
    }
}
