//! metrics-registry: turns metric definitions (custom resources or manifest files)
//! into the rule table the API server serves, and wires the binary together.

pub mod args;
pub mod catalogue;
pub mod check;
pub mod compiler;
pub mod convert;
pub mod crdgen;
pub mod definitions;
pub mod kubernetes;
pub mod parallel;
pub mod publish;
pub mod run;
pub mod sinks;
pub mod sources;
pub mod supervise;
pub mod telemetry;
pub mod uninstall;

/// The one rustls crypto provider of the whole binary (ring); tests call it too.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
