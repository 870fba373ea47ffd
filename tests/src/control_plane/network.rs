//! Private addresses for a cluster with a real node.
//!
//! EndpointSlices refuse loopback addresses, so a cluster whose Services must reach pods
//! (the chart's own Service in front of metrics-registry, with aggregator routing) needs
//! other addresses. They are added only inside the network namespace a test run makes
//! for itself (`scripts/in-test-namespace.sh`), never to the machine's own network, and
//! traffic to them never leaves that namespace.
//!
//! Cluster `N` gets:
//! - `10.96.N.0/24` as its Service range; `10.96.N.1`, the ClusterIP of the `kubernetes`
//!   Service, is where kube-apiserver itself listens (port 443), so pods reach the API the
//!   way they would through kube-proxy, which this cluster does not run;
//! - `10.231.N.1`, the node's address (kubelet, and anything the pods must reach on the
//!   host, such as Prometheus);
//! - `10.244.N.0/24` for pods, on a bridge `mr-brN` that the CNI bridge plugin creates.

use anyhow::{Context as _, bail};
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::Mutex;

/// Set by `scripts/in-test-namespace.sh` for the commands it runs.
pub const NAMESPACE_ENV: &str = "METRICS_REGISTRY_TEST_NETNS";

/// Whether this process runs in a network namespace of the test run's own: the marker is
/// set, the namespace is not that of process 1 (where that can be read), and there is no
/// route out of it.
pub fn in_test_network_namespace() -> bool {
    if std::env::var_os(NAMESPACE_ENV).is_none() {
        return false;
    }
    if let (Ok(ours), Ok(machine)) = (
        std::fs::read_link("/proc/self/ns/net"),
        std::fs::read_link("/proc/1/ns/net"),
    ) && ours == machine
    {
        return false;
    }
    // /proc/net/route lists this namespace's IPv4 routes; destination 00000000 is a default.
    match std::fs::read_to_string("/proc/net/route") {
        Ok(routes) => !routes
            .lines()
            .skip(1)
            .any(|line| line.split_whitespace().nth(1) == Some("00000000")),
        Err(_) => false,
    }
}

/// Why a test that needs a node cannot run here, if it cannot.
pub fn node_unavailable_reason() -> Option<String> {
    if in_test_network_namespace() {
        None
    } else {
        Some(format!(
            "needs its own network namespace: run it through scripts/test.sh (or \
             scripts/in-test-namespace.sh cargo test …), which sets {NAMESPACE_ENV}"
        ))
    }
}

#[derive(Debug)]
pub struct ClusterNetwork {
    pub index: u8,
    /// kube-apiserver's address and the `kubernetes` Service's ClusterIP.
    pub apiserver_ip: Ipv4Addr,
    pub service_cidr: String,
    pub node_ip: Ipv4Addr,
    pub pod_cidr: String,
    pub pod_gateway: Ipv4Addr,
    pub bridge: String,
}

static TAKEN: Mutex<Vec<u8>> = Mutex::new(Vec::new());

impl ClusterNetwork {
    /// Picks the first index no other cluster of this run uses and adds its addresses to `lo`.
    pub fn allocate() -> anyhow::Result<ClusterNetwork> {
        if let Some(reason) = node_unavailable_reason() {
            bail!("a cluster with a node {reason}");
        }
        for index in 1..=250u8 {
            {
                let mut taken = TAKEN.lock().expect("cluster network list");
                if taken.contains(&index) {
                    continue;
                }
                taken.push(index);
            }
            let network = ClusterNetwork {
                index,
                apiserver_ip: Ipv4Addr::new(10, 96, index, 1),
                service_cidr: format!("10.96.{index}.0/24"),
                node_ip: Ipv4Addr::new(10, 231, index, 1),
                pod_cidr: format!("10.244.{index}.0/24"),
                pod_gateway: Ipv4Addr::new(10, 244, index, 1),
                bridge: format!("mr-br{index}"),
            };
            // Another test binary of the same run may still hold them ("File exists").
            if network.add_addresses().is_ok() {
                return Ok(network);
            }
        }
        bail!("no free cluster network left")
    }

    fn add_addresses(&self) -> anyhow::Result<()> {
        ip(&["link", "set", "lo", "up"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/32", self.apiserver_ip),
            "dev",
            "lo",
        ])?;
        if let Err(error) = ip(&["addr", "add", &format!("{}/32", self.node_ip), "dev", "lo"]) {
            let _ = ip(&[
                "addr",
                "del",
                &format!("{}/32", self.apiserver_ip),
                "dev",
                "lo",
            ]);
            return Err(error);
        }
        Ok(())
    }
}

impl Drop for ClusterNetwork {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.bridge]);
        let _ = ip(&["addr", "del", &format!("{}/32", self.node_ip), "dev", "lo"]);
        let _ = ip(&[
            "addr",
            "del",
            &format!("{}/32", self.apiserver_ip),
            "dev",
            "lo",
        ]);
        TAKEN
            .lock()
            .expect("cluster network list")
            .retain(|i| *i != self.index);
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .context("running ip (iproute2)")?;
    if !output.status.success() {
        bail!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}
