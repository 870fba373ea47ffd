//! Runtime wiring of `metrics-registry run` (and of `uninstall`, which needs the same
//! client set-up).

mod cluster;
mod standalone;

pub use cluster::{ClusterMode, KubeClients};
pub use standalone::Standalone;

use crate::args::{self, RunArgs, UninstallArgs};
use crate::kubernetes::leader::LeaseSettings;
use crate::sinks::apiservice::ServiceTarget;
use crate::uninstall::Uninstall;
use anyhow::{Context, bail};
pub use metrics_registry_apiserver::prometheus::PrometheusConfig;
use std::time::Duration;
use tokio::net::TcpListener;

async fn kube_config(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Config> {
    match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}", path.display()))?;
            Ok(kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?)
        }
        None => kube::Config::infer()
            .await
            .context("no Kubernetes config (in-cluster, $KUBECONFIG or ~/.kube/config)"),
    }
}

/// Holder identity: the pod name (else the host name) and a part unique to this process.
/// A container restarted in the same pod is a new holder: it must not take the Lease of
/// its dead predecessor for its own before that expires.
fn holder_identity(name: Option<&str>) -> String {
    use std::hash::{BuildHasher, Hasher};
    let name = name
        .map(str::to_string)
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "metrics-registry".to_string());
    // RandomState is seeded randomly per process; no extra dependency for a nonce.
    let nonce = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    format!("{name}_{:08x}", nonce as u32)
}

async fn run_cluster(args: RunArgs) -> anyhow::Result<()> {
    let config = kube_config(args.cluster.kubeconfig.as_deref()).await?;
    let tls_files = args
        .serving
        .tls_cert_file
        .clone()
        .zip(args.serving.tls_private_key_file.clone());
    let election = &args.cluster.leader_election;
    let mode = ClusterMode {
        kube: KubeClients::from_config(config, args.cluster.kube_api_timeout)?,
        prometheus: args.prometheus.config(),
        queries: args.prometheus.query_options(),
        options: args.definitions.compile_options(),
        external_refresh: args.prometheus.external_refresh_interval,
        rules_dir: args.definitions.rules_dir.clone(),
        prometheus_rules: Some((
            args.cluster.prometheus_rules_namespace.clone(),
            args.cluster
                .prometheus_rule_labels
                .iter()
                .cloned()
                .collect(),
        )),
        tls_files,
        tls_hosts: args.serving.tls_hosts.clone(),
        register_resource_metrics: args.cluster.register_resource_metrics_apiservice,
        apiservice: args.cluster.register_apiservices.then(|| ServiceTarget {
            namespace: args.cluster.service_namespace.clone(),
            name: args.cluster.service_name.clone(),
            port: args.cluster.service_port,
        }),
        leader_election: election.leader_elect.then(|| LeaseSettings {
            namespace: election.leader_election_namespace.clone(),
            name: election.leader_election_lease.clone(),
            identity: holder_identity(election.leader_election_identity.as_deref()),
            lease_duration: election.leader_election_lease_duration,
            renew_deadline: election.leader_election_renew_deadline,
            retry_period: election.leader_election_retry_period,
        }),
        limits: args.serving.limits(),
        shutdown_delay: args.cluster.shutdown.shutdown_delay,
        auth_cache: args.cluster.auth_cache.ttls(),
        secrets_namespace: args.cluster.service_namespace.clone(),
    };
    let listener = std::net::TcpListener::bind(args.serving.listen)
        .with_context(|| format!("cannot listen on {}", args.serving.listen))?;
    mode.serve(listener, shutdown_signal()).await
}

/// `metrics-registry uninstall`.
pub async fn uninstall(args: UninstallArgs) -> anyhow::Result<()> {
    let config = kube_config(args.kubeconfig.as_deref()).await?;
    let clients = KubeClients::from_config(config, Duration::from_secs(10))?;
    Uninstall {
        client: clients.request,
        namespace: args.namespace,
        deployment: args.deployment,
        lease: args.lease,
        apiservices: args.apiservices,
        timeout: args.timeout,
    }
    .run()
    .await?;
    Ok(())
}

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let Some(manifests) = &args.definitions.manifests else {
        return run_cluster(args).await;
    };
    let Some(addr) = args.serving.insecure_listen else {
        bail!(
            "--manifests mode serves plain HTTP on loopback: pass --insecure-listen 127.0.0.1:PORT"
        );
    };
    let addr = args::require_loopback(addr)?;
    let standalone = Standalone {
        manifests: args::manifests_dir(manifests)?,
        prometheus: args.prometheus.config(),
        queries: args.prometheus.query_options(),
        options: args.definitions.compile_options(),
        external_refresh: args.prometheus.external_refresh_interval,
        rules_dir: args.definitions.rules_dir.clone(),
        secrets_dir: args.definitions.secrets_dir.clone(),
        limits: args.serving.limits(),
    };
    let listener = TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    standalone.serve(listener, shutdown_signal()).await
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down");
}
