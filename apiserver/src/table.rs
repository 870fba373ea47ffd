//! The rule table: what the API serves, compiled from definitions elsewhere.
//!
//! The table is immutable once built and published whole through [`SharedRuleTable`]
//! (an `ArcSwap`), so request handlers read it without locks and never see a
//! half-applied change.

mod backend;

pub use backend::{
    BackendAuth, BackendSpec, BackendTls, DEFAULT_BACKEND, SecretRef, TenantHeader, TenantSegment,
    TenantValue, render_tenant,
};

use crate::external::{ExternalNamespacing, ExternalScope};
use crate::selector::promql_string;
use arc_swap::ArcSwap;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// The kinds of Kubernetes objects metrics can describe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ObjectKind {
    Pod,
    Service,
    Ingress,
    Deployment,
    StatefulSet,
    DaemonSet,
    Namespace,
}

impl ObjectKind {
    pub const ALL: [ObjectKind; 7] = [
        ObjectKind::Pod,
        ObjectKind::Service,
        ObjectKind::Ingress,
        ObjectKind::Deployment,
        ObjectKind::StatefulSet,
        ObjectKind::DaemonSet,
        ObjectKind::Namespace,
    ];

    /// `GroupResource.String()` as clients put it in URLs.
    pub fn resource(self) -> &'static str {
        match self {
            ObjectKind::Pod => "pods",
            ObjectKind::Service => "services",
            ObjectKind::Ingress => "ingresses.networking.k8s.io",
            ObjectKind::Deployment => "deployments.apps",
            ObjectKind::StatefulSet => "statefulsets.apps",
            ObjectKind::DaemonSet => "daemonsets.apps",
            ObjectKind::Namespace => "namespaces",
        }
    }

    /// Resolves a URL resource segment. Besides the canonical `plural.group` form,
    /// the bare plural, the singular and the Kind are accepted, as kubectl users type them.
    pub fn from_resource(segment: &str) -> Option<ObjectKind> {
        let lower = segment.to_ascii_lowercase();
        ObjectKind::ALL.into_iter().find(|kind| {
            let canonical = kind.resource();
            let plural = canonical.split('.').next().unwrap_or(canonical);
            lower == canonical || lower == plural || lower == kind.default_label()
        })
    }

    /// Series label that holds the object's name unless a definition says otherwise.
    pub fn default_label(self) -> &'static str {
        match self {
            ObjectKind::Pod => "pod",
            ObjectKind::Service => "service",
            ObjectKind::Ingress => "ingress",
            ObjectKind::Deployment => "deployment",
            ObjectKind::StatefulSet => "statefulset",
            ObjectKind::DaemonSet => "daemonset",
            ObjectKind::Namespace => "namespace",
        }
    }

    /// The object's `kind`.
    pub fn kind(self) -> &'static str {
        match self {
            ObjectKind::Pod => "Pod",
            ObjectKind::Service => "Service",
            ObjectKind::Ingress => "Ingress",
            ObjectKind::Deployment => "Deployment",
            ObjectKind::StatefulSet => "StatefulSet",
            ObjectKind::DaemonSet => "DaemonSet",
            ObjectKind::Namespace => "Namespace",
        }
    }

    /// The object's `apiVersion`.
    pub fn api_version(self) -> &'static str {
        match self {
            ObjectKind::Pod | ObjectKind::Service | ObjectKind::Namespace => "v1",
            ObjectKind::Ingress => "networking.k8s.io/v1",
            ObjectKind::Deployment | ObjectKind::StatefulSet | ObjectKind::DaemonSet => "apps/v1",
        }
    }

    /// Namespaces are the only cluster-scoped objects here.
    pub fn is_namespaced(self) -> bool {
        self != ObjectKind::Namespace
    }
}

/// One piece of a query template.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Segment {
    Literal(String),
    LabelMatchers,
    GroupBy,
}

/// A PromQL template split at its placeholders, so rendering is concatenation and
/// nothing from a request is ever parsed as template syntax.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct QueryTemplate {
    segments: Vec<Segment>,
}

impl QueryTemplate {
    pub fn new(segments: Vec<Segment>) -> Self {
        QueryTemplate { segments }
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Substitutes already-escaped matchers and group-by labels.
    pub fn render(&self, label_matchers: &str, group_by: &str) -> String {
        let mut out = String::new();
        for segment in &self.segments {
            match segment {
                Segment::Literal(text) => out.push_str(text),
                Segment::LabelMatchers => out.push_str(label_matchers),
                Segment::GroupBy => out.push_str(group_by),
            }
        }
        out
    }
}

/// A definition's own bounds on its queries (`spec.timeout`, `spec.maxAge`); unset, the
/// backend's timeout and the server's cache age apply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueryBounds {
    /// Longest a query may take, here and on Prometheus (its `timeout` parameter).
    pub timeout: Option<std::time::Duration>,
    /// Oldest cached answer served; never more than the server's cache age.
    pub max_age: Option<std::time::Duration>,
}

/// A servable metric definition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricRule {
    pub object: ObjectKind,
    /// The name clients ask for.
    pub metric: String,
    pub template: QueryTemplate,
    pub object_label: String,
    pub namespace_label: String,
    pub window_seconds: Option<i64>,
    /// Whether the query's value for one object provably depends only on that object's
    /// series (decided by the compiler from the parsed template), so that asking for
    /// several objects at once answers each as asking for it alone would. Only such rules
    /// are batched.
    pub separable: bool,
    /// The backend its queries go to ([`DEFAULT_BACKEND`] unless the definition names one).
    pub backend: String,
    pub bounds: QueryBounds,
    /// Where the rule comes from, e.g. `ServiceMetric team-a/rmq-depth`, for messages and logs.
    pub source: String,
}

/// Whether a rule applies everywhere or in one namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Cluster,
    Namespace(String),
}

/// A servable external metric definition: a live query whose series are the answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExternalRule {
    /// The name clients ask for.
    pub metric: String,
    /// Its one placeholder, `<<.LabelMatchers>>`, takes the request's `labelSelector`;
    /// a namespaced definition's selectors are already pinned to its namespace.
    pub template: QueryTemplate,
    /// `ClusterExternalMetric`'s `namespaceLabel`: the label `<<.LabelMatchers>>` matches
    /// against the request's namespace.
    pub namespace_label: Option<String>,
    /// The backend its queries go to ([`DEFAULT_BACKEND`] unless the definition names one).
    pub backend: String,
    pub bounds: QueryBounds,
    /// Where the rule comes from, e.g. `ExternalMetric team-a/queue-depth`.
    pub source: String,
}

/// What `<<.LabelMatchers>>` of an external rule becomes when the request has no
/// `labelSelector`: a matcher every series meets (no stored series has a label starting
/// with `__` besides its name), so the template's selectors stay valid PromQL wherever
/// the placeholder sits.
pub const NO_SELECTOR_MATCHER: &str = "__no_selector__=\"\"";

impl ExternalRule {
    /// The query for one request in `namespace`: the template with the request's (already
    /// escaped) `labelSelector` matchers, and the namespace matcher when the rule has a
    /// `namespace_label`.
    pub fn query(&self, selector_matchers: &[String], namespace: &str) -> String {
        let mut matchers = selector_matchers.to_vec();
        if let Some(label) = &self.namespace_label {
            matchers.push(format!("{label}={}", promql_string(namespace)));
        }
        if matchers.is_empty() {
            self.template.render(NO_SELECTOR_MATCHER, "")
        } else {
            self.template.render(&matchers.join(","), "")
        }
    }
}

/// The two templates of one resource (CPU or memory).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceTemplates {
    /// Per container; its `<<.GroupBy>>` is the namespace, pod and container labels.
    pub container: QueryTemplate,
    /// Per node; its `<<.GroupBy>>` is the node label.
    pub node: QueryTemplate,
}

/// How `metrics.k8s.io` is served: a `ResourceMetrics` definition, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceRule {
    pub cpu: ResourceTemplates,
    pub memory: ResourceTemplates,
    pub pod_label: String,
    pub namespace_label: String,
    pub container_label: String,
    pub node_label: String,
    pub window_seconds: i64,
    /// The backend its queries go to ([`DEFAULT_BACKEND`] unless the definition names one).
    pub backend: String,
    /// Where the rule comes from, e.g. `ResourceMetrics default`.
    pub source: String,
}

/// Every rule of one metric name: the cluster one and the namespaced ones. Shared by
/// pointer between table snapshots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScopedRules<R> {
    pub cluster: Option<Arc<R>>,
    pub namespaced: BTreeMap<String, Arc<R>>,
}

impl<R> Default for ScopedRules<R> {
    fn default() -> Self {
        ScopedRules {
            cluster: None,
            namespaced: BTreeMap::new(),
        }
    }
}

impl<R> ScopedRules<R> {
    pub fn is_empty(&self) -> bool {
        self.cluster.is_none() && self.namespaced.is_empty()
    }

    /// Precedence: the namespaced definition in `namespace`, else the cluster one.
    pub fn for_namespace(&self, namespace: &str) -> Option<&Arc<R>> {
        self.namespaced.get(namespace).or(self.cluster.as_ref())
    }

    fn len(&self) -> usize {
        usize::from(self.cluster.is_some()) + self.namespaced.len()
    }
}

/// The rules of one metric name for one kind of object.
pub type MetricGroup = ScopedRules<MetricRule>;
/// The rules of one external metric name.
pub type ExternalGroup = ScopedRules<ExternalRule>;

/// The metric groups of one object kind, by metric name.
type KindGroups = BTreeMap<Arc<str>, Arc<MetricGroup>>;

/// Everything the API serves.
///
/// Groups sit behind `Arc`s at two levels (per kind, per metric), so cloning a table to
/// publish a changed snapshot copies pointers, never rules, and a change to one group
/// copies only the map of its object kind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleTable {
    metrics: BTreeMap<ObjectKind, Arc<KindGroups>>,
    /// The served `ResourceMetrics`, if any.
    resource_rule: Option<Arc<ResourceRule>>,
    /// `ExternalMetric`/`ClusterExternalMetric` rules by metric name.
    external_rules: Arc<BTreeMap<Arc<str>, Arc<ExternalGroup>>>,
    /// External metrics declared by recording rules (`kube_adapter_metric_*` series).
    external: Arc<BTreeSet<String>>,
    external_namespacing: Arc<ExternalNamespacing>,
    /// Valid `MetricsBackend`s by name (the default backend is not among them).
    backends: Arc<BTreeMap<String, Arc<BackendSpec>>>,
}

impl RuleTable {
    /// Replaces the named backends; returns whether they changed.
    pub fn set_backends(&mut self, backends: BTreeMap<String, Arc<BackendSpec>>) -> bool {
        if *self.backends == backends {
            return false;
        }
        self.backends = Arc::new(backends);
        true
    }

    /// Valid `MetricsBackend`s by name.
    pub fn backends(&self) -> &BTreeMap<String, Arc<BackendSpec>> {
        &self.backends
    }

    /// Replaces every rule of one (kind, metric); an empty group removes the metric.
    /// Returns whether anything changed.
    pub fn set_group(&mut self, object: ObjectKind, metric: &str, group: MetricGroup) -> bool {
        if self.group(object, metric) == Some(&group)
            || (group.is_empty() && !self.defines(object, metric))
        {
            return false;
        }
        let groups = Arc::make_mut(self.metrics.entry(object).or_default());
        if group.is_empty() {
            groups.remove(metric);
            if groups.is_empty() {
                self.metrics.remove(&object);
            }
        } else {
            groups.insert(Arc::from(metric), Arc::new(group));
        }
        true
    }

    /// Every rule of one (kind, metric).
    pub fn group(&self, object: ObjectKind, metric: &str) -> Option<&MetricGroup> {
        self.metrics.get(&object)?.get(metric).map(|group| &**group)
    }

    /// Replaces how `metrics.k8s.io` is served; returns whether that changed.
    pub fn set_resource_rule(&mut self, rule: Option<Arc<ResourceRule>>) -> bool {
        if self.resource_rule == rule {
            return false;
        }
        self.resource_rule = rule;
        true
    }

    /// How `metrics.k8s.io` is served, if a `ResourceMetrics` is.
    pub fn resource_rule(&self) -> Option<&Arc<ResourceRule>> {
        self.resource_rule.as_ref()
    }

    /// Replaces every rule of one external metric; an empty group removes it. Returns
    /// whether anything changed.
    pub fn set_external_group(&mut self, metric: &str, group: ExternalGroup) -> bool {
        if self.external_group(metric) == Some(&group)
            || (group.is_empty() && self.external_group(metric).is_none())
        {
            return false;
        }
        let rules = Arc::make_mut(&mut self.external_rules);
        if group.is_empty() {
            rules.remove(metric);
        } else {
            rules.insert(Arc::from(metric), Arc::new(group));
        }
        true
    }

    /// Every rule of one external metric.
    pub fn external_group(&self, metric: &str) -> Option<&ExternalGroup> {
        self.external_rules.get(metric).map(|group| &**group)
    }

    /// Precedence: the `ExternalMetric` in `namespace`, else the `ClusterExternalMetric`.
    pub fn external_rule(&self, metric: &str, namespace: &str) -> Option<&Arc<ExternalRule>> {
        self.external_group(metric)?.for_namespace(namespace)
    }

    /// Names of the external metrics definitions answer with a live query.
    pub fn external_rule_names(&self) -> impl Iterator<Item = &str> {
        self.external_rules.keys().map(|name| &**name)
    }

    /// Replaces the external metrics declared by recording rules; returns whether they changed.
    pub fn set_external(&mut self, names: BTreeSet<String>) -> bool {
        if *self.external == names {
            return false;
        }
        self.external = Arc::new(names);
        true
    }

    /// Replaces which external metrics are read in the request's namespace only;
    /// returns whether that changed.
    pub fn set_external_namespacing(&mut self, namespacing: ExternalNamespacing) -> bool {
        if *self.external_namespacing == namespacing {
            return false;
        }
        self.external_namespacing = Arc::new(namespacing);
        true
    }

    pub fn external_namespacing(&self) -> &ExternalNamespacing {
        &self.external_namespacing
    }

    /// Which series a request for external metric `metric` reads.
    pub fn external_scope(&self, metric: &str) -> ExternalScope {
        self.external_namespacing.scope(metric)
    }

    /// Precedence: the namespaced definition in `namespace`, else the cluster one.
    pub fn lookup(
        &self,
        object: ObjectKind,
        metric: &str,
        namespace: &str,
    ) -> Option<&Arc<MetricRule>> {
        self.group(object, metric)?.for_namespace(namespace)
    }

    /// Whether `metric` is defined for `object` in any scope.
    pub fn defines(&self, object: ObjectKind, metric: &str) -> bool {
        self.group(object, metric).is_some()
    }

    /// Namespaces that have their own definition of a metric.
    pub fn namespaces_defining(&self, object: ObjectKind, metric: &str) -> Vec<String> {
        self.group(object, metric)
            .map(|group| group.namespaced.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Each (kind, metric) once, whichever scopes define it, sorted.
    pub fn discovery(&self) -> impl Iterator<Item = (ObjectKind, &str)> {
        self.metrics
            .iter()
            .flat_map(|(kind, groups)| groups.keys().map(move |metric| (*kind, &**metric)))
    }

    /// External metric names declared by recording rules.
    pub fn external_metrics(&self) -> &BTreeSet<String> {
        &self.external
    }

    /// Number of rules in all scopes.
    pub fn len(&self) -> usize {
        let metrics: usize = self
            .metrics
            .values()
            .flat_map(|groups| groups.values())
            .map(|group| group.len())
            .sum();
        let external: usize = self.external_rules.values().map(|group| group.len()).sum();
        metrics + external + usize::from(self.resource_rule.is_some())
    }

    pub fn is_empty(&self) -> bool {
        self.metrics.is_empty() && self.external_rules.is_empty() && self.resource_rule.is_none()
    }
}

/// The published table. Writers swap a whole new table in; readers `load()` without locking.
pub type SharedRuleTable = Arc<ArcSwap<RuleTable>>;

/// A shared handle holding an empty table.
pub fn shared_rule_table() -> SharedRuleTable {
    Arc::new(ArcSwap::from_pointee(RuleTable::default()))
}

#[cfg(test)]
mod tests;
