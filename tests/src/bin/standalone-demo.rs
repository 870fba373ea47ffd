//! The README's main job: a real Prometheus scraping an exporter, the real
//! `metrics-registry` binary serving definitions from a folder, and the answers an HPA
//! would get from both metrics APIs, including a live edit. Stops everything itself.

use anyhow::{Context, bail};
use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::fixtures::{KONG_LATENCY, SEED_004, publish_seed_series};
use metrics_registry_tests::ports::free_addr;
use metrics_registry_tests::prometheus::{Prometheus, PrometheusOptions};
use metrics_registry_tests::registry_process::binary;
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::Command;

fn step(started: Instant, text: &str) {
    println!("\n[{:>5.1}s] {text}", started.elapsed().as_secs_f64());
}

async fn show(
    client: &reqwest::Client,
    base: &str,
    path: &str,
) -> anyhow::Result<serde_json::Value> {
    let response = client.get(format!("{base}{path}")).send().await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await?;
    println!("  GET {path}\n  → {status}");
    for line in serde_json::to_string_pretty(&body)?.lines() {
        println!("    {line}");
    }
    Ok(body)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    metrics_registry::install_crypto_provider();
    let started = Instant::now();
    println!(
        "metrics-registry demo: Prometheus metrics served to the HorizontalPodAutoscaler APIs"
    );

    step(
        started,
        "exporter: Kong upstream latency (102.312 ms on Service default/echo), RabbitMQ queue, php-fpm workers, SQS queue",
    );
    let exporter = Exporter::start().await?;
    publish_seed_series(&exporter);
    println!("  serving http://{}/metrics", exporter.addr());

    step(
        started,
        "Prometheus (Debian package) scraping the exporter every second",
    );
    let rules = tempfile::tempdir()?;
    let prometheus = Prometheus::start(PrometheusOptions {
        targets: vec![exporter.addr()],
        rule_files: vec![rules.path().join("*.yaml")],
        ..Default::default()
    })
    .await?;
    println!("  {} is up; waiting for the first scrape", prometheus.url());
    prometheus
        .wait_for_series("kong_upstream_latency_ms_average", Duration::from_secs(30))
        .await?;
    println!("  first samples stored");

    step(
        started,
        "metrics-registry run --manifests DIR --insecure-listen ADDR (seed 000 and seed 004 definitions)",
    );
    let manifests = tempfile::tempdir()?;
    std::fs::write(manifests.path().join("kong.yaml"), KONG_LATENCY)?;
    std::fs::write(manifests.path().join("app.yaml"), SEED_004)?;
    let addr = free_addr();
    let base = format!("http://{addr}");
    let mut server = Command::new(binary()?)
        .args(["run", "--manifests"])
        .arg(manifests.path())
        .args([
            "--insecure-listen",
            &addr.to_string(),
            "--prometheus-url",
            &prometheus.url(),
            "--external-refresh-interval",
            "1s",
        ])
        .arg("--rules-dir")
        .arg(rules.path())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("cannot start metrics-registry")?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let ready_since = Instant::now();
    loop {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status().is_success()
        {
            break;
        }
        if ready_since.elapsed() > Duration::from_secs(10) {
            bail!("metrics-registry did not become ready");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("  ready on {base} after {:?}", ready_since.elapsed());

    step(
        started,
        "custom.metrics.k8s.io: the Kong seed's request, in v1beta1 and v1beta2",
    );
    let path = "namespaces/default/services/echo/kong_upstream_latency_ms_60s_average";
    show(
        &client,
        &base,
        &format!("/apis/custom.metrics.k8s.io/v1beta1/{path}"),
    )
    .await?;
    show(
        &client,
        &base,
        &format!("/apis/custom.metrics.k8s.io/v1beta2/{path}"),
    )
    .await?;

    step(
        started,
        "Pods metric (php-fpm busy workers); web-3 reports NaN and is left out, not sent as a number",
    );
    show(
        &client,
        &base,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/mynamespace/pods/*/php-fpm-active-workers",
    )
    .await?;

    step(
        started,
        "external.metrics.k8s.io: the CustomPrometheusRules recording rule, written as a rule file and evaluated by Prometheus",
    );
    let external = "/apis/external.metrics.k8s.io/v1beta1/namespaces/mynamespace/sqs_messages_visible?labelSelector=queue%3Dsend_forum_messages";
    let since = Instant::now();
    loop {
        let body: serde_json::Value = client
            .get(format!("{base}{external}"))
            .send()
            .await?
            .json()
            .await?;
        if body["items"]
            .as_array()
            .is_some_and(|items| !items.is_empty())
        {
            println!(
                "  first evaluation of kube_adapter_metric_sqs_messages_visible after {:.1}s",
                since.elapsed().as_secs_f64()
            );
            break;
        }
        if since.elapsed() > Duration::from_secs(15) {
            bail!("the recording rule produced no data: {body}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    show(&client, &base, "/apis/external.metrics.k8s.io/v1beta1").await?;
    show(&client, &base, external).await?;

    step(started, "errors say what is wrong");
    show(
        &client,
        &base,
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/services/echo/no_such_metric",
    )
    .await?;

    step(
        started,
        "hot reload: the definition is edited to report the latency in seconds",
    );
    let edited = KONG_LATENCY.replace(
        "avg by (<<.GroupBy>>) (kong_upstream_latency_ms_average{<<.LabelMatchers>>})",
        "avg by (<<.GroupBy>>) (kong_upstream_latency_ms_average{<<.LabelMatchers>>}) / 1000",
    );
    let tmp = manifests.path().join(".kong.yaml.tmp");
    std::fs::write(&tmp, edited)?;
    let edit_at = Instant::now();
    std::fs::rename(&tmp, manifests.path().join("kong.yaml"))?;
    let url = format!("{base}/apis/custom.metrics.k8s.io/v1beta2/{path}");
    loop {
        let body: serde_json::Value = client.get(&url).send().await?.json().await?;
        if body["items"][0]["value"] == "102m" {
            println!(
                "  value went from 102312m to 102m, served {:?} after the file was written",
                edit_at.elapsed()
            );
            break;
        }
        if edit_at.elapsed() > Duration::from_secs(5) {
            bail!("the edit was not served within 5 s: {body}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    step(
        started,
        "load changes: latency climbs, the value an HPA reads follows Prometheus",
    );
    for latency in [150.0, 40.0, 5.5] {
        exporter.set(
            "kong_upstream_latency_ms_average",
            &[
                ("namespace", "kong"),
                ("exported_namespace", "default"),
                ("exported_service", "echo"),
            ],
            latency,
        );
        let expected = metrics_registry_apiserver_value(latency / 1000.0);
        let since = Instant::now();
        loop {
            let body: serde_json::Value = client.get(&url).send().await?.json().await?;
            if body["items"][0]["value"] == expected.as_str() {
                println!(
                    "  exporter says {latency} ms → API says {expected} (after {:.1}s, one scrape)",
                    since.elapsed().as_secs_f64()
                );
                break;
            }
            if since.elapsed() > Duration::from_secs(10) {
                bail!("value {expected} never arrived: {body}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    step(
        started,
        "stopping metrics-registry, Prometheus and the exporter",
    );
    server.kill().await.ok();
    drop(prometheus);
    drop(exporter);
    println!("done in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The quantity the API prints for a value known to be a whole number of millis.
fn metrics_registry_apiserver_value(value: f64) -> String {
    let milli = (value * 1000.0).round() as i64;
    if milli % 1000 == 0 {
        format!("{}", milli / 1000)
    } else {
        format!("{milli}m")
    }
}
