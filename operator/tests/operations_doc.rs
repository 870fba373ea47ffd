//! docs/operations.md's alert rules and the Grafana dashboard it links: valid PromQL, and
//! every `metrics_registry_*` series they read is one the server exposes (taken from the
//! server's own exposition, so a renamed metric fails here). `promtool` checks the rule
//! file as Prometheus would load it.

use metrics_registry_apiserver::telemetry::{
    OutcomeLabels, RequestKindLabels, RequestLabels, ReviewLabels, SelfMetrics,
};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn docs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs")
}

/// The yaml block under `### Alerts`.
fn alert_rules() -> String {
    let text = std::fs::read_to_string(docs().join("operations.md")).expect("operations.md");
    let section = text
        .split_once("### Alerts")
        .expect("operations.md has ### Alerts")
        .1;
    let block = section
        .split_once("```yaml\n")
        .expect("a yaml block under ### Alerts")
        .1;
    block
        .split_once("```")
        .expect("the block ends")
        .0
        .to_owned()
}

/// Series names the server exposes: counters as `_total`, histograms as `_bucket`,
/// `_sum` and `_count`, gauges as they are. A family with labels shows only once it has
/// a sample, so each gets one.
fn exposed() -> BTreeSet<String> {
    let metrics = SelfMetrics::new();
    let kind = RequestKindLabels {
        group: "custom.metrics.k8s.io".into(),
        version: "v1beta2".into(),
        resource: "pods".into(),
    };
    metrics
        .requests
        .get_or_create(&RequestLabels {
            group: kind.group.clone(),
            version: kind.version.clone(),
            resource: kind.resource.clone(),
            code: "200".into(),
        })
        .inc();
    metrics.request_duration.get_or_create(&kind).observe(0.01);
    let ok = OutcomeLabels { outcome: "ok" };
    metrics.prometheus_queries.get_or_create(&ok).inc();
    metrics
        .prometheus_query_duration
        .get_or_create(&ok)
        .observe(0.01);
    metrics.set_definitions([(("ServiceMetric".to_owned(), true), 1)]);
    metrics.watch_restarted("pods");
    let token = ReviewLabels { review: "token" };
    metrics.auth_cache_hits.get_or_create(&token).inc();
    metrics.auth_reviews.get_or_create(&token).inc();
    let text = metrics.encode();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').expect("# TYPE name kind");
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    assert!(names.len() >= 15, "{names:?}");
    names
}

/// Every `metrics_registry_…` name in `expr`, after checking it parses.
fn names_in(expr: &str) -> Vec<String> {
    // Grafana's variables, as Grafana would fill them in.
    let expr = expr.replace("$__rate_interval", "5m").replace("$job", ".*");
    if let Err(error) = promql_parser::parser::parse(&expr) {
        panic!("not PromQL: {error}\n{expr}");
    }
    let mut names = Vec::new();
    let mut rest = expr.as_str();
    while let Some(at) = rest.find("metrics_registry_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}

fn assert_all_exposed(what: &str, exprs: &[String]) {
    let exposed = exposed();
    let mut used = 0;
    for expr in exprs {
        for name in names_in(expr) {
            assert!(
                exposed.contains(&name),
                "{what} reads {name}, which the server does not expose; it has {exposed:?}"
            );
            used += 1;
        }
    }
    assert!(
        used >= exprs.len() / 2,
        "{what} reads almost nothing of ours"
    );
}

#[test]
fn alert_rules_read_only_metrics_the_server_exposes() {
    let rules: serde_json::Value = serde_saphyr::from_str(&alert_rules()).expect("YAML");
    let exprs: Vec<String> = rules["groups"][0]["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .map(|rule| rule["expr"].as_str().expect("expr").to_owned())
        .collect();
    assert!(exprs.len() >= 5, "{exprs:?}");
    assert_all_exposed("an alert", &exprs);
}

#[test]
fn dashboard_reads_only_metrics_the_server_exposes() {
    let path = docs().join("dashboards/metrics-registry.json");
    let text = std::fs::read_to_string(&path).expect("the dashboard");
    assert!(
        std::fs::read_to_string(docs().join("operations.md"))
            .unwrap()
            .contains("(dashboards/metrics-registry.json)"),
        "operations.md links the dashboard"
    );
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|panel| panel["targets"].as_array().cloned().unwrap_or_default())
        .map(|target| target["expr"].as_str().expect("expr").to_owned())
        .collect();
    assert!(exprs.len() >= 8, "{exprs:?}");
    assert_all_exposed("a dashboard panel", &exprs);
}

#[test]
#[ignore = "needs promtool (Debian's prometheus package): run through scripts/test.sh"]
fn alert_rules_pass_promtool() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("metrics-registry.rules.yaml");
    std::fs::write(&file, alert_rules()).unwrap();
    let output = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool runs (apt-get install prometheus)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
