//! A program under test run as a child process, logging to a file, and started again on
//! fresh ports when another process took one of its ports first.

use std::fs::File;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::process::{Child, Command};

const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// Log lines searched for a port clash and shown when a start fails.
const LOG_TAIL_LINES: usize = 40;
// Ports come from `free_port`, so another process can take one before the child binds
// it; only this failure is worth a retry with fresh ports.
const PORT_IN_USE: &str = "address already in use";
const START_ATTEMPTS: usize = 3;

pub(crate) struct Process {
    name: &'static str,
    log_path: PathBuf,
    child: Option<Child>,
}

impl Process {
    /// Starts `binary` with `args`, stdout and stderr going to a fresh `log_path`.
    pub(crate) fn spawn(
        name: &'static str,
        binary: &Path,
        args: &[String],
        log_path: &Path,
        cwd: &Path,
    ) -> anyhow::Result<Process> {
        // Truncates: a retry after a port clash must not find the previous clash in the log.
        let log =
            File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let child = Command::new(binary)
            .args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        Ok(Process {
            name,
            log_path: log_path.to_path_buf(),
            child: Some(child),
        })
    }

    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// Polls `probe` until it succeeds, failing early if the process exits meanwhile.
    /// `probe` reports why it is not ready yet, which ends up in the timeout error.
    pub(crate) async fn wait_until<F, Fut>(
        &mut self,
        what: &str,
        timeout: Duration,
        mut probe: F,
    ) -> anyhow::Result<()>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "{} exited with {status} while waiting for {what}",
                    self.name
                );
            }
            let last = match tokio::time::timeout(Duration::from_secs(5), probe()).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(reason)) => reason,
                Err(_) => "probe timed out after 5s".to_owned(),
            };
            if Instant::now() >= deadline {
                bail!("{what} not reached within {timeout:?}; last probe: {last}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    pub(crate) fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// SIGKILL and reap, so the ports are closed when this returns.
    pub(crate) fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            kill_and_reap(child, self.name);
        }
    }
}

/// Spawns a process with the arguments `attempt` makes (with fresh ports each time) and
/// waits until `ready`, given what `attempt` returned besides them, holds; `what` names
/// that state in the timeout error. Only a port clash is worth another attempt.
pub(crate) async fn start_on_free_ports<P, Fut>(
    spawn: impl Fn(&[String]) -> anyhow::Result<Process>,
    what: &str,
    timeout: Duration,
    mut attempt: impl FnMut() -> (Vec<String>, P),
    ready: impl Fn(P) -> Fut,
) -> anyhow::Result<(Process, Vec<String>, P)>
where
    P: Clone,
    Fut: Future<Output = Result<(), String>>,
{
    let mut attempts = 1;
    loop {
        let (args, ports) = attempt();
        let mut process = spawn(&args)?;
        match process
            .wait_until(what, timeout, || ready(ports.clone()))
            .await
        {
            Ok(()) => return Ok((process, args, ports)),
            Err(error) => {
                process.stop();
                if attempts < START_ATTEMPTS
                    && process.log_tail(LOG_TAIL_LINES).contains(PORT_IN_USE)
                {
                    tracing::debug!(component = process.name(), attempts, "port taken, retrying");
                    attempts += 1;
                    continue;
                }
                return Err(start_failure(&process, error));
            }
        }
    }
}

/// `error` with the end of the process' log, which usually says why.
pub(crate) fn start_failure(process: &Process, error: anyhow::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "{} did not start: {error:#}\n--- last {LOG_TAIL_LINES} lines of its log ---\n{}",
        process.name(),
        process.log_tail(LOG_TAIL_LINES)
    )
}

/// SIGKILL and reap. Sync so that Drop can use it; SIGKILL takes effect within
/// milliseconds, so briefly blocking on try_wait is cheaper than needing a runtime.
pub(crate) fn kill_and_reap(mut child: Child, name: &str) {
    if let Err(error) = child.start_kill() {
        tracing::warn!(%error, component = name, "killing");
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                tracing::warn!(component = name, "no exit after SIGKILL");
                return;
            }
            Err(error) => {
                tracing::warn!(%error, component = name, "waiting for exit");
                return;
            }
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read {}: {error})", path.display()),
    }
}
