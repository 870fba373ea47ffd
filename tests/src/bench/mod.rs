//! The benchmark against prometheus-adapter and the raw query (`scripts/bench.sh`): what
//! it puts into the cluster and Prometheus, and how it reads a process' CPU and memory.

pub mod load;
pub mod setup;

use std::path::Path;

/// A process' CPU and memory, from `/proc`.
#[derive(Clone, Copy, Debug)]
pub struct ProcessStats {
    pub pid: u32,
}

impl ProcessStats {
    /// The first process whose command line contains `needle`.
    pub fn find(needle: &str) -> Option<ProcessStats> {
        let entries = std::fs::read_dir("/proc").ok()?;
        for entry in entries.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) && pid != std::process::id() {
                return Some(ProcessStats { pid });
            }
        }
        None
    }

    /// Resident memory now.
    pub fn rss_mib(&self) -> f64 {
        self.status_mib("VmRSS:")
    }

    /// The most resident memory it has had (the kernel's high-water mark), which a
    /// short peak between two samples of [`ProcessStats::rss_mib`] cannot hide from.
    pub fn peak_rss_mib(&self) -> f64 {
        self.status_mib("VmHWM:")
    }

    fn status_mib(&self, field: &str) -> f64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kib| kib / 1024.0)
    }

    /// User + system CPU seconds so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&Path::new("/proc").join(self.pid.to_string()).join("stat"))
    }
}

fn cpu_seconds(stat: &Path) -> f64 {
    let stat = std::fs::read_to_string(stat).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // utime and stime, in USER_HZ (100 on Linux).
    fields.get(11..13).map_or(0.0, |f| {
        f.iter().filter_map(|t| t.parse::<f64>().ok()).sum()
    }) / 100.0
}

/// Instant queries Prometheus has answered, from its own `prometheus_http_requests_total`.
pub async fn prometheus_queries(http: &reqwest::Client, prometheus_url: &str) -> f64 {
    let Ok(response) = http.get(format!("{prometheus_url}/metrics")).send().await else {
        return f64::NAN;
    };
    let text = response.text().await.unwrap_or_default();
    text.lines()
        .filter(|line| {
            line.starts_with("prometheus_http_requests_total{")
                && line.contains("handler=\"/api/v1/query\"")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
