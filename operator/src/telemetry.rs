//! What the operator side adds to the self-metrics: definitions by kind and readiness,
//! and the log filter that keeps per-connection noise out of the logs.

use crate::compiler::Verdict;
use crate::definitions::DefinitionId;
use metrics_registry_apiserver::telemetry::SelfMetrics;
use std::collections::BTreeMap;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer};

/// Replaces the definition counts in `metrics` with those of `verdicts`.
pub fn record_verdicts<'a>(
    metrics: &SelfMetrics,
    verdicts: impl IntoIterator<Item = (&'a DefinitionId, &'a Verdict)>,
) {
    let mut counts: BTreeMap<(String, bool), i64> = BTreeMap::new();
    for (id, verdict) in verdicts {
        *counts
            .entry((id.kind.name().to_owned(), verdict.problem.is_none()))
            .or_default() += 1;
    }
    metrics.set_definitions(counts);
}

/// rustls warns for every client that sends an IP address as TLS server name (Go's
/// clients, kube-apiserver's aggregator among them, do so when dialing an IP): a line per
/// connection that says nothing about this server. Exactly that warning is dropped;
/// every other rustls message stays.
pub struct QuietTlsNoise;

const SNI_IP_WARNING: &str = "Illegal SNI extension: ignoring IP address presented as hostname";

#[derive(Default)]
struct LogRecord {
    target: String,
    message: String,
}

impl Visit for LogRecord {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "log.target" {
            self.target = value.to_owned();
        }
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.message = format!("{value:?}");
        }
    }
}

impl<S: Subscriber> Layer<S> for QuietTlsNoise {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        // Records of the `log` crate arrive with target "log" and their own in a field.
        let target = event.metadata().target();
        if target != "log" && !target.starts_with("rustls") {
            return true;
        }
        let mut record = LogRecord::default();
        event.record(&mut record);
        let from_rustls = target.starts_with("rustls") || record.target.starts_with("rustls");
        !(from_rustls && record.message.starts_with(SNI_IP_WARNING))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn only_the_sni_ip_warning_of_rustls_is_dropped() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::registry().with(QuietTlsNoise).with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(target: "rustls::msgs::handshake", "{SNI_IP_WARNING} (127.0.0.1)");
            tracing::warn!(target: "rustls::msgs::handshake", "Illegal SNI extension: duplicate host_name received");
            tracing::warn!(target: "metrics_registry", "{SNI_IP_WARNING} from ours is kept");
        });
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert!(!text.contains("(127.0.0.1)"), "{text}");
        assert!(text.contains("duplicate host_name"), "{text}");
        assert!(text.contains("from ours is kept"), "{text}");
    }
}
