//! Cluster mode: definitions from the API server, statuses written back, object caches
//! for wildcard requests, and rules handed to Prometheus.

pub mod apiservice;
pub mod authconfig;
pub mod backoff;
pub mod controller;
pub mod leader;
#[cfg(test)]
pub(crate) mod mock_api;
pub mod objects;
pub mod reviews;
pub mod status;
pub mod status_writer;
pub mod store;
pub mod uninstall;
