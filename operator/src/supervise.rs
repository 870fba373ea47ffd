//! Background tasks that must live as long as the server: a watch, the controller, the
//! lease. If one of them ends or panics, serving on would mean serving a table nobody
//! updates any more, so the supervisor reports it and the process stops with an error.
//! Dropping the supervisor aborts every task it started.

use futures::FutureExt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

/// Why a supervised task is no longer running.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskExit {
    pub name: String,
    pub panicked: Option<String>,
}

impl std::fmt::Display for TaskExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.panicked {
            Some(message) => write!(f, "{} panicked: {message}", self.name),
            None => write!(f, "{} stopped", self.name),
        }
    }
}

pub struct Supervisor {
    spawner: Spawner,
    exits: mpsc::UnboundedReceiver<TaskExit>,
}

/// Starts supervised tasks; cheap to clone and hand to whoever starts tasks later
/// (the object caches start one watch per kind on first need).
#[derive(Clone)]
pub struct Spawner {
    exits: mpsc::UnboundedSender<TaskExit>,
    handles: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Default for Supervisor {
    fn default() -> Self {
        let (sender, exits) = mpsc::unbounded_channel();
        Supervisor {
            spawner: Spawner {
                exits: sender,
                handles: Arc::new(Mutex::new(Vec::new())),
            },
            exits,
        }
    }
}

impl Supervisor {
    pub fn spawner(&self) -> Spawner {
        self.spawner.clone()
    }

    pub fn spawn(&self, name: impl Into<String>, task: impl Future<Output = ()> + Send + 'static) {
        self.spawner.spawn(name, task);
    }

    /// Resolves with the first task that ends.
    pub async fn first_exit(&mut self) -> TaskExit {
        match self.exits.recv().await {
            Some(exit) => exit,
            // Unreachable while `self.spawner` holds a sender; never resolve rather than lie.
            None => std::future::pending().await,
        }
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        for handle in self.spawner.handles.lock().expect("task list").drain(..) {
            handle.abort();
        }
    }
}

impl Spawner {
    pub fn spawn(&self, name: impl Into<String>, task: impl Future<Output = ()> + Send + 'static) {
        let name = name.into();
        let exits = self.exits.clone();
        let handle = tokio::spawn(async move {
            let panicked = match AssertUnwindSafe(task).catch_unwind().await {
                Ok(()) => None,
                Err(payload) => Some(panic_message(payload)),
            };
            // Aborted tasks never get here: only real exits are reported.
            let _ = exits.send(TaskExit { name, panicked });
        });
        self.keep(handle.abort_handle());
    }

    /// Supervises a task someone else spawned (e.g. the API crate's refreshers).
    pub fn adopt(&self, name: impl Into<String>, task: JoinHandle<()>) {
        let name = name.into();
        let exits = self.exits.clone();
        self.keep(task.abort_handle());
        let watcher = tokio::spawn(async move {
            let panicked = match task.await {
                Ok(()) => None,
                Err(error) if error.is_panic() => Some(panic_message(error.into_panic())),
                // Aborted by us: not an exit worth reporting.
                Err(_) => return,
            };
            let _ = exits.send(TaskExit { name, panicked });
        });
        self.keep(watcher.abort_handle());
    }

    fn keep(&self, handle: AbortHandle) {
        let mut handles = self.handles.lock().expect("task list");
        handles.retain(|h| !h.is_finished());
        handles.push(handle);
    }
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn reports_the_first_task_that_ends() {
        let mut supervisor = Supervisor::default();
        supervisor.spawn("forever", std::future::pending());
        supervisor.spawn("short", async {
            tokio::time::sleep(Duration::from_millis(10)).await;
        });
        let exit = supervisor.first_exit().await;
        assert_eq!(
            exit,
            TaskExit {
                name: "short".into(),
                panicked: None
            }
        );
    }

    #[tokio::test]
    async fn reports_panics_with_their_message() {
        let mut supervisor = Supervisor::default();
        supervisor.spawner().spawn("controller", async {
            panic!("table publisher broke");
        });
        let exit = supervisor.first_exit().await;
        assert_eq!(exit.name, "controller");
        assert_eq!(exit.panicked.as_deref(), Some("table publisher broke"));
        assert_eq!(
            exit.to_string(),
            "controller panicked: table publisher broke"
        );
    }

    #[tokio::test]
    async fn adopted_tasks_are_reported_too() {
        let mut supervisor = Supervisor::default();
        supervisor
            .spawner()
            .adopt("refresher", tokio::spawn(async { panic!("boom") }));
        let exit = supervisor.first_exit().await;
        assert_eq!(exit.to_string(), "refresher panicked: boom");
    }

    #[tokio::test]
    async fn dropping_the_supervisor_aborts_its_tasks() {
        let (sender, mut receiver) = tokio::sync::oneshot::channel::<()>();
        let supervisor = Supervisor::default();
        supervisor.spawn("holder", async move {
            let _sender = sender;
            std::future::pending::<()>().await;
        });
        drop(supervisor);
        // The task's future (and the sender it owns) is dropped by the abort.
        let closed = tokio::time::timeout(Duration::from_secs(5), &mut receiver).await;
        assert!(matches!(closed, Ok(Err(_))), "{closed:?}");
    }
}
