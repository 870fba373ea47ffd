//! Exporter → real Prometheus → metrics-registry, started together for one test.

use crate::exporter::Exporter;
use crate::prometheus::{Prometheus, PrometheusOptions};
use crate::registry::{Registry, RegistryOptions};
use std::time::Duration;

pub struct Stack {
    pub exporter: Exporter,
    pub prometheus: Prometheus,
    pub registry: Registry,
    /// Folder of rule files Prometheus loads and metrics-registry writes.
    pub rules: tempfile::TempDir,
}

impl Stack {
    /// Starts everything and waits until Prometheus has scraped `ready_series` once
    /// (series must be published on the exporter by `publish` before the first scrape).
    pub async fn start(
        files: &[(&str, &str)],
        publish: impl FnOnce(&Exporter),
        ready_series: &str,
        tune: impl FnOnce(&mut RegistryOptions),
    ) -> anyhow::Result<Stack> {
        crate::init_test_logging();
        let exporter = Exporter::start().await?;
        publish(&exporter);
        let (prometheus, rules) = scraping(&exporter, ready_series).await?;
        let mut options = RegistryOptions::new(prometheus.url());
        options.rules_dir = Some(rules.path().to_path_buf());
        tune(&mut options);
        let registry = Registry::start(options, files).await?;
        Ok(Stack {
            exporter,
            prometheus,
            registry,
            rules,
        })
    }
}

/// A Prometheus scraping `exporter` and loading rule files from a fresh folder, once it
/// has stored `ready_series` (the first scrape comes about 5 s after start).
pub async fn scraping(
    exporter: &Exporter,
    ready_series: &str,
) -> anyhow::Result<(Prometheus, tempfile::TempDir)> {
    scraping_on(exporter, ready_series, std::net::Ipv4Addr::LOCALHOST).await
}

/// [`scraping`], with Prometheus listening on `listen_ip` (a node's address, for pods).
pub async fn scraping_on(
    exporter: &Exporter,
    ready_series: &str,
    listen_ip: std::net::Ipv4Addr,
) -> anyhow::Result<(Prometheus, tempfile::TempDir)> {
    let rules = tempfile::tempdir()?;
    let prometheus = Prometheus::start(PrometheusOptions {
        targets: vec![exporter.addr()],
        rule_files: vec![rules.path().join("*.yaml")],
        listen_ip,
        ..PrometheusOptions::default()
    })
    .await?;
    prometheus
        .wait_for_series(ready_series, Duration::from_secs(30))
        .await?;
    Ok((prometheus, rules))
}
