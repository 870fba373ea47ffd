//! Namespace isolation against the real Prometheus, judged by an oracle that does not read
//! the product's code: two Prometheus servers hold the same tenant series, and only one of
//! them also holds another namespace's ("secret") series with distinctive values. Every
//! template from the grammar that the compiler accepts for namespace team-a is sent, as it
//! would be served, to both at the same evaluation time; if any answer differs, the served
//! query read a series of the secret namespace.

use metrics_registry::compiler::{CompileOptions, compile};
use metrics_registry::definitions::{Definition, DefinitionBody, DefinitionId, DefinitionKind};
use metrics_registry_apiserver::render::{ObjectSelection, RenderRequest, render_query};
use metrics_registry_apiserver::table::{MetricRule, ObjectKind};
use metrics_registry_crds::ExternalSpec;
use metrics_registry_oracle::grammar::{Dialect, sample, template};
use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::fixtures::service_metric;
use metrics_registry_tests::prometheus::{Prometheus, PrometheusOptions, http_client};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const TENANT: &str = "team-a";
const SECRET: &str = "team-b";
const TEMPLATES: usize = 1000;

fn tenant_series(exporter: &Exporter) {
    for (service, value) in [("svc-1", 3.0), ("svc-2", 5.0)] {
        let labels = [("namespace", TENANT), ("service", service)];
        exporter.set("tenant_metric", &labels, value);
        exporter.set("secret_metric", &labels, value + 1.0);
    }
    exporter.set("shared_metric", &[("service", "svc-1")], 11.0);
}

/// Values nothing in the tenant's namespace has, so any arithmetic on them shows.
fn secret_series(exporter: &Exporter) {
    for (name, value) in [
        ("tenant_metric", 7_654_321.0),
        ("secret_metric", 1_234_567.0),
        ("shared_metric", 999.0),
    ] {
        exporter.set(name, &[("namespace", SECRET), ("service", "svc-1")], value);
        exporter.set(
            name,
            &[("kubernetes_namespace", SECRET), ("service", "svc-2")],
            value * 3.0,
        );
    }
}

fn served_query(rule: &MetricRule) -> String {
    render_query(
        rule,
        &RenderRequest {
            namespace: TENANT,
            objects: ObjectSelection::One("svc-1"),
            metric_matchers: &[],
        },
    )
}

/// An answer reduced to what a reader sees: an error, or the result's labels and values.
async fn answer(
    client: &reqwest::Client,
    prometheus: &Prometheus,
    query: &str,
    at: f64,
) -> Result<BTreeMap<String, String>, String> {
    let body: Value = client
        .get(format!("{}/api/v1/query", prometheus.url()))
        .query(&[("query", query), ("time", &format!("{at:.3}"))])
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(body["errorType"].to_string());
    }
    let data = &body["data"];
    let mut out = BTreeMap::new();
    match &data["result"] {
        Value::Array(items) => {
            for item in items {
                out.insert(item["metric"].to_string(), item["value"][1].to_string());
            }
        }
        scalar => {
            out.insert(String::new(), scalar[1].to_string());
        }
    }
    Ok(out)
}

fn templates() -> Vec<String> {
    sample(&template(Dialect::Prometheus2, SECRET), TEMPLATES, 17)
        .into_iter()
        // The samples' own timestamps differ between the two servers.
        .filter(|t| !t.contains("timestamp("))
        .collect()
}

#[tokio::test]
#[ignore = "needs Prometheus (Debian package `prometheus`): run through scripts/test.sh"]
async fn no_accepted_definition_returns_a_value_computed_from_another_namespace() {
    let tenant = Exporter::start().await.unwrap();
    tenant_series(&tenant);
    let secret = Exporter::start().await.unwrap();
    secret_series(&secret);
    let with_secret = Prometheus::start(PrometheusOptions {
        targets: vec![tenant.addr(), secret.addr()],
        ..PrometheusOptions::default()
    })
    .await
    .unwrap();
    let without_secret = Prometheus::start(PrometheusOptions {
        targets: vec![tenant.addr()],
        ..PrometheusOptions::default()
    })
    .await
    .unwrap();
    let wait = Duration::from_secs(30);
    with_secret
        .wait_for_series(r#"secret_metric{namespace="team-b"}"#, wait)
        .await
        .unwrap();
    with_secret
        .wait_for_series("tenant_metric", wait)
        .await
        .unwrap();
    without_secret
        .wait_for_series("tenant_metric", wait)
        .await
        .unwrap();
    // Every series scraped at least twice by both, then one instant for all queries.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - 1.0;

    let templates = templates();
    let definitions: Vec<Definition> = templates
        .iter()
        .enumerate()
        .map(|(i, t)| service_metric(TENANT, &format!("m{i}"), t))
        .collect();
    let pinned = compile(&definitions, CompileOptions::default());
    // The same templates unpinned: the servers must tell them apart, or the test could
    // not see a leak at all.
    let unpinned = compile(
        &definitions,
        CompileOptions {
            namespace_isolation: false,
            ..CompileOptions::default()
        },
    );

    let client = http_client().unwrap();
    let (mut accepted, mut with_values, mut leaks, mut unpinned_leaks) = (0, 0, Vec::new(), 0);
    for (i, template) in templates.iter().enumerate() {
        let metric = format!("m{i}");
        if let Some(rule) = unpinned.table.lookup(ObjectKind::Service, &metric, TENANT) {
            let query = served_query(rule);
            let a = answer(&client, &with_secret, &query, at).await;
            let b = answer(&client, &without_secret, &query, at).await;
            unpinned_leaks += usize::from(a != b);
        }
        let Some(rule) = pinned.table.lookup(ObjectKind::Service, &metric, TENANT) else {
            continue;
        };
        accepted += 1;
        let query = served_query(rule);
        let a = answer(&client, &with_secret, &query, at).await;
        let b = answer(&client, &without_secret, &query, at).await;
        with_values += usize::from(matches!(&a, Ok(values) if !values.is_empty()));
        if a != b {
            leaks.push(format!(
                "{template:?} served as {query}\n  with the secret namespace: {a:?}\n  without: {b:?}"
            ));
        }
    }
    println!(
        "{} templates: {accepted} accepted, {with_values} of them with values; \
         {} accepted read the secret namespace; unpinned, {unpinned_leaks} would",
        templates.len(),
        leaks.len()
    );
    assert!(
        leaks.is_empty(),
        "{} accepted definitions read another namespace:\n{}",
        leaks.len(),
        leaks[..leaks.len().min(5)].join("\n")
    );
    assert!(
        accepted >= templates.len() / 10 && with_values >= accepted / 8,
        "too few accepted templates with values to show anything: {accepted}, {with_values}"
    );
    assert!(
        unpinned_leaks >= templates.len() / 50,
        "the servers tell only {unpinned_leaks} unpinned templates apart"
    );

    // The same templates as ExternalMetrics (a live query; no object, so `<<.GroupBy>>`
    // names a label instead), asked without a selector and with one.
    let externals: Vec<Definition> = templates
        .iter()
        .enumerate()
        .map(|(i, t)| {
            external_metric(
                TENANT,
                &format!("e{i}"),
                &t.replace("<<.GroupBy>>", "service"),
            )
        })
        .collect();
    let pinned = compile(&externals, CompileOptions::default());
    let unpinned = compile(
        &externals,
        CompileOptions {
            namespace_isolation: false,
            ..CompileOptions::default()
        },
    );
    let selectors = [vec![], vec![r#"service="svc-1""#.to_string()]];
    let (mut accepted, mut with_values, mut leaks, mut unpinned_leaks) = (0, 0, Vec::new(), 0);
    for (i, template) in templates.iter().enumerate() {
        let metric = format!("e{i}");
        if let Some(rule) = unpinned.table.external_rule(&metric, TENANT) {
            let query = rule.query(&selectors[0], TENANT);
            let a = answer(&client, &with_secret, &query, at).await;
            let b = answer(&client, &without_secret, &query, at).await;
            unpinned_leaks += usize::from(a != b);
        }
        let Some(rule) = pinned.table.external_rule(&metric, TENANT) else {
            continue;
        };
        accepted += 1;
        for selector in &selectors {
            let query = rule.query(selector, TENANT);
            let a = answer(&client, &with_secret, &query, at).await;
            let b = answer(&client, &without_secret, &query, at).await;
            with_values += usize::from(matches!(&a, Ok(values) if !values.is_empty()));
            if a != b {
                leaks.push(format!(
                    "{template:?} served as {query}\n  with the secret namespace: {a:?}\n  without: {b:?}"
                ));
            }
        }
    }
    println!(
        "as ExternalMetrics: {accepted} accepted, {with_values} answers with values; \
         {} read the secret namespace; unpinned, {unpinned_leaks} would",
        leaks.len()
    );
    assert!(
        leaks.is_empty(),
        "{} accepted ExternalMetrics read another namespace:\n{}",
        leaks.len(),
        leaks[..leaks.len().min(5)].join("\n")
    );
    assert!(
        accepted >= templates.len() / 10 && with_values >= accepted / 8,
        "too few accepted ExternalMetrics with values to show anything: {accepted}, {with_values}"
    );
    assert!(
        unpinned_leaks >= templates.len() / 50,
        "the servers tell only {unpinned_leaks} unpinned ExternalMetrics apart"
    );
}

fn external_metric(namespace: &str, name: &str, query: &str) -> Definition {
    Definition {
        id: DefinitionId {
            kind: DefinitionKind::ExternalMetric,
            namespace: Some(namespace.to_string()),
            name: name.to_string(),
        },
        generation: Some(1),
        created: None,
        body: DefinitionBody::External(ExternalSpec {
            query: query.to_string(),
            metric_name: None,
            namespace_label: None,
            backend: None,
            timeout: None,
            max_age: None,
        }),
    }
}
