//! metrics-registry (cluster mode, the release binary) against prometheus-adapter v0.12.0
//! and the raw Prometheus queries, on one machine, one Prometheus, one control plane
//! (without a node: pods and services are objects), both servers over HTTPS with the
//! same bearer token and RBAC. Prints every measurement and each target next to it;
//! asserts nothing. `scripts/bench.sh` runs it; `--smoke` only checks that everything
//! starts and every server answers correctly, with short loads.

use anyhow::bail;
use futures::StreamExt as _;
use metrics_registry::compiler::{Change, CompileOptions, IncrementalCompiler};
use metrics_registry::definitions::Definition;
use metrics_registry_apiserver::selector::LabelSelector;
use metrics_registry_tests::adapter::Adapter;
use metrics_registry_tests::bench::load::{LoadResult, Target, closed_loop, scheduled};
use metrics_registry_tests::bench::setup::{self, Scale};
use metrics_registry_tests::bench::{ProcessStats, prometheus_queries};
use metrics_registry_tests::cluster_mode::install_crds;
use metrics_registry_tests::control_plane::{ControlPlane, ControlPlaneOptions};
use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::parity::MetricsClient;
use metrics_registry_tests::ports::free_port;
use metrics_registry_tests::prometheus::{Prometheus, PrometheusOptions};
use metrics_registry_tests::registry_process::RegistryProcess;
use std::sync::Arc;
use std::time::{Duration, Instant};

const CUSTOM: &str = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/bench";
/// Closed-loop workers, as `wrk -c8`.
const CONCURRENCY: usize = 8;
/// The HPA asks every 15 s; compressed 15× to one request per HPA per second.
const HPA_PERIOD: Duration = Duration::from_secs(1);
/// metrics-registry's result cache in this run.
const CACHE_MAX_AGE: &str = "1s";
const EDITS: usize = 20;

/// One server (or the floor) as the loads see it.
struct Server {
    name: &'static str,
    target: Target,
    process: Option<ProcessStats>,
    /// Whether it sends Prometheus queries of its own (not the floor).
    counts_queries: bool,
}

/// What one load asks of each server: a path for the servers, a query for the floor.
struct Load {
    name: String,
    paths: Vec<String>,
    raw: Vec<String>,
    shape: Shape,
}

#[derive(Clone, Copy)]
enum Shape {
    Closed,
    Scheduled,
}

#[derive(Default, Clone)]
struct Row {
    result: LoadResult,
    cpu_per_request_us: f64,
    queries_per_request: f64,
}

fn raw_path(query: &str) -> String {
    let mut url = reqwest::Url::parse("http://x/api/v1/query").expect("a URL");
    url.query_pairs_mut().append_pair("query", query);
    format!("{}?{}", url.path(), url.query().unwrap_or_default())
}

fn service_query(names: &str, matcher: &str) -> String {
    format!(
        "max by (service) (bench_latency_ms{{namespace=\"bench\",service{matcher}\"{names}\"}})"
    )
}

fn loads(scale: Scale, smoke: bool) -> Vec<Load> {
    let mut loads = Vec::new();
    loads.push(Load {
        name: "Object (one service)".into(),
        paths: vec![format!("{CUSTOM}/services/s3/bench_latency")],
        raw: vec![service_query("s3", "=")],
        shape: Shape::Closed,
    });
    let mut start = 0;
    for (size, label) in setup::POD_GROUPS.iter().zip(["a10", "a100", "a1000"]) {
        let mut names: Vec<String> = (start..start + size).map(|i| format!("p{i}")).collect();
        names.sort();
        start += size;
        // The query metrics-registry sends: a regex up to 100 objects, the namespace above.
        let raw = if *size <= 100 {
            format!(
                "max by (pod) (bench_rps{{namespace=\"bench\",pod=~\"^(?:{})$\"}})",
                names.join("|")
            )
        } else {
            "max by (pod) (bench_rps{namespace=\"bench\",pod!=\"\"})".to_owned()
        };
        loads.push(Load {
            name: format!("Pods ({size} pods)"),
            paths: vec![format!(
                "{CUSTOM}/pods/*/bench_rps?labelSelector=app%3D{label}"
            )],
            raw: vec![raw],
            shape: Shape::Closed,
        });
    }
    let selector = "queue in (q1,q2,q3)";
    let matchers = LabelSelector::parse(selector)
        .and_then(|s| s.to_promql_matchers())
        .expect("a selector");
    loads.push(Load {
        name: "External (selector)".into(),
        paths: vec![format!(
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/bench/bench_queue?labelSelector={}",
            selector.replace(' ', "%20")
        )],
        raw: vec![format!(
            "kube_adapter_metric_bench_queue{{{}}}",
            matchers.join(",")
        )],
        shape: Shape::Closed,
    });
    let hpa = |n: usize| -> (Vec<String>, Vec<String>) {
        (0..n)
            .map(|i| {
                (
                    format!("{CUSTOM}/services/s{i}/bench_latency"),
                    service_query(&format!("s{i}"), "="),
                )
            })
            .unzip()
    };
    let sizes: &[usize] = if smoke {
        &[scale.services]
    } else {
        &[100, 1000]
    };
    for &n in sizes {
        let (paths, raw) = hpa(n.min(scale.services));
        loads.push(Load {
            name: format!("HPA shape: {n} HPAs, 1/s each"),
            paths: paths.clone(),
            raw: raw.clone(),
            shape: Shape::Scheduled,
        });
    }
    let n = sizes[sizes.len() - 1].min(scale.services);
    let (paths, raw) = hpa(n);
    loads.push(Load {
        name: format!("HPA objects, closed loop ({n})"),
        paths,
        raw,
        shape: Shape::Closed,
    });
    loads
}

async fn run_load(
    server: &Server,
    load: &Load,
    duration: Duration,
    http: &reqwest::Client,
    prometheus_url: &str,
) -> Row {
    let paths: Vec<String> = if server.counts_queries {
        load.paths.clone()
    } else {
        load.raw.iter().map(|q| raw_path(q)).collect()
    };
    let cpu = server.process.map(|p| p.cpu_seconds());
    let queries = prometheus_queries(http, prometheus_url).await;
    let result = match load.shape {
        Shape::Closed => closed_loop(&server.target, &paths, CONCURRENCY, duration).await,
        Shape::Scheduled => scheduled(&server.target, &paths, HPA_PERIOD, duration).await,
    };
    let sent = prometheus_queries(http, prometheus_url).await - queries;
    let requests = result.requests.max(1) as f64;
    Row {
        cpu_per_request_us: match (server.process, cpu) {
            (Some(p), Some(before)) => (p.cpu_seconds() - before) / requests * 1e6,
            _ => f64::NAN,
        },
        queries_per_request: if server.counts_queries {
            // The floor's own requests are queries too; the metrics scrapes are not.
            sent / requests
        } else {
            1.0
        },
        result,
    }
}

/// Polls `path` until it answers 200 with `needle` in the body.
async fn wait_for(
    target: &Target,
    path: &str,
    needle: &str,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    loop {
        if let Ok((200, body)) = target.get(path).await
            && body.contains(needle)
        {
            return Ok(started.elapsed());
        }
        if started.elapsed() > limit {
            bail!("{path} never answered with {needle} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Compiling and swapping in `count` definitions, in this process: time and the memory
/// the compiler holds (RSS growth).
fn compile_cost(count: usize) -> (Duration, f64) {
    let definitions: Vec<Change> = (0..count)
        .map(|i| {
            let object = serde_json::json!({
                "apiVersion": "metrics-registry.io/v1beta1",
                "kind": "ServiceMetric",
                "metadata": {"name": format!("m-{}", i % 100), "namespace": format!("ns-{}", i / 100),
                             "creationTimestamp": "2025-01-01T00:00:00Z"},
                "spec": {"metricName": format!("m_{}", i % 100),
                         "query": "sum(rate(bench_a{<<.LabelMatchers>>}[5m])) by (<<.GroupBy>>) / sum(bench_b{<<.LabelMatchers>>}) by (<<.GroupBy>>)"},
            });
            let definition = Definition::from_object(&object)
                .expect("a definition")
                .expect("ours");
            Change::Upsert(Arc::new(definition))
        })
        .collect();
    let me = ProcessStats {
        pid: std::process::id(),
    };
    let before = me.rss_mib();
    let started = Instant::now();
    let mut compiler = IncrementalCompiler::new(CompileOptions::default());
    compiler.apply(definitions);
    let table = arc_swap::ArcSwap::from(compiler.table());
    table.store(compiler.table());
    let elapsed = started.elapsed();
    let grown = me.rss_mib() - before;
    drop(compiler);
    (elapsed, grown)
}

fn ms(value: f64) -> String {
    format!("{value:.2} ms")
}

fn print_row(load: &str, server: &str, row: &Row) {
    let result = &row.result;
    println!(
        "{load:<34} {server:<19} {:>9.0} {:>9.2} {:>9.2} {:>10.0} {:>8.3} {:>7}",
        result.throughput(),
        result.percentile(0.5),
        result.percentile(0.99),
        row.cpu_per_request_us,
        row.queries_per_request,
        result.errors,
    );
    if let Some(error) = &result.first_error {
        println!("{:<34} first error: {error}", "");
    }
}

fn target_row(what: &str, target: &str, measured: String, met: bool) {
    println!(
        "{what:<58} {target:>10} {measured:>24}  {}",
        if met { "met" } else { "MISSED" }
    );
}

fn main() -> anyhow::Result<()> {
    let smoke = std::env::args().any(|a| a == "--smoke");
    metrics_registry::install_crypto_provider();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(smoke))
}

async fn run(smoke: bool) -> anyhow::Result<()> {
    let scale = if smoke {
        Scale {
            pods: 1200,
            services: 50,
            definitions: 20,
        }
    } else {
        Scale {
            pods: 10_000,
            services: 1000,
            definitions: 1000,
        }
    };
    let duration = Duration::from_secs(if smoke { 1 } else { 5 });
    let started = Instant::now();
    println!(
        "metrics-registry benchmark{}: {scale:?}",
        if smoke { " (smoke)" } else { "" }
    );

    let exporter = Exporter::start().await?;
    setup::publish(&exporter, scale);
    let prometheus = Prometheus::start(PrometheusOptions {
        targets: vec![exporter.addr()],
        scrape_interval_secs: 5,
        ..PrometheusOptions::default()
    })
    .await?;
    prometheus
        .wait_for_series(setup::SERVICE_SERIES, Duration::from_secs(60))
        .await?;
    let prometheus_url = prometheus.url();
    let plane = ControlPlane::start(ControlPlaneOptions::default()).await?;
    let admin = plane.admin_client().await?;
    install_crds(&admin).await?;
    setup::objects(&admin, scale).await?;
    let token = setup::caller_token(&admin).await?;
    setup::definitions(&admin, scale).await?;
    println!("set up in {:.1} s", started.elapsed().as_secs_f64());

    let ca = reqwest::Certificate::from_pem(plane.certs().ca_cert_pem.as_bytes())?;
    let https = reqwest::Client::builder()
        .tls_certs_only([ca])
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(30))
        .build()?;
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(1024)
        .timeout(Duration::from_secs(30))
        .build()?;
    let bearer = Some(format!("Bearer {token}"));
    let object_path = format!("{CUSTOM}/services/s3/bench_latency");

    // metrics-registry: start to first answer.
    let port = free_port();
    let registry_started = Instant::now();
    let registry = RegistryProcess::start(
        &plane,
        &prometheus_url,
        port,
        &["--query-cache-max-age", CACHE_MAX_AGE],
    )?;
    let ours = Server {
        name: "metrics-registry",
        target: Target {
            client: https.clone(),
            base: format!("https://127.0.0.1:{port}"),
            authorization: bearer.clone(),
        },
        process: Some(registry.stats()),
        counts_queries: true,
    };
    wait_for(
        &ours.target,
        &object_path,
        "\"value\":\"3\"",
        Duration::from_secs(120),
    )
    .await
    .map_err(|error| error.context(registry.log_tail()))?;
    let ours_first = registry_started.elapsed();

    // prometheus-adapter: the same, its client QPS raised so that listing pods per
    // request is not throttled by its default of 5 per second.
    let adapter_started = Instant::now();
    let adapter = Adapter::start_with(
        &plane,
        &prometheus_url,
        &setup::adapter_config(scale),
        &MetricsClient::new(&plane)?,
        &[
            "--v=1".to_owned(),
            "--client-qps=1000".to_owned(),
            "--client-burst=2000".to_owned(),
            "--metrics-relist-interval=1m".to_owned(),
        ],
    )
    .await?;
    let theirs = Server {
        name: "prometheus-adapter",
        target: Target {
            client: https.clone(),
            base: adapter.base_url(),
            authorization: bearer.clone(),
        },
        process: ProcessStats::find(&format!("--secure-port={}", adapter.port())),
        counts_queries: true,
    };
    wait_for(
        &theirs.target,
        &object_path,
        "\"value\":\"3\"",
        Duration::from_secs(180),
    )
    .await?;
    let adapter_first = adapter_started.elapsed();
    let floor = Server {
        name: "raw query",
        target: Target {
            client: http.clone(),
            base: prometheus_url.clone(),
            authorization: None,
        },
        process: ProcessStats::find(&prometheus.dir().display().to_string()),
        counts_queries: false,
    };
    let rss_start = (
        ours.process.map_or(f64::NAN, |p| p.rss_mib()),
        theirs.process.map_or(f64::NAN, |p| p.rss_mib()),
    );

    // Every server answers every load correctly before it is timed.
    let loads = loads(scale, smoke);
    for load in &loads {
        for server in [&ours, &theirs, &floor] {
            let path = if server.counts_queries {
                load.paths[0].clone()
            } else {
                raw_path(&load.raw[0])
            };
            let (status, body) = server.target.get(&path).await?;
            let value: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            let items = if server.counts_queries {
                value["items"].as_array().map_or(0, Vec::len)
            } else {
                value["data"]["result"].as_array().map_or(0, Vec::len)
            };
            let expected = if load.name.starts_with("Pods") {
                let pods: usize = load
                    .name
                    .trim_start_matches("Pods (")
                    .split(' ')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                // Past 100 objects the query names the namespace only (as metrics-registry's
                // does): the floor answers every pod with series, the servers the ones asked.
                if pods > 100 && !server.counts_queries {
                    setup::pods_with_series(scale)
                } else {
                    pods
                }
            } else if load.name.starts_with("External") {
                3
            } else {
                1
            };
            if status != 200 || items != expected {
                bail!(
                    "{} answered {} for {}: {status}, {items} items instead of {expected}: {}",
                    server.name,
                    load.name,
                    path,
                    body.chars().take(300).collect::<String>()
                );
            }
        }
    }
    println!("every server answers every load correctly");
    println!();
    println!(
        "{:<34} {:<19} {:>9} {:>9} {:>9} {:>10} {:>8} {:>7}",
        "load", "server", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "queries", "errors"
    );
    let mut rows: Vec<(String, &'static str, Row)> = Vec::new();
    for load in &loads {
        let load_duration = match load.shape {
            Shape::Scheduled => duration.max(HPA_PERIOD * 3),
            Shape::Closed => duration,
        };
        for server in [&ours, &theirs, &floor] {
            // A short warm-up, then the measured run. The HPA shape is the steady state
            // of HPAs that have each polled before: every path is asked once first, so
            // the one-time SubjectAccessReview of each new object is not in the timing.
            let warm: Vec<String> = match load.shape {
                Shape::Scheduled if server.counts_queries => load.paths.clone(),
                Shape::Scheduled => load.raw.iter().map(|q| raw_path(q)).collect(),
                Shape::Closed if server.counts_queries => vec![load.paths[0].clone()],
                Shape::Closed => vec![raw_path(&load.raw[0])],
            };
            futures::stream::iter(warm.iter().map(|path| server.target.get(path)))
                .buffer_unordered(CONCURRENCY)
                .for_each(|_| async {})
                .await;
            let _ = closed_loop(&server.target, &warm[..1], 2, Duration::from_millis(200)).await;
            let row = run_load(server, load, load_duration, &http, &prometheus_url).await;
            print_row(&load.name, server.name, &row);
            rows.push((load.name.clone(), server.name, row));
        }
    }
    let rss_after = (
        ours.process.map_or(f64::NAN, |p| p.rss_mib()),
        theirs.process.map_or(f64::NAN, |p| p.rss_mib()),
    );

    // Definition change → served.
    let edited = format!("{CUSTOM}/services/s3/bench_edited");
    let mut edits = Vec::new();
    for round in 0..(if smoke { 2 } else { EDITS }) {
        let (factor, needle) = if round % 2 == 0 {
            (2, "\"value\":\"6\"")
        } else {
            (1, "\"value\":\"3\"")
        };
        let changed = Instant::now();
        setup::apply_edited(&admin, factor).await?;
        wait_for(&ours.target, &edited, needle, Duration::from_secs(30)).await?;
        edits.push(changed.elapsed());
    }
    edits.sort();
    let edit_p =
        |p: f64| edits[((edits.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0;

    println!();
    println!("{:<58} {:>10} {:>24}", "", "", "metrics-registry / adapter");
    println!(
        "{:<58} {:>10} {:>24}",
        "start to first answer",
        "",
        format!(
            "{:.0} / {:.0} ms",
            ours_first.as_secs_f64() * 1000.0,
            adapter_first.as_secs_f64() * 1000.0
        )
    );
    println!(
        "{:<58} {:>10} {:>24}",
        "RSS at start / after the loads",
        "",
        format!(
            "{:.0}/{:.0} / {:.0}/{:.0} MiB",
            rss_start.0, rss_after.0, rss_start.1, rss_after.1
        )
    );
    println!(
        "{:<58} {:>10} {:>24}",
        format!("definition change served, p50 ({} changes)", edits.len()),
        "",
        format!("{} / restart", ms(edit_p(0.5)))
    );
    for count in if smoke {
        vec![1_000]
    } else {
        vec![1_000, 10_000, 100_000]
    } {
        let (elapsed, mib) = compile_cost(count);
        println!(
            "{:<58} {:>10} {:>24}",
            format!("{count} definitions compiled and swapped in"),
            if count == 100_000 { "< 1 s" } else { "" },
            format!("{} ms, +{mib:.0} MiB", elapsed.as_millis())
        );
    }

    println!();
    println!("targets (15 s HPA period compressed 15×; cache max age {CACHE_MAX_AGE})");
    let find = |load: &str, server: &str| {
        rows.iter()
            .find(|(l, s, _)| l.starts_with(load) && *s == server)
            .map(|(_, _, row)| row.clone())
            .unwrap_or_default()
    };
    let ratio = |load: &str, other: &str| {
        find(load, "metrics-registry").result.throughput() / find(load, other).result.throughput()
    };
    let hpa_load = loads
        .iter()
        .rev()
        .find(|l| matches!(l.shape, Shape::Scheduled))
        .map(|l| l.name.clone())
        .unwrap_or_default();
    let qpr = find(&hpa_load, "metrics-registry").queries_per_request;
    target_row(
        &format!("Prometheus queries per HPA request ({hpa_load})"),
        "≤ 0.1",
        format!("{qpr:.4}"),
        qpr <= 0.1,
    );
    let closed = ratio("HPA objects, closed loop", "raw query");
    target_row(
        "HPA-shaped throughput / raw query's",
        "≥ 2×",
        format!("{closed:.1}×"),
        closed >= 2.0,
    );
    for (load, want) in [
        ("Object", 10.0),
        ("External", 10.0),
        ("Pods (10 ", 20.0),
        ("Pods (100 ", 20.0),
        ("Pods (1000 ", 20.0),
    ] {
        let r = ratio(load, "prometheus-adapter");
        target_row(
            &format!("{} throughput / prometheus-adapter's", load.trim_end()),
            &format!("≥ {want:.0}×"),
            format!("{r:.1}×"),
            r >= want,
        );
    }
    let added = find(&hpa_load, "metrics-registry").result.percentile(0.99)
        - find(&hpa_load, "raw query").result.percentile(0.99);
    target_row(
        &format!("p99 added over the raw query ({hpa_load})"),
        "≤ 1 ms",
        ms(added),
        added <= 1.0,
    );
    let rss_ratio = rss_after.1 / rss_after.0;
    target_row(
        &format!(
            "RSS, {} pods and {} definitions: adapter / ours",
            scale.pods, scale.definitions
        ),
        "≥ 5×",
        format!("{rss_ratio:.1}×"),
        rss_ratio >= 5.0,
    );
    let p99 = edit_p(0.99);
    target_row(
        "definition change served, p99",
        "< 1000 ms",
        ms(p99),
        p99 < 1000.0,
    );
    println!();
    println!("finished in {:.0} s", started.elapsed().as_secs_f64());
    drop(adapter);
    drop(registry);
    drop(plane);
    drop(prometheus);
    Ok(())
}
