//! Background tasks that end with their owner: dropping the guard aborts them, so a
//! server that stops (or is cancelled) leaves no watch running against a gone cluster.

use tokio::task::JoinHandle;

#[derive(Default)]
pub struct TaskGuard(Vec<JoinHandle<()>>);

impl TaskGuard {
    pub fn push(&mut self, task: JoinHandle<()>) {
        self.0.push(task);
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}
