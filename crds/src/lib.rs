//! Custom resource types of `metrics-registry.io/v1beta1`.
//!
//! Only types live here: the compiler that turns them into a rule table and the
//! controllers that watch them are elsewhere, so this crate stays free of I/O.

mod condition;
mod metric;
mod rules;

pub use condition::{Condition, ConditionStatus, READY};
pub use metric::*;
pub use rules::{CustomPrometheusRules, CustomPrometheusRulesSpec, Rule, RuleGroup, RulesStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every resource in this crate.
pub const GROUP: &str = "metrics-registry.io";
/// The one served version.
pub const VERSION: &str = "v1beta1";
/// `apiVersion` written in manifests.
pub const API_VERSION: &str = "metrics-registry.io/v1beta1";

/// Every CustomResourceDefinition, in a stable order (the order of SPEC §2).
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        PodMetric::crd(),
        ClusterPodMetric::crd(),
        ServiceMetric::crd(),
        ClusterServiceMetric::crd(),
        IngressMetric::crd(),
        ClusterIngressMetric::crd(),
        DeploymentMetric::crd(),
        ClusterDeploymentMetric::crd(),
        StatefulSetMetric::crd(),
        ClusterStatefulSetMetric::crd(),
        DaemonSetMetric::crd(),
        ClusterDaemonSetMetric::crd(),
        NamespaceMetric::crd(),
        CustomPrometheusRules::crd(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fourteen_kinds_in_one_group_with_status_and_columns() {
        let crds = all_crds();
        assert_eq!(crds.len(), 14);
        for crd in &crds {
            assert_eq!(crd.spec.group, GROUP);
            let version = &crd.spec.versions[0];
            assert_eq!(version.name, VERSION);
            assert!(
                version
                    .subresources
                    .as_ref()
                    .and_then(|s| s.status.as_ref())
                    .is_some(),
                "{} has no status subresource",
                crd.spec.names.kind
            );
            let columns: Vec<_> = version
                .additional_printer_columns
                .iter()
                .flatten()
                .map(|c| c.name.as_str())
                .collect();
            assert!(
                columns.contains(&"Ready"),
                "{}: {columns:?}",
                crd.spec.names.kind
            );
            assert!(
                columns.contains(&"Reason"),
                "{}: {columns:?}",
                crd.spec.names.kind
            );
            assert!(
                !crd.spec
                    .names
                    .short_names
                    .clone()
                    .unwrap_or_default()
                    .is_empty()
            );
            assert_eq!(
                crd.spec.names.categories.clone().unwrap_or_default(),
                vec!["metrics-registry".to_string()]
            );
        }
        let cluster: Vec<_> = crds
            .iter()
            .filter(|c| c.spec.scope == "Cluster")
            .map(|c| c.spec.names.kind.clone())
            .collect();
        assert_eq!(cluster.len(), 7, "{cluster:?}");
        assert!(cluster.contains(&"CustomPrometheusRules".to_string()));
    }

    #[test]
    fn metric_schema_requires_query_and_describes_fields() {
        let crd = ServiceMetric::crd();
        let schema = serde_json::to_value(&crd.spec.versions[0].schema).unwrap();
        let spec = &schema["openAPIV3Schema"]["properties"]["spec"];
        assert_eq!(spec["required"], serde_json::json!(["query"]));
        for field in [
            "query",
            "metricName",
            "objectLabel",
            "namespaceLabel",
            "windowSeconds",
        ] {
            let description = spec["properties"][field]["description"]
                .as_str()
                .unwrap_or("");
            assert!(!description.is_empty(), "{field} has no description");
        }
    }
}
