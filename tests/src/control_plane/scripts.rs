//! The binaries and images the clusters need, built by scripts in `scripts/` into a cache
//! folder outside the clone (once; later runs find them).

use super::node::KUBELET;
use super::{ETCD, KUBE_APISERVER, KUBE_CONTROLLER_MANAGER, KUBE_SCHEDULER};
use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use tokio::sync::OnceCell;

/// `K8S_BIN_DIR` if set, else the folder `scripts/build-k8s.sh` prints on its last line.
/// Run once per test binary: parallel first-time builds would race on the same outputs.
pub async fn binary_dir() -> anyhow::Result<PathBuf> {
    static DIR: OnceCell<PathBuf> = OnceCell::const_new();
    DIR.get_or_try_init(find_binary_dir).await.cloned()
}

async fn find_binary_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("K8S_BIN_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        // A first build takes minutes and reports progress on stderr.
        None => script_output_dir("build-k8s.sh")
            .await
            .context("building the Kubernetes binaries (set K8S_BIN_DIR to use others)")?,
    };
    for binary in [
        ETCD,
        KUBE_APISERVER,
        KUBE_CONTROLLER_MANAGER,
        KUBE_SCHEDULER,
        KUBELET,
    ] {
        if !dir.join(binary).is_file() {
            bail!("{binary} not found in {}", dir.display());
        }
    }
    Ok(dir)
}

/// The pause and workload image archives (`scripts/build-test-images.sh`, run once per
/// test binary; it returns at once when they are built).
pub async fn test_images() -> anyhow::Result<Vec<PathBuf>> {
    static DIR: OnceCell<PathBuf> = OnceCell::const_new();
    let dir = DIR
        .get_or_try_init(|| script_output_dir("build-test-images.sh"))
        .await?;
    Ok(vec![
        dir.join("pause.oci.tar"),
        dir.join("workload.oci.tar"),
    ])
}

/// The metrics-registry image archive (`scripts/build-image.sh`: a static release build
/// and buildah; minutes the first time). `METRICS_REGISTRY_IMAGE_ARCHIVE` skips the build.
pub async fn product_image() -> anyhow::Result<PathBuf> {
    static ARCHIVE: OnceCell<PathBuf> = OnceCell::const_new();
    ARCHIVE
        .get_or_try_init(|| async {
            match std::env::var_os("METRICS_REGISTRY_IMAGE_ARCHIVE").filter(|a| !a.is_empty()) {
                Some(archive) => Ok(PathBuf::from(archive)),
                None => script_output_dir("build-image.sh").await,
            }
        })
        .await
        .cloned()
}

/// What a script that builds with cargo needs of this process' environment, plus
/// `extra`: the variables cargo sets for a test would make a nested cargo build see a
/// different environment and rebuild everything.
pub fn keep_only_build_env(command: &mut tokio::process::Command, extra: &[&str]) {
    const BUILD_ENV: &[&str] = &[
        "PATH",
        "HOME",
        "USER",
        "TMPDIR",
        "XDG_CACHE_HOME",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
        "CARGO_TARGET_DIR",
        "METRICS_REGISTRY_CACHE",
    ];
    command.env_clear();
    for (key, value) in std::env::vars_os() {
        let keep = key
            .to_str()
            .is_some_and(|k| BUILD_ENV.contains(&k) || extra.contains(&k));
        if keep {
            command.env(key, value);
        }
    }
}

/// Runs `scripts/<name>` and returns the path it prints on its last line.
async fn script_output_dir(name: &str) -> anyhow::Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../scripts")
        .join(name);
    let mut command = tokio::process::Command::new("bash");
    keep_only_build_env(&mut command, &[]);
    command.arg(&script);
    last_line_path(command, &script, "").await
}

/// Runs `command` (a script at `script`, stderr left attached: a first build takes
/// minutes and reports progress there) and returns the path it prints on its last line.
/// `hint` follows the failure message.
pub(crate) async fn last_line_path(
    mut command: tokio::process::Command,
    script: &Path,
    hint: &str,
) -> anyhow::Result<PathBuf> {
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .await
        .with_context(|| format!("running {}", script.display()))?;
    if !output.status.success() {
        bail!(
            "{} failed with {} (its messages are above){hint}",
            script.display(),
            output.status
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last = stdout
        .lines()
        .rev()
        .find(|line| !line.trim().is_empty())
        .with_context(|| format!("{} printed no path", script.display()))?;
    Ok(PathBuf::from(last.trim()))
}
