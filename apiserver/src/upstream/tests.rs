//! Against a stand-in Prometheus that answers each query truthfully from a fixed set of
//! series (it evaluates the selector's matchers), counts the queries and can be slow.

use super::*;
use crate::error::ApiError;
use crate::objects::NoCluster;
use crate::prometheus::PrometheusConfig;
use crate::table::{MetricRule, ObjectKind, QueryBounds, QueryTemplate, Segment};
use axum::extract::Query;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Clone)]
struct Series {
    namespace: String,
    pod: String,
    value: String,
}

#[derive(Default)]
struct FakeState {
    series: Mutex<Vec<Series>>,
    queries: Mutex<Vec<(String, tokio::time::Instant)>>,
    delay_ms: AtomicUsize,
    /// Added to every value: answers change from one query to the next.
    bump_per_query: AtomicUsize,
}

struct Fake {
    url: String,
    state: Arc<FakeState>,
}

impl Fake {
    fn queries(&self) -> Vec<String> {
        lock(&self.state.queries)
            .iter()
            .map(|(q, _)| q.clone())
            .collect()
    }
    fn set(&self, namespace: &str, pod: &str, value: &str) {
        let mut series = lock(&self.state.series);
        series.retain(|s| !(s.namespace == namespace && s.pod == pod));
        series.push(Series {
            namespace: namespace.into(),
            pod: pod.into(),
            value: value.into(),
        });
    }
}

/// `label="v"`, `label!=""` and `label=~"^(?:a|b)$"` as `render_query` writes them.
fn matches(matchers: &str, labels: &BTreeMap<&str, &str>) -> bool {
    matchers.split(',').filter(|m| !m.is_empty()).all(|m| {
        let (name, op, value) = if let Some((n, v)) = m.split_once("=~") {
            (n, "=~", v)
        } else if let Some((n, v)) = m.split_once("!=") {
            (n, "!=", v)
        } else {
            let (n, v) = m.split_once('=').expect("a matcher");
            (n, "=", v)
        };
        let value = value.trim_matches('"').replace("\\\\", "\\");
        let actual = labels.get(name).copied().unwrap_or("");
        match op {
            "=" => actual == value,
            "!=" => actual != value,
            _ => {
                let alternatives = value
                    .strip_prefix("^(?:")
                    .and_then(|v| v.strip_suffix(")$"))
                    .expect("an anchored alternation");
                alternatives
                    .split('|')
                    .any(|alt| alt.replace('\\', "") == actual)
            }
        }
    })
}

async fn fake() -> Fake {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let state = Arc::new(FakeState::default());
    let shared = state.clone();
    let app = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::get(move |Query(params): Query<BTreeMap<String, String>>| {
            let state = shared.clone();
            async move {
                let query = params.get("query").cloned().unwrap_or_default();
                let n = {
                    let mut queries = lock(&state.queries);
                    queries.push((query.clone(), tokio::time::Instant::now()));
                    queries.len()
                };
                let delay = state.delay_ms.load(Ordering::Relaxed) as u64;
                tokio::time::sleep(Duration::from_millis(delay)).await;
                let bump = state.bump_per_query.load(Ordering::Relaxed) * n;
                // `sum by (pod) (x{MATCHERS})` or `x{MATCHERS}` (no pod label kept).
                let inner = query.split_once('{').unwrap().1;
                let matchers = inner.split_once('}').unwrap().0;
                let keeps_pod = query.contains("by (pod)");
                let result: Vec<serde_json::Value> = lock(&state.series)
                    .iter()
                    .filter(|s| {
                        let labels =
                            BTreeMap::from([("namespace", &*s.namespace), ("pod", &*s.pod)]);
                        matches(matchers, &labels)
                    })
                    .map(|s| {
                        let value = s.value.parse::<usize>().unwrap() + bump;
                        let metric = if keeps_pod {
                            serde_json::json!({"pod": s.pod})
                        } else {
                            serde_json::json!({})
                        };
                        serde_json::json!({"metric": metric, "value": [1.0, value.to_string()]})
                    })
                    .collect();
                axum::Json(serde_json::json!({
                    "status": "success",
                    "data": {"resultType": "vector", "result": result}
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Fake { url, state }
}

fn upstream(fake: &Fake, options: QueryOptions) -> Upstream {
    let client = PrometheusClient::new(PrometheusConfig::new(&fake.url)).unwrap();
    Upstream::new(client, options, SelfMetrics::new())
}

fn rule(group_by: bool) -> Arc<MetricRule> {
    let mut segments = vec![Segment::Literal("x{".into()), Segment::LabelMatchers];
    if group_by {
        segments.insert(0, Segment::Literal("sum by (".into()));
        segments.insert(1, Segment::GroupBy);
        segments.insert(2, Segment::Literal(") (".into()));
        segments.push(Segment::Literal("})".into()));
    } else {
        segments.insert(0, Segment::Literal("sum(".into()));
        segments.push(Segment::Literal("})".into()));
    }
    Arc::new(MetricRule {
        object: ObjectKind::Pod,
        metric: "m".into(),
        template: QueryTemplate::new(segments),
        object_label: "pod".into(),
        namespace_label: "namespace".into(),
        window_seconds: None,
        separable: group_by,
        backend: "default".into(),
        bounds: Default::default(),
        source: "test".into(),
    })
}

async fn value(upstream: &Upstream, rule: &Arc<MetricRule>, ns: &str, pod: &str) -> ObjectAnswer {
    upstream
        .object(ObjectRequest {
            rule,
            namespace: ns,
            metric_matchers: &[],
            name: pod,
        })
        .await
        .unwrap()
}

fn pod_value(answer: &ObjectAnswer) -> (String, String) {
    match answer {
        ObjectAnswer::Value(sample) => (
            sample.labels.get("pod").unwrap_or("").to_owned(),
            sample.value.clone(),
        ),
        other => panic!("expected a value, got {other:?}"),
    }
}

const NO_CACHE: QueryOptions = QueryOptions {
    max_in_flight: 64,
    cache_max_age: Duration::ZERO,
    batch_window: Duration::ZERO,
    recent_horizon: Duration::from_secs(30),
    cache_max_bytes: 16 << 20,
};

#[tokio::test]
async fn identical_concurrent_queries_share_one_request() {
    let fake = fake().await;
    fake.set("a", "p1", "7");
    fake.state.delay_ms.store(100, Ordering::Relaxed);
    let upstream = upstream(&fake, NO_CACHE);
    let query = r#"sum by (pod) (x{namespace="a"})"#;
    let answers = futures::future::join_all((0..20).map(|_| upstream.query(query))).await;
    for answer in answers {
        assert_eq!(answer.unwrap()[0].value, "7");
    }
    assert_eq!(fake.queries().len(), 1, "{:?}", fake.queries());
    assert_eq!(upstream.inner.metrics.queries_coalesced.get(), 19);
    // Not a cache: once answered, the next identical query is sent again.
    upstream.query(query).await.unwrap();
    assert_eq!(fake.queries().len(), 2);
}

#[tokio::test]
async fn different_concurrent_queries_are_never_mixed() {
    let fake = fake().await;
    fake.set("a", "p1", "1");
    fake.set("b", "p1", "2");
    fake.state.delay_ms.store(50, Ordering::Relaxed);
    let upstream = upstream(&fake, NO_CACHE);
    let (a, b) = tokio::join!(
        upstream.query(r#"sum by (pod) (x{namespace="a"})"#),
        upstream.query(r#"sum by (pod) (x{namespace="b"})"#)
    );
    assert_eq!(a.unwrap()[0].value, "1");
    assert_eq!(b.unwrap()[0].value, "2");
    assert_eq!(fake.queries().len(), 2);
}

#[tokio::test]
async fn objects_of_one_group_are_batched_and_each_gets_its_own_value() {
    let fake = fake().await;
    for i in 0..=10 {
        fake.set("a", &format!("p{i}"), &(100 + i).to_string());
    }
    fake.state.delay_ms.store(100, Ordering::Relaxed);
    let upstream = upstream(&fake, NO_CACHE);
    let rule = rule(true);
    // The first goes out at once; the ten arriving while it runs wait for one query.
    let first = tokio::spawn({
        let (upstream, rule) = (upstream.clone(), rule.clone());
        async move { value(&upstream, &rule, "a", "p0").await }
    });
    tokio::time::sleep(Duration::from_millis(20)).await;
    let pods: Vec<String> = (1..=10).map(|i| format!("p{i}")).collect();
    let answers =
        futures::future::join_all(pods.iter().map(|pod| value(&upstream, &rule, "a", pod))).await;
    assert_eq!(
        pod_value(&first.await.unwrap()),
        ("p0".into(), "100".into())
    );
    for (i, answer) in answers.iter().enumerate() {
        let i = i + 1;
        assert_eq!(pod_value(answer), (format!("p{i}"), (100 + i).to_string()));
    }
    let queries = fake.queries();
    assert_eq!(queries.len(), 2, "{queries:?}");
    assert_eq!(queries[0], r#"sum by (pod) (x{namespace="a",pod="p0"})"#);
    assert!(
        queries[1].starts_with(r#"sum by (pod) (x{namespace="a",pod=~"^(?:p1|p10|p2|"#),
        "{queries:?}"
    );
    assert_eq!(upstream.inner.metrics.requests_batched.get(), 10);
}

#[tokio::test]
async fn batches_never_mix_namespaces_or_selectors() {
    let fake = fake().await;
    fake.set("a", "p1", "1");
    fake.set("a", "p2", "2");
    fake.set("b", "p1", "3");
    fake.set("b", "p2", "4");
    fake.state.delay_ms.store(50, Ordering::Relaxed);
    let upstream = upstream(&fake, NO_CACHE);
    let rule = rule(true);
    let selected = vec![r#"pod!="p2""#.to_owned()];
    let with_selector = |ns: &'static str, pod: &'static str| {
        let (upstream, rule, selected) = (upstream.clone(), rule.clone(), selected.clone());
        async move {
            upstream
                .object(ObjectRequest {
                    rule: &rule,
                    namespace: ns,
                    metric_matchers: &selected,
                    name: pod,
                })
                .await
                .unwrap()
        }
    };
    let (a1, a2, b1, b2, sel_a1, sel_a2) = tokio::join!(
        value(&upstream, &rule, "a", "p1"),
        value(&upstream, &rule, "a", "p2"),
        value(&upstream, &rule, "b", "p1"),
        value(&upstream, &rule, "b", "p2"),
        with_selector("a", "p1"),
        with_selector("a", "p2"),
    );
    assert_eq!(pod_value(&a1), ("p1".into(), "1".into()));
    assert_eq!(pod_value(&a2), ("p2".into(), "2".into()));
    assert_eq!(pod_value(&b1), ("p1".into(), "3".into()));
    assert_eq!(pod_value(&b2), ("p2".into(), "4".into()));
    assert_eq!(pod_value(&sel_a1), ("p1".into(), "1".into()));
    // The selector excludes p2 for its own group only.
    assert_eq!(sel_a2, ObjectAnswer::Absent);
    for query in fake.queries() {
        let namespaces = ["namespace=\"a\"", "namespace=\"b\""]
            .iter()
            .filter(|ns| query.contains(*ns))
            .count();
        assert_eq!(namespaces, 1, "one namespace per query: {query}");
    }
}

#[tokio::test]
async fn queries_without_group_by_are_not_batched() {
    let fake = fake().await;
    fake.set("a", "p1", "1");
    let upstream = upstream(&fake, NO_CACHE);
    assert_eq!(
        value(&upstream, &rule(false), "a", "p1").await,
        ObjectAnswer::Ambiguous
    );
    assert!(fake.queries().is_empty());
}

#[tokio::test]
async fn rules_not_separable_by_object_are_not_batched() {
    let fake = fake().await;
    fake.set("a", "p1", "1");
    fake.set("a", "p2", "2");
    let upstream = upstream(&fake, NO_CACHE);
    let rule = Arc::new(MetricRule {
        separable: false,
        ..(*rule(true)).clone()
    });
    let (one, two) = tokio::join!(
        value(&upstream, &rule, "a", "p1"),
        value(&upstream, &rule, "a", "p2")
    );
    assert_eq!(one, ObjectAnswer::Ambiguous);
    assert_eq!(two, ObjectAnswer::Ambiguous);
    assert!(fake.queries().is_empty(), "{:?}", fake.queries());
}

#[tokio::test]
async fn a_series_without_the_object_label_makes_a_batch_ambiguous() {
    let fake = fake().await;
    fake.set("a", "p1", "1");
    fake.set("a", "p2", "2");
    fake.state.delay_ms.store(50, Ordering::Relaxed);
    let upstream = upstream(&fake, NO_CACHE);
    // Has <<.GroupBy>> but not in a `by`: the stand-in drops the pod label then.
    let rule = Arc::new(MetricRule {
        template: QueryTemplate::new(vec![
            Segment::Literal("sum(x{".into()),
            Segment::LabelMatchers,
            Segment::Literal("}) # ".into()),
            Segment::GroupBy,
        ]),
        ..(*rule(true)).clone()
    });
    let (one, two) = tokio::join!(
        value(&upstream, &rule, "a", "p1"),
        value(&upstream, &rule, "a", "p2")
    );
    assert_eq!(one, ObjectAnswer::Ambiguous);
    assert_eq!(two, ObjectAnswer::Ambiguous);
}

// On a paused clock the stand-in's timestamps and the cache's ages are exact.
#[tokio::test(start_paused = true)]
async fn cached_values_are_never_older_than_the_max_age() {
    let fake = fake().await;
    fake.set("a", "p1", "0");
    // Every answer differs from the previous one.
    fake.state.bump_per_query.store(1, Ordering::Relaxed);
    let max_age = Duration::from_millis(200);
    let upstream = upstream(
        &fake,
        QueryOptions {
            cache_max_age: max_age,
            ..NO_CACHE
        },
    );
    let query = r#"sum by (pod) (x{namespace="a"})"#;
    let rule = rule(true);
    let started = tokio::time::Instant::now();
    let mut served = std::collections::BTreeSet::new();
    while started.elapsed() < Duration::from_millis(1500) {
        for answer in [
            upstream.query(query).await.unwrap()[0].value.clone(),
            pod_value(&value(&upstream, &rule, "a", "p1").await).1,
        ] {
            // The value of query n is n: the stand-in saw that query at this instant.
            let n: usize = answer.parse().unwrap();
            let asked_at = lock(&fake.state.queries)[n - 1].1;
            assert!(
                asked_at.elapsed() <= max_age,
                "served a value {:?} old",
                asked_at.elapsed()
            );
            served.insert(n);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let queries = fake.queries().len();
    // Two keys, refreshed about every 200 ms over 1.5 s, instead of ~130 requests each.
    assert!((4..=30).contains(&queries), "{queries} queries");
    assert!(served.len() >= 4, "values were refreshed: {served:?}");
    assert!(upstream.inner.metrics.cache_hits.get() > 100);
}

#[tokio::test(start_paused = true)]
async fn with_the_cache_a_batch_refreshes_the_recently_asked_objects() {
    let fake = fake().await;
    for i in 0..5 {
        fake.set("a", &format!("p{i}"), &i.to_string());
    }
    let max_age = Duration::from_millis(300);
    let upstream = upstream(
        &fake,
        QueryOptions {
            cache_max_age: max_age,
            ..NO_CACHE
        },
    );
    let rule = rule(true);
    for i in 0..5 {
        value(&upstream, &rule, "a", &format!("p{i}")).await;
    }
    let warm = fake.queries().len();
    tokio::time::advance(max_age + Duration::from_millis(50)).await;
    // One miss refreshes all five: the other four are answered without a query.
    for i in 0..5 {
        let answer = value(&upstream, &rule, "a", &format!("p{i}")).await;
        assert_eq!(pod_value(&answer), (format!("p{i}"), i.to_string()));
    }
    assert_eq!(fake.queries().len(), warm + 1, "{:?}", fake.queries());
    assert!(
        fake.queries()
            .last()
            .unwrap()
            .contains(r#"pod=~"^(?:p0|p1|p2|p3|p4)$""#)
    );
}

#[tokio::test]
async fn an_answer_past_half_its_age_is_refreshed_ahead_of_the_next_request() {
    let fake = fake().await;
    fake.set("a", "p1", "0");
    fake.state.bump_per_query.store(1, Ordering::Relaxed);
    let max_age = Duration::from_millis(400);
    let upstream = upstream(
        &fake,
        QueryOptions {
            cache_max_age: max_age,
            ..NO_CACHE
        },
    );
    let rule = rule(true);
    assert_eq!(pod_value(&value(&upstream, &rule, "a", "p1").await).1, "1");
    // Young: a hit, and nothing sent.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(pod_value(&value(&upstream, &rule, "a", "p1").await).1, "1");
    assert_eq!(fake.queries().len(), 1);
    // Past half its age: still answered from the cache at once, and renewed behind it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(pod_value(&value(&upstream, &rule, "a", "p1").await).1, "1");
    let deadline = std::time::Instant::now() + Duration::from_secs(2);
    while fake.queries().len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no refresh was sent");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // After the first answer would have expired, the renewed one is served, no query waited for.
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(pod_value(&value(&upstream, &rule, "a", "p1").await).1, "2");
    assert_eq!(fake.queries().len(), 2, "{:?}", fake.queries());
}

#[tokio::test]
async fn past_the_in_flight_bound_requests_are_refused_at_once() {
    let fake = fake().await;
    fake.set("a", "p1", "1");
    fake.state.delay_ms.store(500, Ordering::Relaxed);
    let upstream = upstream(
        &fake,
        QueryOptions {
            max_in_flight: 1,
            ..NO_CACHE
        },
    );
    let slow = tokio::spawn({
        let upstream = upstream.clone();
        async move { upstream.query(r#"sum by (pod) (x{namespace="a"})"#).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = std::time::Instant::now();
    let refused = upstream
        .query(r#"sum by (pod) (x{namespace="b"})"#)
        .await
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_millis(100));
    let status = ApiError::from(refused);
    assert_eq!(status.code, 429, "{status:?}");
    assert_eq!(status.retry_after, Some(1));
    assert!(status.message.contains("--prometheus-max-in-flight"));
    // The same query as the running one is no extra load: it shares it.
    let shared = upstream
        .query(r#"sum by (pod) (x{namespace="a"})"#)
        .await
        .unwrap();
    assert_eq!(shared[0].value, "1");
    assert!(slow.await.unwrap().is_ok());
    assert_eq!(upstream.inner.metrics.queries_rejected.get(), 1);
}

#[tokio::test]
async fn the_answer_cache_stays_within_its_bytes() {
    let fake = fake().await;
    for pod in 0..20 {
        fake.set("a", &format!("p{pod}-{}", "x".repeat(200)), "1");
    }
    let budget = 64 * 1024;
    let upstream = upstream(
        &fake,
        QueryOptions {
            cache_max_age: Duration::from_secs(60),
            cache_max_bytes: budget,
            ..NO_CACHE
        },
    );
    // 500 distinct queries of some 5 KB answers each: 40 times the budget.
    for i in 0..500 {
        let answer = upstream
            .query(&format!(r#"sum by (pod) (x{{namespace="a"}}) + {i}"#))
            .await
            .unwrap();
        assert_eq!(answer.len(), 20);
    }
    let held = upstream.cached_bytes();
    assert!(
        held > 0 && held <= budget,
        "{held} bytes for a budget of {budget}"
    );
}

#[tokio::test]
async fn batch_groups_for_many_large_selectors_stay_within_their_bytes() {
    let fake = fake().await;
    fake.set("a", "p1", "1");
    let upstream = upstream(&fake, NO_CACHE);
    let rule = rule(true);
    // 5,000 distinct metric selectors of 2.5 KB each (sent by GET, which the stand-in
    // answers): some 25 MB of groups unbounded.
    for i in 0..5000 {
        let matchers = [format!(r#"queue="{i}-{}""#, "q".repeat(2500))];
        let answer = upstream
            .object(ObjectRequest {
                rule: &rule,
                namespace: "a",
                metric_matchers: &matchers,
                name: "p1",
            })
            .await
            .unwrap();
        // The stand-in has no series with that queue: answered by the group as absent.
        assert_eq!(answer, ObjectAnswer::Absent);
    }
    let held = upstream.group_bytes();
    assert!(held > 0 && held <= 8 << 20, "{held} bytes of groups");
}

#[tokio::test]
async fn batch_groups_remembering_many_object_names_stay_within_their_bytes() {
    let fake = fake().await;
    fake.set("a", "p1", "1");
    // With the cache on, a group remembers each object asked for (to refresh it) and
    // each answer, absent ones included; the names come from clients.
    let upstream = upstream(
        &fake,
        QueryOptions {
            cache_max_age: Duration::from_secs(600),
            recent_horizon: Duration::from_secs(600),
            ..NO_CACHE
        },
    );
    let rule = rule(true);
    // 40,000 distinct names of 250 bytes in one group: some 12 MB remembered unbounded.
    for i in 0..40_000 {
        let name = format!("{i:0>250}");
        let answer = upstream
            .object(ObjectRequest {
                rule: &rule,
                namespace: "a",
                metric_matchers: &[],
                name: &name,
            })
            .await
            .unwrap();
        assert_eq!(answer, ObjectAnswer::Absent);
    }
    // Counted in the groups' maps, not by the weights they report.
    let held = upstream.inner.groups.remembered_name_bytes();
    assert!(
        held > 0 && held <= 8 << 20,
        "{held} bytes of names remembered"
    );
    // The group that holds them is still the one asked and answering.
    let answer = upstream
        .object(ObjectRequest {
            rule: &rule,
            namespace: "a",
            metric_matchers: &[],
            name: "p1",
        })
        .await
        .unwrap();
    assert_eq!(pod_value(&answer), ("p1".into(), "1".into()));
}

fn backend_spec(fake: &Fake, tenant: bool) -> Arc<crate::table::BackendSpec> {
    use crate::table::{BackendSpec, TenantHeader, TenantSegment, TenantValue};
    Arc::new(BackendSpec {
        url: fake.url.clone(),
        timeout: Duration::from_secs(5),
        max_response_bytes: 1 << 20,
        headers: Vec::new(),
        tenant: tenant.then(|| TenantHeader {
            header: "X-Scope-OrgID".into(),
            value: TenantValue::Template(vec![
                TenantSegment::Literal("t-".into()),
                TenantSegment::Namespace,
            ]),
        }),
        auth: Default::default(),
        tls: Default::default(),
        source: "MetricsBackend b".into(),
    })
}

#[tokio::test]
async fn each_backend_and_tenant_has_its_own_flights_and_cache() {
    let default = fake().await;
    let named = fake().await;
    let cached = QueryOptions {
        cache_max_age: Duration::from_secs(600),
        ..NO_CACHE
    };
    let backends = Backends::new(upstream(&default, cached), Arc::new(NoSecrets("none here")));
    let unknown = backends.upstream("b", "a", &NoCluster).unwrap_err();
    assert!(unknown.message.contains("not known"), "{}", unknown.message);

    let specs = BTreeMap::from([("b".to_string(), backend_spec(&named, true))]);
    backends.sync(&specs);
    let query = "x{namespace=\"a\"}";
    for namespace in ["a", "b", "a", "b"] {
        backends
            .upstream("b", namespace, &NoCluster)
            .unwrap()
            .query(query)
            .await
            .unwrap();
    }
    backends
        .upstream("default", "a", &NoCluster)
        .unwrap()
        .query(query)
        .await
        .unwrap();
    // One query per tenant (then cached), and the default backend's own.
    assert_eq!(named.queries().len(), 2);
    assert_eq!(default.queries().len(), 1);
    let tenant = backends.upstream("b", "b", &NoCluster).unwrap();
    assert_eq!(tenant.client().tenant(), Some("t-b"));

    // The same specs again keep connections and caches; a changed one starts afresh.
    backends.sync(&specs);
    backends
        .upstream("b", "a", &NoCluster)
        .unwrap()
        .query(query)
        .await
        .unwrap();
    assert_eq!(named.queries().len(), 2);
    backends.sync(&BTreeMap::from([(
        "b".to_string(),
        backend_spec(&named, false),
    )]));
    let untenanted = backends.upstream("b", "a", &NoCluster).unwrap();
    assert_eq!(untenanted.client().tenant(), None);
    untenanted.query(query).await.unwrap();
    assert_eq!(named.queries().len(), 3);
    backends.sync(&BTreeMap::new());
    assert!(backends.upstream("b", "a", &NoCluster).is_err());
}

#[tokio::test]
async fn a_rule_may_ask_for_fresher_answers_and_a_shorter_timeout() {
    let fake = fake().await;
    fake.set("a", "p1", "1");
    let upstream = upstream(
        &fake,
        QueryOptions {
            cache_max_age: Duration::from_secs(600),
            ..NO_CACHE
        },
    );
    let query = r#"x{namespace="a"}"#;
    let fresh = QueryBounds {
        max_age: Some(Duration::from_millis(50)),
        ..QueryBounds::default()
    };
    // A maxAge above the server's cache age is held to it.
    let lax = QueryBounds {
        max_age: Some(Duration::from_secs(3600)),
        ..QueryBounds::default()
    };
    upstream.query_bounded(query, fresh).await.unwrap();
    upstream.query_bounded(query, lax).await.unwrap();
    assert_eq!(
        fake.queries().len(),
        1,
        "the server's age serves the lax rule"
    );
    tokio::time::sleep(Duration::from_millis(80)).await;
    upstream.query_bounded(query, lax).await.unwrap();
    assert_eq!(fake.queries().len(), 1);
    upstream.query_bounded(query, fresh).await.unwrap();
    assert_eq!(fake.queries().len(), 2, "too old for the fresh rule");

    // The batched path honours the rule's age too.
    let mut rule = (*rule(true)).clone();
    rule.bounds = fresh;
    let rule = Arc::new(rule);
    value(&upstream, &rule, "a", "p1").await;
    let before = fake.queries().len();
    value(&upstream, &rule, "a", "p1").await;
    assert_eq!(
        fake.queries().len(),
        before,
        "cached while younger than 50 ms"
    );
    tokio::time::sleep(Duration::from_millis(80)).await;
    value(&upstream, &rule, "a", "p1").await;
    assert_eq!(fake.queries().len(), before + 1);

    // A rule's timeout replaces the backend's, and the error names it.
    fake.state.delay_ms.store(2_000, Ordering::Relaxed);
    let quick = QueryBounds {
        timeout: Some(Duration::from_millis(100)),
        ..QueryBounds::default()
    };
    let started = std::time::Instant::now();
    let error = upstream
        .query_bounded(r#"x{namespace="b"}"#, quick)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert!(error.to_string().contains("within 100ms"), "{error}");
}
