//! Command-line arguments, one `Args` struct per concern: each file holds the flags of
//! one concern and turns them into the settings the code it configures takes.

mod check;
mod cluster;
pub mod convert;
mod definitions;
mod parse;
mod prometheus;
mod serving;

pub use check::{CheckArgs, LiveCheckArgs};
pub use cluster::{AuthCacheArgs, ClusterArgs, LeaderElectionArgs, ShutdownArgs};
pub use definitions::{DefinitionArgs, manifests_dir};
pub(crate) use parse::{parse_duration, parse_header};
pub use prometheus::{Method, PrometheusArgs};
pub use serving::{ServingArgs, require_loopback};

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "metrics-registry",
    version,
    about = "Prometheus metrics for the HorizontalPodAutoscaler, declared as custom resources"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve custom.metrics.k8s.io and external.metrics.k8s.io from definitions.
    Run(Box<RunArgs>),
    /// Print every CustomResourceDefinition as YAML.
    Crds(CrdsArgs),
    /// Validate definition files offline; exit 1 with one line per problem.
    Check(CheckArgs),
    /// Turn a prometheus-adapter configuration into definitions; one line on stderr per
    /// part that does not carry over as it was; exit 1 when nothing converts.
    Convert(convert::ConvertArgs),
    /// Remove what a running installation created by itself — PrometheusRules,
    /// self-registered APIServices, the Lease — after stopping its Deployment so that no
    /// replica writes them again (the Helm chart runs this before `helm uninstall`).
    Uninstall(UninstallArgs),
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log filter (tracing EnvFilter syntax); RUST_LOG works too.
    #[arg(
        long,
        global = true,
        env = "METRICS_REGISTRY_LOG",
        default_value = "info"
    )]
    pub log_level: String,
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Plain)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Plain,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub prometheus: PrometheusArgs,
    #[command(flatten)]
    pub serving: ServingArgs,
    #[command(flatten)]
    pub definitions: DefinitionArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

#[derive(Debug, Args)]
pub struct CrdsArgs {
    /// Write one file per CRD into this folder instead of printing.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Kubeconfig to use instead of the in-cluster config or $KUBECONFIG.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the Deployment and the Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "metrics-registry")]
    pub namespace: String,
    /// Deployment to scale to zero (and wait for) before deleting anything.
    #[arg(long)]
    pub deployment: Option<String>,
    #[arg(long, default_value = "metrics-registry")]
    pub lease: String,
    /// Also delete APIServices the server registered itself (`--register-apiservices`).
    #[arg(long)]
    pub apiservices: bool,
    /// How long to wait for the Deployment's pods to stop.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[cfg(test)]
mod tests;
