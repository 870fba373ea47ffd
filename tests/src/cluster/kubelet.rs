//! A kubelet stand-in: nothing runs, but pods look Running and Ready.
//!
//! Deployments, ReplicaSets and the HPA count only ready pods, and without a scheduler and a
//! kubelet no pod ever gets there. This binds every pod to one fake node and writes the
//! status a kubelet would once all containers started, and finishes the deletion of pods
//! on that node, which otherwise would stay Terminating forever.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;

use anyhow::Context as _;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{
    Binding, ContainerState, ContainerStateRunning, ContainerStateTerminated, ContainerStatus,
    HostIP, Node, NodeAddress, NodeCondition, NodeSpec, NodeStatus, ObjectReference, Pod,
    PodCondition, PodIP, PodStatus,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::json;
use tokio::task::JoinHandle;

pub const FAKE_NODE: &str = "fake-node";
const NODE_IP: &str = "127.0.0.1";
// Pod IPs only have to be unique and well-formed; nothing ever dials them.
const FIRST_POD_IP: u32 = u32::from_be_bytes([127, 0, 1, 1]);

/// Stops the stand-in when dropped.
pub struct KubeletStandin {
    task: JoinHandle<()>,
}

impl Drop for KubeletStandin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Registers the Ready node `fake-node`, then keeps every pod in the cluster bound to it and
/// Running/Ready until the returned handle is dropped.
pub async fn start_kubelet_standin(client: kube::Client) -> anyhow::Result<KubeletStandin> {
    register_node(&client).await?;
    let task = tokio::spawn(run(client));
    Ok(KubeletStandin { task })
}

async fn register_node(client: &kube::Client) -> anyhow::Result<()> {
    let nodes: Api<Node> = Api::all(client.clone());
    let node = Node {
        metadata: ObjectMeta {
            name: Some(FAKE_NODE.to_owned()),
            labels: Some(BTreeMap::from([
                ("kubernetes.io/hostname".to_owned(), FAKE_NODE.to_owned()),
                ("kubernetes.io/os".to_owned(), "linux".to_owned()),
            ])),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec::default()),
        status: None,
    };
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(status)) if status.is_already_exists() => {}
        Err(error) => return Err(error).context("creating the fake node"),
    }
    // The TaintNodesByCondition admission plugin taints new nodes not-ready until a node
    // controller sees them Ready; that controller is off, so the taint would stay.
    nodes
        .patch(
            FAKE_NODE,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": null}})),
        )
        .await
        .context("removing the taints of the fake node")?;
    let now = Time(Timestamp::now());
    let capacity = BTreeMap::from([
        ("cpu".to_owned(), Quantity("64".to_owned())),
        ("memory".to_owned(), Quantity("256Gi".to_owned())),
        ("pods".to_owned(), Quantity("1000".to_owned())),
    ]);
    let status = NodeStatus {
        conditions: Some(vec![NodeCondition {
            type_: "Ready".to_owned(),
            status: "True".to_owned(),
            reason: Some("KubeletReady".to_owned()),
            message: Some("kubelet stand-in of the test harness".to_owned()),
            last_heartbeat_time: Some(now.clone()),
            last_transition_time: Some(now),
        }]),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".to_owned(),
                address: NODE_IP.to_owned(),
            },
            NodeAddress {
                type_: "Hostname".to_owned(),
                address: FAKE_NODE.to_owned(),
            },
        ]),
        allocatable: Some(capacity.clone()),
        capacity: Some(capacity),
        ..NodeStatus::default()
    };
    nodes
        .patch_status(
            FAKE_NODE,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .context("reporting the fake node Ready")?;
    Ok(())
}

async fn run(client: kube::Client) {
    let pods: Api<Pod> = Api::all(client.clone());
    let mut standin = Standin {
        client,
        pod_ips: HashMap::new(),
        next_ip: FIRST_POD_IP,
    };
    let mut events = std::pin::pin!(
        watcher(pods, watcher::Config::default())
            .default_backoff()
            .applied_objects()
    );
    while let Some(event) = events.next().await {
        match event {
            Ok(pod) => {
                if let Err(error) = standin.handle(&pod).await {
                    tracing::warn!(
                        pod = %format!("{}/{}", namespace(&pod), name(&pod)),
                        error = %format!("{error:#}"),
                        "kubelet stand-in"
                    );
                }
            }
            Err(error) => tracing::debug!(%error, "kubelet stand-in watch"),
        }
    }
}

struct Standin {
    client: kube::Client,
    // By pod UID: a second event for a pod can arrive before the status patch that gave it
    // an IP, and a running pod's IP must not change.
    pod_ips: HashMap<String, String>,
    next_ip: u32,
}

impl Standin {
    async fn handle(&mut self, pod: &Pod) -> anyhow::Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace(pod));
        let node_name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
        if pod.metadata.deletion_timestamp.is_some() {
            if let Some(uid) = &pod.metadata.uid {
                self.pod_ips.remove(uid);
            }
            // A graceful delete of a bound pod waits for its kubelet to confirm the
            // containers stopped; there are none, so confirm at once.
            if node_name == Some(FAKE_NODE) {
                let result = api
                    .delete(name(pod), &DeleteParams::default().grace_period(0))
                    .await;
                match result {
                    Ok(_) => {}
                    Err(kube::Error::Api(status)) if status.is_not_found() => {}
                    Err(error) => return Err(error).context("finishing the deletion"),
                }
            }
            return Ok(());
        }
        match node_name {
            // The binding comes back through the watch, and then the pod is reported Running.
            None => bind(&api, pod).await,
            Some(FAKE_NODE) if !is_running_and_ready(pod) => {
                let pod_ip = self.pod_ip(pod);
                report_running(&api, pod, pod_ip).await
            }
            _ => Ok(()),
        }
    }

    fn pod_ip(&mut self, pod: &Pod) -> String {
        if let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.clone()) {
            return ip;
        }
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let next_ip = &mut self.next_ip;
        self.pod_ips
            .entry(uid)
            .or_insert_with(|| {
                let ip = Ipv4Addr::from(*next_ip);
                *next_ip += 1;
                ip.to_string()
            })
            .clone()
    }
}

async fn bind(api: &Api<Pod>, pod: &Pod) -> anyhow::Result<()> {
    let binding = Binding {
        metadata: ObjectMeta {
            name: Some(name(pod).to_owned()),
            ..ObjectMeta::default()
        },
        target: ObjectReference {
            api_version: Some("v1".to_owned()),
            kind: Some("Node".to_owned()),
            name: Some(FAKE_NODE.to_owned()),
            ..ObjectReference::default()
        },
    };
    let result: Result<serde_json::Value, _> = api
        .create_subresource("binding", name(pod), &PostParams::default(), &binding)
        .await;
    match result {
        Ok(_) => Ok(()),
        // Already bound (a stale watch event) or already gone.
        Err(kube::Error::Api(status)) if status.is_conflict() || status.is_not_found() => Ok(()),
        Err(error) => Err(error).context("binding to the fake node"),
    }
}

fn is_running_and_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    status.phase.as_deref() == Some("Running")
        && status.pod_ip.is_some()
        && status
            .conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

async fn report_running(api: &Api<Pod>, pod: &Pod, pod_ip: String) -> anyhow::Result<()> {
    let now = Time(Timestamp::now());
    let spec = pod.spec.as_ref().context("pod without spec")?;
    let condition = |type_: &str| PodCondition {
        type_: type_.to_owned(),
        status: "True".to_owned(),
        last_transition_time: Some(now.clone()),
        ..PodCondition::default()
    };
    let running = |name: &str, image: Option<&str>| ContainerStatus {
        name: name.to_owned(),
        image: image.unwrap_or_default().to_owned(),
        image_id: String::new(),
        ready: true,
        started: Some(true),
        restart_count: 0,
        state: Some(ContainerState {
            running: Some(ContainerStateRunning {
                started_at: Some(now.clone()),
            }),
            ..ContainerState::default()
        }),
        ..ContainerStatus::default()
    };
    let init_container_statuses: Vec<ContainerStatus> = spec
        .init_containers
        .iter()
        .flatten()
        .map(|c| {
            // restartPolicy Always marks a sidecar, which keeps running next to the others.
            if c.restart_policy.as_deref() == Some("Always") {
                running(&c.name, c.image.as_deref())
            } else {
                ContainerStatus {
                    ready: false,
                    started: Some(false),
                    state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 0,
                            reason: Some("Completed".to_owned()),
                            started_at: Some(now.clone()),
                            finished_at: Some(now.clone()),
                            ..ContainerStateTerminated::default()
                        }),
                        ..ContainerState::default()
                    }),
                    ..running(&c.name, c.image.as_deref())
                }
            }
        })
        .collect();
    let status = PodStatus {
        phase: Some("Running".to_owned()),
        conditions: Some(vec![
            condition("PodReadyToStartContainers"),
            condition("PodScheduled"),
            condition("Initialized"),
            condition("ContainersReady"),
            condition("Ready"),
        ]),
        host_ip: Some(NODE_IP.to_owned()),
        host_ips: Some(vec![HostIP {
            ip: NODE_IP.to_owned(),
        }]),
        pod_ip: Some(pod_ip.clone()),
        pod_ips: Some(vec![PodIP { ip: pod_ip }]),
        start_time: Some(now.clone()),
        container_statuses: Some(
            spec.containers
                .iter()
                .map(|c| running(&c.name, c.image.as_deref()))
                .collect(),
        ),
        init_container_statuses: (!init_container_statuses.is_empty())
            .then_some(init_container_statuses),
        ..PodStatus::default()
    };
    api.patch_status(
        name(pod),
        &PatchParams::default(),
        &Patch::Merge(json!({"status": status})),
    )
    .await
    .context("reporting the pod Running")?;
    Ok(())
}

fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

fn namespace(pod: &Pod) -> &str {
    pod.metadata.namespace.as_deref().unwrap_or("default")
}
