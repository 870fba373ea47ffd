//! A real Kubernetes control plane — etcd, kube-apiserver, kube-controller-manager — for
//! one test, with its own PKI in a tempdir; with [`ControlPlaneOptions::node`], also
//! kube-scheduler and a real node (containerd and the kubelet) running pods from locally
//! built images, on private addresses of the test run's network namespace.
//!
//! Without a node the control plane listens on loopback and runs anywhere; pods are then
//! objects only, which is enough for tests of the API (RBAC, discovery, object caches).

mod certs;
mod components;
pub mod network;
pub mod node;
pub(crate) mod process;
pub(crate) mod scripts;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use tempfile::TempDir;

pub use certs::{
    CertAuthority, CertFiles, ClusterCerts, FRONT_PROXY_CLIENT_CN, foreign_client_cert,
};
pub use network::{ClusterNetwork, in_test_network_namespace, node_unavailable_reason};
pub use node::{Node, PAUSE_IMAGE, WORKLOAD_IMAGE};
pub use scripts::{binary_dir, keep_only_build_env, product_image, test_images};

use process::Process;

pub const ETCD: &str = "etcd";
pub const KUBE_APISERVER: &str = "kube-apiserver";
pub const KUBE_CONTROLLER_MANAGER: &str = "kube-controller-manager";
pub const KUBE_SCHEDULER: &str = "kube-scheduler";
const ADMIN_USER: &str = "admin";

pub struct ControlPlaneOptions {
    /// `--horizontal-pod-autoscaler-sync-period`; the default of 15s would make HPA tests slow.
    pub hpa_sync_period: Duration,
    /// Appended to the kube-apiserver command line. Repeating a single-valued flag overrides
    /// the harness's value; repeating a list flag adds to it.
    pub extra_apiserver_args: Vec<String>,
    /// A real node (kube-scheduler, containerd, kubelet) and private addresses; needs the
    /// test run's network namespace (see `network`).
    pub node: bool,
    /// Image archives to import into the node besides the pause and workload images.
    pub images: Vec<PathBuf>,
}

impl Default for ControlPlaneOptions {
    fn default() -> Self {
        ControlPlaneOptions {
            hpa_sync_period: Duration::from_secs(1),
            extra_apiserver_args: Vec::new(),
            node: false,
            images: Vec::new(),
        }
    }
}

/// How long each start-up phase took.
#[derive(Clone, Copy, Debug, Default)]
pub struct BootTimings {
    /// Certificates generated and etcd answering `/health`.
    pub etcd: Duration,
    /// kube-apiserver answering `/readyz` with 200.
    pub apiserver: Duration,
    /// kube-controller-manager started and the `default` ServiceAccount created by it.
    pub controller_manager: Duration,
    /// kube-scheduler, containerd and the kubelet started, images imported, Node Ready.
    pub node: Duration,
}

impl BootTimings {
    pub fn total(&self) -> Duration {
        self.etcd + self.apiserver + self.controller_manager + self.node
    }
}

pub struct ControlPlane {
    // The node goes first: its pods need the API server to be deleted properly.
    node: Option<Node>,
    // Stopped in reverse start order by Drop: scheduler, controller-manager, apiserver, etcd.
    processes: Vec<Process>,
    certs: ClusterCerts,
    etcd_url: String,
    apiserver_addr: SocketAddr,
    admin_kubeconfig: PathBuf,
    timings: BootTimings,
    next_user: AtomicUsize,
    // Addresses are removed once every process that used them is gone.
    network: Option<ClusterNetwork>,
    /// What kube-apiserver was started with, to start it again.
    apiserver_command: Option<(PathBuf, Vec<String>)>,
    // Declared last so the processes are gone before their data is deleted.
    dir: TempDir,
}

impl ControlPlane {
    /// Generates certificates, starts etcd and kube-apiserver, waits for `/readyz` (as
    /// admin), starts kube-controller-manager and waits until it has created the `default`
    /// ServiceAccount, without which pods cannot be created. Errors carry the tail of the
    /// failing component's log.
    pub async fn start(options: ControlPlaneOptions) -> anyhow::Result<ControlPlane> {
        metrics_registry::install_crypto_provider();
        let bin_dir = binary_dir().await?;
        let dir = tempfile::Builder::new()
            .prefix("control-plane-")
            .tempdir()
            .context("creating the control-plane tempdir")?;
        let started = Instant::now();
        let network = if options.node {
            Some(ClusterNetwork::allocate()?)
        } else {
            None
        };
        let extra_ips: Vec<String> = network.iter().map(|n| n.apiserver_ip.to_string()).collect();
        let certs = ClusterCerts::generate(&dir.path().join("pki"), &extra_ips)?;
        let mut plane = ControlPlane {
            node: None,
            processes: Vec::new(),
            certs,
            etcd_url: String::new(),
            apiserver_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            admin_kubeconfig: dir.path().join("admin.kubeconfig"),
            timings: BootTimings::default(),
            next_user: AtomicUsize::new(0),
            network,
            apiserver_command: None,
            dir,
        };

        plane.start_etcd(&bin_dir).await?;
        plane.timings.etcd = started.elapsed();

        let phase = Instant::now();
        plane.start_apiserver(&bin_dir, &options).await?;
        plane.timings.apiserver = phase.elapsed();

        let phase = Instant::now();
        plane.start_controller_manager(&bin_dir, &options).await?;
        plane.timings.controller_manager = phase.elapsed();

        if plane.network.is_some() {
            let phase = Instant::now();
            plane.start_scheduler(&bin_dir).await?;
            let mut images = test_images().await?;
            images.extend(options.images.iter().cloned());
            let node = Node::start(node::NodeSetup {
                dir: plane.dir.path(),
                bin_dir: &bin_dir,
                network: plane.network.as_ref().expect("network"),
                certs: &plane.certs,
                server_url: plane.server_url(),
                admin: plane.admin_client().await?,
                images: &images,
            })
            .await?;
            plane.node = Some(node);
            plane.timings.node = phase.elapsed();
        }

        tracing::info!(url = %plane.server_url(), timings = ?plane.timings, "control plane ready");
        Ok(plane)
    }

    /// `https://127.0.0.1:PORT`
    pub fn server_url(&self) -> String {
        format!("https://{}", self.apiserver_addr)
    }

    pub fn apiserver_addr(&self) -> SocketAddr {
        self.apiserver_addr
    }

    /// `http://127.0.0.1:PORT`, for tests that look at what the apiserver stored.
    pub fn etcd_url(&self) -> &str {
        &self.etcd_url
    }

    /// Admin kubeconfig (client certificate in group `system:masters`); works with kubectl.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.admin_kubeconfig
    }

    /// The tempdir with `pki/`, `etcd-data/`, the kubeconfigs and one log per component.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn certs(&self) -> &ClusterCerts {
        &self.certs
    }

    pub fn timings(&self) -> BootTimings {
        self.timings
    }

    /// The private addresses of a cluster with a node.
    pub fn network(&self) -> Option<&ClusterNetwork> {
        self.network.as_ref()
    }

    pub fn node(&self) -> Option<&Node> {
        self.node.as_ref()
    }

    /// Stops the cluster the way an operator would: the controller-manager first (so
    /// nothing recreates pods), then every pod through the API (the kubelet tears down
    /// sandboxes, network namespaces and mounts), then the rest.
    pub async fn shutdown(mut self) {
        if let Some(node) = &self.node {
            if let Some(position) = self
                .processes
                .iter()
                .position(|p| p.name() == KUBE_CONTROLLER_MANAGER)
            {
                self.processes[position].stop();
            }
            if let Ok(admin) = self.admin_client().await {
                node.drain(&admin).await;
            }
        }
        drop(self);
    }

    pub async fn admin_client(&self) -> anyhow::Result<kube::Client> {
        client_from_kubeconfig(self.kubeconfig_path()).await
    }

    /// A client authenticated by a client certificate for `user` in `groups` (at most two),
    /// signed by the cluster CA — for RBAC tests.
    pub async fn client_for(&self, user: &str, groups: &[&str]) -> anyhow::Result<kube::Client> {
        kube::Client::try_from(self.config_for(user, groups).await?)
            .context("building a kube client")
    }

    /// The client configuration behind [`Self::client_for`].
    pub async fn config_for(&self, user: &str, groups: &[&str]) -> anyhow::Result<kube::Config> {
        let (cert_pem, key_pem) =
            self.certs
                .sign_client_cert(CertAuthority::Cluster, user, groups)?;
        // Users may contain ':' (system:serviceaccount:...); the files only need to be unique.
        let stem = format!("user-{}", self.next_user.fetch_add(1, Ordering::Relaxed));
        let users = self.dir.path().join("users");
        std::fs::create_dir_all(&users)?;
        let files = CertFiles {
            cert_path: users.join(format!("{stem}.crt")),
            key_path: users.join(format!("{stem}.key")),
            cert_pem,
            key_pem,
        };
        std::fs::write(&files.cert_path, &files.cert_pem)?;
        std::fs::write(&files.key_path, &files.key_pem)?;
        let kubeconfig = users.join(format!("{stem}.kubeconfig"));
        self.write_kubeconfig(&kubeconfig, user, &files)?;
        config_from_kubeconfig(&kubeconfig).await
    }

    /// The admin's client configuration (`system:masters`).
    pub async fn admin_config(&self) -> anyhow::Result<kube::Config> {
        config_from_kubeconfig(self.kubeconfig_path()).await
    }

    /// The last `lines` lines of `etcd`, `kube-apiserver` or `kube-controller-manager`'s log.
    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        process::log_tail(&self.log_path(component), lines)
    }

    pub fn log_path(&self, component: &str) -> PathBuf {
        self.dir.path().join(format!("{component}.log"))
    }

    fn write_kubeconfig(&self, path: &Path, user: &str, files: &CertFiles) -> anyhow::Result<()> {
        // JSON is valid YAML, and serde_json quotes what needs quoting.
        let kubeconfig = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{
                "name": "test",
                "cluster": {
                    "server": self.server_url(),
                    "certificate-authority": self.certs.ca_cert_path,
                },
            }],
            "users": [{
                "name": user,
                "user": {
                    "client-certificate": files.cert_path,
                    "client-key": files.key_path,
                },
            }],
            "contexts": [{
                "name": "test",
                "context": {"cluster": "test", "user": user, "namespace": "default"},
            }],
            "current-context": "test",
        });
        std::fs::write(path, serde_json::to_string_pretty(&kubeconfig)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if let Some(mut node) = self.node.take() {
            node.stop();
        }
        while let Some(mut process) = self.processes.pop() {
            process.stop();
        }
    }
}

async fn client_from_kubeconfig(path: &Path) -> anyhow::Result<kube::Client> {
    kube::Client::try_from(config_from_kubeconfig(path).await?).context("building a kube client")
}

async fn config_from_kubeconfig(path: &Path) -> anyhow::Result<kube::Config> {
    metrics_registry::install_crypto_provider();
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("loading {}", path.display()))
}
