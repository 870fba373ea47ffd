//! Test harness: a real Prometheus scraping exporters the tests control, and helpers to
//! run metrics-registry against it.

pub mod adapter;
pub mod adapter_examples;
pub mod batchable;
pub mod bench;
pub mod cluster_mode;
pub mod control_plane;
pub mod exporter;
pub mod fixtures;
pub mod parity;
pub mod ports;
pub mod prometheus;
pub mod query_api;
pub mod registry;
pub mod registry_process;
pub mod thanos;
pub mod third_party;
pub mod victoria_metrics;

/// Logs of the code under test, shown for failing tests (`RUST_LOG` filters).
pub fn init_test_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                tracing_subscriber::EnvFilter::new(
                    // kube's client logs every failed request of the tests' own clients at
                    // ERROR, which buries what the code under test says during fault tests.
                    "warn,kube_client::client::builder=off",
                )
            }),
        )
        .with_test_writer()
        .try_init();
}
pub mod e2e;
pub mod scenarios;
pub mod stack;
