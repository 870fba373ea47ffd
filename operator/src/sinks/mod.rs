//! Where what the compiler decided goes besides the served table: definition statuses,
//! rules for Prometheus (rule files or PrometheusRule objects) and, for installs without
//! the Helm chart, the APIServices. In cluster mode only the elected leader writes.

pub mod apiservice;
pub mod rules;
pub mod status;
