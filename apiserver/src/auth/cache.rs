//! A small time-to-live cache for review results, and one review per key at a time.

use super::AuthError;
use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
// tokio's clock, so that tests can pause and advance it; outside tests it reads the
// same monotonic clock as std.
use tokio::time::Instant;

/// Bounded because its keys come from clients: random tokens must not grow it
/// without limit. Past the bound, expired entries go first, then everything, which
/// only costs a few extra reviews.
pub(crate) struct TtlCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K: Hash + Eq, V: Clone> TtlCache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        TtlCache {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some((value, expires)) if *expires > Instant::now() => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&self, key: K, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.capacity {
            entries.retain(|_, (_, expires)| *expires > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (value, now + ttl));
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

/// Where an answer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Lookup {
    Cached,
    /// From a review another request had already sent for the same key.
    Shared,
    Reviewed,
}

type Flight<V> = watch::Receiver<Option<Result<V, AuthError>>>;

/// A [`TtlCache`] whose misses are single flight: requests for a key that is being
/// reviewed wait for that review instead of sending their own.
pub(crate) struct ReviewCache<K, V> {
    cache: TtlCache<K, V>,
    flights: Mutex<HashMap<K, Flight<V>>>,
}

/// Ends a flight however the review ends (also when its request is dropped, whose
/// followers then review for themselves).
struct Landing<'a, K: Hash + Eq, V>(&'a Mutex<HashMap<K, Flight<V>>>, &'a K);

impl<K: Hash + Eq, V> Drop for Landing<'_, K, V> {
    fn drop(&mut self) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(self.1);
    }
}

impl<K: Hash + Eq + Clone, V: Clone> ReviewCache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        ReviewCache {
            cache: TtlCache::new(capacity),
            flights: Mutex::new(HashMap::new()),
        }
    }

    /// The cached answer, the answer of a review running for `key`, or `review()`'s,
    /// kept for `ttl(answer)`. Failures are never cached.
    pub(crate) async fn get_or_review<F, Fut>(
        &self,
        key: &K,
        review: F,
        ttl: impl Fn(&V) -> Duration,
    ) -> (Result<V, AuthError>, Lookup)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<V, AuthError>>,
    {
        if let Some(value) = self.cache.get(key) {
            return (Ok(value), Lookup::Cached);
        }
        let leader = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            match flights.get(key) {
                Some(receiver) => Err(receiver.clone()),
                None => {
                    let (sender, receiver) = watch::channel(None);
                    flights.insert(key.clone(), receiver);
                    Ok(sender)
                }
            }
        };
        match leader {
            Err(mut receiver) => {
                // The borrow of the channel ends here: it must not live across an await.
                let shared = receiver
                    .wait_for(Option::is_some)
                    .await
                    .ok()
                    .and_then(|answer| answer.clone());
                match shared {
                    Some(answer) => (answer, Lookup::Shared),
                    None => (review().await, Lookup::Reviewed),
                }
            }
            Ok(sender) => {
                let landing = Landing(&self.flights, key);
                let answer = review().await;
                if let Ok(value) = &answer {
                    self.cache.insert(key.clone(), value.clone(), ttl(value));
                }
                drop(landing);
                sender.send_replace(Some(answer.clone()));
                (answer, Lookup::Reviewed)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn entries_expire() {
        let cache = TtlCache::new(10);
        cache.insert("a", 1, Duration::from_millis(30));
        cache.insert("b", 2, Duration::ZERO);
        assert_eq!(cache.get(&"a"), Some(1));
        assert_eq!(cache.get(&"b"), None);
        tokio::time::advance(Duration::from_millis(40)).await;
        assert_eq!(cache.get(&"a"), None);
        assert_eq!(cache.len(), 0);
    }

    #[tokio::test]
    async fn concurrent_misses_send_one_review() {
        let cache = ReviewCache::new(10);
        let reviews = std::sync::atomic::AtomicUsize::new(0);
        let review = || async {
            reviews.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok::<_, AuthError>(7)
        };
        let answers = futures::future::join_all(
            (0..10).map(|_| cache.get_or_review(&"k", review, |_| Duration::from_secs(60))),
        )
        .await;
        assert!(answers.iter().all(|(answer, _)| answer == &Ok(7)));
        assert_eq!(reviews.load(std::sync::atomic::Ordering::SeqCst), 1);
        let shared = answers.iter().filter(|(_, l)| *l == Lookup::Shared).count();
        assert_eq!(shared, 9);
        let (_, lookup) = cache
            .get_or_review(&"k", review, |_| Duration::from_secs(60))
            .await;
        assert_eq!(lookup, Lookup::Cached);
    }

    #[tokio::test]
    async fn failures_are_not_cached() {
        let cache = ReviewCache::<&str, u8>::new(10);
        let failing = || async { Err(AuthError::Review("down".into())) };
        let (answer, _) = cache
            .get_or_review(&"k", failing, |_| Duration::from_secs(60))
            .await;
        assert!(answer.is_err());
        let (answer, lookup) = cache
            .get_or_review(&"k", || async { Ok(1) }, |_| Duration::from_secs(60))
            .await;
        assert_eq!((answer, lookup), (Ok(1), Lookup::Reviewed));
    }

    #[test]
    fn stays_bounded() {
        let cache = TtlCache::new(3);
        for i in 0..10 {
            cache.insert(i, i, Duration::from_secs(60));
            assert!(cache.len() <= 3);
        }
        assert_eq!(cache.get(&9), Some(9));
    }
}
