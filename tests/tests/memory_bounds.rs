//! The whole process stays under the chart's memory limit while clients send what every
//! cache keyed by client input would grow on, and the callers that keep asking keep
//! their cached reviews: the release binary against a real Prometheus and a real
//! kube-apiserver (its TokenReviews and SubjectAccessReviews), its peak resident memory
//! read from the kernel (VmHWM), not from the caches' own accounting.
//!
//! The quiet caller is warmed, then its ServiceAccount and binding are deleted, so that
//! any review sent for it after that is refused (checked at kube-apiserver): an answer
//! other than 200 for it during the floods means the floods pushed its token or its
//! decision out of the caches. Its TTLs are raised to 10 minutes so that expiry cannot
//! be what pushes them out.

use anyhow::Context as _;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
use kube::api::{Api, DeleteParams};
use metrics_registry_tests::bench::setup::{self, Scale};
use metrics_registry_tests::cluster_mode::install_crds;
use metrics_registry_tests::control_plane::{ControlPlane, ControlPlaneOptions};
use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::ports::free_port;
use metrics_registry_tests::registry_process::RegistryProcess;
use metrics_registry_tests::stack::scraping;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CUSTOM: &str = "/apis/custom.metrics.k8s.io/v1beta2";
/// What the quiet caller asks (services/s3 has latency 3).
const QUIET_PATH: &str =
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/bench/services/s3/bench_latency";
const SELECTORS: usize = 10_000;
const PATHS: usize = 100_000;
const OBJECTS: usize = 100_000;
const TOKENS: usize = 100_000;
const CONCURRENCY: usize = 32;
/// Kubernetes label values are at most 63 characters.
const LABEL_VALUE: usize = 60;
/// Selectors a little under the server's 8 KiB cap, so each is accepted and cached.
const SELECTOR_BYTES: usize = 8_000;

/// `resources.limits.memory` of the chart's values, in MiB.
fn chart_memory_limit_mib() -> anyhow::Result<f64> {
    let values = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../charts/metrics-registry/values.yaml"
    ))?;
    let values: serde_json::Value = serde_saphyr::from_str(&values)?;
    let limit = values["resources"]["limits"]["memory"]
        .as_str()
        .context("the chart sets no memory limit")?;
    limit
        .strip_suffix("Mi")
        .and_then(|mib| mib.parse::<f64>().ok())
        .with_context(|| format!("memory limit {limit:?} is not in Mi"))
}

/// A sequence nobody picked: splitmix64 from the clock.
struct Sequence(u64);

impl Sequence {
    fn new() -> Sequence {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        println!("seed {seed}");
        Sequence(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn hex(&mut self, chars: usize) -> String {
        let mut text = String::with_capacity(chars + 16);
        while text.len() < chars {
            text.push_str(&format!("{:016x}", self.next()));
        }
        text.truncate(chars);
        text
    }
}

/// `KEY notin (…)` of random values, about [`SELECTOR_BYTES`] long: it matches every
/// series and pod (none has such a value), so each answer is a 200 worth caching.
fn selector(key: &str, sequence: &mut Sequence) -> String {
    let mut values = Vec::new();
    let mut length = key.len() + 9;
    while length + LABEL_VALUE + 1 < SELECTOR_BYTES {
        values.push(format!("v{}", sequence.hex(LABEL_VALUE - 1)));
        length += LABEL_VALUE + 1;
    }
    format!("{key} notin ({})", values.join(","))
}

struct Client {
    http: reqwest::Client,
    base: String,
}

/// One request to send and the status it must get.
struct Ask {
    token: String,
    path: String,
    query: Option<(&'static str, String)>,
}

impl Client {
    async fn status(&self, ask: &Ask) -> Result<u16, String> {
        let mut request = self
            .http
            .get(format!("{}{}", self.base, ask.path))
            .bearer_auth(&ask.token);
        if let Some(query) = &ask.query {
            request = request.query(&[query]);
        }
        match request.send().await {
            Ok(response) => {
                let status = response.status().as_u16();
                // Read to the end, so the connection is reused and the answer built.
                let _ = response.bytes().await;
                Ok(status)
            }
            Err(error) => Err(error.to_string()),
        }
    }

    /// Sends every ask, [`CONCURRENCY`] at a time: the count of answers other than
    /// `expected`, the first of them, and the time taken.
    async fn flood(
        &self,
        asks: impl Iterator<Item = Ask>,
        expected: u16,
    ) -> (usize, Option<String>, Duration) {
        let started = Instant::now();
        let mut unexpected = 0;
        let mut first = None;
        let mut answers = futures::stream::iter(asks)
            .map(|ask| async move { (self.status(&ask).await, ask.path) })
            .buffer_unordered(CONCURRENCY);
        while let Some((answer, path)) = answers.next().await {
            if answer != Ok(expected) {
                unexpected += 1;
                first.get_or_insert(format!("{path}: {answer:?}"));
            }
        }
        (unexpected, first, started.elapsed())
    }
}

/// What the quiet caller asks, as it.
async fn quiet(client: &Client, token: &str) -> Result<u16, String> {
    let ask = Ask {
        token: token.into(),
        path: QUIET_PATH.into(),
        query: None,
    };
    client.status(&ask).await
}

/// The server's own counters of reviews and cache hits, for the printout.
async fn review_counters(client: &Client, token: &str) -> String {
    let Ok(response) = client
        .http
        .get(format!("{}/metrics", client.base))
        .bearer_auth(token)
        .send()
        .await
    else {
        return String::new();
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with("metrics_registry_auth_"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs Prometheus and the control plane built from Go, and the metrics-registry binary: run through scripts/test.sh"]
async fn memory_stays_under_the_chart_limit_under_floods_of_client_keys() -> anyhow::Result<()> {
    metrics_registry::install_crypto_provider();
    let limit_mib = chart_memory_limit_mib()?;
    let scale = Scale {
        pods: 120,
        services: 10,
        definitions: 2,
    };
    let exporter = Exporter::start().await?;
    setup::publish(&exporter, scale);
    let (prometheus, _rules) = scraping(&exporter, setup::POD_SERIES).await?;
    let plane = ControlPlane::start(ControlPlaneOptions::default()).await?;
    let admin = plane.admin_client().await?;
    install_crds(&admin).await?;
    setup::objects(&admin, scale).await?;
    let quiet_token = setup::caller_token(&admin).await?;
    let flood_token = setup::reader_token(&admin, "flood", "flood-metrics-reader").await?;
    setup::definitions(&admin, scale).await?;

    let registry = RegistryProcess::start(
        &plane,
        &prometheus.url(),
        free_port(),
        &[
            "--authentication-token-cache-ttl",
            "10m",
            "--authorization-cache-authorized-ttl",
            "10m",
            // The answer cache on, and with it the objects each batch group remembers.
            "--query-cache-max-age",
            "30s",
        ],
    )?;
    let ca = reqwest::Certificate::from_pem(plane.certs().ca_cert_pem.as_bytes())?;
    let http = reqwest::Client::builder()
        .tls_certs_only([ca.clone()])
        .timeout(Duration::from_secs(30))
        .build()?;
    let client = Arc::new(Client {
        http,
        base: registry.base_url(),
    });
    let started = Instant::now();
    while quiet(&client, &quiet_token).await != Ok(200) {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "the quiet caller never got an answer\n{}",
            registry.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let baseline_mib = registry.stats().rss_mib();

    // Revoked: from now on only the caches can let it in.
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), setup::NAMESPACE);
    accounts.delete("hpa", &DeleteParams::default()).await?;
    let bindings: Api<ClusterRoleBinding> = Api::all(admin.clone());
    bindings
        .delete(setup::READER_ROLE, &DeleteParams::default())
        .await?;
    let apiserver = reqwest::Client::builder().tls_certs_only([ca]).build()?;
    let started = Instant::now();
    loop {
        let status = apiserver
            .get(format!("{}/api", plane.server_url()))
            .bearer_auth(&quiet_token)
            .send()
            .await?
            .status();
        if status == 401 {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "kube-apiserver still accepts the deleted account's token ({status})"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        quiet(&client, &quiet_token).await,
        Ok(200),
        "the quiet caller's reviews were not cached"
    );

    // The quiet caller keeps asking every 250 ms through every flood.
    let done = Arc::new(AtomicBool::new(false));
    let asking = tokio::spawn({
        let client = client.clone();
        let done = done.clone();
        let quiet_token = quiet_token.clone();
        async move {
            let mut answers = Vec::new();
            while !done.load(Ordering::Relaxed) {
                answers.push(quiet(&client, &quiet_token).await);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            answers
        }
    });

    let mut sequence = Sequence::new();
    let selectors: Vec<Ask> = (0..SELECTORS)
        .map(|i| {
            if i % 2 == 0 {
                Ask {
                    token: flood_token.clone(),
                    path: QUIET_PATH.into(),
                    query: Some(("metricLabelSelector", selector("bench", &mut sequence))),
                }
            } else {
                Ask {
                    token: flood_token.clone(),
                    path: format!("{CUSTOM}/namespaces/bench/pods/*/bench_rps"),
                    query: Some(("labelSelector", selector("app", &mut sequence))),
                }
            }
        })
        .collect();
    let floods = [
        (
            "distinct 8 KiB selectors",
            client.flood(selectors.into_iter(), 200).await,
        ),
        (
            "distinct paths",
            client
                .flood(
                    (0..PATHS).map(|i| Ask {
                        token: flood_token.clone(),
                        path: format!("{CUSTOM}/namespaces/n{i}/services/s3/bench_latency"),
                        query: None,
                    }),
                    404,
                )
                .await,
        ),
        (
            "distinct object names",
            client
                .flood(
                    (0..OBJECTS).map(|i| Ask {
                        token: flood_token.clone(),
                        path: format!(
                            "{CUSTOM}/namespaces/bench/services/s{i}-{}/bench_latency",
                            sequence.hex(200)
                        ),
                        query: None,
                    }),
                    404,
                )
                .await,
        ),
        (
            "random tokens",
            client
                .flood(
                    (0..TOKENS).map(|_| Ask {
                        token: sequence.hex(40),
                        path: QUIET_PATH.into(),
                        query: None,
                    }),
                    401,
                )
                .await,
        ),
    ];
    done.store(true, Ordering::Relaxed);
    let quiet_answers = asking.await?;

    let stats = registry.stats();
    let (now_mib, peak_mib) = (stats.rss_mib(), stats.peak_rss_mib());
    println!(
        "resident memory: {baseline_mib:.1} MiB before the floods, {now_mib:.1} MiB after, peak {peak_mib:.1} MiB (limit {limit_mib} MiB)"
    );
    for (name, (unexpected, first, elapsed)) in &floods {
        println!(
            "{name}: {:.1} s, {unexpected} unexpected answers{}",
            elapsed.as_secs_f64(),
            first
                .as_deref()
                .map(|f| format!(", first: {f}"))
                .unwrap_or_default()
        );
    }
    let refused: Vec<_> = quiet_answers.iter().filter(|a| **a != Ok(200)).collect();
    println!(
        "quiet caller: {} answers, {} not 200",
        quiet_answers.len(),
        refused.len()
    );
    println!("{}", review_counters(&client, &flood_token).await);

    for (name, (unexpected, first, _)) in &floods {
        assert_eq!(
            *unexpected,
            0,
            "{name}: first unexpected answer {first:?}\n{}",
            registry.log_tail()
        );
    }
    assert!(
        refused.is_empty(),
        "the floods pushed the quiet caller's reviews out of the caches: {refused:?}"
    );
    assert!(
        quiet_answers.len() >= 10,
        "the quiet caller asked only {} times",
        quiet_answers.len()
    );
    assert!(
        peak_mib > 0.0 && peak_mib < limit_mib,
        "peak resident memory {peak_mib:.1} MiB; the chart's limit is {limit_mib} MiB"
    );
    Ok(())
}
