//! `scripts/local-cluster.sh`: the test cluster to try metrics-registry on by hand, as
//! docs/getting-started.md does. Starts the real control plane and node the end-to-end
//! tests use (metrics-registry's image imported into the node), a "demo app" exporter
//! whose queue length is the number in a file, and a Prometheus scraping it that pods can
//! reach; then runs a shell with `kubectl` and `helm` pointed at the cluster. When the
//! shell exits, everything stops and the shell's exit code is this program's.
//!
//! Standard input that is not a terminal is read by the shell as a script (the
//! getting-started test feeds the guide's commands this way).

use anyhow::{Context, bail};
use axum::Router;
use axum::extract::State;
use axum::routing::get;
use metrics_registry_tests::control_plane::{
    ControlPlane, ControlPlaneOptions, binary_dir, product_image,
};
use metrics_registry_tests::prometheus::{Prometheus, PrometheusOptions};
use std::io::IsTerminal;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// The series the demo app exports, as an app instrumented for Prometheus would, with the
/// `namespace` and `service` labels Prometheus' Kubernetes discovery would add.
const SERIES: &str = "demo_queue_messages";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("local-cluster: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<ExitCode> {
    metrics_registry_tests::init_test_logging();
    let bin_dir = binary_dir().await?;
    if !bin_dir.join("kubectl").is_file() {
        bail!(
            "kubectl not found in {}: build it with scripts/build-kubectl.sh",
            bin_dir.display()
        );
    }
    let image = product_image().await?;
    let work = tempfile::Builder::new()
        .prefix("local-cluster-")
        .tempdir()?;
    let queue_file = work.path().join("queue-messages");
    std::fs::write(&queue_file, "0\n")?;

    eprintln!(
        "starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler and a node (containerd + kubelet)…"
    );
    let control_plane = ControlPlane::start(ControlPlaneOptions {
        node: true,
        images: vec![image],
        ..ControlPlaneOptions::default()
    })
    .await?;
    let node_ip = control_plane.network().context("a node's network")?.node_ip;
    let demo = serve_demo_app(queue_file.clone()).await?;
    let prometheus = Prometheus::start(PrometheusOptions {
        targets: vec![demo],
        listen_ip: node_ip,
        ..PrometheusOptions::default()
    })
    .await?;
    prometheus
        .wait_for_series(SERIES, Duration::from_secs(30))
        .await?;

    let code = shell(
        &control_plane,
        &bin_dir,
        &prometheus,
        &queue_file,
        work.path(),
    )
    .await;
    eprintln!("stopping the local cluster…");
    drop(prometheus);
    control_plane.shutdown().await;
    code
}

/// Serves the demo app's `/metrics` on loopback (Prometheus runs beside it): the queue
/// `jobs` of Service `worker` in namespace `demo` holds as many messages as the file says.
async fn serve_demo_app(queue_file: PathBuf) -> anyhow::Result<std::net::SocketAddr> {
    async fn metrics(State(file): State<PathBuf>) -> String {
        let messages: f64 = std::fs::read_to_string(&file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0.0);
        format!(
            "# TYPE {SERIES} gauge\n{SERIES}{{namespace=\"demo\",service=\"worker\",queue=\"jobs\"}} {messages}\n"
        )
    }
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(queue_file);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

/// Runs the shell until it exits; its exit code.
async fn shell(
    control_plane: &ControlPlane,
    bin_dir: &Path,
    prometheus: &Prometheus,
    queue_file: &Path,
    work: &Path,
) -> anyhow::Result<ExitCode> {
    let path = std::env::join_paths(std::iter::once(bin_dir.to_path_buf()).chain(
        std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()),
    ))?;
    let rc = work.join("bashrc");
    std::fs::write(
        &rc,
        "PS1='(local-cluster) \\w\\$ '\n\
         echo 'kubectl and helm talk to the local cluster; $PROMETHEUS_URL is its Prometheus,'\n\
         echo '$DEMO_QUEUE_FILE holds the demo queue length. `exit` stops everything.'\n",
    )?;
    let interactive = std::io::stdin().is_terminal();
    let mut command = tokio::process::Command::new("bash");
    if interactive {
        command.arg("--rcfile").arg(&rc).arg("-i");
    }
    command
        .env("PATH", path)
        .env("KUBECONFIG", control_plane.kubeconfig_path())
        .env("PROMETHEUS_URL", prometheus.url())
        .env("DEMO_QUEUE_FILE", queue_file)
        // helm keeps its caches with the cluster, not in the home folder.
        .env("HELM_CACHE_HOME", work.join("helm/cache"))
        .env("HELM_CONFIG_HOME", work.join("helm/config"))
        .env("HELM_DATA_HOME", work.join("helm/data"));
    eprintln!(
        "local cluster up: kube-apiserver {}, Prometheus {}",
        control_plane.server_url(),
        prometheus.url()
    );
    let mut child = command.spawn().context("starting bash")?;
    // Ctrl-C belongs to the shell and what it runs, not to the cluster underneath.
    let status = loop {
        tokio::select! {
            status = child.wait() => break status?,
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}
