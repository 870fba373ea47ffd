//! The README's main job: seed 000–002 live. A real control plane (kube-apiserver with its
//! aggregator, kube-controller-manager's HPA controller, etcd), a real Prometheus scraping
//! Kong-style latency, and metrics-registry behind the APIServices; the HPA scales
//! Deployment `command` 1 → 10 while latency is ~100 ms and back to 1 when it drops.
//! Prints a timeline, then stops everything by itself.

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use metrics_registry_tests::e2e::{E2e, Timeline};
use metrics_registry_tests::fixtures::{KONG_HPA, KONG_LATENCY};
use std::time::{Duration, Instant};

const LATENCY: &str = "kong_upstream_latency_ms_average";
const LABELS: [(&str, &str); 3] = [
    ("namespace", "kong"),
    ("exported_namespace", "kong"),
    ("exported_service", "command"),
];
const PATH: &str = "/apis/custom.metrics.k8s.io/v1beta1/namespaces/kong/services/command/kong_upstream_latency_ms_60s_average";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    println!("metrics-registry demo: the HPA scales on Prometheus latency (seed 000–002)");
    println!(
        "starting etcd, kube-apiserver, kube-controller-manager (built from their Go modules the first time), Prometheus and metrics-registry…"
    );
    let e2e = E2e::start(|exporter| exporter.set(LATENCY, &LABELS, 100.0)).await?;
    let timings = e2e.control_plane.timings();
    println!(
        "  control plane up (etcd {:.1}s, kube-apiserver {:.1}s, kube-controller-manager {:.1}s); APIServices Available after {:.1}s",
        timings.etcd.as_secs_f64(),
        timings.apiserver.as_secs_f64(),
        timings.controller_manager.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    println!(
        "\napplying the ClusterServiceMetric, Deployment/Service `command` (namespace kong) and the seed's HPA (target Value 40)"
    );
    e2e.apply_yaml(KONG_LATENCY).await?;
    e2e.apply_yaml(&e2e.workload("kong", "command", 1)).await?;
    let served = e2e
        .wait_raw(PATH, Duration::from_secs(5), |b| {
            b["items"][0]["value"].is_string()
        })
        .await?;
    let answer = e2e.get_raw(PATH).await?;
    println!("kubectl get --raw '{PATH}'   (served {served:?} after apply)");
    for line in serde_json::to_string_pretty(&answer)?.lines() {
        println!("  {line}");
    }
    e2e.apply_yaml(KONG_HPA).await?;

    let mut timeline = Timeline::live("upstream latency ~100 ms (target 40 ms)");
    e2e.wait_replicas(
        "kong",
        "command",
        10,
        Duration::from_secs(180),
        &mut timeline,
    )
    .await?;
    e2e.exporter.set(LATENCY, &LABELS, 5.0);
    let mut timeline = Timeline::live("traffic stops: latency 5 ms");
    e2e.wait_replicas(
        "kong",
        "command",
        1,
        Duration::from_secs(180),
        &mut timeline,
    )
    .await?;

    println!(
        "\nkubectl get events --field-selector involvedObject.kind=HorizontalPodAutoscaler -n kong"
    );
    let events: Api<Event> = Api::namespaced(e2e.admin.clone(), "kong");
    let mut list = events
        .list(&ListParams::default().fields("involvedObject.name=command,reason=SuccessfulRescale"))
        .await?
        .items;
    list.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
    for event in list {
        println!(
            "  Normal  SuccessfulRescale  horizontalpodautoscaler/command  {}",
            event.message.unwrap_or_default()
        );
    }
    println!(
        "\nstopping everything (done in {:.1}s)",
        started.elapsed().as_secs_f64()
    );
    e2e.stop().await;
    Ok(())
}
