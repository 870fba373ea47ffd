//! Third-party components taken from their Go modules at pinned versions by scripts in
//! `scripts/`, cached outside the clone: Thanos (built) and prometheus-operator's
//! `PrometheusRule` and `ServiceMonitor` CRDs (read from the module's files, never copied into the clone).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::control_plane::scripts::last_line_path;
use tokio::sync::OnceCell;

const PROMETHEUS_RULE_CRD_PATH: &str =
    "source/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml";
const SERVICE_MONITOR_CRD_PATH: &str =
    "source/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml";

/// The folder holding the `thanos` binary: `THANOS_DIR` if set, else what
/// `scripts/build-thanos.sh` prints (building Thanos the first time, which takes minutes).
pub async fn thanos_dir() -> anyhow::Result<PathBuf> {
    static DIR: OnceCell<PathBuf> = OnceCell::const_new();
    DIR.get_or_try_init(|| script_folder("THANOS_DIR", "build-thanos.sh", &["thanos"]))
        .await
        .cloned()
}

/// prometheus-operator's `PrometheusRule` CustomResourceDefinition as the project
/// publishes it (YAML), at the version `scripts/fetch-prometheus-operator.sh` pins; from
/// `PROMETHEUS_OPERATOR_DIR` if set.
pub async fn prometheus_rule_crd() -> anyhow::Result<String> {
    prometheus_operator_file(PROMETHEUS_RULE_CRD_PATH).await
}

/// prometheus-operator's `ServiceMonitor` CustomResourceDefinition, as
/// [`prometheus_rule_crd`].
pub async fn service_monitor_crd() -> anyhow::Result<String> {
    prometheus_operator_file(SERVICE_MONITOR_CRD_PATH).await
}

async fn prometheus_operator_file(path: &str) -> anyhow::Result<String> {
    static DIR: OnceCell<PathBuf> = OnceCell::const_new();
    let dir = DIR
        .get_or_try_init(|| {
            script_folder(
                "PROMETHEUS_OPERATOR_DIR",
                "fetch-prometheus-operator.sh",
                &[PROMETHEUS_RULE_CRD_PATH, SERVICE_MONITOR_CRD_PATH],
            )
        })
        .await?;
    let path = dir.join(path);
    std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
}

/// `env` if set, else the folder `scripts/<script>` prints on its last line; `needed`
/// files must be in it.
pub(crate) async fn script_folder(
    env: &str,
    script: &str,
    needed: &[&str],
) -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os(env).filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../scripts")
                .join(script);
            let mut command = tokio::process::Command::new("bash");
            command.arg(&script);
            let hint = format!("; set {env} to use a folder from elsewhere");
            last_line_path(command, &script, &hint).await?
        }
    };
    for file in needed {
        if !dir.join(file).is_file() {
            bail!("{file} not found in {}", dir.display());
        }
    }
    Ok(dir)
}
