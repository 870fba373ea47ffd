//! The serving side of metrics-registry: the [`rules::RuleTable`] it serves, the HTTP
//! API of custom.metrics.k8s.io and external.metrics.k8s.io, and the Prometheus client.
//! Nothing here knows about custom resources; the operator compiles those into a table.

pub mod api;
pub mod auth;
pub mod error;
pub mod external;
pub mod objects;
pub mod prometheus;
pub mod quantity;
pub mod readiness;
pub mod render;
pub mod resource_metrics;
pub mod router;
pub mod selector;
pub mod serve;
pub mod table;
pub mod telemetry;
pub mod tls;
pub mod tls_acceptor;
pub mod upstream;
pub mod wire;
