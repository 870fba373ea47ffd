//! Watches kube-system/extension-apiserver-authentication and applies it live: the
//! front-proxy CA and header names to the guard, the client CAs to the TLS config.

use crate::kubernetes::backoff::WatchBackoff;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use metrics_registry_apiserver::auth::{
    AuthenticationConfig, CONFIGMAP_NAME, CONFIGMAP_NAMESPACE, Guard,
};
use metrics_registry_apiserver::telemetry::SelfMetrics;
use metrics_registry_apiserver::tls::ReloadableTls;
use std::sync::Arc;
use std::time::Duration;

/// Reads the ConfigMap once (so the server starts with a working config), then keeps it current.
pub async fn load(client: &kube::Client) -> anyhow::Result<AuthenticationConfig> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), CONFIGMAP_NAMESPACE);
    let configmap = api.get(CONFIGMAP_NAME).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot read {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME} (bind the Role extension-apiserver-authentication-reader): {e}"
        )
    })?;
    Ok(AuthenticationConfig::from_configmap_data(
        &configmap.data.unwrap_or_default(),
    )?)
}

pub fn spawn_watch(
    client: kube::Client,
    guard: Arc<Guard>,
    tls: Arc<ReloadableTls>,
    metrics: Arc<SelfMetrics>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let api: Api<ConfigMap> = Api::namespaced(client, CONFIGMAP_NAMESPACE);
        let config = watcher::Config::default().fields(&format!("metadata.name={CONFIGMAP_NAME}"));
        let mut stream = watcher(api, config)
            .backoff(WatchBackoff::default())
            .applied_objects()
            .boxed();
        while let Some(item) = stream.next().await {
            match item {
                Ok(configmap) => match AuthenticationConfig::from_configmap_data(
                    &configmap.data.unwrap_or_default(),
                ) {
                    Ok(config) => {
                        let bundle = config.client_ca_bundle();
                        if let Err(error) = tls.set_client_ca(bundle) {
                            tracing::error!("keeping the previous client CAs: {error}");
                            continue;
                        }
                        if let Err(error) = guard.set_config(config) {
                            tracing::error!("keeping the previous authentication config: {error}");
                            continue;
                        }
                        tracing::info!(
                            "authentication config loaded from {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}"
                        );
                    }
                    Err(error) => {
                        tracing::error!("keeping the previous authentication config: {error}")
                    }
                },
                Err(error) => {
                    metrics.watch_restarted("configmaps");
                    tracing::warn!("watching {CONFIGMAP_NAMESPACE}/{CONFIGMAP_NAME}: {error}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubernetes::mock_api::{Exchange, scripted, status};
    use http::Method;
    use serde_json::json;

    const CONFIGMAP: &str =
        "/api/v1/namespaces/kube-system/configmaps/extension-apiserver-authentication";

    #[tokio::test]
    async fn reads_the_authentication_configmap_and_names_the_missing_role() {
        let (client, played) = scripted(vec![Exchange::new(
            Method::GET,
            CONFIGMAP,
            200,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "extension-apiserver-authentication", "namespace": "kube-system"},
                   "data": {"requestheader-allowed-names": "[\"front-proxy-client\"]",
                            "requestheader-username-headers": "[\"X-Remote-User\"]",
                            "requestheader-group-headers": "[\"X-Remote-Group\"]"}}),
        )]);
        let config = load(&client).await.unwrap();
        // No CA in the map: front-proxy authentication is off, not misconfigured.
        assert!(config.request_header.is_none());
        assert!(config.client_ca_pem.is_none());
        played.await.expect("one read");

        let (client, played) = scripted(vec![Exchange::new(
            Method::GET,
            CONFIGMAP,
            403,
            status(403, "Forbidden"),
        )]);
        let error = load(&client).await.unwrap_err().to_string();
        assert!(
            error.contains("extension-apiserver-authentication-reader"),
            "{error}"
        );
        played.await.expect("one read");
    }
}
