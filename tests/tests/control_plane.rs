//! The control-plane harness itself: a real etcd, kube-apiserver and
//! kube-controller-manager, and a real node (kube-scheduler, containerd, kubelet) that
//! runs pods from locally built images.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use metrics_registry_tests::control_plane::{ControlPlane, ControlPlaneOptions, WORKLOAD_IMAGE};

const READY_TIMEOUT: Duration = Duration::from_secs(30);

async fn boot(test: &str, node: bool) -> ControlPlane {
    metrics_registry_tests::init_test_logging();
    let plane = ControlPlane::start(ControlPlaneOptions {
        node,
        ..ControlPlaneOptions::default()
    })
    .await
    .expect("control plane starts");
    let t = plane.timings();
    println!(
        "[{test}] boot: etcd ready {:?}, apiserver ready +{:?}, controller-manager + default SA +{:?}, scheduler + node Ready +{:?}, total {:?}",
        t.etcd,
        t.apiserver,
        t.controller_manager,
        t.node,
        t.total()
    );
    plane
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    let labels = BTreeMap::from([("app".to_owned(), name.to_owned())]);
    Deployment {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            ..ObjectMeta::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
            selector: LabelSelector {
                match_labels: Some(labels.clone()),
                ..LabelSelector::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![Container {
                        name: "main".to_owned(),
                        // Built on this machine and imported; nothing can be pulled.
                        image: Some(WORKLOAD_IMAGE.to_owned()),
                        image_pull_policy: Some("Never".to_owned()),
                        ..Container::default()
                    }],
                    termination_grace_period_seconds: Some(5),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

async fn wait_ready_replicas(
    plane: &ControlPlane,
    deployments: &Api<Deployment>,
    name: &str,
    want: i32,
) -> Duration {
    let started = Instant::now();
    loop {
        let status = deployments
            .get_status(name)
            .await
            .expect("reading the Deployment")
            .status
            .unwrap_or_default();
        if status.ready_replicas == Some(want) && status.replicas == Some(want) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < READY_TIMEOUT,
            "{name}: {want} ready replicas not reached within {READY_TIMEOUT:?}, status {status:?}\n\
             --- kube-controller-manager ---\n{}",
            plane.log_tail("kube-controller-manager", 30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real node: run through scripts/test.sh (network namespace, containerd, kubelet)"]
async fn deployment_pods_run_on_a_real_node_and_scale() {
    let plane = boot("deployment", true).await;
    let network = plane
        .network()
        .expect("a cluster with a node has a network");
    let node = plane.node().expect("a node");
    let admin = plane.admin_client().await.expect("admin client");
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment("web", 2))
        .await
        .expect("creating the Deployment");
    let took = wait_ready_replicas(&plane, &deployments, "web", 2).await;
    println!("[deployment] 2 ready replicas after {took:?}");

    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let listed = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .expect("listing pods");
    assert_eq!(listed.items.len(), 2);
    let pod_prefix = network.pod_cidr.trim_end_matches("0/24");
    let mut pod_ips = Vec::new();
    for pod in &listed.items {
        let spec = pod.spec.as_ref().unwrap();
        let status = pod.status.as_ref().unwrap();
        assert_eq!(
            spec.node_name.as_deref(),
            Some(node.name.as_str()),
            "placed by kube-scheduler"
        );
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let running = status.container_statuses.as_ref().unwrap()[0]
            .state
            .as_ref()
            .and_then(|s| s.running.as_ref());
        assert!(running.is_some(), "the container really runs: {status:?}");
        let ip = status.pod_ip.clone().unwrap_or_default();
        assert!(
            ip.starts_with(pod_prefix),
            "pod IP {ip} from the bridge's range {}",
            network.pod_cidr
        );
        pod_ips.push(ip);
    }
    // What the loopback stand-in could never give: a Service whose EndpointSlice holds
    // the pods' addresses (the chart's Service in front of metrics-registry needs this).
    let services: Api<Service> = Api::namespaced(admin.clone(), "default");
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(serde_json::json!({
                "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]},
            }))
            .unwrap(),
        )
        .await
        .expect("creating the Service");
    let slices: Api<EndpointSlice> = Api::namespaced(admin.clone(), "default");
    let started = Instant::now();
    loop {
        let mut addresses: Vec<String> = slices
            .list(&ListParams::default().labels("kubernetes.io/service-name=web"))
            .await
            .expect("listing EndpointSlices")
            .items
            .into_iter()
            .flat_map(|s| s.endpoints)
            .flat_map(|e| e.addresses)
            .collect();
        addresses.sort();
        pod_ips.sort();
        if addresses == pod_ips {
            break;
        }
        assert!(
            started.elapsed() < READY_TIMEOUT,
            "EndpointSlice addresses {addresses:?}, pods {pod_ips:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("[deployment] EndpointSlice lists both pod IPs");

    deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 3}})),
        )
        .await
        .expect("scaling through the scale subresource");
    let took = wait_ready_replicas(&plane, &deployments, "web", 3).await;
    println!("[deployment] 3 ready replicas after {took:?}");

    // Scaled-down pods are deleted gracefully: the kubelet stops their containers (which
    // exit on SIGTERM) and only then are they gone.
    deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"spec": {"replicas": 1}})),
        )
        .await
        .expect("scaling down");
    let started = Instant::now();
    loop {
        let left = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .expect("listing pods")
            .items
            .len();
        if left == 1 {
            break;
        }
        assert!(
            started.elapsed() < READY_TIMEOUT,
            "{left} pods still exist after scaling to 1"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "[deployment] scaled down to 1 pod after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs the control plane built from Go (etcd, kube-apiserver, kube-controller-manager): run through scripts/test.sh"]
async fn rbac_applies_to_certificate_users() {
    let plane = boot("rbac", false).await;
    let bob = plane.client_for("bob", &[]).await.expect("client for bob");
    let error = Api::<Pod>::namespaced(bob, "default")
        .list(&ListParams::default())
        .await
        .expect_err("bob has no RBAC grants");
    match error {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert!(status.message.contains("\"bob\""), "{}", status.message);
        }
        other => panic!("expected 403, got {other:?}"),
    }

    let admin = plane.admin_client().await.expect("admin client");
    Api::<Pod>::namespaced(admin, "default")
        .list(&ListParams::default())
        .await
        .expect("admin lists pods");

    // Both groups must reach the apiserver, each as its own O attribute.
    let carol = plane
        .client_for("carol", &["team-a", "team-b"])
        .await
        .expect("client for carol");
    let review = Api::<SelfSubjectReview>::all(carol)
        .create(&PostParams::default(), &SelfSubjectReview::default())
        .await
        .expect("SelfSubjectReview");
    let user = review.status.and_then(|s| s.user_info).unwrap_or_default();
    assert_eq!(user.username.as_deref(), Some("carol"));
    let groups = user.groups.unwrap_or_default();
    for group in ["team-a", "team-b", "system:authenticated"] {
        assert!(
            groups.iter().any(|g| g == group),
            "{group} missing from {groups:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs a real node: run through scripts/test.sh (network namespace, containerd, kubelet)"]
async fn drop_stops_the_control_plane_and_the_node() {
    let plane = boot("teardown", true).await;
    let addr = plane.apiserver_addr();
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    let admin = plane.admin_client().await.expect("admin client");
    let deployments: Api<Deployment> = Api::namespaced(admin.clone(), "default");
    deployments
        .create(&PostParams::default(), &deployment("left-running", 1))
        .await
        .expect("creating the Deployment");
    wait_ready_replicas(&plane, &deployments, "left-running", 1).await;
    let node = plane.node().expect("a node");
    let socket = node.containerd_socket().display().to_string();
    let cgroup = node.cgroup_root().to_string();
    let owned = |socket: &str| {
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
            .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
            .filter(|cmdline| cmdline.contains(socket))
            .count()
    };
    assert!(
        owned(&socket) > 0,
        "containerd and a shim run while the cluster does"
    );
    // Dropped without a graceful shutdown, as a failing test would.
    drop(admin);
    drop(plane);
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(
        refused.is_err(),
        "{addr} still accepts connections after drop"
    );
    assert_eq!(
        owned(&socket),
        0,
        "no containerd, shim or kubelet of that node is left"
    );
    assert!(
        !std::path::Path::new("/sys/fs/cgroup/memory")
            .join(&cgroup)
            .exists(),
        "the node's cgroups are removed"
    );
}
