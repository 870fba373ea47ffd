//! Registers the APIServices with the aggregator — the three metrics APIs, and
//! metrics.k8s.io when asked — trusting our serving certificate through `caBundle`
//! (never `insecureSkipTLSVerify`).

use super::{FIELD_MANAGER, MANAGED_BY};
use k8s_openapi::ByteString;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::{
    APIService, APIServiceSpec, ServiceReference,
};
use kube::api::{Api, ObjectMeta, Patch, PatchParams};

/// The Service the aggregator proxies to.
#[derive(Clone, Debug)]
pub struct ServiceTarget {
    pub namespace: String,
    pub name: String,
    pub port: i32,
}

/// (group, version, versionPriority): v1beta2 is preferred, so HPAs ask for it.
pub const API_VERSIONS: [(&str, &str, i32); 3] = [
    ("custom.metrics.k8s.io", "v1beta2", 200),
    ("custom.metrics.k8s.io", "v1beta1", 100),
    ("external.metrics.k8s.io", "v1beta1", 100),
];

/// metrics.k8s.io, registered only on request: metrics-server usually owns it.
pub const RESOURCE_METRICS_API: (&str, &str, i32) = ("metrics.k8s.io", "v1beta1", 100);

pub fn api_services(
    target: &ServiceTarget,
    ca_bundle_pem: &str,
    resource_metrics: bool,
) -> Vec<APIService> {
    API_VERSIONS
        .iter()
        .chain(resource_metrics.then_some(&RESOURCE_METRICS_API))
        .map(|(group, version, priority)| APIService {
            metadata: ObjectMeta {
                name: Some(format!("{version}.{group}")),
                labels: Some([(MANAGED_BY.0.to_string(), MANAGED_BY.1.to_string())].into()),
                ..ObjectMeta::default()
            },
            spec: Some(APIServiceSpec {
                group: Some(group.to_string()),
                version: Some(version.to_string()),
                group_priority_minimum: 100,
                version_priority: *priority,
                ca_bundle: Some(ByteString(ca_bundle_pem.as_bytes().to_vec())),
                insecure_skip_tls_verify: None,
                service: Some(ServiceReference {
                    namespace: Some(target.namespace.clone()),
                    name: Some(target.name.clone()),
                    port: Some(target.port),
                }),
            }),
            status: None,
        })
        .collect()
}

/// Creates or updates the APIServices (server-side apply, so re-running is harmless).
pub async fn register(
    client: &kube::Client,
    target: &ServiceTarget,
    ca_bundle_pem: &str,
    resource_metrics: bool,
) -> Result<(), kube::Error> {
    let api: Api<APIService> = Api::all(client.clone());
    for mut service in api_services(target, ca_bundle_pem, resource_metrics) {
        let name = service.metadata.name.clone().unwrap_or_default();
        // Server-side apply needs the type meta in the body.
        let mut body = serde_json::to_value(&service).unwrap_or_default();
        body["apiVersion"] = "apiregistration.k8s.io/v1".into();
        body["kind"] = "APIService".into();
        service.metadata.managed_fields = None;
        api.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&body),
        )
        .await?;
        tracing::info!(apiservice = %name, service = %format!("{}/{}:{}", target.namespace, target.name, target.port), "APIService registered");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_apiservices_prefer_v1beta2_and_carry_the_ca() {
        let target = ServiceTarget {
            namespace: "monitoring".into(),
            name: "metrics-registry".into(),
            port: 443,
        };
        let services = api_services(&target, "PEM", false);
        let names: Vec<_> = services
            .iter()
            .map(|s| s.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "v1beta2.custom.metrics.k8s.io",
                "v1beta1.custom.metrics.k8s.io",
                "v1beta1.external.metrics.k8s.io"
            ]
        );
        let spec = services[0].spec.as_ref().unwrap();
        assert!(spec.version_priority > services[1].spec.as_ref().unwrap().version_priority);
        assert_eq!(spec.ca_bundle.as_ref().unwrap().0, b"PEM");
        assert_eq!(spec.insecure_skip_tls_verify, None);
        assert_eq!(spec.service.as_ref().unwrap().port, Some(443));
        let with_resources = api_services(&target, "PEM", true);
        assert_eq!(
            with_resources.last().unwrap().metadata.name.as_deref(),
            Some("v1beta1.metrics.k8s.io")
        );
        assert_eq!(with_resources.len(), 4);
    }
}
