//! Thanos — built from its Go module by `scripts/build-thanos.sh` — in front of a test
//! Prometheus: a sidecar that serves Prometheus' data over Thanos' gRPC StoreAPI, and
//! Query instances that serve the Prometheus HTTP API from it, optionally enforcing
//! tenancy on a label.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use tempfile::TempDir;

use crate::control_plane::process::{Process, start_on_free_ports};
use crate::ports::free_addr;
use crate::prometheus::{Prometheus, http_client};
use crate::query_api::wait_for_series_at;
use crate::third_party::thanos_dir;

const READY_TIMEOUT: Duration = Duration::from_secs(60);
const LOG_TAIL_LINES: usize = 30;

/// `thanos sidecar` next to a Prometheus (which must have external labels: the sidecar
/// refuses one without).
pub struct ThanosSidecar {
    _process: Process,
    grpc: SocketAddr,
    _dir: TempDir,
}

impl ThanosSidecar {
    pub async fn start(prometheus: &Prometheus) -> anyhow::Result<ThanosSidecar> {
        let dir = tempfile::Builder::new()
            .prefix("thanos-sidecar-")
            .tempdir()?;
        let prometheus_url = prometheus.url();
        let tsdb = prometheus.dir().join("data").display().to_string();
        let (process, grpc) = start_ready("thanos sidecar", dir.path(), |grpc, http| {
            vec![
                "sidecar".to_owned(),
                format!("--prometheus.url={prometheus_url}"),
                format!("--tsdb.path={tsdb}"),
                format!("--grpc-address={grpc}"),
                format!("--http-address={http}"),
                "--log.level=warn".to_owned(),
            ]
        })
        .await?;
        Ok(ThanosSidecar {
            _process: process,
            grpc,
            _dir: dir,
        })
    }
}

/// Query's tenancy enforcement: every query, series and label request gets
/// `<label>="<value of header>"` added, so a tenant only sees its own series.
pub struct Tenancy {
    pub header: String,
    pub label: String,
}

/// `thanos query` reading one sidecar's StoreAPI.
pub struct ThanosQuery {
    process: Process,
    http: SocketAddr,
    client: reqwest::Client,
    _dir: TempDir,
}

impl ThanosQuery {
    /// Starts Query against `sidecar`. The external label `replica` is the replica label,
    /// dropped from results as in an HA pair of Prometheus servers.
    pub async fn start(
        sidecar: &ThanosSidecar,
        tenancy: Option<&Tenancy>,
    ) -> anyhow::Result<ThanosQuery> {
        let dir = tempfile::Builder::new().prefix("thanos-query-").tempdir()?;
        let endpoint = sidecar.grpc;
        let (process, grpc) = start_ready("thanos query", dir.path(), |grpc, http| {
            let mut args = vec![
                "query".to_owned(),
                format!("--endpoint={endpoint}"),
                format!("--grpc-address={grpc}"),
                format!("--http-address={http}"),
                "--query.replica-label=replica".to_owned(),
                "--log.level=warn".to_owned(),
            ];
            if let Some(tenancy) = tenancy {
                args.extend([
                    "--query.enforce-tenancy".to_owned(),
                    format!("--query.tenant-header={}", tenancy.header),
                    format!("--query.tenant-label-name={}", tenancy.label),
                ]);
            }
            args
        })
        .await?;
        // start_ready hands back the gRPC address; the HTTP one is one port on.
        let http = http_of(grpc);
        Ok(ThanosQuery {
            process,
            http,
            client: http_client()?,
            _dir: dir,
        })
    }

    /// `http://IP:PORT`, the root of its Prometheus HTTP API.
    pub fn url(&self) -> String {
        format!("http://{}", self.http)
    }

    /// Polls until `promql`, sent with `headers`, returns a non-empty vector: the
    /// sidecar is connected and Prometheus has the data.
    pub async fn wait_for_series(
        &self,
        promql: &str,
        timeout: Duration,
        headers: &[(&str, &str)],
    ) -> anyhow::Result<()> {
        match wait_for_series_at(&self.client, &self.url(), promql, timeout, headers).await {
            Ok(()) => Ok(()),
            Err(error) => bail!(
                "{error:#}\n--- thanos query log ---\n{}",
                self.process.log_tail(LOG_TAIL_LINES)
            ),
        }
    }

    /// SIGKILL and reap: afterwards its port refuses connections.
    pub fn stop(&mut self) {
        self.process.stop();
    }
}

// Both ports come from `free_addr`; a pair is taken as gRPC and the port after it is
// checked free too, so that one address is enough to find the other.
fn http_of(grpc: SocketAddr) -> SocketAddr {
    SocketAddr::new(grpc.ip(), grpc.port() + 1)
}

fn free_pair() -> SocketAddr {
    loop {
        let grpc = free_addr();
        if grpc.port() < u16::MAX && std::net::TcpListener::bind(http_of(grpc)).is_ok() {
            return grpc;
        }
    }
}

/// Starts `thanos` with the arguments `args(grpc, http)` builds and waits until its
/// `/-/ready` answers 200; retries with fresh ports when one was taken meanwhile.
async fn start_ready(
    name: &'static str,
    dir: &Path,
    args: impl Fn(SocketAddr, SocketAddr) -> Vec<String>,
) -> anyhow::Result<(Process, SocketAddr)> {
    let binary = thanos_dir().await?.join("thanos");
    let client = http_client()?;
    let log_path = dir.join("thanos.log");
    let (process, _, grpc) = start_on_free_ports(
        |args| Process::spawn(name, &binary, args, &log_path, dir),
        &format!("{name} /-/ready"),
        READY_TIMEOUT,
        || {
            let grpc = free_pair();
            (args(grpc, http_of(grpc)), grpc)
        },
        |grpc| {
            let client = client.clone();
            async move {
                match client
                    .get(format!("http://{}/-/ready", http_of(grpc)))
                    .send()
                    .await
                {
                    Ok(response) if response.status().is_success() => Ok(()),
                    Ok(response) => Err(response.status().to_string()),
                    Err(error) => Err(format!("{error:#}")),
                }
            }
        },
    )
    .await?;
    Ok((process, grpc))
}
