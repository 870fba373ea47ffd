//! Batching never changes an answer, shown against the real Prometheus: for templates
//! from the grammar and the idioms that once broke (`… or on() vector(0)`, a share of a
//! total, `topk` across objects), random sets of objects are asked for at once through
//! the product's query path (single flight, batching and, in the second run, the result
//! cache with its refreshes), and every answer is compared with what the same object's
//! query, asked alone and judged by this file's own reading of Prometheus' JSON, gives.
//!
//! The series are constant gauges scraped every second, so an answer does not depend on
//! the instant it is asked at; templates whose value does (`time()`, `timestamp()`,
//! subqueries whose aligned steps fill up) are left out. A mismatch is asked again twice
//! with fresh state before it counts: one that comes from batching repeats, one that
//! comes from a scrape landing between two queries does not.
//!
//! The same requests are also made with every rule forced to batch, as the product did
//! before it proved separability: the test must see that change answers, or it could not
//! see anything.

use futures::StreamExt;
use metrics_registry::compiler::{CompileOptions, compile};
use metrics_registry::definitions::Definition;
use metrics_registry_apiserver::prometheus::{PrometheusClient, PrometheusConfig};
use metrics_registry_apiserver::render::{ObjectSelection, RenderRequest, render_query};
use metrics_registry_apiserver::table::{MetricRule, ObjectKind};
use metrics_registry_apiserver::telemetry::SelfMetrics;
use metrics_registry_apiserver::upstream::{ObjectAnswer, ObjectRequest, QueryOptions, Upstream};
use metrics_registry_oracle::grammar::{Dialect, object_template, sample};
use metrics_registry_tests::batchable::{Batching, batching};
use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::fixtures::{self, service_metric};
use metrics_registry_tests::prometheus::{Prometheus, PrometheusOptions, http_client};
use proptest::test_runner::{RngAlgorithm, TestRng};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

const NAMESPACE: &str = "team-a";
const OBJECTS: [&str; 6] = ["svc-1", "svc-2", "svc-3", "svc-4", "svc-5", "svc-6"];
const GRAMMAR_TEMPLATES: usize = 400;
const SETS_PER_TEMPLATE: usize = 3;

/// Templates users write and the grammar makes only by chance.
const IDIOMS: &[&str] = &[
    "sum by (<<.GroupBy>>) (tenant_metric{<<.LabelMatchers>>}) or on () vector(0)",
    "sum by (<<.GroupBy>>) (tenant_metric{<<.LabelMatchers>>}) or vector(0)",
    "sum by (<<.GroupBy>>) (tenant_metric{<<.LabelMatchers>>}) / on () group_left () sum(tenant_metric{<<.LabelMatchers>>})",
    "sum by (<<.GroupBy>>) (tenant_metric{<<.LabelMatchers>>}) / ignoring (service) group_left () sum(tenant_metric{<<.LabelMatchers>>})",
    "topk(2, sum by (<<.GroupBy>>) (tenant_metric{<<.LabelMatchers>>}))",
    "sum by (<<.GroupBy>>) (tenant_metric{<<.LabelMatchers>>}) > bool scalar(avg(tenant_metric{<<.LabelMatchers>>}))",
    "sum by (<<.GroupBy>>) (tenant_metric{<<.LabelMatchers>>}) unless on () secret_metric{<<.LabelMatchers>>}",
    "sum by (<<.GroupBy>>) (rate(tenant_metric{<<.LabelMatchers>>}[1m]))",
    "sum by (<<.GroupBy>>) (tenant_metric{<<.LabelMatchers>>}) / sum by (<<.GroupBy>>) (secret_metric{<<.LabelMatchers>>})",
    "max by (<<.GroupBy>>) (tenant_metric{<<.LabelMatchers>>}) * 2 + 1",
    "sum by (<<.GroupBy>>) (tenant_metric{<<.LabelMatchers>>}) or sum by (<<.GroupBy>>) (secret_metric{<<.LabelMatchers>>})",
    "sum(tenant_metric{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
];

/// svc-1…3 one series each, svc-4 two (one per container), svc-5 only `secret_metric`,
/// svc-6 nothing: idle objects and ambiguous ones are where batching goes wrong.
fn publish(exporter: &Exporter) {
    for (i, service) in OBJECTS.iter().take(3).enumerate() {
        let labels = [("namespace", NAMESPACE), ("service", *service)];
        exporter.set("tenant_metric", &labels, 3.0 + i as f64 * 4.0);
        exporter.set("secret_metric", &labels, 2.0 + i as f64);
        exporter.set("shared_metric", &labels, 100.0 * (i + 1) as f64);
    }
    for (container, value) in [("c1", 7.0), ("c2", 11.0)] {
        let labels = [
            ("namespace", NAMESPACE),
            ("service", "svc-4"),
            ("container", container),
        ];
        exporter.set("tenant_metric", &labels, value);
    }
    exporter.set(
        "secret_metric",
        &[("namespace", NAMESPACE), ("service", "svc-5")],
        13.0,
    );
}

fn templates() -> Vec<String> {
    let generated = sample(
        &object_template(Dialect::Prometheus2),
        GRAMMAR_TEMPLATES,
        29,
    );
    IDIOMS
        .iter()
        .map(|t| t.to_string())
        .chain(generated)
        .filter(|t| !t.contains("time()") && !t.contains("timestamp(") && !t.contains(":1m]"))
        .collect()
}

/// Sets of two to six objects, the same for every run.
fn object_sets(count: usize) -> Vec<Vec<&'static str>> {
    let mut rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[31; 32]);
    (0..count)
        .map(|_| {
            let mut set: Vec<&str> = OBJECTS
                .iter()
                .copied()
                .filter(|_| rand_bool(&mut rng))
                .collect();
            for object in OBJECTS {
                if set.len() >= 2 {
                    break;
                }
                if !set.contains(&object) {
                    set.push(object);
                }
            }
            set
        })
        .collect()
}

fn rand_bool(rng: &mut TestRng) -> bool {
    use proptest::prelude::Rng;
    rng.next_u32().is_multiple_of(2)
}

/// What a request for `name` alone is served, read from Prometheus' JSON here rather
/// than by the product: the value of the series whose object label is the name, else
/// that of a lone series without the label; `None` is "no value" (404).
#[derive(Clone, Debug, PartialEq)]
enum Lone {
    Value(String),
    /// Several series carry the object's name: a batch must not pick one.
    Several,
    NoValue,
    Error(String),
}

async fn ask_alone(client: &reqwest::Client, url: &str, query: &str, name: &str) -> Lone {
    let response = client
        .get(format!("{url}/api/v1/query"))
        .query(&[("query", query)])
        .send()
        .await;
    let body: Value = match response {
        Ok(response) => match response.json().await {
            Ok(body) => body,
            Err(error) => return Lone::Error(error.to_string()),
        },
        Err(error) => return Lone::Error(error.to_string()),
    };
    if body["status"] != "success" {
        return Lone::Error(body["error"].to_string());
    }
    let result = &body["data"]["result"];
    let Some(series) = result.as_array() else {
        return Lone::Error(format!("not a vector: {result}"));
    };
    let value = |item: &Value| item["value"][1].as_str().unwrap_or_default().to_string();
    let named: Vec<&Value> = series
        .iter()
        .filter(|item| item["metric"]["service"] == name)
        .collect();
    match named.as_slice() {
        [one] => Lone::Value(value(one)),
        [_, _, ..] => Lone::Several,
        [] => match series.as_slice() {
            [one] if one["metric"].get("service").is_none() => Lone::Value(value(one)),
            _ => Lone::NoValue,
        },
    }
}

fn agrees(batched: &ObjectAnswer, lone: &Lone) -> bool {
    match (batched, lone) {
        // The server asks alone then: whatever alone gives is served.
        (ObjectAnswer::Ambiguous, _) => true,
        (ObjectAnswer::Value(sample), Lone::Value(value)) => sample.value == *value,
        (ObjectAnswer::Absent, Lone::NoValue) => true,
        _ => false,
    }
}

fn lone_query(rule: &MetricRule, name: &str) -> String {
    render_query(
        rule,
        &RenderRequest {
            namespace: NAMESPACE,
            objects: ObjectSelection::One(name),
            metric_matchers: &[],
        },
    )
}

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// The defaults: no window, no cache; requests meet while a query runs.
    Defaults,
    /// A batch window, the result cache and its refreshes: the set is asked at once,
    /// then again one object at a time past half the cache's age.
    CacheAndRefresh,
}

fn options(mode: Mode) -> QueryOptions {
    match mode {
        Mode::Defaults => QueryOptions {
            max_in_flight: 0,
            ..QueryOptions::default()
        },
        Mode::CacheAndRefresh => QueryOptions {
            max_in_flight: 0,
            cache_max_age: Duration::from_millis(1200),
            batch_window: Duration::from_millis(20),
            recent_horizon: Duration::from_secs(30),
            ..QueryOptions::default()
        },
    }
}

/// The answers of `set` through a fresh product path, each with what alone gives.
async fn round(
    prometheus_url: &str,
    client: &reqwest::Client,
    rule: &Arc<MetricRule>,
    set: &[&'static str],
    mode: Mode,
) -> Vec<(String, ObjectAnswer, Lone)> {
    let upstream = Upstream::new(
        PrometheusClient::new(PrometheusConfig::new(prometheus_url)).expect("client"),
        options(mode),
        SelfMetrics::new(),
    );
    let ask = |name: &'static str| {
        let upstream = upstream.clone();
        let rule = rule.clone();
        async move {
            let answer = upstream
                .object(ObjectRequest {
                    rule: &rule,
                    namespace: NAMESPACE,
                    metric_matchers: &[],
                    name,
                })
                .await;
            (name, answer)
        }
    };
    let mut answers: Vec<(&str, ObjectAnswer)> = Vec::new();
    let at_once = futures::future::join_all(set.iter().map(|name| ask(name))).await;
    answers.extend(at_once.into_iter().map(|(n, a)| (n, unwrap_answer(a))));
    if let Mode::CacheAndRefresh = mode {
        // Past half the age: hits are served and refreshed together with the recent ones.
        tokio::time::sleep(Duration::from_millis(700)).await;
        for name in set.iter().rev() {
            let (n, a) = ask(name).await;
            answers.push((n, unwrap_answer(a)));
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    }
    let mut out = Vec::new();
    for (name, answer) in answers {
        let lone = ask_alone(client, prometheus_url, &lone_query(rule, name), name).await;
        out.push((name.to_string(), answer, lone));
    }
    out
}

fn unwrap_answer(
    answer: Result<ObjectAnswer, metrics_registry_apiserver::upstream::QueryError>,
) -> ObjectAnswer {
    // An error is what the lone query gets too (both go to the same server); the
    // handler would then ask alone, so it is compared like an ambiguous batch.
    answer.unwrap_or(ObjectAnswer::Ambiguous)
}

/// A mismatch of one (template, set, mode), if it repeats three times.
async fn mismatch(
    prometheus_url: &str,
    client: &reqwest::Client,
    rule: &Arc<MetricRule>,
    set: &[&'static str],
    mode: Mode,
) -> Option<String> {
    let mut last = None;
    for _ in 0..3 {
        let answers = round(prometheus_url, client, rule, set, mode).await;
        let wrong: Vec<String> = answers
            .iter()
            .filter(|(_, batched, lone)| !agrees(batched, lone))
            .map(|(name, batched, lone)| format!("{name}: batched {batched:?}, alone {lone:?}"))
            .collect();
        if wrong.is_empty() {
            return None;
        }
        last = Some(wrong.join("; "));
    }
    last
}

struct Tally {
    rules: usize,
    separable: usize,
    /// Values (not absences) answered by a batch.
    batched_values: usize,
    mismatches: Vec<String>,
    forced_mismatches: usize,
}

async fn run(prometheus_url: &str, rules: &[(String, Arc<MetricRule>)], mode: Mode) -> Tally {
    let client = http_client().unwrap();
    let sets = object_sets(SETS_PER_TEMPLATE * rules.len());
    let jobs = rules.iter().enumerate().flat_map(|(i, (template, rule))| {
        let sets = &sets;
        (0..SETS_PER_TEMPLATE)
            .map(move |k| (template, rule, sets[i * SETS_PER_TEMPLATE + k].clone()))
    });
    let outcomes: Vec<(bool, Option<String>, usize, bool)> = futures::stream::iter(jobs)
        .map(|(template, rule, set)| {
            let client = client.clone();
            async move {
                let answers = round(prometheus_url, &client, rule, &set, mode).await;
                let batched = answers
                    .iter()
                    .filter(|(_, a, _)| matches!(a, ObjectAnswer::Value(_)))
                    .count();
                let wrong = if answers.iter().all(|(_, b, l)| agrees(b, l)) {
                    None
                } else {
                    mismatch(prometheus_url, &client, rule, &set, mode)
                        .await
                        .map(|m| format!("{template:?} for {set:?}: {m}"))
                };
                let forced = Arc::new(MetricRule {
                    separable: true,
                    ..(**rule).clone()
                });
                let forced_wrong = !rule.separable
                    && mismatch(prometheus_url, &client, &forced, &set, mode)
                        .await
                        .is_some();
                (rule.separable, wrong, batched, forced_wrong)
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    Tally {
        rules: rules.len(),
        separable: rules.iter().filter(|(_, r)| r.separable).count(),
        batched_values: outcomes.iter().map(|o| o.2).sum(),
        mismatches: outcomes.iter().filter_map(|o| o.1.clone()).collect(),
        forced_mismatches: outcomes.iter().filter(|o| o.3).count(),
    }
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn batched_and_cached_answers_equal_the_answers_asked_alone() {
    let exporter = Exporter::start().await.unwrap();
    publish(&exporter);
    let prometheus = Prometheus::start(PrometheusOptions {
        targets: vec![exporter.addr()],
        ..PrometheusOptions::default()
    })
    .await
    .unwrap();
    let wait = Duration::from_secs(30);
    prometheus
        .wait_for_series(r#"tenant_metric{service="svc-4"}"#, wait)
        .await
        .unwrap();
    // Several scrapes, so rates over the constant gauges are 0 rather than absent.
    tokio::time::sleep(Duration::from_secs(4)).await;

    let templates = templates();
    let definitions: Vec<Definition> = templates
        .iter()
        .enumerate()
        .map(|(i, t)| service_metric(NAMESPACE, &format!("m{i}"), t))
        .collect();
    let compiled = compile(&definitions, CompileOptions::default());
    let rules: Vec<(String, Arc<MetricRule>)> = templates
        .iter()
        .enumerate()
        .filter_map(|(i, t)| {
            compiled
                .table
                .lookup(ObjectKind::Service, &format!("m{i}"), NAMESPACE)
                .map(|rule| (t.clone(), rule.clone()))
        })
        .collect();
    let idioms_separable: Vec<(&str, bool)> = IDIOMS
        .iter()
        .map(|idiom| {
            let separable = rules
                .iter()
                .find(|(t, _)| t == idiom)
                .is_some_and(|(_, r)| r.separable);
            (*idiom, separable)
        })
        .collect();
    for (idiom, separable) in &idioms_separable {
        println!("  separable={separable}: {idiom}");
    }

    let url = prometheus.url();
    for mode in [Mode::Defaults, Mode::CacheAndRefresh] {
        let tally = run(&url, &rules, mode).await;
        println!(
            "{mode:?}: {} rules, {} separable; {} values from batches; {} mismatches; \
             forced to batch, {} (rule, set) pairs of the others change answers",
            tally.rules,
            tally.separable,
            tally.batched_values,
            tally.mismatches.len(),
            tally.forced_mismatches
        );
        assert!(
            tally.mismatches.is_empty(),
            "{mode:?}: {} batched answers differ from the same request asked alone:\n{}",
            tally.mismatches.len(),
            tally.mismatches[..tally.mismatches.len().min(5)].join("\n")
        );
        assert!(
            tally.separable >= tally.rules / 10 && tally.batched_values >= 50,
            "{mode:?}: too little was batched to show anything"
        );
        assert!(
            tally.forced_mismatches >= 5,
            "{mode:?}: forcing every rule to batch changes only {} answers; the test cannot see batching errors",
            tally.forced_mismatches
        );
    }
    // The idioms that broke must be asked alone; the plain ones batched.
    for (idiom, separable) in idioms_separable {
        let joins_objects = idiom.contains("on ()")
            || idiom.contains("vector(0)")
            || idiom.contains("ignoring (service)")
            || idiom.starts_with("topk(")
            || idiom.contains("scalar(");
        assert_eq!(separable, !joins_objects, "{idiom}");
    }
}

/// The seeds' rules group by the object and read only its series: proving separability
/// must not cost them their batching (docs/performance.md states the share). A
/// NamespaceMetric is the one object of its namespace, so there is nothing to batch.
#[test]
fn the_seeds_rules_stay_batched() {
    let manifests = [
        fixtures::KONG_LATENCY,
        fixtures::SEED_004,
        fixtures::WORKLOADS,
        fixtures::BACKEND_DEFINITIONS,
    ];
    let rules: Vec<Batching> = manifests.iter().flat_map(|m| batching(m)).collect();
    for rule in &rules {
        println!(
            "  {:?} batched={}: {}",
            rule.object, rule.batched, rule.template
        );
    }
    assert!(rules.len() >= 8, "{rules:?}");
    let wrong: Vec<&Batching> = rules
        .iter()
        .filter(|r| !r.separable || r.batched != (r.object != ObjectKind::Namespace))
        .collect();
    assert!(wrong.is_empty(), "{wrong:#?}");
}
