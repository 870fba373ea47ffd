//! Issue 7's targets measured on the real binary (build it with `--release`): a real
//! Prometheus scraping an exporter, generated manifest folders of 10,000 and 100,000
//! definitions, and the numbers printed next to their targets. Not a test: nothing is
//! asserted, the numbers are for people. `scripts/scale-bench.sh` runs it.

use anyhow::{Context, bail};
use metrics_registry_tests::exporter::Exporter;
use metrics_registry_tests::ports::free_addr;
use metrics_registry_tests::registry_process::binary;
use metrics_registry_tests::stack::scraping;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const NAMESPACES_10K: usize = 100;
const NAMESPACES_100K: usize = 1_000;
/// Namespaced metrics per namespace; each metric also has a cluster definition.
const METRICS: usize = 99;
const EDITS: usize = 40;
const EDIT_PATH: &str =
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns-0/services/cart/edited_metric";
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn edited(series: &str) -> String {
    format!(
        "apiVersion: metrics-registry.io/v1beta1\nkind: ServiceMetric\nmetadata: {{name: edited-metric, namespace: ns-0}}\nspec: {{metricName: edited_metric, query: 'max({series}{{<<.LabelMatchers>>}}) by (<<.GroupBy>>)'}}\n"
    )
}

/// `namespaces` × [`METRICS`] ServiceMetrics plus one ClusterServiceMetric per metric,
/// one file per namespace, like a folder per team.
fn write_folder(dir: &Path, namespaces: usize, variant: &str) -> anyhow::Result<usize> {
    let mut count = 0;
    let mut cluster = String::new();
    for m in 0..METRICS {
        cluster.push_str(&format!(
            "apiVersion: metrics-registry.io/v1beta1\nkind: ClusterServiceMetric\nmetadata: {{name: metric-{m}}}\nspec: {{metricName: metric_{m}, query: 'sum(bench_a{{<<.LabelMatchers>>}}) by (<<.GroupBy>>)'}}\n---\n"
        ));
        count += 1;
    }
    std::fs::write(dir.join("cluster.yaml"), cluster)?;
    for n in 0..namespaces {
        let mut text = String::new();
        for m in 0..METRICS {
            text.push_str(&format!(
                "apiVersion: metrics-registry.io/v1beta1\nkind: ServiceMetric\nmetadata: {{name: metric-{m}, namespace: ns-{n}}}\nspec: {{metricName: metric_{m}, query: 'sum(rate(bench_a{{<<.LabelMatchers>>,{variant}}}[5m])) by (<<.GroupBy>>) / sum(bench_b{{<<.LabelMatchers>>}}) by (<<.GroupBy>>)'}}\n---\n"
            ));
            count += 1;
        }
        std::fs::write(dir.join(format!("ns-{n}.yaml")), text)?;
    }
    std::fs::write(dir.join("edited.yaml"), edited("bench_a"))?;
    Ok(count + 1)
}

fn replace(dir: &Path, name: &str, content: &str) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, content)?;
    std::fs::rename(tmp, dir.join(name))?;
    Ok(())
}

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(dir: &Path, prometheus: &str) -> anyhow::Result<Server> {
        Self::start_with(dir, prometheus, HEADER_TIMEOUT, &[])
    }

    fn start_with(
        dir: &Path,
        prometheus: &str,
        header_timeout: Duration,
        flags: &[&str],
    ) -> anyhow::Result<Server> {
        let addr = free_addr();
        let child = Command::new(binary()?)
            .arg("run")
            .arg("--manifests")
            .arg(dir)
            .arg("--insecure-listen")
            .arg(addr.to_string())
            .arg("--prometheus-url")
            .arg(prometheus)
            .arg("--header-read-timeout")
            .arg(format!("{}s", header_timeout.as_secs()))
            .arg("--shutdown-grace")
            .arg(format!("{}s", SHUTDOWN_GRACE.as_secs()))
            .arg("--log-level")
            .arg("warn")
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting metrics-registry")?;
        Ok(Server { child, addr })
    }

    /// Status and body of one request on a fresh connection.
    fn get(&self, path: &str) -> (u16, String) {
        let Ok(mut stream) = TcpStream::connect(self.addr) else {
            return (0, String::new());
        };
        let _ = write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        );
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        let status = answer.get(9..12).and_then(|s| s.parse().ok()).unwrap_or(0);
        (status, answer)
    }

    fn wait_for(&self, path: &str, needle: &str, limit: Duration) -> Option<Duration> {
        let started = Instant::now();
        while started.elapsed() < limit {
            let (status, body) = self.get(path);
            if status == 200 && body.contains(needle) {
                return Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        None
    }

    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }

    /// User + system CPU seconds so far.
    fn cpu_seconds(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map_or("", |(_, rest)| rest)
            .split_whitespace()
            .collect();
        let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
            f.iter().filter_map(|t| t.parse::<f64>().ok()).sum()
        });
        // USER_HZ is 100 on Linux.
        ticks / 100.0
    }

    fn terminate(&mut self) -> anyhow::Result<Duration> {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()?;
        let started = Instant::now();
        loop {
            if self.child.try_wait()?.is_some() {
                return Ok(started.elapsed());
            }
            if started.elapsed() > SHUTDOWN_GRACE * 3 {
                bail!("still running {:?} after SIGTERM", started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p).round() as usize;
    samples[index.min(samples.len() - 1)]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn row(what: &str, target: &str, measured: String) {
    println!("{what:<46} {target:>16} {measured:>22}");
}

/// Memory while 10,000 idle connections are open and after they are gone, on a server
/// allowed that many (the default cap is 1,024) and keeping them for 30 s.
fn idle_connections(prometheus_url: &str) -> anyhow::Result<()> {
    const CONNECTIONS: usize = 10_000;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("edited.yaml"), edited("bench_a"))?;
    let server = Server::start_with(
        dir.path(),
        prometheus_url,
        Duration::from_secs(30),
        &[
            "--max-connections",
            "20000",
            "--max-connections-per-peer",
            "0",
        ],
    )?;
    server
        .wait_for(EDIT_PATH, "\"value\":\"1\"", Duration::from_secs(30))
        .context("no first answer")?;
    let before = server.rss_mib();
    let mut open = Vec::with_capacity(CONNECTIONS);
    let mut failed = 0;
    while open.len() + failed < CONNECTIONS {
        match TcpStream::connect_timeout(&server.addr, Duration::from_secs(2)) {
            Ok(stream) => open.push(stream),
            Err(_) => failed += 1,
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let during = server.rss_mib();
    let opened = open.len();
    drop(open);
    std::thread::sleep(Duration::from_secs(3));
    let soon = server.rss_mib();
    // The allocator hands freed pages back after its decay time (10 s).
    std::thread::sleep(Duration::from_secs(12));
    row(
        &format!("RSS: before / {opened} idle conns / +3 s / +15 s"),
        "returned",
        format!(
            "{before:.0} / {during:.0} / {soon:.0} / {:.0} MiB",
            server.rss_mib()
        ),
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    metrics_registry::install_crypto_provider();
    let runtime = tokio::runtime::Runtime::new()?;
    let exporter = runtime.block_on(Exporter::start())?;
    for namespace in ["ns-0", "ns-1"] {
        exporter.set(
            "bench_a",
            &[("namespace", namespace), ("service", "cart")],
            1.0,
        );
        exporter.set(
            "bench_b",
            &[("namespace", namespace), ("service", "cart")],
            2.0,
        );
    }
    let (prometheus, _rules) = runtime.block_on(scraping(&exporter, "bench_b"))?;
    let prometheus_url = prometheus.url();
    println!("metrics-registry scale benchmark ({})", binary()?.display());
    println!();
    println!("{:<46} {:>16} {:>22}", "", "target", "measured");

    // 10k definitions.
    let dir = tempfile::tempdir()?;
    let count = write_folder(dir.path(), NAMESPACES_10K, "le=\"0\"")?;
    let mut server = Server::start(dir.path(), &prometheus_url)?;
    let first = server
        .wait_for(EDIT_PATH, "\"value\":\"1\"", Duration::from_secs(60))
        .context("no first answer at 10k")?;
    row(
        &format!("{count} definitions: start to first answer"),
        "",
        ms(first),
    );
    std::thread::sleep(Duration::from_secs(2));
    let cpu_before = server.cpu_seconds();
    let idle = Duration::from_secs(10);
    std::thread::sleep(idle);
    let idle_cpu = (server.cpu_seconds() - cpu_before) / idle.as_secs_f64() * 100.0;
    row(
        "idle CPU (10 s, no changes)",
        "< 1 % of a core",
        format!("{idle_cpu:.2} %"),
    );

    // Edits, with /healthz probed all along and a big file rewritten between edits.
    let probing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let addr = server.addr;
    let prober = {
        let probing = probing.clone();
        std::thread::spawn(move || {
            let mut latencies = Vec::new();
            while probing.load(std::sync::atomic::Ordering::Relaxed) {
                let started = Instant::now();
                if let Ok(mut stream) = TcpStream::connect(addr) {
                    let _ = stream.write_all(
                        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                    );
                    let mut answer = Vec::new();
                    let _ = stream.read_to_end(&mut answer);
                    latencies.push(started.elapsed());
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            latencies
        })
    };
    let mut edits = Vec::new();
    for round in 0..EDITS {
        let (series, value) = if round % 2 == 0 {
            ("bench_b", "\"value\":\"2\"")
        } else {
            ("bench_a", "\"value\":\"1\"")
        };
        // A whole namespace's file changes too, so reloads do real work meanwhile.
        let variant = format!("le=\"{round}\"");
        let mut big = String::new();
        for m in 0..METRICS {
            big.push_str(&format!(
                "apiVersion: metrics-registry.io/v1beta1\nkind: ServiceMetric\nmetadata: {{name: metric-{m}, namespace: ns-1}}\nspec: {{metricName: metric_{m}, query: 'sum(rate(bench_a{{<<.LabelMatchers>>,{variant}}}[5m])) by (<<.GroupBy>>)'}}\n---\n"
            ));
        }
        replace(dir.path(), "ns-1.yaml", &big)?;
        let written = Instant::now();
        replace(dir.path(), "edited.yaml", &edited(series))?;
        server
            .wait_for(EDIT_PATH, value, Duration::from_secs(30))
            .context("edit never served")?;
        edits.push(written.elapsed());
        std::thread::sleep(Duration::from_millis(150));
    }
    probing.store(false, std::sync::atomic::Ordering::Relaxed);
    let mut health = prober.join().expect("prober");
    row(
        &format!("one edit served, p50 ({EDITS} edits)"),
        "",
        ms(percentile(&mut edits, 0.5)),
    );
    row(
        "one edit served, p99",
        "< 1000 ms",
        ms(percentile(&mut edits, 0.99)),
    );
    row(
        &format!("/healthz p99 during reloads ({} probes)", health.len()),
        "< 10 ms",
        ms(percentile(&mut health, 0.99)),
    );
    row(
        "RSS with 10k definitions",
        "",
        format!("{:.0} MiB", server.rss_mib()),
    );

    // Slow clients and idle connections.
    let mut slow = TcpStream::connect(server.addr)?;
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")?;
    slow.set_read_timeout(Some(HEADER_TIMEOUT * 5))?;
    let started_slow = Instant::now();
    let mut rest = Vec::new();
    let closed = slow.read_to_end(&mut rest).is_ok();
    row(
        "slowloris connection closed after",
        &format!("≤ {} s (+slack)", HEADER_TIMEOUT.as_secs()),
        if closed {
            ms(started_slow.elapsed())
        } else {
            "never".into()
        },
    );
    // SIGTERM with a half-sent request and a request in flight.
    let mut half = TcpStream::connect(server.addr)?;
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")?;
    let addr = server.addr;
    let in_flight = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).ok()?;
        write!(
            stream,
            "GET {EDIT_PATH} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        Some(answer)
    });
    std::thread::sleep(Duration::from_millis(1));
    let exit = server.terminate()?;
    let _ = in_flight.join();
    row(
        "SIGTERM to exit (half-sent + in-flight request)",
        &format!("≤ {} s", SHUTDOWN_GRACE.as_secs()),
        ms(exit),
    );
    drop(server);

    idle_connections(&prometheus_url)?;

    // 100k definitions.
    let dir = tempfile::tempdir()?;
    let count = write_folder(dir.path(), NAMESPACES_100K, "le=\"0\"")?;
    let server = Server::start(dir.path(), &prometheus_url)?;
    let first = server
        .wait_for(EDIT_PATH, "\"value\":\"1\"", Duration::from_secs(120))
        .context("no first answer at 100k")?;
    row(
        &format!("{count} definitions: start to first answer"),
        "< 5000 ms",
        ms(first),
    );
    row(
        "RSS with 100k definitions",
        "< 400 MiB",
        format!("{:.0} MiB", server.rss_mib()),
    );
    drop(server);
    drop(prometheus);
    Ok(())
}
