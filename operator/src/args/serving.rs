//! Where and how the API is served: addresses, the serving certificate, connection limits.

use super::parse::parse_duration;
use anyhow::bail;
use clap::Args;
use metrics_registry_apiserver::serve::ServeLimits;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Args)]
pub struct ServingArgs {
    /// HTTPS address of the aggregated API server.
    #[arg(long, default_value = "0.0.0.0:6443")]
    pub listen: SocketAddr,
    /// Plain HTTP without authentication, for local use; loopback addresses only.
    #[arg(long, value_name = "ADDR")]
    pub insecure_listen: Option<SocketAddr>,
    /// Serving certificate (PEM, reloaded when it changes); without it one is generated at start.
    #[arg(long, value_name = "FILE", requires = "tls_private_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    #[arg(long, value_name = "FILE", requires = "tls_cert_file")]
    pub tls_private_key_file: Option<PathBuf>,
    /// Extra names for the generated certificate (the Service's DNS names and localhost are always in it).
    #[arg(long = "tls-host", value_name = "NAME")]
    pub tls_hosts: Vec<String>,
    /// Close connections that do not complete a request head (and TLS handshake, and the
    /// HTTP/2 preface) within this.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub header_read_timeout: Duration,
    /// Answer 504 to a request that takes longer than this.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Connections served at once; more wait to be accepted.
    #[arg(long, default_value_t = 1024)]
    pub max_connections: usize,
    /// Connections served at once from one IP address; more are closed at once (0: no cap).
    #[arg(long, default_value_t = 256)]
    pub max_connections_per_peer: usize,
    /// Close a connection that has had no request in flight for this long.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// Ask a connection older than this to close after its requests (HTTP/2 GOAWAY), so
    /// clients reconnect and spread over replicas (0s: never).
    #[arg(long, default_value = "30m", value_parser = parse_duration)]
    pub max_connection_age: Duration,
    /// On SIGTERM, how long requests in flight may take before the process exits anyway.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
}

impl ServingArgs {
    pub fn limits(&self) -> ServeLimits {
        ServeLimits {
            header_read_timeout: self.header_read_timeout,
            request_timeout: self.request_timeout,
            max_connections: self.max_connections,
            max_connections_per_peer: self.max_connections_per_peer,
            idle_timeout: self.idle_timeout,
            max_connection_age: self.max_connection_age,
            shutdown_grace: self.shutdown_grace,
        }
    }
}

/// `--insecure-listen` serves without authentication, so it must stay on this machine.
pub fn require_loopback(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if !addr.ip().is_loopback() {
        bail!(
            "--insecure-listen {addr} is not a loopback address: plain HTTP without authentication is only allowed on 127.0.0.1 or [::1]"
        );
    }
    Ok(addr)
}
