//! What `/readyz` reports: not ready until the first full set of definitions is served,
//! ready afterwards, and not ready again from the moment shutdown begins, so load
//! balancers and the aggregator stop sending requests before the server stops.

use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadyState {
    Loading,
    Ready,
    ShuttingDown,
}

#[derive(Clone, Debug)]
pub struct Readiness(Arc<watch::Sender<ReadyState>>);

impl Default for Readiness {
    fn default() -> Self {
        Readiness(Arc::new(watch::channel(ReadyState::Loading).0))
    }
}

impl Readiness {
    /// The first complete table is served. Has no effect once shutdown has begun.
    pub fn set_ready(&self) {
        self.0.send_if_modified(|state| {
            let loading = *state == ReadyState::Loading;
            if loading {
                *state = ReadyState::Ready;
            }
            loading
        });
    }

    /// From now on `/readyz` fails, whatever else happens.
    pub fn begin_shutdown(&self) {
        self.0.send_replace(ReadyState::ShuttingDown);
    }

    pub fn state(&self) -> ReadyState {
        *self.0.borrow()
    }

    pub fn is_ready(&self) -> bool {
        self.state() == ReadyState::Ready
    }

    /// Resolves once the first complete table is served (or shutdown began first).
    pub async fn wait_ready(&self) {
        let mut receiver = self.0.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = receiver
            .wait_for(|state| *state != ReadyState::Loading)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loading_then_ready_then_shutting_down_for_good() {
        let readiness = Readiness::default();
        assert_eq!(readiness.state(), ReadyState::Loading);
        let waiter = tokio::spawn({
            let readiness = readiness.clone();
            async move { readiness.wait_ready().await }
        });
        readiness.set_ready();
        waiter.await.unwrap();
        assert!(readiness.is_ready());
        readiness.begin_shutdown();
        readiness.set_ready();
        assert_eq!(
            readiness.state(),
            ReadyState::ShuttingDown,
            "a late publish must not make a stopping server ready again"
        );
    }
}
