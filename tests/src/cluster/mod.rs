//! A real Kubernetes control plane — etcd, kube-apiserver, kube-controller-manager — for
//! one test, with its own PKI in a tempdir; with [`ControlPlaneOptions::node`], also
//! kube-scheduler and a real node (containerd and the kubelet) running pods from locally
//! built images, on private addresses of the test run's network namespace.
//!
//! Without a node, the control plane listens on loopback and [`start_kubelet_standin`]
//! can make pods look Running and Ready (only for tests that run where no network
//! namespace can be made).

mod certs;
mod kubelet;
pub mod network;
pub mod node;
pub(crate) mod process;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;
use tempfile::TempDir;
use tokio::sync::OnceCell;

pub use certs::{
    CertAuthority, CertFiles, ClusterCerts, FRONT_PROXY_CLIENT_CN, foreign_client_cert,
};
pub use kubelet::{FAKE_NODE, KubeletStandin, start_kubelet_standin};
pub use network::{ClusterNetwork, in_test_network_namespace, node_unavailable_reason};
pub use node::{Node, PAUSE_IMAGE, WORKLOAD_IMAGE};

use crate::ports::free_port;
use process::Process;

pub const ETCD: &str = "etcd";
pub const KUBE_APISERVER: &str = "kube-apiserver";
pub const KUBE_CONTROLLER_MANAGER: &str = "kube-controller-manager";
pub const KUBE_SCHEDULER: &str = "kube-scheduler";

const ETCD_TIMEOUT: Duration = Duration::from_secs(30);
// Generous: test binaries boot one cluster per test, in parallel, on small CI machines too.
const APISERVER_TIMEOUT: Duration = Duration::from_secs(90);
const CONTROLLER_MANAGER_TIMEOUT: Duration = Duration::from_secs(90);
const LOG_TAIL_LINES: usize = 40;
// Ports come from `free_port`, so another process can take one before the component binds
// it; only this failure is worth a retry with fresh ports.
const PORT_IN_USE: &str = "address already in use";
const START_ATTEMPTS: usize = 3;
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

    /// Stops kube-apiserver and starts it again on the same address with the same flags —
    /// an upgrade or crash of the control plane as clients see it: connections drop and
    /// watches resume, typically with "too old resource version" (410) and a relist. With
    /// `rotate_front_proxy_ca` it comes back with a new front-proxy CA and client
    /// certificate, which it publishes in kube-system/extension-apiserver-authentication.
    /// Returns how long it was down.
    pub async fn restart_apiserver(
        &mut self,
        rotate_front_proxy_ca: bool,
    ) -> anyhow::Result<Duration> {
        let (bin_dir, args) = self
            .apiserver_command
            .clone()
            .context("kube-apiserver was never started")?;
        let position = self
            .processes
            .iter()
            .position(|p| p.name() == KUBE_APISERVER)
            .context("kube-apiserver is not running")?;
        let started = Instant::now();
        self.processes[position].stop();
        if rotate_front_proxy_ca {
            self.certs.rotate_front_proxy()?;
        }
        let log = self.log_path(KUBE_APISERVER);
        let _ = std::fs::rename(&log, log.with_extension("before-restart.log"));
        let mut apiserver = self.spawn(&bin_dir, KUBE_APISERVER, &args)?;
        let admin_http = admin_http_client(&self.certs)?;
        let readyz = format!("{}/readyz", self.server_url());
        apiserver
            .wait_until(
                "kube-apiserver /readyz after a restart",
                APISERVER_TIMEOUT,
                || apiserver_ready(&admin_http, &readyz),
            )
            .await
            .map_err(|error| failure(&apiserver, error))?;
        self.processes[position] = apiserver;
        Ok(started.elapsed())
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

    async fn start_etcd(&mut self, bin_dir: &Path) -> anyhow::Result<()> {
        let data_dir = self.dir.path().join("etcd-data");
        let mut attempt = 1;
        loop {
            let client_url = format!("http://127.0.0.1:{}", free_port());
            let peer_url = format!("http://127.0.0.1:{}", free_port());
            let args = vec![
                format!("--data-dir={}", data_dir.display()),
                format!("--listen-client-urls={client_url}"),
                format!("--advertise-client-urls={client_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=default={peer_url}"),
                "--name=default".to_owned(),
                "--log-level=warn".to_owned(),
                // Throwaway data: skipping fsync keeps writes fast on slow disks and when
                // several clusters boot at once.
                "--unsafe-no-fsync".to_owned(),
                // A lone member still sits out one election timeout (1 s by default) before it
                // elects itself.
                "--heartbeat-interval=10".to_owned(),
                "--election-timeout=100".to_owned(),
            ];
            let mut etcd = self.spawn(bin_dir, ETCD, &args)?;
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .context("building the HTTP client")?;
            let health = format!("{client_url}/health");
            let ready = etcd
                .wait_until("etcd /health", ETCD_TIMEOUT, || {
                    etcd_healthy(&http, &health)
                })
                .await;
            match ready {
                Ok(()) => {
                    self.etcd_url = client_url;
                    self.processes.push(etcd);
                    return Ok(());
                }
                Err(error) => {
                    etcd.stop();
                    if retry_after_port_clash(&etcd, &mut attempt) {
                        // A half-initialised data dir would pin the old peer URL.
                        let _ = std::fs::remove_dir_all(&data_dir);
                        continue;
                    }
                    return Err(failure(&etcd, error));
                }
            }
        }
    }

    async fn start_apiserver(
        &mut self,
        bin_dir: &Path,
        options: &ControlPlaneOptions,
    ) -> anyhow::Result<()> {
        let certs = &self.certs;
        let cert_dir = self.dir.path().join("apiserver-certs");
        // Plain reqwest rather than a kube client: kube logs every 5xx and refused connection
        // at ERROR, which would bury a test's output under the expected start-up failures.
        let admin_http = admin_http_client(certs)?;
        let mut attempt = 1;
        loop {
            self.apiserver_addr = match &self.network {
                // The `kubernetes` Service's own address and port: pods reach the API as
                // through kube-proxy.
                Some(network) => SocketAddr::from((network.apiserver_ip, 443)),
                None => SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
            };
            let ip = self.apiserver_addr.ip();
            let service_range = self
                .network
                .as_ref()
                .map_or("10.0.0.0/24".to_owned(), |n| n.service_cidr.clone());
            let mut args = vec![
                format!("--etcd-servers={}", self.etcd_url),
                format!("--bind-address={ip}"),
                format!("--advertise-address={ip}"),
                format!("--secure-port={}", self.apiserver_addr.port()),
                format!(
                    "--tls-cert-file={}",
                    certs.apiserver_serving.cert_path.display()
                ),
                format!(
                    "--tls-private-key-file={}",
                    certs.apiserver_serving.key_path.display()
                ),
                format!("--client-ca-file={}", certs.ca_cert_path.display()),
                "--service-account-issuer=https://kubernetes.default.svc".to_owned(),
                format!(
                    "--service-account-key-file={}",
                    certs.service_account_pub_path.display()
                ),
                format!(
                    "--service-account-signing-key-file={}",
                    certs.service_account_key_path.display()
                ),
                format!("--service-cluster-ip-range={service_range}"),
                // The Node authorizer lets kubelets read what their pods need, as in real clusters.
                "--authorization-mode=Node,RBAC".to_owned(),
                format!(
                    "--requestheader-client-ca-file={}",
                    certs.front_proxy_ca_path.display()
                ),
                format!("--requestheader-allowed-names={FRONT_PROXY_CLIENT_CN}"),
                "--requestheader-username-headers=X-Remote-User".to_owned(),
                "--requestheader-group-headers=X-Remote-Group".to_owned(),
                "--requestheader-extra-headers-prefix=X-Remote-Extra-".to_owned(),
                format!(
                    "--proxy-client-cert-file={}",
                    certs.front_proxy_client_cert_path.display()
                ),
                format!(
                    "--proxy-client-key-file={}",
                    certs.front_proxy_client_key_path.display()
                ),
                // With a node, the aggregator dials the endpoints of an APIService's
                // Service (there is no kube-proxy for its ClusterIP); without one, servers
                // run on loopback behind ExternalName Services, dialled as given.
                format!("--enable-aggregator-routing={}", self.network.is_some()),
                format!(
                    "--kubelet-certificate-authority={}",
                    certs.ca_cert_path.display()
                ),
                format!(
                    "--kubelet-client-certificate={}",
                    certs.admin.cert_path.display()
                ),
                format!("--kubelet-client-key={}", certs.admin.key_path.display()),
                "--kubelet-preferred-address-types=InternalIP".to_owned(),
                format!("--cert-dir={}", cert_dir.display()),
                "--v=1".to_owned(),
            ];
            args.extend(options.extra_apiserver_args.iter().cloned());
            self.write_kubeconfig(&self.admin_kubeconfig, ADMIN_USER, &self.certs.admin)?;
            let mut apiserver = self.spawn(bin_dir, KUBE_APISERVER, &args)?;
            let readyz = format!("{}/readyz", self.server_url());
            let ready = apiserver
                .wait_until("kube-apiserver /readyz", APISERVER_TIMEOUT, || {
                    apiserver_ready(&admin_http, &readyz)
                })
                .await;
            match ready {
                Ok(()) => {
                    self.processes.push(apiserver);
                    self.apiserver_command = Some((bin_dir.to_path_buf(), args));
                    return Ok(());
                }
                Err(error) => {
                    apiserver.stop();
                    if retry_after_port_clash(&apiserver, &mut attempt) {
                        continue;
                    }
                    return Err(failure(&apiserver, error));
                }
            }
        }
    }

    async fn start_controller_manager(
        &mut self,
        bin_dir: &Path,
        options: &ControlPlaneOptions,
    ) -> anyhow::Result<()> {
        let kubeconfig = self.dir.path().join("controller-manager.kubeconfig");
        self.write_kubeconfig(
            &kubeconfig,
            "system:kube-controller-manager",
            &self.certs.controller_manager,
        )?;
        let admin = self.admin_client().await?;
        let service_accounts: Api<ServiceAccount> = Api::namespaced(admin, "default");
        let certs = &self.certs;
        let mut attempt = 1;
        loop {
            let args = vec![
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--authentication-kubeconfig={}", kubeconfig.display()),
                format!("--authorization-kubeconfig={}", kubeconfig.display()),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={}", free_port()),
                "--leader-elect=false".to_owned(),
                "--use-service-account-credentials".to_owned(),
                format!(
                    "--service-account-private-key-file={}",
                    certs.service_account_key_path.display()
                ),
                format!("--root-ca-file={}", certs.ca_cert_path.display()),
                format!(
                    "--cluster-signing-cert-file={}",
                    certs.ca_cert_path.display()
                ),
                format!("--cluster-signing-key-file={}", certs.ca_key_path.display()),
                // Without kubelet heartbeats the node lifecycle controller would mark the
                // stand-in's node unreachable, taint it and evict its pods; a real node's
                // start-up taint is lifted by the harness instead of waiting for it.
                "--controllers=*,-node-lifecycle-controller".to_owned(),
                format!(
                    "--horizontal-pod-autoscaler-sync-period={}ms",
                    options.hpa_sync_period.as_millis()
                ),
                "--horizontal-pod-autoscaler-initial-readiness-delay=1s".to_owned(),
                // With per-controller credentials every controller start costs a few
                // requests, and the default client rate limit (20 qps) spreads the ~40
                // controllers over seconds before their informers start.
                "--kube-api-qps=200".to_owned(),
                "--kube-api-burst=400".to_owned(),
                "--v=1".to_owned(),
            ];
            let mut controller_manager = self.spawn(bin_dir, KUBE_CONTROLLER_MANAGER, &args)?;
            let ready = controller_manager
                .wait_until(
                    "the default ServiceAccount in namespace default",
                    CONTROLLER_MANAGER_TIMEOUT,
                    || default_service_account(&service_accounts),
                )
                .await;
            match ready {
                Ok(()) => {
                    self.processes.push(controller_manager);
                    return Ok(());
                }
                Err(error) => {
                    controller_manager.stop();
                    if retry_after_port_clash(&controller_manager, &mut attempt) {
                        continue;
                    }
                    return Err(failure(&controller_manager, error));
                }
            }
        }
    }

    async fn start_scheduler(&mut self, bin_dir: &Path) -> anyhow::Result<()> {
        let kubeconfig = self.dir.path().join("scheduler.kubeconfig");
        self.write_kubeconfig(&kubeconfig, "system:kube-scheduler", &self.certs.scheduler)?;
        let http = reqwest::Client::builder()
            // Its self-signed serving certificate; only /healthz is asked, which it serves
            // to anyone.
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(2))
            .build()?;
        let mut attempt = 1;
        loop {
            let port = free_port();
            let args = vec![
                format!("--kubeconfig={}", kubeconfig.display()),
                format!("--authentication-kubeconfig={}", kubeconfig.display()),
                format!("--authorization-kubeconfig={}", kubeconfig.display()),
                "--bind-address=127.0.0.1".to_owned(),
                format!("--secure-port={port}"),
                "--leader-elect=false".to_owned(),
                "--v=1".to_owned(),
            ];
            let mut scheduler = self.spawn(bin_dir, KUBE_SCHEDULER, &args)?;
            let url = format!("https://127.0.0.1:{port}/healthz");
            let ready = scheduler
                .wait_until(
                    "kube-scheduler /healthz",
                    CONTROLLER_MANAGER_TIMEOUT,
                    || apiserver_ready(&http, &url),
                )
                .await;
            match ready {
                Ok(()) => {
                    self.processes.push(scheduler);
                    return Ok(());
                }
                Err(error) => {
                    scheduler.stop();
                    if retry_after_port_clash(&scheduler, &mut attempt) {
                        continue;
                    }
                    return Err(failure(&scheduler, error));
                }
            }
        }
    }

    fn spawn(
        &self,
        bin_dir: &Path,
        component: &'static str,
        args: &[String],
    ) -> anyhow::Result<Process> {
        Process::spawn(
            component,
            &bin_dir.join(component),
            args,
            &self.log_path(component),
            self.dir.path(),
        )
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

async fn etcd_healthy(http: &reqwest::Client, url: &str) -> Result<(), String> {
    let response = http.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if status.is_success() && body.contains(r#""health":"true""#) {
        Ok(())
    } else {
        Err(format!("{status}: {}", body.trim()))
    }
}

async fn apiserver_ready(http: &reqwest::Client, url: &str) -> Result<(), String> {
    let response = http.get(url).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.text().await.map_err(|e| e.to_string())?;
    if status.is_success() && body.trim() == "ok" {
        return Ok(());
    }
    // With `?verbose` absent the body still lists the failing checks, as "[-]name failed".
    let failing: Vec<&str> = body.lines().filter(|l| l.starts_with("[-]")).collect();
    Err(format!(
        "{status}: {}",
        if failing.is_empty() {
            body.trim().to_owned()
        } else {
            failing.join("; ")
        }
    ))
}

fn admin_http_client(certs: &ClusterCerts) -> anyhow::Result<reqwest::Client> {
    let ca = reqwest::Certificate::from_pem(certs.ca_cert_pem.as_bytes())
        .context("parsing the cluster CA")?;
    let identity = reqwest::Identity::from_pem(
        format!("{}{}", certs.admin.cert_pem, certs.admin.key_pem).as_bytes(),
    )
    .context("parsing the admin certificate")?;
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .identity(identity)
        .timeout(Duration::from_secs(2))
        .build()
        .context("building the admin HTTP client")
}

async fn default_service_account(service_accounts: &Api<ServiceAccount>) -> Result<(), String> {
    match service_accounts.get_opt("default").await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err("not created yet".to_owned()),
        Err(error) => Err(error.to_string()),
    }
}

fn retry_after_port_clash(process: &Process, attempt: &mut usize) -> bool {
    if *attempt < START_ATTEMPTS && process.log_tail(LOG_TAIL_LINES).contains(PORT_IN_USE) {
        tracing::debug!(component = process.name(), attempt, "port taken, retrying");
        *attempt += 1;
        true
    } else {
        false
    }
}

fn failure(process: &Process, error: anyhow::Error) -> anyhow::Error {
    anyhow!(
        "{} did not start: {error:#}\n--- last {LOG_TAIL_LINES} lines of its log ---\n{}",
        process.name(),
        process.log_tail(LOG_TAIL_LINES)
    )
}

/// `K8S_BIN_DIR` if set, else the folder `scripts/build-k8s.sh` prints on its last line.
/// Run once per test binary: parallel first-time builds would race on the same outputs.
pub async fn binary_dir() -> anyhow::Result<PathBuf> {
    static DIR: OnceCell<PathBuf> = OnceCell::const_new();
    DIR.get_or_try_init(find_binary_dir).await.cloned()
}

async fn find_binary_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("K8S_BIN_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        // A first build takes minutes and reports progress on stderr.
        None => script_output_dir("build-k8s.sh")
            .await
            .context("building the Kubernetes binaries (set K8S_BIN_DIR to use others)")?,
    };
    for binary in [
        ETCD,
        KUBE_APISERVER,
        KUBE_CONTROLLER_MANAGER,
        KUBE_SCHEDULER,
        node::KUBELET,
    ] {
        if !dir.join(binary).is_file() {
            bail!("{binary} not found in {}", dir.display());
        }
    }
    Ok(dir)
}

/// The pause and workload image archives (`scripts/build-test-images.sh`, run once per
/// test binary; it returns at once when they are built).
pub async fn test_images() -> anyhow::Result<Vec<PathBuf>> {
    static DIR: OnceCell<PathBuf> = OnceCell::const_new();
    let dir = DIR
        .get_or_try_init(|| script_output_dir("build-test-images.sh"))
        .await?;
    Ok(vec![
        dir.join("pause.oci.tar"),
        dir.join("workload.oci.tar"),
    ])
}

/// The metrics-registry image archive (`scripts/build-image.sh`: a static release build
/// and buildah; minutes the first time). `METRICS_REGISTRY_IMAGE_ARCHIVE` skips the build.
pub async fn product_image() -> anyhow::Result<PathBuf> {
    static ARCHIVE: OnceCell<PathBuf> = OnceCell::const_new();
    ARCHIVE
        .get_or_try_init(|| async {
            match std::env::var_os("METRICS_REGISTRY_IMAGE_ARCHIVE").filter(|a| !a.is_empty()) {
                Some(archive) => Ok(PathBuf::from(archive)),
                None => script_output_dir("build-image.sh").await,
            }
        })
        .await
        .cloned()
}

/// Runs `scripts/<name>` and returns the path it prints on its last line.
async fn script_output_dir(name: &str) -> anyhow::Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name);
    let mut command = tokio::process::Command::new("bash");
    // Only what the scripts need: the variables cargo sets for a test would make a
    // nested cargo build see a different environment and rebuild everything.
    command.env_clear();
    for (key, value) in std::env::vars_os() {
        let keep = key.to_str().is_some_and(|k| {
            matches!(
                k,
                "PATH"
                    | "HOME"
                    | "USER"
                    | "TMPDIR"
                    | "XDG_CACHE_HOME"
                    | "CARGO_HOME"
                    | "RUSTUP_HOME"
                    | "RUSTUP_TOOLCHAIN"
                    | "CARGO_TARGET_DIR"
                    | "METRICS_REGISTRY_CACHE"
            )
        });
        if keep {
            command.env(key, value);
        }
    }
    let output = command
        .arg(&script)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed with {} (its messages are above)",
            script.display(),
            output.status
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .with_context(|| format!("{} printed no path", script.display()))?;
    Ok(PathBuf::from(last.trim()))
}
