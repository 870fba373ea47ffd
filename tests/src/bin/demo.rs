//! The README's main job: seed 000–002 live, through the chart as users install it. A real
//! control plane (kube-apiserver with its aggregator, kube-controller-manager's HPA
//! controller, kube-scheduler, etcd), a real node (containerd + kubelet) running
//! metrics-registry from its image after `helm install`, a real Prometheus scraping
//! Kong-style latency; the HPA scales Deployment `command` 1 → 10 while latency is
//! ~100 ms and back to 1 when it drops. Prints a timeline, then stops everything.

use metrics_registry_tests::e2e::{E2e, NAMESPACE};
use metrics_registry_tests::scenarios::{KONG_PATH, kong_latency, set_latency};
use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    println!("metrics-registry demo: the HPA scales on Prometheus latency (seed 000–002)");
    println!(
        "starting etcd, kube-apiserver, kube-controller-manager, kube-scheduler, a node (containerd + kubelet) and Prometheus…"
    );
    let e2e = E2e::install(|exporter| set_latency(exporter, 100.0), &[]).await?;
    let timings = e2e.control_plane.timings();
    println!(
        "  control plane up (etcd {:.1}s, kube-apiserver {:.1}s, kube-controller-manager {:.1}s, node Ready {:.1}s)",
        timings.etcd.as_secs_f64(),
        timings.apiserver.as_secs_f64(),
        timings.controller_manager.as_secs_f64(),
        timings.node.as_secs_f64(),
    );
    println!(
        "  helm install metrics-registry charts/metrics-registry -n {NAMESPACE}: 2 replicas Ready, APIServices Available after {:.1}s",
        e2e.install_took.unwrap_or_default().as_secs_f64()
    );
    println!(
        "\napplying the ClusterServiceMetric, Deployment/Service `command` (namespace kong) and the seed's HPA (target Value 40)"
    );
    let run = kong_latency(&e2e, true).await?;
    let answer = e2e.get_raw(KONG_PATH).await?;
    println!(
        "\nkubectl get --raw '{KONG_PATH}'   (served {:?} after the definition was applied)",
        run.served_after
    );
    for line in serde_json::to_string_pretty(&answer)?.lines() {
        println!("  {line}");
    }
    println!(
        "\nkubectl get events --field-selector involvedObject.kind=HorizontalPodAutoscaler -n kong"
    );
    for message in &run.events {
        println!("  Normal  SuccessfulRescale  horizontalpodautoscaler/command  {message}");
    }
    println!(
        "\nstopping everything (done in {:.1}s)",
        started.elapsed().as_secs_f64()
    );
    e2e.stop().await;
    Ok(())
}
