//! A real node: containerd (Debian's, with runc) and the kubelet built at the pinned
//! Kubernetes version, running pods from images built on this machine (none can be
//! pulled). Pods get their own network namespaces on a CNI bridge inside the test run's
//! network namespace (see `network`).
//!
//! Host facts this relies on: the cgroup v1 hierarchies are writable; CAP_SYS_RESOURCE
//! is absent, so containerd must not lower oom_score_adj; containers inherit
//! containerd's rlimits.

use super::network::ClusterNetwork;
use super::process::{Process, log_tail};
use super::{CertAuthority, ClusterCerts};
use anyhow::{Context as _, bail};
use k8s_openapi::api::core::v1::{Node as NodeObject, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

pub const CONTAINERD: &str = "containerd";
pub const KUBELET: &str = "kubelet";
/// The sandbox image containerd is told to use; built locally (`scripts/build-test-images.sh`).
pub const PAUSE_IMAGE: &str = "localhost/pause:test";
/// busybox in an empty image; `sh -c` commands, exits on SIGTERM.
pub const WORKLOAD_IMAGE: &str = "localhost/workload:test";

const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Node {
    pub name: String,
    dir: PathBuf,
    cgroup_root: String,
    socket: PathBuf,
    // Stopped kubelet first, then containerd (see `stop`).
    kubelet: Option<Process>,
    containerd: Option<Process>,
}

pub(crate) struct NodeSetup<'a> {
    pub dir: &'a Path,
    pub bin_dir: &'a Path,
    pub network: &'a ClusterNetwork,
    pub certs: &'a ClusterCerts,
    pub server_url: String,
    pub admin: kube::Client,
    pub images: &'a [PathBuf],
}

impl Node {
    /// Starts containerd, imports `images`, starts the kubelet and waits for the Node to
    /// be Ready and schedulable.
    pub(crate) async fn start(setup: NodeSetup<'_>) -> anyhow::Result<Node> {
        let name = format!("node-{}", setup.network.index);
        let dir = setup.dir.join("node");
        for sub in [
            "containerd",
            "cni/net.d",
            "kubelet-root",
            "pod-logs",
            "manifests",
            "pki",
        ] {
            std::fs::create_dir_all(dir.join(sub))?;
        }
        let cgroup_root = format!(
            "metrics-registry-test-{}-{}",
            std::process::id(),
            setup.network.index
        );
        create_cgroup_root(&cgroup_root)?;
        let socket = dir.join("containerd.sock");
        let mut node = Node {
            name,
            dir,
            cgroup_root,
            socket,
            kubelet: None,
            containerd: None,
        };
        node.start_containerd(setup.network).await?;
        for image in setup.images {
            node.import(image)?;
        }
        node.start_kubelet(&setup).await?;
        node.wait_ready(&setup.admin).await?;
        Ok(node)
    }

    fn write(&self, relative: &str, contents: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.join(relative);
        std::fs::write(&path, contents).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    async fn start_containerd(&mut self, network: &ClusterNetwork) -> anyhow::Result<()> {
        let d = self.dir.display();
        let config = format!(
            r#"version = 2
root = "{d}/containerd/root"
state = "{d}/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{d}/containerd/runc"
"#,
            sock = self.socket.display(),
        );
        let config_path = self.write("containerd/config.toml", &config)?;
        let cni = json!({
            "cniVersion": "0.4.0",
            "name": "pods",
            "plugins": [{
                "type": "bridge",
                "bridge": network.bridge,
                "isGateway": true,
                "ipMasq": false,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": network.pod_cidr, "gateway": network.pod_gateway.to_string()}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": format!("{d}/cni/ipam"),
                },
            }],
        });
        self.write("cni/net.d/10-pods.conflist", &cni.to_string())?;
        let mut containerd = Process::spawn(
            CONTAINERD,
            Path::new("containerd"),
            &[format!("--config={}", config_path.display())],
            &self.dir.join("containerd.log"),
            &self.dir,
        )?;
        let socket = self.socket.clone();
        containerd
            .wait_until("containerd to answer", START_TIMEOUT, || {
                let socket = socket.clone();
                async move { ctr(&socket, &["version"]).map(|_| ()) }
            })
            .await?;
        self.containerd = Some(containerd);
        Ok(())
    }

    /// Imports an OCI or docker archive into the namespace the kubelet's pods use.
    pub fn import(&self, archive: &Path) -> anyhow::Result<()> {
        ctr(
            &self.socket,
            &[
                "-n",
                "k8s.io",
                "images",
                "import",
                &archive.display().to_string(),
            ],
        )
        .map(|_| ())
        .map_err(|e| anyhow::anyhow!("importing {}: {e}", archive.display()))
    }

    async fn start_kubelet(&mut self, setup: &NodeSetup<'_>) -> anyhow::Result<()> {
        let network = setup.network;
        let pki = self.dir.join("pki");
        let (client_cert, client_key) = setup.certs.sign_client_cert(
            CertAuthority::Cluster,
            &format!("system:node:{}", self.name),
            &["system:nodes"],
        )?;
        let node_ip = network.node_ip.to_string();
        let (serving_cert, serving_key) = setup
            .certs
            .sign_serving_cert(&self.name, &[&node_ip, &self.name])?;
        for (file, pem) in [
            ("client.crt", &client_cert),
            ("client.key", &client_key),
            ("serving.crt", &serving_cert),
            ("serving.key", &serving_key),
        ] {
            std::fs::write(pki.join(file), pem)?;
        }
        let kubeconfig = json!({
            "apiVersion": "v1", "kind": "Config",
            "clusters": [{"name": "test", "cluster": {"server": setup.server_url, "certificate-authority": setup.certs.ca_cert_path}}],
            "users": [{"name": "node", "user": {"client-certificate": pki.join("client.crt"), "client-key": pki.join("client.key")}}],
            "contexts": [{"name": "test", "context": {"cluster": "test", "user": "node"}}],
            "current-context": "test",
        });
        let kubeconfig_path = self.write("kubelet.kubeconfig", &kubeconfig.to_string())?;
        let d = self.dir.display();
        let port = crate::ports::free_port();
        let healthz_port = crate::ports::free_port();
        let config = format!(
            r#"apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: {node_ip}
port: {port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: {healthz_port}
tlsCertFile: {d}/pki/serving.crt
tlsPrivateKeyFile: {d}/pki/serving.key
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: Webhook}}
containerRuntimeEndpoint: unix://{sock}
cgroupDriver: cgroupfs
cgroupRoot: /{cgroup_root}
cgroupsPerQOS: true
failCgroupV1: false
failSwapOn: false
enforceNodeAllocatable: []
localStorageCapacityIsolation: false
protectKernelDefaults: false
makeIPTablesUtilChains: false
resolvConf: ""
podLogsDir: {d}/pod-logs
staticPodPath: {d}/manifests
evictionHard: {{memory.available: "1Mi", nodefs.available: "1%", nodefs.inodesFree: "1%", imagefs.available: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
nodeStatusUpdateFrequency: 2s
syncFrequency: 5s
fileCheckFrequency: 5s
podPidsLimit: -1
maxPods: 60
"#,
            ca = setup.certs.ca_cert_path.display(),
            sock = self.socket.display(),
            cgroup_root = self.cgroup_root,
        );
        let config_path = self.write("kubelet-config.yaml", &config)?;
        let kubelet = Process::spawn(
            KUBELET,
            &setup.bin_dir.join(KUBELET),
            &[
                format!("--config={}", config_path.display()),
                format!("--kubeconfig={}", kubeconfig_path.display()),
                format!("--root-dir={d}/kubelet-root"),
                format!("--hostname-override={}", self.name),
                format!("--node-ip={node_ip}"),
                "--v=1".to_string(),
            ],
            &self.dir.join("kubelet.log"),
            &self.dir,
        )?;
        self.kubelet = Some(kubelet);
        Ok(())
    }

    async fn wait_ready(&mut self, admin: &kube::Client) -> anyhow::Result<()> {
        let nodes: Api<NodeObject> = Api::all(admin.clone());
        let name = self.name.clone();
        let kubelet = self.kubelet.as_mut().expect("kubelet started");
        kubelet
            .wait_until("the Node to be Ready", START_TIMEOUT, || {
                let nodes = nodes.clone();
                let name = name.clone();
                async move {
                    let node = nodes
                        .get_opt(&name)
                        .await
                        .map_err(|e| e.to_string())?
                        .ok_or("not registered yet")?;
                    let ready = node
                        .status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .into_iter()
                        .any(|c| c.type_ == "Ready" && c.status == "True");
                    if ready {
                        Ok(())
                    } else {
                        Err("registered, not Ready yet".into())
                    }
                }
            })
            .await
            .map_err(|e| {
                anyhow::anyhow!("{e:#}\n--- kubelet log ---\n{}", self.log_tail(KUBELET, 30))
            })?;
        // Only the node lifecycle controller lifts this taint, and it is off in these
        // clusters (there is a real heartbeat, but tests must not wait for its period).
        let node = nodes.get(&self.name).await?;
        let taints: Vec<_> = node
            .spec
            .and_then(|s| s.taints)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| t.key != "node.kubernetes.io/not-ready")
            .collect();
        nodes
            .patch(
                &self.name,
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"taints": taints}})),
            )
            .await?;
        Ok(())
    }

    pub fn containerd_socket(&self) -> &Path {
        &self.socket
    }

    /// The cgroup (in every v1 hierarchy) that holds this node's pods.
    pub fn cgroup_root(&self) -> &str {
        &self.cgroup_root
    }

    pub fn log_tail(&self, component: &str, lines: usize) -> String {
        log_tail(&self.dir.join(format!("{component}.log")), lines)
    }

    pub fn log_path(&self, component: &str) -> PathBuf {
        self.dir.join(format!("{component}.log"))
    }

    /// Deletes every pod on this node through the API and waits until the kubelet has
    /// stopped them (sandboxes, network namespaces and mounts torn down the proper way).
    /// Run while nothing recreates pods (the controller-manager stopped).
    pub(crate) async fn drain(&self, admin: &kube::Client) {
        let pods: Api<Pod> = Api::all(admin.clone());
        let on_node = ListParams::default().fields(&format!("spec.nodeName={}", self.name));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let Ok(list) = pods.list(&on_node).await else {
                return;
            };
            if list.items.is_empty() || Instant::now() > deadline {
                return;
            }
            for pod in list.items {
                let (Some(namespace), Some(name)) = (pod.metadata.namespace, pod.metadata.name)
                else {
                    continue;
                };
                let api: Api<Pod> = Api::namespaced(admin.clone(), &namespace);
                let _ = api
                    .delete(&name, &DeleteParams::default().grace_period(0))
                    .await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Stops everything of this node, also what a crashed test left running.
    pub(crate) fn stop(&mut self) {
        if let Some(mut kubelet) = self.kubelet.take() {
            kubelet.stop();
        }
        // Containers: every process in the node's cgroups.
        for _ in 0..3 {
            for pid in cgroup_pids(&self.cgroup_root) {
                kill(pid);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // The shims outlive their containers and are not in those cgroups.
        let socket = self.socket.display().to_string();
        for pid in pids_with_cmdline(|cmdline| {
            cmdline.contains("containerd-shim") && cmdline.contains(&socket)
        }) {
            kill(pid);
        }
        if let Some(mut containerd) = self.containerd.take() {
            containerd.stop();
        }
        unmount_below(&self.dir);
        remove_cgroup_root(&self.cgroup_root);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}

fn ctr(socket: &Path, args: &[&str]) -> Result<String, String> {
    let output = Command::new("ctr")
        .arg("-a")
        .arg(socket)
        .args(args)
        .output()
        .map_err(|e| format!("running ctr: {e}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

/// The cgroup v1 hierarchies (`unified` is the cgroup2 mount of a hybrid host).
fn cgroup_hierarchies() -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir() && !p.is_symlink())
        .collect()
}

/// The kubelet refuses to start unless its cgroup root exists in every hierarchy.
fn create_cgroup_root(root: &str) -> anyhow::Result<()> {
    for hierarchy in cgroup_hierarchies() {
        if hierarchy.ends_with("unified") {
            continue;
        }
        let dir = hierarchy.join(root);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        if hierarchy.ends_with("cpuset") {
            for file in ["cpuset.cpus", "cpuset.mems"] {
                let value = std::fs::read_to_string(hierarchy.join(file))?;
                std::fs::write(dir.join(file), value)?;
            }
        }
    }
    if cgroup_hierarchies().is_empty() {
        bail!("no cgroup hierarchies under /sys/fs/cgroup");
    }
    Ok(())
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.filter_map(|e| e.ok()) {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&entry.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

fn cgroup_pids(root: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for hierarchy in cgroup_hierarchies() {
        let mut dirs = Vec::new();
        walk(&hierarchy.join(root), &mut dirs);
        for dir in dirs {
            if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                pids.extend(text.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Children first, so every directory is empty when it is removed.
fn remove_cgroup_root(root: &str) {
    for attempt in 0..20 {
        let mut left = false;
        for hierarchy in cgroup_hierarchies() {
            let mut dirs = Vec::new();
            walk(&hierarchy.join(root), &mut dirs);
            for dir in dirs {
                if dir.exists() && std::fs::remove_dir(&dir).is_err() {
                    left = true;
                }
            }
        }
        if !left {
            return;
        }
        if attempt == 19 {
            tracing::warn!(root, "cgroups left behind");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn pids_with_cmdline(matches: impl Fn(&str) -> bool) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|raw| matches(&String::from_utf8_lossy(&raw).replace('\0', " ")))
                .unwrap_or(false)
        })
        .collect()
}

fn kill(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).output();
}

/// The kubelet bind-mounts its root onto itself and containerd mounts each container's
/// root file system; a mount left behind would keep the tempdir from being deleted.
fn unmount_below(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<&str> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    // Deepest first.
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount").args(["-l", point]).output();
    }
}
