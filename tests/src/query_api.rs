//! The instant-query API of Prometheus and of what speaks it (VictoriaMetrics, Thanos
//! Query), as tests poll it.

use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow, bail};
use serde_json::Value;

/// Polls the instant-query API at `base_url` — Prometheus or anything that speaks its
/// HTTP API (VictoriaMetrics, Thanos Query) — until `promql` returns a non-empty
/// vector, sending `headers` with each query.
///
/// Fails at once on a PromQL syntax error or a non-vector result, since
/// waiting longer cannot change either.
pub async fn wait_for_series_at(
    client: &reqwest::Client,
    base_url: &str,
    promql: &str,
    timeout: Duration,
    headers: &[(&str, &str)],
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let last = match query_data_at(client, base_url, promql, headers).await {
            Ok(data) => {
                if data["resultType"] != "vector" {
                    bail!(
                        "query {promql:?} returns a {} instead of a vector",
                        data["resultType"]
                    );
                }
                if data["result"].as_array().is_some_and(|r| !r.is_empty()) {
                    return Ok(());
                }
                "an empty vector".to_owned()
            }
            Err(error) => {
                if let Some(QueryError::BadData(_)) = error.downcast_ref::<QueryError>() {
                    return Err(error);
                }
                format!("{error:#}")
            }
        };
        if Instant::now() >= deadline {
            bail!("query {promql:?} at {base_url} still returned {last} after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Instant query against the Prometheus HTTP API at `base_url`; returns `data`.
pub async fn query_data_at(
    client: &reqwest::Client,
    base_url: &str,
    promql: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<Value> {
    let mut request = client
        .get(format!("{base_url}/api/v1/query"))
        .query(&[("query", promql)]);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("querying {promql:?}"))?;
    let status = response.status();
    // Prometheus reports query errors as JSON with a 4xx/5xx status, so the
    // body is worth parsing before looking at the status.
    let text = response.text().await?;
    let body: Value = serde_json::from_str(&text).map_err(|_| {
        anyhow!(
            "query {promql:?}: {status} with a non-JSON body: {}",
            text.trim()
        )
    })?;
    if body["status"] != "success" {
        let message = format!(
            "query {promql:?} failed ({status}, {}): {}",
            body["errorType"].as_str().unwrap_or("?"),
            body["error"].as_str().unwrap_or("?")
        );
        return Err(if body["errorType"] == "bad_data" {
            QueryError::BadData(message).into()
        } else {
            anyhow!(message)
        });
    }
    Ok(body["data"].clone())
}

#[derive(Debug)]
enum QueryError {
    BadData(String),
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QueryError::BadData(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for QueryError {}
