//! Cluster mode: definitions from the API server, statuses written back, object caches
//! for wildcard requests, and rules handed to Prometheus.

pub mod authconfig;
pub mod backoff;
pub mod leader;
#[cfg(test)]
pub(crate) mod mock_api;
pub mod objects;
pub mod reviews;
pub mod secrets;
