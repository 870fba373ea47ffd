//! A Prometheus exporter whose samples the test sets directly.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::sync::oneshot;

type Labels = Vec<(String, String)>;

#[derive(Default)]
struct Family {
    // A Vec rather than a map keeps series in the order they were first set,
    // so the exposition is stable and readable when a test prints it.
    series: Vec<(Labels, Sample)>,
}

#[derive(Clone, Copy)]
enum Sample {
    Fixed(f64),
    /// A counter at `per_second × (now − since)`, exposed with `now` as its timestamp.
    Growing {
        per_second: f64,
        since_ms: i64,
    },
}

// Names ordered so every scrape renders identically.
type Families = BTreeMap<String, Family>;

/// Serves `GET /metrics` on `127.0.0.1:<ephemeral port>` in the Prometheus text format.
pub struct Exporter {
    addr: SocketAddr,
    families: Arc<Mutex<Families>>,
    shutdown: Option<oneshot::Sender<()>>,
}

impl Exporter {
    pub async fn start() -> anyhow::Result<Exporter> {
        // Binding port 0 ourselves avoids the race that `free_port` has.
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .context("binding the exporter listener")?;
        let addr = listener.local_addr()?;
        let families = Arc::new(Mutex::new(Families::new()));
        let app = Router::new()
            .route("/metrics", get(metrics))
            .with_state(families.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    // A dropped sender means the same as an explicit stop.
                    let _ = stopped.await;
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(%addr, %error, "test exporter stopped with an error");
            }
        });
        tracing::debug!(%addr, "test exporter listening");
        Ok(Exporter {
            addr,
            families,
            shutdown: Some(shutdown),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Set (create or overwrite) a gauge sample. Labels are written in the given
    /// order; a series is identified by its label set regardless of order.
    ///
    /// Panics on names Prometheus would reject, because one bad line makes
    /// Prometheus drop the whole scrape and the test would only see missing data.
    pub fn set(&self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.put(name, labels, Sample::Fixed(value));
    }

    /// Set a counter that grows by `per_second` each second of wall time (starting an hour
    /// back, far from zero). A scrape gets its value at that instant with the instant as
    /// the sample's timestamp, so Prometheus stores exact (time, value) pairs and `rate`
    /// and `irate` return `per_second` whatever the scrape jitter.
    pub fn set_growing(&self, name: &str, labels: &[(&str, &str)], per_second: f64) {
        let since_ms = now_ms() - 3_600_000;
        self.put(
            name,
            labels,
            Sample::Growing {
                per_second,
                since_ms,
            },
        );
    }

    fn put(&self, name: &str, labels: &[(&str, &str)], value: Sample) {
        assert_valid_metric_name(name);
        for (i, (label, _)) in labels.iter().enumerate() {
            assert_valid_label_name(label);
            assert!(
                labels[..i].iter().all(|(other, _)| other != label),
                "duplicate label {label:?} for metric {name:?}"
            );
        }
        let owned: Labels = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let mut families = self.lock();
        let family = families.entry(name.to_owned()).or_default();
        match family
            .series
            .iter_mut()
            .find(|(existing, _)| same_label_set(existing, labels))
        {
            Some(series) => *series = (owned, value),
            None => family.series.push((owned, value)),
        }
    }

    /// Remove the one series of `name` with exactly this label set (any order).
    pub fn remove(&self, name: &str, labels: &[(&str, &str)]) {
        let mut families = self.lock();
        if let Some(family) = families.get_mut(name) {
            family
                .series
                .retain(|(existing, _)| !same_label_set(existing, labels));
            if family.series.is_empty() {
                families.remove(name);
            }
        }
    }

    /// Remove every series of `name`.
    pub fn remove_all(&self, name: &str) {
        self.lock().remove(name);
    }

    /// Remove every series.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// The exposition exactly as a scrape would return it.
    pub fn render(&self) -> String {
        render(&self.lock())
    }

    fn lock(&self) -> MutexGuard<'_, Families> {
        // A test that panicked while holding the lock must not turn every later
        // scrape into a second panic.
        self.families.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        // Graceful shutdown closes the listener at once and idle keep-alive
        // connections (Prometheus holds one) right after, so scrapes start failing.
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

async fn metrics(State(families): State<Arc<Mutex<Families>>>) -> impl IntoResponse {
    let body = render(&families.lock().unwrap_or_else(PoisonError::into_inner));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn render(families: &Families) -> String {
    let mut out = String::new();
    let now = now_ms();
    for (name, family) in families {
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in &family.series {
            out.push_str(name);
            if !labels.is_empty() {
                out.push('{');
                for (i, (label, label_value)) in labels.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{label}=\"{}\"", escape_label_value(label_value));
                }
                out.push('}');
            }
            match *value {
                Sample::Fixed(value) => {
                    let _ = writeln!(out, " {}", format_value(value));
                }
                Sample::Growing {
                    per_second,
                    since_ms,
                } => {
                    let value = per_second * (now - since_ms) as f64 / 1000.0;
                    let _ = writeln!(out, " {} {now}", format_value(value));
                }
            }
        }
    }
    out
}

fn same_label_set(existing: &[(String, String)], wanted: &[(&str, &str)]) -> bool {
    existing.len() == wanted.len()
        && wanted
            .iter()
            .all(|(k, v)| existing.iter().any(|(ek, ev)| ek == k && ev == v))
}

fn escape_label_value(value: &str) -> String {
    let mut escaped = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            '"' => escaped.push_str("\\\""),
            '\n' => escaped.push_str("\\n"),
            c => escaped.push(c),
        }
    }
    escaped
}

fn format_value(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value == f64::INFINITY {
        "+Inf".to_owned()
    } else if value == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        // Rust's shortest round-trip representation, which Go's ParseFloat reads back exactly.
        value.to_string()
    }
}

fn assert_valid_metric_name(name: &str) {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    assert!(valid, "invalid Prometheus metric name {name:?}");
}

fn assert_valid_label_name(name: &str) {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    assert!(valid, "invalid Prometheus label name {name:?}");
}
