//! What users see of the CRDs on a real kube-apiserver (no node needed): the OpenAPI v3
//! document `kubectl explain` reads carries a description for every field of every kind,
//! and the Table `kubectl get` prints has the Message column with the last error the
//! operator (cluster mode, run in this test) wrote.

use std::time::{Duration, Instant};

use metrics_registry_tests::cluster_mode::{InProcessOperator, install_crds};
use metrics_registry_tests::control_plane::{ControlPlane, ControlPlaneOptions};
use metrics_registry_tests::e2e::apply_yaml;
use serde_json::Value;

const GROUP_VERSION: &str = "metrics-registry.io/v1beta1";

async fn try_get(client: &kube::Client, path: &str, accept: &str) -> Result<Value, kube::Error> {
    let request = http::Request::get(path)
        .header("Accept", accept)
        .body(Vec::new())
        .unwrap();
    client.request::<Value>(request).await
}

async fn get(client: &kube::Client, path: &str, accept: &str) -> Value {
    try_get(client, path, accept)
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"))
}

/// Paths of properties without a description below `path`, not following `$ref`s
/// (those point at Kubernetes' own types, such as ObjectMeta).
fn undescribed(schema: &Value, path: &str, missing: &mut Vec<String>) {
    for (name, property) in schema["properties"].as_object().into_iter().flatten() {
        let at = format!("{path}.{name}");
        if property["description"].as_str().is_none_or(str::is_empty) {
            missing.push(at.clone());
        }
        undescribed(property, &at, missing);
    }
    if schema["items"].is_object() {
        undescribed(&schema["items"], &format!("{path}[]"), missing);
    }
}

fn count_properties(schema: &Value) -> usize {
    let own = schema["properties"].as_object().map_or(0, |p| p.len());
    let nested: usize = schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, p)| count_properties(p))
        .sum();
    own + nested + count_properties_of_items(schema)
}

fn count_properties_of_items(schema: &Value) -> usize {
    if schema["items"].is_object() {
        count_properties(&schema["items"])
    } else {
        0
    }
}

/// The row of `name` in a Table, as column name → cell.
fn row(table: &Value, name: &str) -> Vec<(String, Value)> {
    let columns: Vec<String> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_owned())
        .collect();
    let cells = table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["cells"][0] == name)
        .unwrap_or_else(|| panic!("no row {name} in {table}"))["cells"]
        .as_array()
        .unwrap()
        .clone();
    columns.into_iter().zip(cells).collect()
}

async fn wait_for_row(
    client: &kube::Client,
    path: &str,
    name: &str,
    done: impl Fn(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let table = get(client, path, "application/json;as=Table;g=meta.k8s.io;v=v1").await;
        let found = table["rows"]
            .as_array()
            .is_some_and(|rows| rows.iter().any(|r| r["cells"][0] == name));
        if found {
            let cells = row(&table, name);
            if done(&cells) {
                return cells;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{path}: row {name} not as expected: {table}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn cell<'a>(cells: &'a [(String, Value)], column: &str) -> &'a Value {
    &cells.iter().find(|(name, _)| name == column).unwrap().1
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane built from Go (etcd, kube-apiserver, kube-controller-manager): run through scripts/test.sh"]
async fn kubectl_explain_describes_every_field_and_get_shows_the_last_error() {
    metrics_registry_tests::init_test_logging();
    let plane = ControlPlane::start(ControlPlaneOptions::default())
        .await
        .expect("control plane starts");
    let admin = plane.admin_client().await.unwrap();
    install_crds(&admin).await.unwrap();

    // `kubectl explain` reads the group-version's OpenAPI v3 document.
    let path = format!("/openapi/v3/apis/{GROUP_VERSION}");
    let deadline = Instant::now() + Duration::from_secs(30);
    let document = loop {
        // Published a moment after the CRDs are Established: 404 until then.
        let document = try_get(&admin, &path, "application/json")
            .await
            .unwrap_or_default();
        let kinds = document["components"]["schemas"]
            .as_object()
            .map_or(0, |schemas| {
                schemas
                    .keys()
                    .filter(|k| {
                        k.starts_with("io.metrics-registry.v1beta1.") && !k.ends_with("List")
                    })
                    .count()
            });
        if kinds == metrics_registry::definitions::DefinitionKind::crds().len() {
            break document;
        }
        assert!(Instant::now() < deadline, "{path} lists {kinds} kinds");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let mut missing = Vec::new();
    let mut described = 0;
    for crd in metrics_registry::definitions::DefinitionKind::crds() {
        let kind = crd.spec.names.kind;
        let schema =
            &document["components"]["schemas"][format!("io.metrics-registry.v1beta1.{kind}")];
        assert!(schema["description"].is_string(), "{kind}: {schema}");
        for field in ["apiVersion", "kind", "metadata", "spec", "status"] {
            assert!(
                schema["properties"][field].is_object(),
                "{kind} has no {field}"
            );
        }
        let mut here = Vec::new();
        undescribed(schema, &kind, &mut here);
        missing.extend(here);
        described += count_properties(schema);
    }
    assert!(
        missing.is_empty(),
        "published without a description: {missing:#?}"
    );
    println!("OpenAPI v3 ({path}): {described} fields of 18 kinds, every one described");

    // The operator writes statuses; `kubectl get` shows the last error in Message.
    let operator = InProcessOperator::start(&plane, "http://127.0.0.1:9", None)
        .await
        .unwrap();
    apply_yaml(
        &admin,
        r#"
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {name: broken, namespace: default}
spec: {query: 'sum(rate(x{<<.LabelMatchers>>}[5m])'}
---
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {name: fine, namespace: default}
spec: {query: 'sum(x{<<.LabelMatchers>>}) by (<<.GroupBy>>)'}
---
apiVersion: metrics-registry.io/v1beta1
kind: CustomPrometheusRules
metadata: {name: unitless}
spec:
  groups:
  - {name: g, interval: "30", rules: [{record: kube_adapter_metric_q, expr: up}]}
---
apiVersion: metrics-registry.io/v1beta1
kind: MetricsBackend
metadata: {name: team-a-only}
spec:
  url: http://127.0.0.1:9
  allowedNamespaces: {names: [team-a]}
---
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {name: sneaky, namespace: default}
spec:
  backend: team-a-only
  query: 'sum(x{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
---
apiVersion: metrics-registry.io/v1beta1
kind: MetricsBackend
metadata: {name: open}
spec: {url: 'http://127.0.0.1:9'}
---
apiVersion: metrics-registry.io/v1beta1
kind: ServiceMetric
metadata: {name: remote, namespace: default}
spec:
  backend: open
  query: 'sum(x{<<.LabelMatchers>>}) by (<<.GroupBy>>)'
"#,
    )
    .await
    .unwrap();
    let services = "/apis/metrics-registry.io/v1beta1/namespaces/default/servicemetrics";
    let broken = wait_for_row(&admin, services, "broken", |cells| {
        cell(cells, "Reason") == "InvalidQuery"
    })
    .await;
    let columns: Vec<&str> = broken.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        columns,
        ["Name", "Metric", "Ready", "Reason", "Age", "Message"]
    );
    let message = cell(&broken, "Message").as_str().unwrap().to_owned();
    assert!(message.contains("unclosed left parenthesis"), "{message}");
    let fine = wait_for_row(&admin, services, "fine", |cells| {
        cell(cells, "Ready") == "True"
    })
    .await;
    assert_eq!(cell(&fine, "Message"), "served as services/fine");
    let rules = wait_for_row(
        &admin,
        "/apis/metrics-registry.io/v1beta1/customprometheusrules",
        "unitless",
        |cells| cell(cells, "Reason") == "InvalidRule",
    )
    .await;
    let rules_message = cell(&rules, "Message").as_str().unwrap().to_owned();
    assert!(rules_message.contains("needs a unit"), "{rules_message}");
    // A tenant naming a backend that does not allow its namespace: refused, and why.
    let sneaky = wait_for_row(&admin, services, "sneaky", |cells| {
        cell(cells, "Reason") == "BackendNotAllowed"
    })
    .await;
    let sneaky_message = cell(&sneaky, "Message").as_str().unwrap().to_owned();
    assert!(
        sneaky_message.contains("does not allow namespace \"default\""),
        "{sneaky_message}"
    );
    // Served from its backend, and the backend's condition once it has been probed.
    let remote = wait_for_row(&admin, services, "remote", |cells| {
        cell(cells, "Ready") == "True"
            && cell(cells, "Message")
                .as_str()
                .is_some_and(|m| m.contains("last probe"))
    })
    .await;
    assert_eq!(
        cell(&remote, "Message"),
        "served as services/remote from MetricsBackend open, whose last probe found it Unreachable (see the MetricsBackend's status)"
    );
    // Each MetricsBackend is probed: nothing listens at `open`'s URL; `answering` has a
    // server that answers the build-info request.
    let backends = "/apis/metrics-registry.io/v1beta1/metricsbackends";
    let open = wait_for_row(&admin, backends, "open", |cells| {
        cell(cells, "Reason") == "Unreachable"
    })
    .await;
    assert_eq!(cell(&open, "URL"), "http://127.0.0.1:9");
    assert_eq!(cell(&open, "Ready"), "False");
    assert!(
        cell(&open, "LastProbe")
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let open_message = cell(&open, "Message").as_str().unwrap().to_owned();
    assert!(
        open_message.contains("Prometheus at http://127.0.0.1:9 is unreachable"),
        "{open_message}"
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let answering_url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/api/v1/status/buildinfo",
        axum::routing::get(|| async { r#"{"status":"success","data":{"version":"test"}}"# }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    apply_yaml(
        &admin,
        &format!(
            "apiVersion: metrics-registry.io/v1beta1\nkind: MetricsBackend\nmetadata: {{name: answering}}\nspec: {{url: '{answering_url}'}}\n"
        ),
    )
    .await
    .unwrap();
    let answering = wait_for_row(&admin, backends, "answering", |cells| {
        cell(cells, "Reason") == "Accepted"
            && cell(cells, "Message")
                != "valid: definitions naming it in spec.backend are served from it"
    })
    .await;
    assert_eq!(
        cell(&answering, "Message"),
        &serde_json::Value::from(format!("valid; {answering_url} answered"))
    );
    operator.check_running().unwrap();
    println!(
        "kubectl get: broken → {message:?}; fine → \"served as services/fine\"; unitless → {rules_message:?}; sneaky → {sneaky_message:?}; remote → served from MetricsBackend open; backend open → Unreachable {open_message:?}; answering → Accepted"
    );
    operator.stop().await;
}
