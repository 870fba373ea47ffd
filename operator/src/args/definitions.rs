//! Where definitions come from and how they are compiled.

use crate::compiler::{CompileOptions, ExternalScope};
use anyhow::{Context, bail};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub struct DefinitionArgs {
    /// Read definitions from the YAML files of this folder instead of the cluster; changes are picked up live.
    #[arg(long, value_name = "DIR")]
    pub manifests: Option<PathBuf>,
    /// Let namespaced definitions read series of other namespaces (off: queries are pinned to their namespace).
    #[arg(long)]
    pub disable_namespace_isolation: bool,
    /// Read an external metric only from series whose `namespace` label is the namespace of
    /// the HPA that asks, as prometheus-adapter's namespaced external rules do (by default
    /// series without a `namespace` label are read too); a CustomPrometheusRules'
    /// `externalMetricsNamespaced` decides for the metrics it records.
    #[arg(long, conflicts_with = "external_metrics_cluster_wide")]
    pub external_metrics_namespaced: bool,
    /// Let an HPA read an external metric's series of every namespace, as before namespacing
    /// was the default (by default: its own namespace's series and those without a
    /// `namespace` label).
    #[arg(long)]
    pub external_metrics_cluster_wide: bool,
    /// Write CustomPrometheusRules as Prometheus rule files into this folder (which Prometheus'
    /// rule_files must include) and POST /-/reload to Prometheus after each change.
    #[arg(long, value_name = "DIR")]
    pub rules_dir: Option<PathBuf>,
    /// With --manifests: where MetricsBackends' Secrets are, laid out as mounted Secrets
    /// (`DIR/<secret name>/<key>`); read again every 5 seconds.
    #[arg(long, value_name = "DIR", requires = "manifests")]
    pub secrets_dir: Option<PathBuf>,
}

impl DefinitionArgs {
    pub fn compile_options(&self) -> CompileOptions {
        CompileOptions {
            namespace_isolation: !self.disable_namespace_isolation,
            external_scope: if self.external_metrics_namespaced {
                ExternalScope::Namespace
            } else if self.external_metrics_cluster_wide {
                ExternalScope::Cluster
            } else {
                ExternalScope::NamespaceOrUnlabelled
            },
        }
    }
}

/// The manifests folder must exist before anything is served. The path is kept as given
/// (made absolute, symlinks not resolved) so that a re-pointed symlink is followed.
pub fn manifests_dir(path: &std::path::Path) -> anyhow::Result<PathBuf> {
    let metadata = std::fs::metadata(path)
        .with_context(|| format!("--manifests {}: folder not found", path.display()))?;
    if !metadata.is_dir() {
        bail!("--manifests {}: not a folder", path.display());
    }
    std::path::absolute(path).with_context(|| format!("--manifests {}", path.display()))
}
