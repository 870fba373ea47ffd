//! The server's own metrics, exposed on `/metrics` in the OpenMetrics text format (which
//! Prometheus scrapes like its own). The wiring makes one set per process with
//! [`SelfMetrics::new`] and passes it to every part that counts (the request path, the
//! guard, the watches, the publisher), as controller-rs passes its metrics through its
//! context; there is no global, so a test sees only its own counts.

use prometheus_client::encoding::{EncodeLabelSet, text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Every name starts with this.
pub const PREFIX: &str = "metrics_registry";

/// The `Content-Type` of [`SelfMetrics::encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// `custom.metrics.k8s.io`, `external.metrics.k8s.io`, or empty for other paths.
    pub group: String,
    pub version: String,
    /// The object resource (`pods`, `services`, …), `metrics` for external values,
    /// `discovery`, or the non-resource path (`/metrics`, `other`).
    pub resource: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestKindLabels {
    pub group: String,
    pub version: String,
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `ok`, `refused`, `unreachable`, `timeout`, `bad_answer`.
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DefinitionLabels {
    pub kind: String,
    /// `true` or `false`, as the definition's Ready condition.
    pub ready: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    pub resource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReviewLabels {
    /// `token` (TokenReview) or `access` (SubjectAccessReview).
    pub review: &'static str,
}

fn latency_histogram() -> Histogram {
    // 0.1 ms to ~6.5 s: a cached answer and a slow Prometheus both land in a bucket.
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The metric families; fields are public so each part records without wrappers.
pub struct SelfMetrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_duration: HistogramFamily<RequestKindLabels>,
    pub prometheus_queries: Family<OutcomeLabels, Counter>,
    pub prometheus_query_duration: HistogramFamily<OutcomeLabels>,
    pub prometheus_in_flight: Gauge,
    pub queries_coalesced: Counter,
    pub requests_batched: Counter,
    pub cache_hits: Counter,
    pub queries_rejected: Counter,
    pub definitions: Family<DefinitionLabels, Gauge>,
    pub table_swaps: Counter,
    table_age: Gauge<f64, AtomicU64>,
    last_swap: Mutex<Option<Instant>>,
    pub watch_restarts: Family<ResourceLabels, Counter>,
    pub auth_cache_hits: Family<ReviewLabels, Counter>,
    pub auth_reviews: Family<ReviewLabels, Counter>,
}

impl std::fmt::Debug for SelfMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfMetrics").finish_non_exhaustive()
    }
}

impl SelfMetrics {
    /// A set of its own: the process makes one at start-up and passes it to each part
    /// that counts (so a test sees only its own counts).
    pub fn new() -> Arc<SelfMetrics> {
        let mut registry = Registry::with_prefix(PREFIX);
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by API group, version, resource and status code",
            requests.clone(),
        );
        let request_duration: HistogramFamily<RequestKindLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from the request head to the answer, by API group, version and resource",
            request_duration.clone(),
        );
        let prometheus_queries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "prometheus_queries",
            "Queries sent to Prometheus, by outcome (ok, refused, unreachable, timeout, bad_answer)",
            prometheus_queries.clone(),
        );
        let prometheus_query_duration: HistogramFamily<OutcomeLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "prometheus_query_duration_seconds",
            "Duration of the queries sent to Prometheus, by outcome",
            prometheus_query_duration.clone(),
        );
        let prometheus_in_flight = Gauge::default();
        registry.register(
            "prometheus_queries_in_flight",
            "Queries to Prometheus being answered right now",
            prometheus_in_flight.clone(),
        );
        let queries_coalesced = Counter::default();
        registry.register(
            "prometheus_queries_coalesced",
            "Requests that shared a query already sent for an identical one (single flight)",
            queries_coalesced.clone(),
        );
        let requests_batched = Counter::default();
        registry.register(
            "requests_batched",
            "Object requests answered by a query that also asked for other objects of the same rule and namespace",
            requests_batched.clone(),
        );
        let cache_hits = Counter::default();
        registry.register(
            "query_cache_hits",
            "Requests answered from the result cache (--query-cache-max-age) without a query",
            cache_hits.clone(),
        );
        let queries_rejected = Counter::default();
        registry.register(
            "prometheus_queries_rejected",
            "Queries refused with 429 because --prometheus-max-in-flight queries were running",
            queries_rejected.clone(),
        );
        let definitions = Family::<DefinitionLabels, Gauge>::default();
        registry.register(
            "definitions",
            "Metric definitions by kind and whether they are served (Ready)",
            definitions.clone(),
        );
        let table_swaps = Counter::default();
        registry.register(
            "rule_table_swaps",
            "Times a new rule table was swapped in",
            table_swaps.clone(),
        );
        let table_age = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "rule_table_age_seconds",
            "Seconds since the rule table served now was swapped in",
            table_age.clone(),
        );
        let watch_restarts = Family::<ResourceLabels, Counter>::default();
        registry.register(
            "watch_restarts",
            "Watches of the API server that failed and were restarted, by resource",
            watch_restarts.clone(),
        );
        let auth_cache_hits = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "auth_cache_hits",
            "Requests authenticated (token) or authorized (access) from the review cache",
            auth_cache_hits.clone(),
        );
        let auth_reviews = Family::<ReviewLabels, Counter>::default();
        registry.register(
            "auth_reviews",
            "TokenReviews (token) and SubjectAccessReviews (access) sent to the API server",
            auth_reviews.clone(),
        );
        Arc::new(SelfMetrics {
            registry,
            requests,
            request_duration,
            prometheus_queries,
            prometheus_query_duration,
            prometheus_in_flight,
            queries_coalesced,
            requests_batched,
            cache_hits,
            queries_rejected,
            definitions,
            table_swaps,
            table_age,
            last_swap: Mutex::new(None),
            watch_restarts,
            auth_cache_hits,
            auth_reviews,
        })
    }

    /// A new rule table is served from now on.
    pub fn table_swapped(&self) {
        self.table_swaps.inc();
        *self.last_swap.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
    }

    /// Replaces the definition counts: `(kind, ready) → count`.
    pub fn set_definitions(&self, counts: impl IntoIterator<Item = ((String, bool), i64)>) {
        self.definitions.clear();
        for ((kind, ready), count) in counts {
            self.definitions
                .get_or_create(&DefinitionLabels {
                    kind,
                    ready: if ready { "true" } else { "false" },
                })
                .set(count);
        }
    }

    pub fn watch_restarted(&self, resource: &str) {
        self.watch_restarts
            .get_or_create(&ResourceLabels {
                resource: resource.to_owned(),
            })
            .inc();
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        if let Some(swapped) = *self.last_swap.lock().unwrap_or_else(|e| e.into_inner()) {
            self.table_age.set(swapped.elapsed().as_secs_f64());
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_exposed_with_the_prefix() {
        let metrics = SelfMetrics::new();
        metrics.table_swapped();
        metrics.set_definitions([(("ServiceMetric".to_owned(), true), 3)]);
        metrics.watch_restarted("pods");
        let text = metrics.encode();
        assert!(
            text.contains("metrics_registry_rule_table_swaps_total 1"),
            "{text}"
        );
        assert!(
            text.contains(r#"metrics_registry_definitions{kind="ServiceMetric",ready="true"} 3"#),
            "{text}"
        );
        assert!(
            text.contains(r#"metrics_registry_watch_restarts_total{resource="pods"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("metrics_registry_rule_table_age_seconds "),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
