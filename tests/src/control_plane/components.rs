//! Starting the control-plane components: each one a child process with its flags, its
//! readiness probe, and another attempt when a port was taken meanwhile.

use super::process::{Process, start_failure, start_on_free_ports};
use super::{ADMIN_USER, ETCD, KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER};
use super::{ClusterCerts, ControlPlane, ControlPlaneOptions, FRONT_PROXY_CLIENT_CN};
use crate::ports::free_port;
use anyhow::Context as _;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::Api;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

const ETCD_TIMEOUT: Duration = Duration::from_secs(30);
// Generous: test binaries boot one cluster per test, in parallel, on small CI machines too.
const APISERVER_TIMEOUT: Duration = Duration::from_secs(90);
const CONTROLLER_MANAGER_TIMEOUT: Duration = Duration::from_secs(90);

impl ControlPlane {
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
            .map_err(|error| start_failure(&apiserver, error))?;
        self.processes[position] = apiserver;
        Ok(started.elapsed())
    }

    pub(super) async fn start_etcd(&mut self, bin_dir: &Path) -> anyhow::Result<()> {
        let data_dir = self.dir.path().join("etcd-data");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building the HTTP client")?;
        let (etcd, _, client_url) = self
            .launch(
                bin_dir,
                ETCD,
                "etcd /health",
                ETCD_TIMEOUT,
                || {
                    // A half-initialised data dir of a failed attempt would pin its peer URL.
                    let _ = std::fs::remove_dir_all(&data_dir);
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
                        // Throwaway data: skipping fsync keeps writes fast on slow disks and
                        // when several clusters boot at once.
                        "--unsafe-no-fsync".to_owned(),
                        // A lone member still sits out one election timeout (1 s by default)
                        // before it elects itself.
                        "--heartbeat-interval=10".to_owned(),
                        "--election-timeout=100".to_owned(),
                    ];
                    (args, client_url)
                },
                move |client_url| {
                    let http = http.clone();
                    async move { etcd_healthy(&http, &format!("{client_url}/health")).await }
                },
            )
            .await?;
        self.etcd_url = client_url;
        self.processes.push(etcd);
        Ok(())
    }

    pub(super) async fn start_apiserver(
        &mut self,
        bin_dir: &Path,
        options: &ControlPlaneOptions,
    ) -> anyhow::Result<()> {
        let certs = &self.certs;
        let cert_dir = self.dir.path().join("apiserver-certs");
        // Plain reqwest rather than a kube client: kube logs every 5xx and refused connection
        // at ERROR, which would bury a test's output under the expected start-up failures.
        let admin_http = admin_http_client(certs)?;
        let (apiserver, args, addr) = self
            .launch(
                bin_dir,
                KUBE_APISERVER,
                "kube-apiserver /readyz",
                APISERVER_TIMEOUT,
                || {
                    let addr = match &self.network {
                        // The `kubernetes` Service's own address and port: pods reach the API
                        // as through kube-proxy.
                        Some(network) => SocketAddr::from((network.apiserver_ip, 443)),
                        None => SocketAddr::from((Ipv4Addr::LOCALHOST, free_port())),
                    };
                    let ip = addr.ip();
                    let service_range = self
                        .network
                        .as_ref()
                        .map_or("10.0.0.0/24".to_owned(), |n| n.service_cidr.clone());
                    let mut args = vec![
                        format!("--etcd-servers={}", self.etcd_url),
                        format!("--bind-address={ip}"),
                        format!("--advertise-address={ip}"),
                        format!("--secure-port={}", addr.port()),
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
                    (args, addr)
                },
                move |addr| {
                    let http = admin_http.clone();
                    async move { apiserver_ready(&http, &format!("https://{addr}/readyz")).await }
                },
            )
            .await?;
        self.apiserver_addr = addr;
        self.write_kubeconfig(&self.admin_kubeconfig, ADMIN_USER, &self.certs.admin)?;
        self.processes.push(apiserver);
        self.apiserver_command = Some((bin_dir.to_path_buf(), args));
        Ok(())
    }

    pub(super) async fn start_controller_manager(
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
        let (controller_manager, _, ()) = self
            .launch(
                bin_dir,
                KUBE_CONTROLLER_MANAGER,
                "the default ServiceAccount in namespace default",
                CONTROLLER_MANAGER_TIMEOUT,
                || {
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
                    (args, ())
                },
                move |()| {
                    let service_accounts = service_accounts.clone();
                    async move { default_service_account(&service_accounts).await }
                },
            )
            .await?;
        self.processes.push(controller_manager);
        Ok(())
    }

    pub(super) async fn start_scheduler(&mut self, bin_dir: &Path) -> anyhow::Result<()> {
        let kubeconfig = self.dir.path().join("scheduler.kubeconfig");
        self.write_kubeconfig(&kubeconfig, "system:kube-scheduler", &self.certs.scheduler)?;
        let http = reqwest::Client::builder()
            // Its self-signed serving certificate; only /healthz is asked, which it serves
            // to anyone.
            .danger_accept_invalid_certs(true)
            .timeout(Duration::from_secs(2))
            .build()?;
        let (scheduler, _, _) = self
            .launch(
                bin_dir,
                KUBE_SCHEDULER,
                "kube-scheduler /healthz",
                CONTROLLER_MANAGER_TIMEOUT,
                || {
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
                    (args, port)
                },
                move |port| {
                    let http = http.clone();
                    async move {
                        apiserver_ready(&http, &format!("https://127.0.0.1:{port}/healthz")).await
                    }
                },
            )
            .await?;
        self.processes.push(scheduler);
        Ok(())
    }

    /// Spawns `component` with the arguments `attempt` makes and waits until `ready`
    /// holds, on fresh ports when one was taken meanwhile ([`start_on_free_ports`]).
    async fn launch<P, Fut>(
        &self,
        bin_dir: &Path,
        component: &'static str,
        what: &str,
        timeout: Duration,
        attempt: impl FnMut() -> (Vec<String>, P),
        ready: impl Fn(P) -> Fut,
    ) -> anyhow::Result<(Process, Vec<String>, P)>
    where
        P: Clone,
        Fut: Future<Output = Result<(), String>>,
    {
        start_on_free_ports(
            |args| self.spawn(bin_dir, component, args),
            what,
            timeout,
            attempt,
            ready,
        )
        .await
    }

    pub(super) fn spawn(
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
