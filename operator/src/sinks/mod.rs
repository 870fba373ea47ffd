//! Where what the compiler decided goes besides the served table: definition statuses,
//! rules for Prometheus (rule files or PrometheusRule objects) and, for installs without
//! the Helm chart, the APIServices. In cluster mode only the elected leader writes.

pub mod apiservice;

/// The label on every object this operator creates (APIServices, PrometheusRules):
/// how `uninstall` and the orphan cleanup find them.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "metrics-registry");
/// The field manager of every server-side apply it sends.
pub const FIELD_MANAGER: &str = "metrics-registry";

pub mod recording_rules;
pub mod status;
