//! The load generator: fixed concurrency or a fixed schedule, for a fixed time, over
//! keep-alive connections; every answer's status is checked.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where one server is asked, and how.
#[derive(Clone)]
pub struct Target {
    pub client: reqwest::Client,
    pub base: String,
    /// `Authorization` value, if any.
    pub authorization: Option<String>,
}

impl Target {
    pub async fn get(&self, path: &str) -> anyhow::Result<(u16, String)> {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(value) = &self.authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }
}

#[derive(Debug, Default, Clone)]
pub struct LoadResult {
    pub requests: usize,
    pub errors: usize,
    pub elapsed: Duration,
    latencies: Vec<Duration>,
    pub first_error: Option<String>,
}

impl LoadResult {
    pub fn throughput(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// In milliseconds.
    pub fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index.min(sorted.len() - 1)].as_secs_f64() * 1000.0
    }

    fn merge(&mut self, other: LoadResult) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latencies.extend(other.latencies);
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

async fn one(target: &Target, path: &str, result: &mut LoadResult) {
    let started = Instant::now();
    let outcome = target.get(path).await;
    result.latencies.push(started.elapsed());
    result.requests += 1;
    match outcome {
        Ok((200, _)) => {}
        Ok((status, body)) => {
            result.errors += 1;
            result.first_error.get_or_insert_with(|| {
                format!("{status} {}", body.chars().take(200).collect::<String>())
            });
        }
        Err(error) => {
            result.errors += 1;
            result
                .first_error
                .get_or_insert_with(|| format!("{error:#}"));
        }
    }
}

/// `concurrency` workers, each sending its next request when the previous one is
/// answered, cycling through `paths` (worker `w` starts at path `w`), for `duration`.
pub async fn closed_loop(
    target: &Target,
    paths: &[String],
    concurrency: usize,
    duration: Duration,
) -> LoadResult {
    let paths = Arc::new(paths.to_vec());
    let started = Instant::now();
    let deadline = started + duration;
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (target, paths) = (target.clone(), paths.clone());
            tokio::spawn(async move {
                let mut result = LoadResult::default();
                let mut next = worker;
                while Instant::now() < deadline {
                    one(&target, &paths[next % paths.len()], &mut result).await;
                    next += concurrency;
                }
                result
            })
        })
        .collect();
    let mut total = LoadResult::default();
    for worker in workers {
        total.merge(worker.await.unwrap_or_default());
    }
    total.elapsed = started.elapsed();
    total
}

/// The HPA's shape: one client per path, each asking every `period`, their phases spread
/// evenly over the period, for `duration`.
pub async fn scheduled(
    target: &Target,
    paths: &[String],
    period: Duration,
    duration: Duration,
) -> LoadResult {
    let started = tokio::time::Instant::now();
    let end = started + duration;
    let count = paths.len().max(1) as u32;
    let clients: Vec<_> = paths
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let (target, path) = (target.clone(), path.clone());
            tokio::spawn(async move {
                let mut result = LoadResult::default();
                let mut next = started + period * i as u32 / count;
                while next < end {
                    tokio::time::sleep_until(next).await;
                    one(&target, &path, &mut result).await;
                    next += period;
                }
                result
            })
        })
        .collect();
    let mut total = LoadResult::default();
    for client in clients {
        total.merge(client.await.unwrap_or_default());
    }
    total.elapsed = started.elapsed();
    total
}
