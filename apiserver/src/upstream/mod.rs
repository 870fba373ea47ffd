//! What stands between the handlers and Prometheus, so that many HPA requests cost few
//! queries without ever serving another request's value or one older than configured:
//!
//! - **single flight**: identical queries that overlap share one request to Prometheus;
//! - **batching** ([`batch`]): single-object requests for different objects of the same
//!   rule, namespace and metric selector that meet while a query of theirs is being
//!   prepared or sent are asked together with the object-label alternation, and each
//!   gets only its own object's series;
//! - **a result cache** (off unless `max_age` is set): answers reused while younger than
//!   `max_age`, measured from when their query was sent; with it, a batch also refreshes
//!   the objects of its group that were asked for recently (the HPA asks for the same
//!   objects every period);
//! - **a bound on queries in flight**: past it a request is refused at once with 429 and
//!   `Retry-After` instead of piling onto a struggling Prometheus.

mod backends;
mod batch;
#[cfg(test)]
mod tests;

pub use backends::{Backends, NoSecrets, Probe, ProbeResult, SecretStore};
pub use batch::{ObjectAnswer, ObjectRequest, batchable};

use crate::error::ApiError;
use crate::prometheus::{PrometheusClient, PrometheusError, Sample};
use crate::table::QueryBounds;
use crate::telemetry::{OutcomeLabels, SelfMetrics};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;
use tracing::Instrument;

/// How queries are shared, batched, cached and bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryOptions {
    /// Queries to Prometheus at once; 0 means unbounded.
    pub max_in_flight: usize,
    /// Reuse answers while younger than this; zero turns the cache off.
    pub cache_max_age: Duration,
    /// How long the first object request of a batch waits for others; zero sends at once
    /// (requests still join a batch while their group's previous query is running).
    pub batch_window: Duration,
    /// With the cache on, objects asked for within this long are refreshed with their group.
    pub recent_horizon: Duration,
    /// Bytes the cache of answers by query may hold (answers weighed by their series).
    pub cache_max_bytes: u64,
}

impl Default for QueryOptions {
    fn default() -> Self {
        QueryOptions {
            max_in_flight: 64,
            cache_max_age: Duration::ZERO,
            batch_window: Duration::ZERO,
            // The HPA's default sync period (15 s) twice over.
            recent_horizon: Duration::from_secs(30),
            // An eighth of the chart's memory limit.
            cache_max_bytes: 16 << 20,
        }
    }
}

/// Why a query has no answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Prometheus(#[from] PrometheusError),
    #[error(
        "{limit} queries to Prometheus at {url} are already running (--prometheus-max-in-flight); retry in a second"
    )]
    Overloaded { url: String, limit: usize },
    #[error("the query to Prometheus at {url} was abandoned before it was answered")]
    Abandoned { url: String },
}

impl From<QueryError> for ApiError {
    fn from(error: QueryError) -> Self {
        match error {
            QueryError::Prometheus(error) => error.into(),
            QueryError::Overloaded { .. } => ApiError::too_many_requests(error.to_string(), 1),
            QueryError::Abandoned { .. } => ApiError::unavailable(error.to_string()),
        }
    }
}

pub type Samples = Arc<Vec<Sample>>;
type Outcome = Result<Samples, QueryError>;
type OutcomeReceiver = watch::Receiver<Option<Outcome>>;

/// Cheap to clone: clones share flights, batches, cache and bound.
#[derive(Clone)]
pub struct Upstream {
    inner: Arc<Inner>,
}

struct Inner {
    client: PrometheusClient,
    options: QueryOptions,
    permits: Option<Arc<Semaphore>>,
    metrics: Arc<SelfMetrics>,
    flights: Mutex<HashMap<String, OutcomeReceiver>>,
    /// Answers by query and when their query was sent; `None` with the cache off.
    cache: Option<moka::sync::Cache<String, (Samples, Instant)>>,
    groups: batch::Groups,
}

/// Roughly what an answer takes in memory: its series' labels and values, and the
/// bookkeeping around each.
fn answer_bytes(query: &str, samples: &Samples) -> u32 {
    let series: usize = samples
        .iter()
        .map(|sample| {
            let labels: usize = sample
                .labels
                .iter()
                .map(|(name, value)| name.len() + value.len() + 48)
                .sum();
            labels + sample.value.len() + 64
        })
        .sum();
    u32::try_from(query.len() + series + 128).unwrap_or(u32::MAX)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("prometheus", &self.inner.client.url())
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn new(client: PrometheusClient, options: QueryOptions, metrics: Arc<SelfMetrics>) -> Self {
        let permits =
            (options.max_in_flight > 0).then(|| Arc::new(Semaphore::new(options.max_in_flight)));
        Upstream {
            inner: Arc::new(Inner {
                client,
                options,
                permits,
                metrics,
                flights: Mutex::new(HashMap::new()),
                // Bounded in bytes, evicted entry by entry, and gone from memory once older
                // than the age it may be served at.
                cache: (!options.cache_max_age.is_zero()).then(|| {
                    moka::sync::Cache::builder()
                        .max_capacity(options.cache_max_bytes)
                        .weigher(|query: &String, (samples, _): &(Samples, Instant)| {
                            answer_bytes(query, samples)
                        })
                        .time_to_live(options.cache_max_age)
                        .build()
                }),
                groups: batch::Groups::new(&options),
            }),
        }
    }

    /// An upstream with this one's options and self-metrics for another client — another
    /// backend (`own_bound`: with a bound on queries in flight of its own) or a tenant of
    /// this one (sharing this one's bound) — and flights, batches and cache of its own.
    pub fn sibling(&self, client: PrometheusClient, own_bound: bool) -> Upstream {
        let fresh = Upstream::new(client, self.inner.options, self.inner.metrics.clone());
        if own_bound {
            return fresh;
        }
        let mut inner = Arc::into_inner(fresh.inner).expect("not shared yet");
        inner.permits = self.inner.permits.clone();
        Upstream {
            inner: Arc::new(inner),
        }
    }

    /// Bytes the answer cache holds, after moka has applied its pending evictions.
    #[cfg(test)]
    fn cached_bytes(&self) -> u64 {
        self.inner.cache.as_ref().map_or(0, |cache| {
            cache.run_pending_tasks();
            cache.weighted_size()
        })
    }

    /// Bytes the batch groups hold, after moka has applied its pending evictions.
    #[cfg(test)]
    fn group_bytes(&self) -> u64 {
        self.inner.groups.weighed_bytes()
    }

    pub fn client(&self) -> &PrometheusClient {
        &self.inner.client
    }

    pub fn options(&self) -> QueryOptions {
        self.inner.options
    }

    /// The answer to `promql`: from the cache, from an identical query already running,
    /// or from a new one.
    pub async fn query(&self, promql: &str) -> Result<Samples, QueryError> {
        self.query_bounded(promql, QueryBounds::default()).await
    }

    /// The oldest answer a rule with `bounds` may be served: its own `maxAge`, never more
    /// than the server's cache age.
    fn max_age(&self, bounds: QueryBounds) -> Duration {
        let server = self.inner.options.cache_max_age;
        bounds.max_age.map_or(server, |own| own.min(server))
    }

    /// [`Upstream::query`] within a rule's own timeout and cache age. Identical queries
    /// still share one flight (the first one's timeout applies).
    pub async fn query_bounded(
        &self,
        promql: &str,
        bounds: QueryBounds,
    ) -> Result<Samples, QueryError> {
        let inner = &self.inner;
        let max_age = self.max_age(bounds);
        if let Some(cache) = &inner.cache
            && let Some((samples, sent)) = cache.get(promql)
            && sent.elapsed() <= max_age
        {
            inner.metrics.cache_hits.inc();
            return Ok(samples.clone());
        }
        let receiver = {
            let mut flights = lock(&inner.flights);
            match flights.get(promql) {
                Some(receiver) => {
                    inner.metrics.queries_coalesced.inc();
                    receiver.clone()
                }
                None => {
                    let (sender, receiver) = watch::channel(None);
                    flights.insert(promql.to_owned(), receiver.clone());
                    self.spawn_flight(promql.to_owned(), sender, bounds.timeout);
                    receiver
                }
            }
        };
        self.wait(receiver).await
    }

    /// Sends `promql` on a task of its own, so that the requests sharing it get their
    /// answer even when the one that started it is gone.
    fn spawn_flight(
        &self,
        promql: String,
        sender: watch::Sender<Option<Outcome>>,
        timeout: Option<Duration>,
    ) {
        let upstream = self.clone();
        tokio::spawn(async move {
            let sent = Instant::now();
            let outcome = upstream.send(&promql, timeout).await;
            let inner = &upstream.inner;
            if let Ok(samples) = &outcome
                && let Some(cache) = &inner.cache
            {
                cache.insert(promql.clone(), (samples.clone(), sent));
            }
            // Cached first, then out of the flights: a request in between finds one of them.
            lock(&inner.flights).remove(&promql);
            sender.send_replace(Some(outcome));
        });
    }

    async fn wait(&self, mut receiver: OutcomeReceiver) -> Result<Samples, QueryError> {
        match receiver.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().expect("waited for Some"),
            Err(_) => Err(QueryError::Abandoned {
                url: self.inner.client.url().to_owned(),
            }),
        }
    }

    /// One request to Prometheus, within the in-flight bound, recorded in the metrics
    /// and in a span carrying the query and how long it took.
    async fn send(&self, promql: &str, timeout: Option<Duration>) -> Result<Samples, QueryError> {
        let inner = &self.inner;
        let _permit = match &inner.permits {
            None => None,
            Some(permits) => match permits.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    inner.metrics.queries_rejected.inc();
                    return Err(QueryError::Overloaded {
                        url: inner.client.url().to_owned(),
                        limit: inner.options.max_in_flight,
                    });
                }
            },
        };
        let span = tracing::debug_span!(
            "prometheus_query",
            query = promql,
            elapsed_ms = tracing::field::Empty,
            series = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        inner.metrics.prometheus_in_flight.inc();
        let result = inner
            .client
            .query_within(promql, timeout)
            .instrument(span.clone())
            .await;
        inner.metrics.prometheus_in_flight.dec();
        let elapsed = started.elapsed();
        span.record("elapsed_ms", elapsed.as_secs_f64() * 1000.0);
        let outcome = match &result {
            Ok(samples) => {
                span.record("series", samples.len());
                "ok"
            }
            Err(error) => error.outcome(),
        };
        let labels = OutcomeLabels { outcome };
        inner
            .metrics
            .prometheus_queries
            .get_or_create(&labels)
            .inc();
        inner
            .metrics
            .prometheus_query_duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        tracing::debug!(parent: &span, query = promql, ?elapsed, outcome, "Prometheus answered");
        Ok(Arc::new(result?))
    }
}
