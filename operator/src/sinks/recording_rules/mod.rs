//! Where valid `CustomPrometheusRules` go: prometheus-operator `PrometheusRule` objects
//! when that CRD is installed, else rule files plus `POST /-/reload`, else nowhere.
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

use super::{FIELD_MANAGER, MANAGED_BY};
use crate::definitions::DefinitionId;
use crate::kubernetes::leader::Leadership;
pub mod files;

use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use metrics_registry_apiserver::prometheus::PrometheusClient;
use metrics_registry_crds::RuleGroup;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

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

pub fn prometheus_rule_resource() -> ApiResource {
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

/// Why rules were not (all) handed to Prometheus; the writer retries on any of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesSyncError {
    #[error(
        "stopped handing rules over: the lease was not renewed within its deadline (another replica may lead)"
    )]
    NotLeading,
    #[error("rule files written to {dir} but Prometheus did not reload: {message}")]
    NotReloaded { dir: String, message: String },
    #[error("cannot write Prometheus rule files: {0}")]
    Files(String),
    #[error(
        "the PrometheusRule CRD (prometheus-operator) is not installed; CustomPrometheusRules are validated but not handed to Prometheus until it is"
    )]
    NoPrometheusRuleCrd,
    #[error("cannot list PrometheusRule objects: {0}")]
    List(String),
    /// Some PrometheusRule writes or orphan deletions were refused (each is tried).
    #[error("{}", .0.join("; "))]
    Objects(Vec<String>),
}

/// Rule groups of every valid `CustomPrometheusRules`, by definition.
pub type RuleGroups = BTreeMap<DefinitionId, Vec<RuleGroup>>;

impl RulesOutput {
    /// Every write and every deletion is sent only while `leadership` holds (fenced by the
    /// renew deadline); past it the sync stops with an error, so it is retried.
    pub async fn try_sync(
        &self,
        rules: &RuleGroups,
        leadership: &Leadership,
    ) -> Result<(), RulesSyncError> {
        fence(leadership)?;
        match self {
            RulesOutput::None => Ok(()),
            RulesOutput::Files { dir, prometheus } => match files::sync(dir, rules) {
                Ok(false) => Ok(()),
                Ok(true) => match prometheus.reload().await {
                    Ok(()) => {
                        tracing::info!(dir = %dir.display(), "rule files written; Prometheus reloaded");
                        Ok(())
                    }
                    Err(error) => Err(RulesSyncError::NotReloaded {
                        dir: dir.display().to_string(),
                        message: error.to_string(),
                    }),
                },
                Err(error) => Err(RulesSyncError::Files(error.to_string())),
            },
            RulesOutput::PrometheusRules {
                client,
                namespace,
                labels,
            } => sync_prometheus_rules(client, namespace, labels, rules, leadership).await,
        }
    }

    /// Keeps the output equal to the latest rules while this replica leads (standalone
    /// mode always leads),
    /// retrying failed syncs, and syncs everything again whenever it becomes the leader
    /// (another replica may have led in between). `None` means "not compiled yet": nothing
    /// is written (and no object deleted as an orphan) before the first complete table.
    pub async fn run(
        self,
        mut latest: watch::Receiver<Option<Arc<RuleGroups>>>,
        mut leadership: Leadership,
    ) {
        let mut synced: Option<Arc<RuleGroups>> = None;
        // A failed sync is retried with a growing delay; its error is said once.
        let mut retry: Option<(Duration, RulesSyncError)> = None;
        loop {
            let delay = retry.as_ref().map(|(delay, _)| *delay);
            tokio::select! {
                changed = latest.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
                _ = leadership.changed() => {}
                _ = tokio::time::sleep(delay.unwrap_or_default()), if delay.is_some() => {}
            }
            if !leadership.is_leader() {
                synced = None;
                retry = None;
                continue;
            }
            let Some(want) = latest.borrow_and_update().clone() else {
                continue;
            };
            if synced.as_ref().is_some_and(|done| Arc::ptr_eq(done, &want)) {
                continue;
            }
            match self.try_sync(&want, &leadership).await {
                Ok(()) => {
                    if retry.take().is_some() {
                        tracing::info!("rules handed to Prometheus again");
                    }
                    synced = Some(want);
                }
                Err(error) => {
                    let delay = match retry.take() {
                        Some((delay, previous)) => {
                            if previous != error {
                                tracing::error!("{error}; retrying");
                            }
                            (delay * 2).min(MAX_RETRY_AFTER)
                        }
                        None => {
                            tracing::error!("{error}; retrying");
                            FIRST_RETRY_AFTER
                        }
                    };
                    retry = Some((delay, error));
                }
            }
        }
    }
}

const FIRST_RETRY_AFTER: Duration = Duration::from_secs(2);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// `Err` once this replica may no longer write.
fn fence(leadership: &Leadership) -> Result<(), RulesSyncError> {
    if leadership.is_leader() {
        Ok(())
    } else {
        Err(RulesSyncError::NotLeading)
    }
}

async fn sync_prometheus_rules(
    client: &kube::Client,
    namespace: &str,
    labels: &BTreeMap<String, String>,
    rules: &RuleGroups,
    leadership: &Leadership,
) -> Result<(), RulesSyncError> {
    let resource = prometheus_rule_resource();
    let all: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    // Ours anywhere, so objects left in a namespace used before are found too.
    let owned = match all
        .list(&ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)))
        .await
    {
        Ok(list) => list.items,
        Err(kube::Error::Api(status)) if status.code == 404 => {
            if rules.is_empty() {
                return Ok(());
            }
            return Err(RulesSyncError::NoPrometheusRuleCrd);
        }
        Err(error) => return Err(RulesSyncError::List(error.to_string())),
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let mut wanted = BTreeSet::new();
    // One object the API server refuses must not keep the others from Prometheus: every
    // object is tried, and the refusals are reported together.
    let mut failures = Vec::new();
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
        fence(leadership)?;
        if let Err(e) = api
            .patch(
                &name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&object),
            )
            .await
        {
            failures.push(format!(
                "cannot write PrometheusRule {namespace}/{name}: {e}"
            ));
        }
        // Kept even when refused: an older version of it is still wanted over none.
        wanted.insert((namespace.to_string(), name));
    }
    for object in owned {
        let key = (
            object.metadata.namespace.clone().unwrap_or_default(),
            object.metadata.name.clone().unwrap_or_default(),
        );
        if wanted.contains(&key) {
            continue;
        }
        let (orphan_namespace, name) = key;
        // Re-checked before each deletion: a replica that lost the Lease mid-loop must not
        // delete what the new leader has just written.
        fence(leadership)?;
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), &orphan_namespace, &resource);
        match api.delete(&name, &DeleteParams::default()).await {
            Ok(_) => {
                tracing::info!(namespace = %orphan_namespace, %name, "deleted orphaned PrometheusRule")
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {}
            Err(e) => failures.push(format!(
                "cannot delete orphaned PrometheusRule {orphan_namespace}/{name}: {e}"
            )),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err(RulesSyncError::Objects(failures))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::DefinitionKind;
    use crate::kubernetes::mock_api::{Exchange, scripted, status};
    use http::Method;
    use serde_json::json;

    const OWNED: &str = "/apis/monitoring.coreos.com/v1/prometheusrules?&labelSelector=app.kubernetes.io%2Fmanaged-by%3Dmetrics-registry";

    fn output(client: kube::Client) -> RulesOutput {
        RulesOutput::PrometheusRules {
            client,
            namespace: "monitoring".into(),
            labels: [("prometheus".to_string(), "main".to_string())].into(),
        }
    }

    fn rules(name: &str) -> RuleGroups {
        let id = DefinitionId {
            kind: DefinitionKind::CustomPrometheusRules,
            namespace: None,
            name: name.into(),
        };
        let groups: Vec<RuleGroup> = serde_json::from_value(json!([
            {"name": "sqs", "rules": [{"record": "kube_adapter_metric_sqs", "expr": "sum(x) by (queue)"}]}
        ]))
        .unwrap();
        [(id, groups)].into()
    }

    fn listed(items: &[(&str, &str)]) -> serde_json::Value {
        json!({
            "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRuleList",
            "metadata": {"resourceVersion": "1"},
            "items": items.iter().map(|(namespace, name)| json!({
                "apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                "metadata": {"name": name, "namespace": namespace},
            })).collect::<Vec<_>>(),
        })
    }

    #[tokio::test]
    async fn writes_ours_by_server_side_apply_and_deletes_orphans_wherever_they_are() {
        let (client, played) = scripted(vec![
            Exchange::new(
                Method::GET,
                OWNED,
                200,
                listed(&[("monitoring", "metrics-registry-sqs"), ("old", "metrics-registry-gone")]),
            ),
            Exchange::new(
                Method::PATCH,
                "/apis/monitoring.coreos.com/v1/namespaces/monitoring/prometheusrules/metrics-registry-sqs?&force=true&fieldManager=metrics-registry",
                200,
                json!({}),
            )
            .with_body(|body| {
                assert_eq!(body["kind"], "PrometheusRule");
                assert_eq!(body["metadata"]["labels"]["prometheus"], "main");
                assert_eq!(body["metadata"]["labels"]["app.kubernetes.io/managed-by"], "metrics-registry");
                assert_eq!(body["spec"]["groups"][0]["rules"][0]["record"], "kube_adapter_metric_sqs");
            }),
            Exchange::new(
                Method::DELETE,
                "/apis/monitoring.coreos.com/v1/namespaces/old/prometheusrules/metrics-registry-gone?",
                200,
                json!({}),
            ),
        ]);
        assert_eq!(
            output(client)
                .try_sync(&rules("sqs"), &Leadership::Always)
                .await,
            Ok(())
        );
        played.await.expect("every expected request, nothing else");
    }

    #[tokio::test]
    async fn no_write_or_deletion_is_sent_past_the_renew_deadline() {
        let (held, receiver) =
            watch::channel(Some(tokio::time::Instant::now() + Duration::from_secs(60)));
        let leadership = Leadership::Elected(receiver);
        let (client, played) = scripted(vec![
            Exchange::new(
                Method::GET,
                OWNED,
                200,
                listed(&[("old", "metrics-registry-a"), ("old", "metrics-registry-b")]),
            ),
            // While this write is in flight the renew deadline passes.
            Exchange::new(
                Method::PATCH,
                "/apis/monitoring.coreos.com/v1/namespaces/monitoring/prometheusrules/metrics-registry-sqs?&force=true&fieldManager=metrics-registry",
                200,
                json!({}),
            )
            .with_body(move |_| {
                held.send_replace(Some(tokio::time::Instant::now()));
            }),
        ]);
        let error = output(client)
            .try_sync(&rules("sqs"), &leadership)
            .await
            .unwrap_err();
        // Stopped at the fence: no orphan deletion was even tried (the mock would have
        // refused it).
        assert_eq!(error, RulesSyncError::NotLeading);
        played.await.expect("the list and the write, nothing after");

        // Already past the deadline: not even the list.
        let (client, played) = scripted(vec![]);
        let expired = Leadership::Elected(watch::channel(Some(tokio::time::Instant::now())).1);
        assert!(
            output(client)
                .try_sync(&rules("sqs"), &expired)
                .await
                .is_err()
        );
        played.await.expect("no request");
    }

    #[tokio::test]
    async fn without_the_crd_nothing_to_do_is_fine_and_rules_to_hand_over_are_an_error() {
        let (client, played) = scripted(vec![Exchange::new(
            Method::GET,
            OWNED,
            404,
            status(404, "NotFound"),
        )]);
        assert_eq!(
            output(client)
                .try_sync(&RuleGroups::new(), &Leadership::Always)
                .await,
            Ok(())
        );
        played.await.expect("one list");

        let (client, played) = scripted(vec![Exchange::new(
            Method::GET,
            OWNED,
            404,
            status(404, "NotFound"),
        )]);
        let error = output(client)
            .try_sync(&rules("sqs"), &Leadership::Always)
            .await
            .unwrap_err();
        assert_eq!(error, RulesSyncError::NoPrometheusRuleCrd);
        played.await.expect("one list, no write");
    }
}
