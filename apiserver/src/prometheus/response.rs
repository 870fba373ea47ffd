//! Prometheus' JSON answers decoded straight into the types served: no intermediate
//! JSON tree, and one flat list of labels per series.

use super::error::PrometheusError;
use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use std::fmt;

/// The labels of one series, in the order Prometheus sent them (sorted by name).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    pub fn contains(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<(String, String)> for Labels {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        Labels(pairs.into_iter().collect())
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelsVisitor;
        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of label names to values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0));
                while let Some(pair) = map.next_entry::<String, String>()? {
                    pairs.push(pair);
                }
                Ok(Labels(pairs))
            }
        }
        deserializer.deserialize_map(LabelsVisitor)
    }
}

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: Labels,
    /// Unix seconds.
    pub timestamp: f64,
    /// Kept as text: Prometheus sends "NaN", "+Inf" and values whose exact
    /// decimal form matters to whoever republishes them.
    pub value: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Envelope<T> {
    pub status: String,
    pub data: Option<T>,
    pub error_type: Option<String>,
    pub error: Option<String>,
    #[serde(default)]
    pub warnings: Vec<String>,
    #[serde(default)]
    pub infos: Vec<String>,
}

/// `data` of an instant query, decoded according to its `resultType`; the results that
/// cannot be served are skipped over, not built.
#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "camelCase")]
pub(super) enum QueryData {
    Vector(Option<Vec<VectorSample>>),
    Scalar((f64, String)),
    Matrix(IgnoredAny),
    String(IgnoredAny),
}

#[derive(Deserialize)]
pub(super) struct VectorSample {
    #[serde(default)]
    metric: Labels,
    value: Option<(f64, String)>,
}

/// The samples of an instant query's answer; `url` names Prometheus in errors.
pub(super) fn samples(url: &str, data: QueryData) -> Result<Vec<Sample>, PrometheusError> {
    let unexpected = |result_type: &str| PrometheusError::UnexpectedResult {
        url: url.to_owned(),
        result_type: result_type.to_owned(),
    };
    match data {
        QueryData::Vector(series) => series
            .unwrap_or_default()
            .into_iter()
            .map(|s| match s.value {
                Some((timestamp, value)) => Ok(Sample {
                    labels: s.metric,
                    timestamp,
                    value,
                }),
                // Native histograms have no single value to serve.
                None => Err(unexpected("native histogram")),
            })
            .collect(),
        QueryData::Scalar((timestamp, value)) => Ok(vec![Sample {
            labels: Labels::default(),
            timestamp,
            value,
        }]),
        QueryData::Matrix(_) => Err(unexpected("matrix")),
        QueryData::String(_) => Err(unexpected("string")),
    }
}
