//! Side by side: prometheus-adapter and metrics-registry (cluster mode, in process) on one
//! control plane and one Prometheus, called the same way, with their answers compared.

use metrics_registry_apiserver::upstream::QueryOptions;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use metrics_registry::compiler::CompileOptions;
use metrics_registry::run::{ClusterMode, KubeClients, PrometheusConfig};
use metrics_registry_apiserver::serve::ServeLimits;
use serde_json::Value;
use tempfile::TempDir;

use crate::control_plane::{ControlPlane, FRONT_PROXY_CLIENT_CN};
use crate::registry::Answer;

/// Calls both servers as kube-apiserver's aggregator would: it trusts the cluster CA and
/// presents the front-proxy client certificate with `X-Remote-User`/`X-Remote-Group:
/// system:masters`, since neither server lets authorization be switched off.
pub struct MetricsClient {
    http: reqwest::Client,
}

impl MetricsClient {
    pub fn new(plane: &ControlPlane) -> anyhow::Result<MetricsClient> {
        metrics_registry::install_crypto_provider();
        let certs = plane.certs();
        let ca = reqwest::Certificate::from_pem(certs.ca_cert_pem.as_bytes())?;
        let proxy = &certs.front_proxy_client;
        let identity =
            reqwest::Identity::from_pem(format!("{}{}", proxy.cert_pem, proxy.key_pem).as_bytes())?;
        let http = reqwest::Client::builder()
            .tls_certs_only([ca])
            .identity(identity)
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(MetricsClient { http })
    }

    pub async fn get(&self, base: &str, path: &str) -> anyhow::Result<Answer> {
        let response = self
            .http
            .get(format!("{base}{path}"))
            .header("X-Remote-User", FRONT_PROXY_CLIENT_CN)
            .header("X-Remote-Group", "system:masters")
            .send()
            .await
            .with_context(|| format!("GET {base}{path}"))?;
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { status, body })
    }
}

/// metrics-registry in cluster mode, watching definitions in the control plane, serving
/// HTTPS with a certificate from the cluster CA and writing CustomPrometheusRules as rule
/// files for the test's Prometheus.
pub struct ClusterRegistry {
    base: String,
    server: tokio::task::JoinHandle<anyhow::Result<()>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: TempDir,
}

impl ClusterRegistry {
    pub async fn start(
        plane: &ControlPlane,
        admin: &kube::Client,
        prometheus_url: &str,
        rules_dir: PathBuf,
        client: &MetricsClient,
    ) -> anyhow::Result<ClusterRegistry> {
        crate::cluster_mode::install_crds(admin).await?;
        let dir = tempfile::tempdir()?;
        let tls = plane
            .certs()
            .write_loopback_serving_cert("metrics-registry", dir.path())?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let base = format!("https://127.0.0.1:{}", listener.local_addr()?.port());
        let mode = ClusterMode {
            kube: KubeClients::from_config(plane.admin_config().await?, Duration::from_secs(10))?,
            prometheus: PrometheusConfig::new(prometheus_url),
            queries: QueryOptions::default(),
            options: CompileOptions::default(),
            external_refresh: Duration::from_secs(1),
            rules_dir: Some(rules_dir),
            prometheus_rules: None,
            tls_files: Some(tls),
            tls_hosts: vec![],
            apiservice: None,
            register_resource_metrics: false,
            leader_election: None,
            limits: ServeLimits {
                shutdown_grace: Duration::from_secs(2),
                ..ServeLimits::default()
            },
            shutdown_delay: Duration::ZERO,
            auth_cache: Default::default(),
            secrets_namespace: "metrics-registry".into(),
        };
        let (shutdown, signal) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(mode.serve(listener, async move {
            let _ = signal.await;
        }));
        let registry = ClusterRegistry {
            base,
            server,
            shutdown: Some(shutdown),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(answer) = client.get(&registry.base, "/readyz").await
                && answer.status == 200
            {
                return Ok(registry);
            }
            if registry.server.is_finished() {
                bail!("metrics-registry stopped before it was ready");
            }
            if Instant::now() > deadline {
                bail!("metrics-registry not ready within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }
}

impl Drop for ClusterRegistry {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.server.abort();
    }
}

/// A Kubernetes quantity in milli-units (`102312m`, `2`, `2k`); `None` for other forms.
pub fn milli(quantity: &str) -> Option<i128> {
    let split = quantity
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(quantity.len());
    let (number, suffix) = quantity.split_at(split);
    let number: i128 = number.parse().ok()?;
    let scale: i128 = match suffix {
        "m" => 1,
        "" => 1_000,
        "k" => 1_000_000,
        "M" => 1_000_000_000,
        "G" => 1_000_000_000_000,
        "T" => 1_000_000_000_000_000,
        _ => return None,
    };
    Some(number * scale)
}

/// Resource/metric pairs an `APIResourceList` lists (`pods/http_requests`, …).
pub fn discovery(answer: &Answer) -> BTreeSet<String> {
    answer.body["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect()
}

/// Compares two `MetricValueList` answers: the same status, and for 200 the same objects
/// (kind, namespace, name) with the same metric name and the same value. Returns what
/// both answered, or every difference.
pub fn compare_custom(adapter: &Answer, ours: &Answer) -> Result<String, String> {
    if adapter.status != 200 || ours.status != 200 {
        return if adapter.status == ours.status {
            Ok(format!("both {}", adapter.status))
        } else {
            Err(format!(
                "adapter {} {}; metrics-registry {} {}",
                adapter.status, adapter.body, ours.status, ours.body
            ))
        };
    }
    let items = |answer: &Answer| -> BTreeMap<String, (String, Option<i128>)> {
        answer.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                let object = &item["describedObject"];
                let metric = item["metricName"]
                    .as_str()
                    .or(item["metric"]["name"].as_str())
                    .unwrap_or("?");
                (
                    format!(
                        "{} {}/{}",
                        object["kind"].as_str().unwrap_or("?"),
                        object["namespace"].as_str().unwrap_or(""),
                        object["name"].as_str().unwrap_or("?")
                    ),
                    (
                        format!("{metric}={}", item["value"].as_str().unwrap_or("?")),
                        item["value"].as_str().and_then(milli),
                    ),
                )
            })
            .collect()
    };
    let (theirs, mine) = (items(adapter), items(ours));
    let same = theirs.len() == mine.len()
        && theirs.iter().all(|(object, (text, value))| {
            mine.get(object).is_some_and(|(own_text, own_value)| {
                value.is_some() && value == own_value && metric_of(text) == metric_of(own_text)
            })
        });
    let shown = |items: &BTreeMap<String, (String, Option<i128>)>| {
        items
            .iter()
            .map(|(object, (text, _))| format!("{object} {text}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if same && !theirs.is_empty() {
        Ok(shown(&theirs))
    } else {
        Err(format!(
            "adapter [{}]; metrics-registry [{}]",
            shown(&theirs),
            shown(&mine)
        ))
    }
}

fn metric_of(text: &str) -> &str {
    text.split('=').next().unwrap_or_default()
}

/// Compares two `ExternalMetricValueList` answers: the same values for the same label
/// sets, ignoring in metrics-registry's answer the labels in `kept` (labels its recording
/// rule keeps so an HPA selector can do what the adapter did by itself).
pub fn compare_external(adapter: &Answer, ours: &Answer, kept: &[&str]) -> Result<String, String> {
    if adapter.status != 200 || ours.status != 200 {
        return Err(format!(
            "adapter {} {}; metrics-registry {} {}",
            adapter.status, adapter.body, ours.status, ours.body
        ));
    }
    let items = |answer: &Answer, drop: &[&str]| -> Vec<(String, Option<i128>)> {
        let mut items: Vec<_> = answer.body["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                let labels: BTreeMap<String, String> = item["metricLabels"]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .filter(|(k, _)| !drop.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                (
                    format!("{labels:?}={}", item["value"].as_str().unwrap_or("?")),
                    item["value"].as_str().and_then(milli),
                )
            })
            .collect();
        items.sort();
        items
    };
    let (theirs, mine) = (items(adapter, &[]), items(ours, kept));
    let shown = |items: &[(String, Option<i128>)]| {
        items
            .iter()
            .map(|(text, _)| text.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let same = theirs.len() == mine.len()
        && theirs.iter().zip(&mine).all(|(a, b)| {
            a.1.is_some() && a.1 == b.1 && a.0.split('=').next() == b.0.split('=').next()
        });
    if same && !theirs.is_empty() {
        Ok(shown(&theirs))
    } else {
        Err(format!(
            "adapter [{}]; metrics-registry [{}]",
            shown(&theirs),
            shown(&mine)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn answer(status: u16, body: Value) -> Answer {
        Answer { status, body }
    }

    #[test]
    fn quantities_in_milli() {
        assert_eq!(milli("102312m"), Some(102_312));
        assert_eq!(milli("2"), Some(2_000));
        assert_eq!(milli("2k"), Some(2_000_000));
        assert_eq!(milli("-5m"), Some(-5));
        assert_eq!(milli("1.5"), None);
    }

    #[test]
    fn custom_answers_must_match_object_by_object() {
        let list = |value: &str| {
            answer(
                200,
                json!({"items": [{"describedObject": {"kind": "Pod", "namespace": "n", "name": "p"}, "metricName": "m", "value": value}]}),
            )
        };
        assert!(compare_custom(&list("2"), &list("2000m")).is_ok());
        assert!(compare_custom(&list("2"), &list("2001m")).is_err());
        assert!(compare_custom(&answer(404, json!({})), &answer(404, json!({}))).is_ok());
        assert!(compare_custom(&answer(404, json!({})), &list("1")).is_err());
        let empty = answer(200, json!({"items": []}));
        assert!(
            compare_custom(&empty, &empty).is_err(),
            "nothing compared is no agreement"
        );
    }

    #[test]
    fn external_answers_may_differ_only_in_kept_labels() {
        let adapter = answer(
            200,
            json!({"items": [{"metricLabels": {"name": "a"}, "value": "12"}]}),
        );
        let ours = answer(
            200,
            json!({"items": [{"metricLabels": {"name": "a", "namespace": "q"}, "value": "12"}]}),
        );
        assert!(compare_external(&adapter, &ours, &["namespace"]).is_ok());
        assert!(compare_external(&adapter, &ours, &[]).is_err());
    }
}
