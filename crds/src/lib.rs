//! Custom resource types of `metrics-registry.io/v1beta1`.
//!
//! Only types live here: the compiler that turns them into a rule table and the
//! controllers that watch them are elsewhere, so this crate stays free of I/O. The
//! operator's `DefinitionKind` lists these types once (and gives the CRDs from them).

mod backend;
mod condition;
mod external;
mod metric;
mod resources;
mod rules;

pub use backend::{
    AllowedNamespaces, BackendAuth, BackendHeader, BackendStatus, BackendTls, BasicAuth, LastProbe,
    MetricsBackend, MetricsBackendSpec, OAuth2, SecretKeyRef, SigV4, TenantHeader,
};
pub use condition::{Condition, ConditionStatus, READY};
pub use external::*;
pub use metric::*;
pub use resources::{ResourceMetrics, ResourceMetricsSpec, ResourceQueries};
pub use rules::{CustomPrometheusRules, CustomPrometheusRulesSpec, Rule, RuleGroup, RulesStatus};

/// API group of every resource in this crate.
pub const GROUP: &str = "metrics-registry.io";
/// The one served version.
pub const VERSION: &str = "v1beta1";
/// `apiVersion` written in manifests.
pub const API_VERSION: &str = "metrics-registry.io/v1beta1";
