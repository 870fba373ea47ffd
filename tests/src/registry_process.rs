//! metrics-registry's own binary run as a process, for what only a separate process can
//! show (its memory, its CPU, its start-up): where the binary is, and starting it in
//! cluster mode against a test control plane.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{Context as _, bail};

use crate::bench::ProcessStats;
use crate::control_plane::ControlPlane;

/// The binary to run: `METRICS_REGISTRY_BIN` when set (scripts/test.sh sets it to the
/// image's static release binary), else the one cargo built next to the running
/// executable (a `bin` target sits beside it, a test one directory below it, in `deps`).
pub fn binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("METRICS_REGISTRY_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let folders = exe
        .parent()
        .into_iter()
        .chain(exe.parent().and_then(|p| p.parent()));
    for folder in folders {
        let candidate = folder.join("metrics-registry");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "metrics-registry binary not found: build it with `cargo build -p metrics-registry` (add --release to measure it) or set METRICS_REGISTRY_BIN"
    )
}

/// A running `metrics-registry run`; killed when dropped.
pub struct RegistryProcess {
    child: Child,
    dir: tempfile::TempDir,
    /// Its HTTPS port on 127.0.0.1 (a certificate of the control plane's CA).
    pub port: u16,
}

impl RegistryProcess {
    /// Cluster mode as the control plane's admin, serving on `port`, reading Prometheus
    /// at `prometheus_url`, with `flags` added; logs at warn into its own folder.
    pub fn start(
        plane: &ControlPlane,
        prometheus_url: &str,
        port: u16,
        flags: &[&str],
    ) -> anyhow::Result<RegistryProcess> {
        let dir = tempfile::tempdir()?;
        let (cert_path, key_path) = plane
            .certs()
            .write_loopback_serving_cert("metrics-registry", dir.path())?;
        let log = std::fs::File::create(dir.path().join("metrics-registry.log"))?;
        let binary = binary()?;
        let child = Command::new(&binary)
            .arg("run")
            .arg("--kubeconfig")
            .arg(plane.kubeconfig_path())
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--tls-cert-file")
            .arg(&cert_path)
            .arg("--tls-private-key-file")
            .arg(&key_path)
            .arg("--prometheus-url")
            .arg(prometheus_url)
            .arg("--leader-elect=false")
            .arg("--log-level")
            .arg("warn")
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting metrics-registry ({})", binary.display()))?;
        Ok(RegistryProcess { child, dir, port })
    }

    pub fn stats(&self) -> ProcessStats {
        ProcessStats {
            pid: self.child.id(),
        }
    }

    pub fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// The end of its log, for an error that says why it did not answer.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("metrics-registry.log"))
            .unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(30)..].join("\n");
        format!("metrics-registry's log ends with:\n{tail}")
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
