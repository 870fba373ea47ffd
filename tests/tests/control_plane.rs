//! The control-plane harness itself: a real etcd, kube-apiserver and
//! kube-controller-manager, with the kubelet stand-in making pods Ready.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::authentication::v1::SelfSubjectReview;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use metrics_registry_tests::cluster::{
    ControlPlane, ControlPlaneOptions, FAKE_NODE, start_kubelet_standin,
};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

async fn boot(test: &str) -> ControlPlane {
    metrics_registry_tests::init_test_logging();
    let plane = ControlPlane::start(ControlPlaneOptions::default())
        .await
        .expect("control plane starts");
    let t = plane.timings();
    println!(
        "[{test}] boot: etcd ready {:?}, apiserver ready +{:?}, controller-manager + default SA +{:?}, total {:?}",
        t.etcd,
        t.apiserver,
        t.controller_manager,
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
                        // Never pulled: there is no kubelet.
                        image: Some("registry.invalid/pause".to_owned()),
                        ..Container::default()
                    }],
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
async fn deployment_pods_become_ready_and_scale() {
    let plane = boot("deployment").await;
    let admin = plane.admin_client().await.expect("admin client");
    let _kubelet = start_kubelet_standin(admin.clone())
        .await
        .expect("kubelet stand-in starts");
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
    for pod in &listed.items {
        let spec = pod.spec.as_ref().unwrap();
        let status = pod.status.as_ref().unwrap();
        assert_eq!(spec.node_name.as_deref(), Some(FAKE_NODE));
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert!(
            status
                .pod_ip
                .as_deref()
                .is_some_and(|ip| ip.starts_with("127.")),
            "pod IP {:?}",
            status.pod_ip
        );
    }

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

    // Scaled-down pods are deleted gracefully, which only a kubelet (here the stand-in)
    // can finish; otherwise they would linger as Terminating.
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
async fn rbac_applies_to_certificate_users() {
    let plane = boot("rbac").await;
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
async fn drop_stops_the_control_plane() {
    let plane = boot("teardown").await;
    let addr = plane.apiserver_addr();
    assert!(tokio::net::TcpStream::connect(addr).await.is_ok());
    drop(plane);
    let refused = tokio::net::TcpStream::connect(addr).await;
    assert!(
        refused.is_err(),
        "{addr} still accepts connections after drop"
    );
}
