//! The PrometheusRule sink against prometheus-operator's real `PrometheusRule` CRD (from
//! its Go module at the version `scripts/fetch-prometheus-operator.sh` pins), with its
//! strict schema, on a real kube-apiserver (no node needed): what metrics-registry
//! writes is accepted and stored unchanged, what the schema refuses never gets that far,
//! and one object the API server refuses keeps no other from Prometheus.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use metrics_registry::definitions::{DefinitionId, DefinitionKind};
use metrics_registry::kubernetes::leader::Leadership;
use metrics_registry::sinks::recording_rules::{
    RulesOutput, RulesSyncError, prometheus_rule_resource, prometheus_rules_installed,
};
use metrics_registry_crds::RuleGroup;
use metrics_registry_tests::cluster_mode::{InProcessOperator, install_crds};
use metrics_registry_tests::control_plane::{ControlPlane, ControlPlaneOptions};
use metrics_registry_tests::e2e::apply_yaml;
use metrics_registry_tests::third_party::prometheus_rule_crd;
use serde_json::{Value, json};

const NAMESPACE: &str = "monitoring";

/// Every field of the RuleGroup shape CustomPrometheusRules has: two groups, an
/// interval, recording rules with labels (one with an integer `expr`), and an alerting
/// rule with `for`, labels and annotations.
fn every_field() -> Value {
    json!([
        {"name": "sqs", "interval": "30s", "rules": [
            {"record": "kube_adapter_metric_sqs_messages_visible",
             "expr": "sum by (queue) (sqs_messages_visible)",
             "labels": {"team": "shop"}},
            {"record": "kube_adapter_metric_one", "expr": 1},
        ]},
        {"name": "alerts", "rules": [
            {"alert": "QueueTooLong", "expr": "sum(sqs_messages_visible) > 100", "for": "1m30s",
             "labels": {"severity": "page"},
             "annotations": {"summary": "{{ $value }} messages waiting"}},
        ]},
    ])
}

fn rule_groups(value: Value) -> Vec<RuleGroup> {
    serde_json::from_value(value).expect("rule groups")
}

fn id(name: &str) -> DefinitionId {
    DefinitionId {
        kind: DefinitionKind::CustomPrometheusRules,
        namespace: None,
        name: name.into(),
    }
}

fn prometheus_rules(admin: &kube::Client) -> Api<DynamicObject> {
    Api::namespaced_with(admin.clone(), NAMESPACE, &prometheus_rule_resource())
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "{what} within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane built from Go and prometheus-operator's PrometheusRule CRD: run through scripts/test.sh"]
async fn prometheus_rules_pass_prometheus_operators_real_crd() {
    metrics_registry_tests::init_test_logging();
    let plane = ControlPlane::start(ControlPlaneOptions::default())
        .await
        .expect("control plane starts");
    let admin = plane.admin_client().await.unwrap();
    let crd = prometheus_rule_crd()
        .await
        .expect("prometheus-operator's CRD");
    apply_yaml(&admin, &crd).await.unwrap();
    apply_yaml(
        &admin,
        &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n"),
    )
    .await
    .unwrap();
    wait_for("the PrometheusRule CRD served", async || {
        prometheus_rules_installed(&admin).await.then_some(())
    })
    .await;
    let api = prometheus_rules(&admin);

    // The real schema is in force: PromQL reads `30` as 30 s, the CRD does not.
    let unitless: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
        "metadata": {"name": "unitless", "namespace": NAMESPACE},
        "spec": {"groups": [{"name": "g", "interval": "30", "rules": []}]},
    }))
    .unwrap();
    let refused = api.create(&PostParams::default(), &unitless).await;
    let refusal = format!("{refused:?}");
    assert!(
        refusal.contains("spec.groups[0].interval"),
        "the real CRD refuses an interval without a unit: {refusal}"
    );

    // The writer: every field accepted, stored exactly as written (nothing pruned).
    let output = RulesOutput::PrometheusRules {
        client: admin.clone(),
        namespace: NAMESPACE.into(),
        labels: [("prometheus".to_owned(), "main".to_owned())].into(),
    };
    let rules = BTreeMap::from([(id("sqs"), rule_groups(every_field()))]);
    output
        .try_sync(&rules, &Leadership::Always)
        .await
        .expect("accepted by the real CRD");
    let stored = api.get("metrics-registry-sqs").await.unwrap();
    assert_eq!(stored.data["spec"]["groups"], every_field());
    let labels = stored.metadata.labels.clone().unwrap_or_default();
    assert_eq!(labels["prometheus"], "main");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "metrics-registry");

    // An object the API server refuses (its name would pass 253 characters with the
    // prefix) is reported, and the others are written all the same.
    let long = "a".repeat(250);
    let rules = BTreeMap::from([
        (id(&long), rule_groups(every_field())),
        (id("after"), rule_groups(every_field())),
        (id("sqs"), rule_groups(every_field())),
    ]);
    let error = output
        .try_sync(&rules, &Leadership::Always)
        .await
        .unwrap_err();
    // Only that object is reported.
    let RulesSyncError::Objects(refused) = &error else {
        panic!("expected refused objects, got {error}");
    };
    assert_eq!(refused.len(), 1, "{error}");
    assert!(
        refused[0].contains(&format!("metrics-registry-{long}")),
        "{error}"
    );
    assert!(api.get("metrics-registry-after").await.is_ok(), "{error}");
    output
        .try_sync(&BTreeMap::new(), &Leadership::Always)
        .await
        .unwrap();
    let left = api.list(&Default::default()).await.unwrap().items;
    assert!(left.is_empty(), "orphans deleted: {left:?}");
    println!("writer: every RuleGroup field stored unchanged; a refused object blocks no other");

    // Through the operator, from CustomPrometheusRules objects.
    install_crds(&admin).await.unwrap();
    let operator = InProcessOperator::start(
        &plane,
        "http://127.0.0.1:9",
        Some((
            NAMESPACE.into(),
            [("prometheus".into(), "main".into())].into(),
        )),
    )
    .await
    .unwrap();
    let custom_rules = |name: &str, groups: Value| {
        serde_json::to_string(&json!({
            "apiVersion": "metrics-registry.io/v1beta1", "kind": "CustomPrometheusRules",
            "metadata": {"name": name}, "spec": {"groups": groups},
        }))
        .unwrap()
    };
    apply_yaml(&admin, &custom_rules("sqs", every_field()))
        .await
        .unwrap();
    apply_yaml(
        &admin,
        &custom_rules(
            "unitless",
            json!([{"name": "g", "interval": "30", "rules": [{"record": "r", "expr": "up"}]}]),
        ),
    )
    .await
    .unwrap();
    let written = wait_for("PrometheusRule metrics-registry-sqs", async || {
        api.get("metrics-registry-sqs").await.ok()
    })
    .await;
    assert_eq!(written.data["spec"]["groups"], every_field());
    let custom: Api<DynamicObject> = Api::all_with(
        admin.clone(),
        &ApiResource {
            group: "metrics-registry.io".into(),
            version: "v1beta1".into(),
            api_version: "metrics-registry.io/v1beta1".into(),
            kind: "CustomPrometheusRules".into(),
            plural: "customprometheusrules".into(),
        },
    );
    let ready = |name: &'static str| {
        let custom = custom.clone();
        async move || {
            let object = custom.get(name).await.ok()?;
            let condition = object.data["status"]["conditions"][0].clone();
            condition["reason"].is_string().then_some(condition)
        }
    };
    let sqs = wait_for("status of sqs", ready("sqs")).await;
    assert_eq!(
        (&sqs["status"], &sqs["reason"]),
        (&json!("True"), &json!("Accepted"))
    );
    let unitless = wait_for("status of unitless", ready("unitless")).await;
    assert_eq!(
        (&unitless["status"], &unitless["reason"]),
        (&json!("False"), &json!("InvalidRule")),
        "{unitless}"
    );
    assert!(
        unitless["message"]
            .as_str()
            .unwrap()
            .contains("needs a unit"),
        "{unitless}"
    );
    assert!(api.get("metrics-registry-unitless").await.is_err());
    operator.check_running().unwrap();

    custom
        .delete("sqs", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "metrics-registry-sqs deleted with its definition",
        async || api.get("metrics-registry-sqs").await.is_err().then_some(()),
    )
    .await;
    println!(
        "operator: CustomPrometheusRules → PrometheusRule unchanged; `interval: \"30\"` → InvalidRule, never written"
    );
    operator.stop().await;
}
