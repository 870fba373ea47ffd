//! Seed scenarios shared by the end-to-end tests and the demo.

use crate::e2e::{E2e, Timeline};
use crate::exporter::Exporter;
use crate::fixtures::{KONG_HPA, KONG_LATENCY};
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};
use std::time::Duration;

/// The Kong series of seed 000 (the ClusterServiceMetric reads its `_sum`/`_count`
/// rates; the test exporter publishes a latency whose average is this value).
pub const LATENCY: &str = "kong_upstream_latency_ms_average";
const LATENCY_LABELS: [(&str, &str); 3] = [
    ("namespace", "kong"),
    ("exported_namespace", "kong"),
    ("exported_service", "command"),
];
/// Seed 000's request, as the HPA makes it through the aggregator.
pub const KONG_PATH: &str = "/apis/custom.metrics.k8s.io/v1beta1/namespaces/kong/services/command/kong_upstream_latency_ms_60s_average";

pub fn set_latency(exporter: &Exporter, milliseconds: f64) {
    exporter.set(LATENCY, &LATENCY_LABELS, milliseconds);
}

/// What the seed 000–002 run showed.
pub struct KongRun {
    /// Definition applied → served through the aggregator.
    pub served_after: Duration,
    pub scale_up: Duration,
    pub scale_down: Duration,
    /// `SuccessfulRescale` event messages, oldest first.
    pub events: Vec<String>,
}

/// Seeds 000–002: latency ~100 ms against the HPA's target of 40 scales Deployment
/// `command` from 1 to 10; latency 5 ms brings it back to 1. Expects the exporter to
/// publish 100 ms already.
pub async fn kong_latency(e2e: &E2e, live: bool) -> anyhow::Result<KongRun> {
    e2e.apply_yaml(&format!(
        "{KONG_LATENCY}\n---\n{}",
        e2e.workload("kong", "command", 1)
    ))
    .await?;
    let served_after = e2e
        .wait_raw(KONG_PATH, Duration::from_secs(10), |body| {
            body["items"][0]["value"] == "100"
        })
        .await?;
    e2e.apply_yaml(KONG_HPA).await?;

    let title = "seed 000–002: upstream latency ~100 ms (target 40 ms)";
    let mut timeline = if live {
        Timeline::live(title)
    } else {
        Timeline::new(title)
    };
    let scale_up = e2e
        .wait_replicas(
            "kong",
            "command",
            10,
            Duration::from_secs(120),
            &mut timeline,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{e:#}"))?;
    set_latency(&e2e.exporter, 5.0);
    let title = "traffic stops: latency 5 ms";
    if live {
        timeline = Timeline::live(title);
    } else {
        timeline.note("latency drops to 5 ms");
    }
    let scale_down = e2e
        .wait_replicas(
            "kong",
            "command",
            1,
            Duration::from_secs(120),
            &mut timeline,
        )
        .await?;
    timeline.print();
    Ok(KongRun {
        served_after,
        scale_up,
        scale_down,
        events: rescale_events(e2e, "kong", "command").await,
    })
}

/// `SuccessfulRescale` messages of an HPA, oldest first.
pub async fn rescale_events(e2e: &E2e, namespace: &str, name: &str) -> Vec<String> {
    events(e2e, namespace, name, "SuccessfulRescale").await
}

/// Messages of the events with `reason` about object `name`, oldest first.
pub async fn events(e2e: &E2e, namespace: &str, name: &str, reason: &str) -> Vec<String> {
    let api: Api<Event> = Api::namespaced(e2e.admin.clone(), namespace);
    let mut list = api
        .list(&ListParams::default().fields(&format!("involvedObject.name={name},reason={reason}")))
        .await
        .map(|list| list.items)
        .unwrap_or_default();
    list.sort_by_key(|e| e.metadata.creation_timestamp.clone().map(|t| t.0));
    list.into_iter().filter_map(|e| e.message).collect()
}
