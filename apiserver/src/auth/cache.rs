//! A cache of review results bounded in bytes and in time, and one review per key at a
//! time.

use super::AuthError;
use moka::Expiry;
use std::collections::HashMap;
use std::fmt::Debug;
use std::future::Future;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::Duration;
use tokio::sync::watch;
// tokio's clock, so that tests can pause and advance it; outside tests it reads the
// same monotonic clock as std.
use tokio::time::Instant;

/// How long review answers are reused; a revoked token or role binding takes at most
/// this long to bite. Kubernetes' delegated defaults are 10 s for all four; allowed
/// answers are kept 30 s here so that an HPA polling every 15 s costs no review per
/// request, while denials and rejected tokens still expire after 10 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheTtls {
    pub token_authenticated: Duration,
    pub token_rejected: Duration,
    pub allowed: Duration,
    pub denied: Duration,
}

impl Default for CacheTtls {
    fn default() -> Self {
        CacheTtls {
            token_authenticated: Duration::from_secs(30),
            token_rejected: Duration::from_secs(10),
            allowed: Duration::from_secs(30),
            denied: Duration::from_secs(10),
        }
    }
}

/// Bytes each review cache may hold: some 20,000 users' tokens or decisions, a small
/// share of the chart's 128 MiB memory limit.
pub(crate) const REVIEW_CACHE_BYTES: u64 = 8 << 20;

/// What one entry costs besides its key and value (the maps' and moka's bookkeeping).
const ENTRY_OVERHEAD: usize = 128;

#[derive(Clone)]
struct Entry<V> {
    value: V,
    /// When it stops being served, on tokio's clock.
    expires: Instant,
    ttl: Duration,
    bytes: u32,
}

/// Each entry leaves moka's memory when its own time to live ends.
struct OwnTtl;

impl<K, V> Expiry<K, Entry<V>> for OwnTtl {
    fn expire_after_create(
        &self,
        _key: &K,
        entry: &Entry<V>,
        _created: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

/// Bounded because its keys come from clients: random tokens and paths must not grow it
/// without limit, nor push out the entries of the clients that keep asking. moka bounds
/// it in bytes (each entry weighed by its key and value) and evicts entry by entry,
/// admitting a new key only over one asked for less often (TinyLFU), so one client with
/// random keys cannot flush everyone else's. An entry is served only until its own TTL
/// on tokio's clock; moka drops it from memory at the same age.
pub(crate) struct TtlCache<K, V> {
    entries: moka::sync::Cache<K, Entry<V>>,
}

impl<K, V> TtlCache<K, V>
where
    K: Hash + Eq + Debug + Send + Sync + 'static,
    V: Clone + Debug + Send + Sync + 'static,
{
    pub(crate) fn new(max_bytes: u64) -> Self {
        TtlCache {
            entries: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|_, entry: &Entry<V>| entry.bytes)
                .expire_after(OwnTtl)
                .build(),
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let entry = self.entries.get(key)?;
        if entry.expires > Instant::now() {
            Some(entry.value)
        } else {
            self.entries.invalidate(key);
            None
        }
    }

    pub(crate) fn insert(&self, key: K, value: V, ttl: Duration) {
        if ttl.is_zero() {
            return;
        }
        // Their printed size is close to what they hold (strings, lists of strings), and
        // it keeps up with new fields; it is computed on misses only, next to a review.
        let bytes = format!("{key:?}{value:?}").len() + ENTRY_OVERHEAD;
        let entry = Entry {
            value,
            expires: Instant::now() + ttl,
            ttl,
            bytes: u32::try_from(bytes).unwrap_or(u32::MAX),
        };
        self.entries.insert(key, entry);
    }

    /// Bytes held, after moka has applied its pending evictions.
    #[cfg(test)]
    pub(crate) fn weighed_bytes(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
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

impl<K, V> ReviewCache<K, V>
where
    K: Hash + Eq + Clone + Debug + Send + Sync + 'static,
    V: Clone + Debug + Send + Sync + 'static,
{
    pub(crate) fn new(max_bytes: u64) -> Self {
        ReviewCache {
            cache: TtlCache::new(max_bytes),
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
        let cache = TtlCache::new(1 << 20);
        cache.insert("a", 1, Duration::from_millis(30));
        cache.insert("b", 2, Duration::ZERO);
        assert_eq!(cache.get(&"a"), Some(1));
        assert_eq!(cache.get(&"b"), None);
        tokio::time::advance(Duration::from_millis(40)).await;
        assert_eq!(cache.get(&"a"), None);
        assert_eq!(cache.weighed_bytes(), 0);
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
    fn stays_within_its_bytes_and_keeps_the_entries_asked_for_often() {
        const BUDGET: u64 = 256 * 1024;
        let cache = TtlCache::new(BUDGET);
        // A regular client, asked for again and again.
        for _ in 0..20 {
            if cache.get(&"regular-user".to_string()).is_none() {
                cache.insert("regular-user".to_string(), 1u8, Duration::from_secs(60));
            }
        }
        // One client with 100,000 random keys, each asked once.
        for i in 0..100_000u32 {
            let key = format!("random-{i:08}-{}", "x".repeat(64));
            if cache.get(&key).is_none() {
                cache.insert(key, 0u8, Duration::from_secs(60));
            }
            if i % 1000 == 0 {
                assert_eq!(
                    cache.get(&"regular-user".to_string()),
                    Some(1),
                    "evicted at {i}"
                );
            }
        }
        assert!(cache.weighed_bytes() <= BUDGET, "{}", cache.weighed_bytes());
        assert_eq!(cache.get(&"regular-user".to_string()), Some(1));
    }
}
