//! `metrics-registry uninstall`: removes what the server created at run time and Helm
//! does not know about. The Deployment goes to zero replicas first and its pods are
//! waited for, so no leader re-creates an object right after it was deleted.

use crate::sinks::MANAGED_BY;
use crate::sinks::recording_rules::prometheus_rule_resource;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum UninstallError {
    #[error("{what}: {source}")]
    Kube {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("the pods of Deployment {0} were still running after {1:?}")]
    PodsStillRunning(String, Duration),
}

pub struct Uninstall {
    pub client: kube::Client,
    pub namespace: String,
    pub deployment: Option<String>,
    pub lease: String,
    pub apiservices: bool,
    pub timeout: Duration,
}

fn kube(what: impl Into<String>) -> impl FnOnce(kube::Error) -> UninstallError {
    let what = what.into();
    move |source| UninstallError::Kube { what, source }
}

impl Uninstall {
    pub async fn run(&self) -> Result<(), UninstallError> {
        if let Some(name) = &self.deployment {
            self.stop_deployment(name).await?;
        }
        self.delete_prometheus_rules().await?;
        if self.apiservices {
            self.delete_apiservices().await?;
        }
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), &self.namespace);
        match leases.delete(&self.lease, &DeleteParams::default()).await {
            Ok(_) => tracing::info!(lease = %self.lease, "deleted the Lease"),
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(error) => return Err(kube(format!("deleting Lease {}", self.lease))(error)),
        }
        Ok(())
    }

    async fn stop_deployment(&self, name: &str) -> Result<(), UninstallError> {
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &self.namespace);
        let Some(deployment) = deployments
            .get_opt(name)
            .await
            .map_err(kube(format!("reading Deployment {name}")))?
        else {
            return Ok(());
        };
        deployments
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(serde_json::json!({"spec": {"replicas": 0}})),
            )
            .await
            .map_err(kube(format!("scaling Deployment {name} to zero")))?;
        let selector = deployment
            .spec
            .and_then(|s| s.selector.match_labels)
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &self.namespace);
        let started = Instant::now();
        loop {
            let running = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(kube(format!("listing the pods of Deployment {name}")))?
                .items
                .len();
            if running == 0 {
                tracing::info!(deployment = %name, "scaled to zero; no replica writes any more");
                return Ok(());
            }
            if started.elapsed() > self.timeout {
                return Err(UninstallError::PodsStillRunning(
                    name.to_string(),
                    self.timeout,
                ));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn delete_prometheus_rules(&self) -> Result<(), UninstallError> {
        let api: Api<DynamicObject> =
            Api::all_with(self.client.clone(), &prometheus_rule_resource());
        let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        let owned = match api.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => list.items,
            // No prometheus-operator CRD: there is nothing of ours to delete.
            Err(kube::Error::Api(status)) if status.code == 404 => return Ok(()),
            Err(error) => return Err(kube("listing PrometheusRules")(error)),
        };
        for object in owned {
            let name = object.metadata.name.clone().unwrap_or_default();
            let namespace = object.metadata.namespace.clone().unwrap_or_default();
            let namespaced: Api<DynamicObject> =
                Api::namespaced_with(self.client.clone(), &namespace, &prometheus_rule_resource());
            match namespaced.delete(&name, &DeleteParams::default()).await {
                Ok(_) => tracing::info!(%namespace, %name, "deleted PrometheusRule"),
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => {
                    return Err(kube(format!("deleting PrometheusRule {namespace}/{name}"))(
                        error,
                    ));
                }
            }
        }
        Ok(())
    }

    async fn delete_apiservices(&self) -> Result<(), UninstallError> {
        let api: Api<APIService> = Api::all(self.client.clone());
        let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        let list = api
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(kube("listing APIServices"))?;
        for service in list {
            let name = service.metadata.name.unwrap_or_default();
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => tracing::info!(apiservice = %name, "deleted APIService"),
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(kube(format!("deleting APIService {name}"))(error)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::mock_api::{Exchange, scripted, status};
    use http::Method;
    use serde_json::json;

    #[tokio::test]
    async fn stops_the_deployment_before_deleting_what_it_wrote() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "mr", "namespace": "ns"},
            "spec": {"selector": {"matchLabels": {"app.kubernetes.io/name": "metrics-registry"}},
                     "template": {"spec": {"containers": []}}},
        });
        let pods = |n: usize| {
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {},
                   "items": (0..n).map(|i| json!({"metadata": {"name": format!("p{i}")}})).collect::<Vec<_>>()})
        };
        let pods_path =
            "/api/v1/namespaces/ns/pods?&labelSelector=app.kubernetes.io%2Fname%3Dmetrics-registry";
        let (client, played) = scripted(vec![
            Exchange::new(
                Method::GET,
                "/apis/apps/v1/namespaces/ns/deployments/mr",
                200,
                deployment.clone(),
            ),
            Exchange::new(
                Method::PATCH,
                "/apis/apps/v1/namespaces/ns/deployments/mr?",
                200,
                deployment,
            )
            .with_body(|body| assert_eq!(body, &json!({"spec": {"replicas": 0}}))),
            // Still stopping, then gone: only then is anything deleted.
            Exchange::new(Method::GET, pods_path, 200, pods(1)),
            Exchange::new(Method::GET, pods_path, 200, pods(0)),
            Exchange::new(
                Method::GET,
                "/apis/monitoring.coreos.com/v1/prometheusrules?&labelSelector=app.kubernetes.io%2Fmanaged-by%3Dmetrics-registry",
                200,
                json!({"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRuleList", "metadata": {},
                       "items": [{"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                                  "metadata": {"name": "metrics-registry-sqs", "namespace": "monitoring"}}]}),
            ),
            Exchange::new(
                Method::DELETE,
                "/apis/monitoring.coreos.com/v1/namespaces/monitoring/prometheusrules/metrics-registry-sqs?",
                200,
                json!({}),
            ),
            Exchange::new(
                Method::DELETE,
                "/apis/coordination.k8s.io/v1/namespaces/ns/leases/mr?",
                404,
                status(404, "NotFound"),
            ),
        ]);
        Uninstall {
            client,
            namespace: "ns".into(),
            deployment: Some("mr".into()),
            lease: "mr".into(),
            apiservices: false,
            timeout: Duration::from_secs(10),
        }
        .run()
        .await
        .expect("uninstall");
        played.await.expect("every expected request, nothing else");
    }
}
