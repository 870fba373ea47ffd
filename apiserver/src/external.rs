//! Which external metrics exist: the `kube_adapter_metric_<name>` series Prometheus has,
//! found through its label-values API and refreshed in the background, so discovery
//! never waits on Prometheus.

use crate::prometheus::{PrometheusClient, PrometheusError};
use crate::selector::{promql_string, quote_regex};
use arc_swap::ArcSwap;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

/// Series prefix that makes a Prometheus series an external metric.
pub const EXTERNAL_PREFIX: &str = "kube_adapter_metric_";

/// Whether `name` can follow the prefix and still be a valid Prometheus metric name.
pub fn is_valid_external_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Which series of an external metric a request in namespace N reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExternalScope {
    /// Only series whose `namespace` label is N (prometheus-adapter's namespaced external
    /// rules; `externalMetricsNamespaced: true`, `--external-metrics-namespaced`).
    Namespace,
    /// Series whose `namespace` label is N, and series without one — a queue or a cloud
    /// metric belongs to no namespace, so every namespace may read it. The default: a
    /// workload's series never reach another namespace's HPA.
    #[default]
    NamespaceOrUnlabelled,
    /// Every series, whatever its namespace (`externalMetricsNamespaced: false`,
    /// `--external-metrics-cluster-wide`).
    Cluster,
}

/// Which series each external metric reads: the server's default, and the metrics whose
/// definitions decide otherwise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExternalNamespacing {
    /// For metrics no definition decides.
    pub default: ExternalScope,
    /// Metrics a definition pins to the request's namespace.
    pub namespaced: BTreeSet<String>,
    /// Metrics definitions open to every namespace, and none pins.
    pub cluster_wide: BTreeSet<String>,
}

impl ExternalNamespacing {
    pub fn scope(&self, metric: &str) -> ExternalScope {
        if self.namespaced.contains(metric) {
            ExternalScope::Namespace
        } else if self.cluster_wide.contains(metric) {
            ExternalScope::Cluster
        } else {
            self.default
        }
    }
}

/// The query of an external metrics request: the series with the request's
/// `labelSelector` as (already escaped) matchers, and the namespace matcher its scope
/// asks for, with the request's namespace escaped (as a PromQL string, and as a regex
/// where it is one).
pub fn render_external_query(
    metric: &str,
    selector_matchers: &[String],
    namespace: &str,
    scope: ExternalScope,
) -> String {
    let mut matchers = selector_matchers.to_vec();
    match scope {
        ExternalScope::Namespace => {
            matchers.push(format!("namespace={}", promql_string(namespace)));
        }
        // Prometheus anchors the regex; the empty alternative is "no namespace label".
        ExternalScope::NamespaceOrUnlabelled => matchers.push(format!(
            "namespace=~{}",
            promql_string(&format!("{}|", quote_regex(namespace)))
        )),
        ExternalScope::Cluster => {}
    }
    if matchers.is_empty() {
        format!("{EXTERNAL_PREFIX}{metric}")
    } else {
        format!("{EXTERNAL_PREFIX}{metric}{{{}}}", matchers.join(","))
    }
}

#[derive(Debug, Default)]
pub struct ExternalCatalog {
    names: ArcSwap<BTreeSet<String>>,
}

impl ExternalCatalog {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Names seen in Prometheus at the last refresh (plus ones answered since).
    pub fn names(&self) -> Arc<BTreeSet<String>> {
        self.names.load_full()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.names.load().contains(name)
    }

    /// Records a name that answered with data before the next refresh found it.
    pub fn note(&self, name: &str) {
        if !self.contains(name) {
            self.names.rcu(|names| {
                let mut names = BTreeSet::clone(names);
                names.insert(name.to_string());
                names
            });
        }
    }

    /// Asks Prometheus for every `kube_adapter_metric_*` series name.
    pub async fn refresh(&self, prometheus: &PrometheusClient) -> Result<usize, PrometheusError> {
        let matcher = format!("{{__name__=~\"{EXTERNAL_PREFIX}.+\"}}");
        let values = prometheus
            .label_values("__name__", &[matcher.as_str()])
            .await?;
        let names: BTreeSet<String> = values
            .iter()
            .filter_map(|series| series.strip_prefix(EXTERNAL_PREFIX))
            .filter(|name| is_valid_external_name(name))
            .map(str::to_string)
            .collect();
        let count = names.len();
        self.names.store(Arc::new(names));
        Ok(count)
    }

    /// Refreshes every `interval` until the task is dropped; failures keep the last list.
    pub fn spawn_refresher(
        self: Arc<Self>,
        prometheus: PrometheusClient,
        interval: Duration,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            loop {
                ticker.tick().await;
                match self.refresh(&prometheus).await {
                    Ok(count) => tracing::debug!(count, "external metrics refreshed"),
                    Err(error) => {
                        tracing::warn!(%error, "could not refresh external metrics; keeping the last list")
                    }
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_stay_valid_metric_names() {
        assert!(is_valid_external_name("sqs_messages_visible"));
        assert!(is_valid_external_name("a:b_1"));
        assert!(!is_valid_external_name(""));
        assert!(!is_valid_external_name("queue-depth"));
        assert!(!is_valid_external_name("x{a=\"b\"}"));
    }

    #[test]
    fn each_scope_reads_the_escaped_request_namespace() {
        use ExternalScope::*;
        let selector = vec![r#"queue="orders""#.to_string()];
        assert_eq!(
            render_external_query("lag", &selector, "team-a", Cluster),
            r#"kube_adapter_metric_lag{queue="orders"}"#
        );
        assert_eq!(
            render_external_query("lag", &[], "team-a", Cluster),
            "kube_adapter_metric_lag"
        );
        assert_eq!(
            render_external_query("lag", &selector, "team-a", Namespace),
            r#"kube_adapter_metric_lag{queue="orders",namespace="team-a"}"#
        );
        assert_eq!(
            render_external_query("lag", &[], "team-a", NamespaceOrUnlabelled),
            r#"kube_adapter_metric_lag{namespace=~"team-a|"}"#
        );
        // A namespace from the URL stays one string literal, and one literal regex
        // alternative, whatever it holds.
        let hostile = r#"a"} or vector(1) or x{b=".*"#;
        assert_eq!(
            render_external_query("lag", &[], hostile, Namespace),
            r#"kube_adapter_metric_lag{namespace="a\"} or vector(1) or x{b=\".*"}"#
        );
        assert_eq!(
            render_external_query("lag", &[], hostile, NamespaceOrUnlabelled),
            r#"kube_adapter_metric_lag{namespace=~"a\"\\} or vector\\(1\\) or x\\{b=\"\\.\\*|"}"#
        );
    }

    #[test]
    fn a_definition_decides_before_the_default_and_pinning_wins() {
        let mut namespacing = ExternalNamespacing {
            default: ExternalScope::NamespaceOrUnlabelled,
            namespaced: ["pinned".to_string()].into(),
            cluster_wide: ["open".to_string()].into(),
        };
        assert_eq!(namespacing.scope("pinned"), ExternalScope::Namespace);
        assert_eq!(namespacing.scope("open"), ExternalScope::Cluster);
        assert_eq!(
            namespacing.scope("undeclared"),
            ExternalScope::NamespaceOrUnlabelled
        );
        namespacing.default = ExternalScope::Cluster;
        assert_eq!(namespacing.scope("pinned"), ExternalScope::Namespace);
        assert_eq!(namespacing.scope("undeclared"), ExternalScope::Cluster);
    }

    #[test]
    fn noted_names_are_kept() {
        let catalog = ExternalCatalog::new();
        catalog.note("queue");
        catalog.note("queue");
        assert_eq!(catalog.names().len(), 1);
        assert!(catalog.contains("queue"));
    }
}
