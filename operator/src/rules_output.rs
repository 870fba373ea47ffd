//! Where valid `CustomPrometheusRules` go: prometheus-operator `PrometheusRule` objects
//! when that CRD is installed, else rule files plus `POST /-/reload`, else nowhere.

use crate::definitions::DefinitionId;
use crate::rulefiles;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use metrics_registry_apiserver::prometheus::PrometheusClient;
use metrics_registry_crds::RuleGroup;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Label on every PrometheusRule this operator owns; orphans are found by it.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "metrics-registry");

pub enum RulesOutput {
    None,
    Files {
        dir: PathBuf,
        prometheus: PrometheusClient,
    },
    PrometheusRules {
        client: kube::Client,
        namespace: String,
        labels: BTreeMap<String, String>,
    },
}

fn prometheus_rule_resource() -> ApiResource {
    ApiResource {
        group: "monitoring.coreos.com".into(),
        version: "v1".into(),
        api_version: "monitoring.coreos.com/v1".into(),
        kind: "PrometheusRule".into(),
        plural: "prometheusrules".into(),
    }
}

/// Whether the prometheus-operator CRD is served.
pub async fn prometheus_rules_installed(client: &kube::Client) -> bool {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &prometheus_rule_resource());
    api.list(&ListParams::default().limit(1)).await.is_ok()
}

impl RulesOutput {
    pub async fn sync(&self, rules: &BTreeMap<DefinitionId, Vec<RuleGroup>>) {
        match self {
            RulesOutput::None => {}
            RulesOutput::Files { dir, prometheus } => match rulefiles::sync(dir, rules) {
                Ok(false) => {}
                Ok(true) => match prometheus.reload().await {
                    Ok(()) => {
                        tracing::info!(dir = %dir.display(), "rule files written; Prometheus reloaded")
                    }
                    Err(error) => tracing::error!(
                        "rule files written to {} but Prometheus did not reload: {error}",
                        dir.display()
                    ),
                },
                Err(error) => tracing::error!("cannot write Prometheus rule files: {error}"),
            },
            RulesOutput::PrometheusRules {
                client,
                namespace,
                labels,
            } => {
                if let Err(error) = sync_prometheus_rules(client, namespace, labels, rules).await {
                    tracing::error!("cannot write PrometheusRule objects: {error}");
                }
            }
        }
    }
}

async fn sync_prometheus_rules(
    client: &kube::Client,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    rules: &BTreeMap<DefinitionId, Vec<RuleGroup>>,
) -> Result<(), kube::Error> {
    let api: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), namespace, &prometheus_rule_resource());
    let mut wanted = BTreeSet::new();
    for (id, groups) in rules {
        let name = format!("metrics-registry-{}", id.name);
        let mut all_labels = labels.clone();
        all_labels.insert(MANAGED_BY.0.into(), MANAGED_BY.1.into());
        let object = serde_json::json!({
            "apiVersion": "monitoring.coreos.com/v1",
            "kind": "PrometheusRule",
            "metadata": {"name": name, "namespace": namespace, "labels": all_labels,
                         "annotations": {"metrics-registry.io/source": format!("CustomPrometheusRules/{}", id.name)}},
            "spec": {"groups": groups},
        });
        api.patch(
            &name,
            &PatchParams::apply("metrics-registry").force(),
            &Patch::Apply(&object),
        )
        .await?;
        wanted.insert(name);
    }
    let owned = api
        .list(&ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)))
        .await?;
    for object in owned {
        let name = object.metadata.name.unwrap_or_default();
        if !wanted.contains(&name) {
            api.delete(&name, &DeleteParams::default()).await?;
            tracing::info!(%name, "deleted orphaned PrometheusRule");
        }
    }
    Ok(())
}
