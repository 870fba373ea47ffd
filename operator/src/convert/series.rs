//! The adapter's discovery step against a live Prometheus: `GET /api/v1/series` with each
//! `seriesQuery` as `match[]`, over the last `max_age` (the adapter's `--metrics-max-age`).

use super::discovery::Series;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, thiserror::Error)]
pub enum SeriesError {
    #[error("--prometheus-url {url:?} is not a URL: {cause}")]
    Url { url: String, cause: String },
    #[error("cannot read the CA file {path}: {cause}")]
    Ca { path: String, cause: String },
    #[error("header {0:?} is not a valid HTTP header")]
    Header(String),
    #[error("Prometheus client: {0}")]
    Client(String),
    #[error("listing series {query:?} from {url}: {cause}")]
    Request {
        url: String,
        query: String,
        cause: String,
    },
}

pub struct SeriesLister {
    http: reqwest::Client,
    url: reqwest::Url,
}

impl SeriesLister {
    pub fn new(
        url: &str,
        headers: &[(String, String)],
        ca_file: Option<&Path>,
        timeout: Duration,
    ) -> Result<SeriesLister, SeriesError> {
        let mut base = reqwest::Url::parse(url).map_err(|e| SeriesError::Url {
            url: url.to_string(),
            cause: e.to_string(),
        })?;
        base.path_segments_mut()
            .map_err(|()| SeriesError::Url {
                url: url.to_string(),
                cause: "it cannot have a path".into(),
            })?
            .pop_if_empty()
            .extend(["api", "v1", "series"]);
        let mut default_headers = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            let invalid = || SeriesError::Header(name.clone());
            default_headers.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?,
                reqwest::header::HeaderValue::from_str(value).map_err(|_| invalid())?,
            );
        }
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .default_headers(default_headers);
        if let Some(path) = ca_file {
            let ca_error = |cause: String| SeriesError::Ca {
                path: path.display().to_string(),
                cause,
            };
            let pem = std::fs::read(path).map_err(|e| ca_error(e.to_string()))?;
            let certificates =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.to_string()))?;
            builder = builder.tls_certs_only(certificates);
        } else if base.scheme() == "http" {
            // Plain HTTP needs no trust store; the platform one may not exist.
            builder = builder.tls_certs_only(Vec::new());
        }
        let http = builder
            .build()
            .map_err(|e| SeriesError::Client(e.to_string()))?;
        Ok(SeriesLister { http, url: base })
    }

    /// The series each query matches, in the order Prometheus lists them.
    pub async fn list_all(
        &self,
        queries: &[String],
        max_age: Duration,
    ) -> Result<BTreeMap<String, Vec<Series>>, SeriesError> {
        let start = SystemTime::now()
            .checked_sub(max_age)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default()
            .as_secs_f64();
        let mut listed = BTreeMap::new();
        for query in queries {
            listed.insert(query.clone(), self.list(query, start).await?);
        }
        Ok(listed)
    }

    async fn list(&self, query: &str, start: f64) -> Result<Vec<Series>, SeriesError> {
        let failed = |cause: String| SeriesError::Request {
            url: self.url.to_string(),
            query: query.to_string(),
            cause,
        };
        let response = self
            .http
            .get(self.url.clone())
            .query(&[("match[]", query), ("start", &format!("{start:.3}"))])
            .send()
            .await
            .map_err(|e| failed(error_chain(&e)))?;
        let status = response.status();
        let body = response.text().await.map_err(|e| failed(error_chain(&e)))?;
        let answer: serde_json::Value = serde_json::from_str(&body)
            .map_err(|_| failed(format!("{status}: {}", body.trim())))?;
        if answer["status"] != "success" {
            return Err(failed(format!(
                "{status}: {}",
                answer["error"].as_str().unwrap_or(body.trim())
            )));
        }
        Ok(parse_series(&answer["data"]))
    }
}

fn parse_series(data: &serde_json::Value) -> Vec<Series> {
    data.as_array()
        .into_iter()
        .flatten()
        .filter_map(|labels| {
            let labels = labels.as_object()?;
            Some(Series {
                name: labels.get("__name__")?.as_str()?.to_string(),
                labels: labels
                    .keys()
                    .filter(|k| k.as_str() != "__name__")
                    .cloned()
                    .collect::<BTreeSet<_>>(),
            })
        })
        .collect()
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keep_name_and_label_names() {
        let data = serde_json::json!([
            {"__name__": "a_total", "pod": "p", "namespace": "n"},
            {"pod": "no-name"}
        ]);
        let series = parse_series(&data);
        assert_eq!(series.len(), 1);
        assert_eq!(series[0].name, "a_total");
        assert_eq!(
            series[0].labels,
            BTreeSet::from(["namespace".to_string(), "pod".to_string()])
        );
    }

    #[test]
    fn bad_settings_are_named() {
        assert!(matches!(
            SeriesLister::new("not a url", &[], None, Duration::from_secs(1)),
            Err(SeriesError::Url { .. })
        ));
        assert!(matches!(
            SeriesLister::new(
                "http://127.0.0.1:9",
                &[("bad header".into(), "x".into())],
                None,
                Duration::from_secs(1)
            ),
            Err(SeriesError::Header(_))
        ));
    }
}
