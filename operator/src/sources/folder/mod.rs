//! Standalone mode: the manifest folder compiled into the served table, kept current as
//! files change.
//!
//! Reading and compiling run on a thread of their own, never on the async workers, so
//! requests (and `/healthz`) are answered while a large folder is loaded. The thread
//! wakes on file events that can change a file (not on the loader's own reads), waits a
//! fixed [`DEBOUNCE`] for the burst to end, and then reads only the files that changed.

mod read;
mod scan;
pub mod secrets;

pub use read::{Located, ManifestError, parse_text, read_all, read_dir, read_file};

use crate::compiler::{CompileOptions, IncrementalCompiler};
use crate::kubernetes::leader::Leadership;
use crate::publish::Publisher;
use crate::sinks::recording_rules::RulesOutput;
use crate::sources::folder::scan::{ManifestFolder, Scan};
use metrics_registry_apiserver::api::Readiness;
use metrics_registry_apiserver::table::SharedRuleTable;
use metrics_registry_apiserver::telemetry::SelfMetrics;
use metrics_registry_apiserver::upstream::Backends;
use notify::{EventKind, RecursiveMode, Watcher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Bursts of file events (editors write, rename and chmod) are folded into one reload;
/// the delay is fixed from the first event, so a steady stream cannot postpone it.
pub const DEBOUNCE: Duration = Duration::from_millis(50);
/// Safety net for file systems that miss events (some network and overlay mounts).
pub const RESCAN: Duration = Duration::from_secs(5);

pub struct ManifestSource {
    /// As given: a symlink is followed anew on every scan, so replacing the folder or
    /// re-pointing the link is picked up.
    pub dir: PathBuf,
    pub options: CompileOptions,
    pub table: SharedRuleTable,
    pub backends: Backends,
    pub readiness: Readiness,
    pub metrics: Arc<SelfMetrics>,
    /// Where valid `CustomPrometheusRules` go.
    pub rules: RulesOutput,
}

enum Wake {
    Changed,
    Stop,
}

/// Stops the loader thread when the task that owns it ends or is aborted.
struct StopLoader(mpsc::Sender<Wake>);

impl Drop for StopLoader {
    fn drop(&mut self) {
        let _ = self.0.send(Wake::Stop);
    }
}

impl ManifestSource {
    /// Loads, then reloads on every change until this future is dropped. Rule files are
    /// written from here (they may wait on Prometheus; a failed write is retried), the
    /// rest on the thread.
    pub async fn run(self) -> anyhow::Result<()> {
        let (wake_tx, wake_rx) = mpsc::channel();
        let (rules_tx, rules_rx) = tokio::sync::watch::channel(None);
        let loader = Loader {
            folder: ManifestFolder::new(&self.dir),
            compiler: IncrementalCompiler::new(self.options),
            publisher: Publisher::new(
                self.table,
                self.backends,
                self.readiness,
                rules_tx,
                self.metrics,
            ),
        };
        let events = wake_tx.clone();
        let _stop = StopLoader(wake_tx);
        std::thread::Builder::new()
            .name("manifests".into())
            .spawn(move || loader.run(events, wake_rx))?;
        // The only writer of its rule files: it always leads.
        self.rules.run(rules_rx, Leadership::Always).await;
        Ok(())
    }
}

struct Loader {
    folder: ManifestFolder,
    compiler: IncrementalCompiler,
    publisher: Publisher,
}

impl Loader {
    fn run(mut self, events: mpsc::Sender<Wake>, wake: mpsc::Receiver<Wake>) {
        let mut watch = FolderWatch::new(self.folder.dir().to_path_buf(), events);
        watch.refresh();
        let started = Instant::now();
        let scan = self.folder.scan();
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            "folder read"
        );
        // Every file has been tried (the publisher marks the server ready then); bad ones
        // are reported and do not hold the rest back.
        self.publish(scan, started);
        loop {
            match wake.recv_timeout(RESCAN) {
                Ok(Wake::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => return,
                Ok(Wake::Changed) => {
                    let started = Instant::now();
                    std::thread::sleep(DEBOUNCE);
                    while let Ok(next) = wake.try_recv() {
                        if matches!(next, Wake::Stop) {
                            return;
                        }
                    }
                    watch.refresh();
                    let scan = self.folder.scan();
                    self.publish(scan, started);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    watch.refresh();
                    let scan = self.folder.scan();
                    self.publish(scan, Instant::now());
                }
            }
            if self.publisher.is_closed() {
                return;
            }
        }
    }

    fn publish(&mut self, scan: Scan, started: Instant) {
        for problem in &scan.problems {
            tracing::error!("{problem}");
        }
        for file in &scan.recovered {
            tracing::info!(file = %file.display(), "readable again");
        }
        let delta = self.compiler.apply(scan.changes);
        let published = self.publisher.publish(&self.compiler, &delta);
        if published.first || !delta.is_empty() {
            tracing::info!(
                dir = %self.folder.dir().display(),
                definitions = self.compiler.len(),
                not_ready = self.compiler.not_ready().count(),
                changed = delta.changed.len(),
                files_read = scan.files_read,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "definitions published"
            );
        }
    }
}

/// inotify on the folder (recursive) and on its parent, re-established whenever the path
/// stops leading to the folder being watched (folder replaced, symlink re-pointed).
struct FolderWatch {
    dir: PathBuf,
    events: mpsc::Sender<Wake>,
    watcher: Option<notify::RecommendedWatcher>,
    /// (device, inode) of the folder being watched.
    watching: Option<(u64, u64)>,
    failed: Option<String>,
}

impl FolderWatch {
    fn new(dir: PathBuf, events: mpsc::Sender<Wake>) -> Self {
        FolderWatch {
            dir,
            events,
            watcher: None,
            watching: None,
            failed: None,
        }
    }

    fn refresh(&mut self) {
        use std::os::unix::fs::MetadataExt;
        let identity = std::fs::metadata(&self.dir)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if identity.is_some() && identity == self.watching && self.watcher.is_some() {
            return;
        }
        match self.watch() {
            Ok(watcher) => {
                self.watcher = Some(watcher);
                self.watching = identity;
                if self.failed.take().is_some() {
                    tracing::info!(dir = %self.dir.display(), "watching the folder again");
                }
            }
            Err(error) => {
                let message = error.to_string();
                if self.failed.as_deref() != Some(message.as_str()) {
                    tracing::warn!(dir = %self.dir.display(), "cannot watch the folder, rescanning every {RESCAN:?}: {message}");
                    self.failed = Some(message);
                }
                self.watcher = None;
                self.watching = None;
            }
        }
    }

    fn watch(&self) -> notify::Result<notify::RecommendedWatcher> {
        let events = self.events.clone();
        let dir = self.dir.clone();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event
                    && is_change(&event, &dir)
                {
                    let _ = events.send(Wake::Changed);
                }
            })?;
        if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            // Best effort: the parent may not be readable, the folder itself is what counts.
            let _ = watcher.watch(parent, RecursiveMode::NonRecursive);
        }
        watcher.watch(&self.dir, RecursiveMode::Recursive)?;
        Ok(watcher)
    }
}

/// Opens, reads and closes without writing are what the loader itself does; in the parent
/// folder only the manifest folder's own entry matters.
fn is_change(event: &notify::Event, dir: &Path) -> bool {
    use notify::event::{AccessKind, AccessMode};
    let writes = match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    };
    writes && event.paths.iter().any(|path| path.starts_with(dir))
}
