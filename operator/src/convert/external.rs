//! `externalRules` → `ClusterExternalMetric`s (the default): each metric a live query, the
//! rule's metricsQuery with `<<.LabelMatchers>>` kept, so the HPA's selector and namespace
//! filter the series before the query aggregates them, as in the adapter.
//!
//! Or (`--external-rules-as recording-rules`) → `CustomPrometheusRules`: external metric
//! `<name>` is the series `kube_adapter_metric_<name>` here, so each metric becomes a
//! recording rule of that name whose expression is the rule's metricsQuery without the
//! request's label matchers. What moves then: the adapter applies the HPA's `labelSelector` (and, unless `namespaced:
//! false`, its namespace) to the series *before* the query aggregates them; here both
//! filter the recorded series *after*. The recording therefore keeps the namespace label
//! (as `namespace`, which `externalMetricsNamespaced: true` matches against the HPA's
//! namespace), and the notes say which labels a selector can still use.

use super::discovery::Discovery;
use super::output::{Document, object_name};
use super::promql::{self, MATCHERS_SENTINEL};
use super::resources::Resource;
use super::template;
use super::{Conversion, NoteKind, Prepared};
use crate::definitions::DefinitionKind;
use metrics_registry_apiserver::external::{EXTERNAL_PREFIX, is_valid_external_name};
use metrics_registry_apiserver::table::ObjectKind;
use promql_parser::parser::Expr;
use serde_json::json;

/// The external metrics a rule names (each with the series it was found as), and the
/// label its requests' namespace is matched on (`None`: every namespace's series).
pub(super) struct ExternalMetrics {
    pub(super) metrics: Vec<(String, Option<String>)>,
    pub(super) namespace_label: Option<String>,
}

/// What both conversions of an external rule start from.
pub(super) fn external_metrics(
    prepared: &Prepared<'_>,
    discovery: Discovery<'_>,
    conversion: &mut Conversion,
) -> Option<ExternalMetrics> {
    let origin = prepared.origin.as_str();
    let discovered = prepared.discover(discovery, conversion)?;
    // Names map to the last series listed, as in the adapter's external registry.
    let mut metrics: Vec<(String, Option<String>)> = Vec::new();
    for found in discovered.found {
        match metrics.iter_mut().find(|(name, _)| *name == found.metric) {
            Some(existing) => existing.1 = found.series,
            None => metrics.push((found.metric, found.series)),
        }
    }
    let label = prepared
        .resources
        .label_for(&Resource::Object(ObjectKind::Namespace))
        .map(str::to_string);
    let namespaced = prepared.rule.resources.namespaced.unwrap_or(true);
    if namespaced && label.is_none() {
        conversion.note(
            origin,
            NoteKind::Differs,
            "the adapter fails every request for this rule (namespaced by default, but no label maps to namespaces); converted without a namespace filter, as `namespaced: false` would read",
        );
    }
    Some(ExternalMetrics {
        metrics,
        namespace_label: label.filter(|_| namespaced),
    })
}

/// Into a `ClusterExternalMetric` each: the rule's metricsQuery as a live query, with the
/// HPA's selector (and, for a namespaced rule, its namespace through `namespaceLabel`)
/// applied to the series before the query aggregates them, as the adapter does.
pub(super) fn convert_rule_live(
    prepared: &Prepared<'_>,
    discovery: Discovery<'_>,
    conversion: &mut Conversion,
) {
    let origin = prepared.origin.as_str();
    let Some(ExternalMetrics {
        metrics,
        namespace_label,
    }) = external_metrics(prepared, discovery, conversion)
    else {
        return;
    };
    for (metric, series) in metrics {
        // The adapter gives external rules no group-by labels.
        let query = template::render(&prepared.query, |field| match field {
            "Series" => Some(series.clone().unwrap_or_default()),
            "LabelMatchers" => None,
            _ => Some(String::new()),
        });
        let mut spec = json!({"metricName": metric, "query": query});
        if let Some(label) = &namespace_label {
            spec["namespaceLabel"] = json!(label);
        }
        conversion.documents.push(document(
            origin,
            DefinitionKind::ClusterExternalMetric,
            &metric,
            series,
            spec,
        ));
    }
}

/// Into a `CustomPrometheusRules` each: a recording rule of `kube_adapter_metric_<name>`
/// (`convert --external-rules-as recording-rules`).
pub(super) fn convert_rule_recorded(
    prepared: &Prepared<'_>,
    discovery: Discovery<'_>,
    conversion: &mut Conversion,
) {
    let origin = prepared.origin.as_str();
    let Some(ExternalMetrics {
        metrics,
        namespace_label,
    }) = external_metrics(prepared, discovery, conversion)
    else {
        return;
    };
    let namespaced = namespace_label.is_some();
    if !prepared.uses("LabelMatchers") {
        conversion.note(
            origin,
            NoteKind::Differs,
            "the adapter ignores the HPA's labelSelector for this rule (no <<.LabelMatchers>>); metrics-registry applies it to the recorded series",
        );
    }
    for (metric, series) in metrics {
        if !is_valid_external_name(&metric) {
            conversion.note(
                origin,
                NoteKind::NotConverted,
                format!(
                    "external metric {metric:?} cannot follow {EXTERNAL_PREFIX} in a series name"
                ),
            );
            continue;
        }
        let filled = template::render(&prepared.query, |field| match field {
            "Series" => Some(series.clone().unwrap_or_default()),
            "LabelMatchers" => Some(MATCHERS_SENTINEL.to_string()),
            _ => Some(String::new()),
        });
        let mut expr = match promql::without_sentinel(&filled) {
            Ok(expr) => expr,
            Err(e) => {
                conversion.note(
                    origin,
                    NoteKind::NotConverted,
                    format!(
                        "{metric}: the query is not valid PromQL once filled in ({filled}): {e}"
                    ),
                );
                continue;
            }
        };
        let mut pinned = false;
        if namespaced && let Some(label) = &namespace_label {
            match pin_to_namespace(&mut expr, label) {
                Ok(Pinned::Namespace | Pinned::Copied) => pinned = true,
                Ok(Pinned::KeptOnly) => conversion.note(
                    origin,
                    NoteKind::Differs,
                    format!(
                        "{metric}: the adapter reads only the HPA's namespace; the recording keeps the label {label} but cannot copy it to namespace (its result may hold a namespace label of its own), so add `{label}: <the HPA's namespace>` to the HPA's metric selector for the same value"
                    ),
                ),
                Err(reason) => conversion.note(
                    origin,
                    NoteKind::Differs,
                    format!(
                        "{metric}: the adapter reads only the HPA's namespace, but the recording cannot keep the label {label} ({reason}), so it covers every namespace"
                    ),
                ),
            }
        }
        if prepared.uses("LabelMatchers")
            && let Some(labels) = promql::result_labels(&expr)
        {
            conversion.note(
                origin,
                NoteKind::Differs,
                format!(
                    "{metric}: an HPA's labelSelector filters the recorded series, which keep only {}; the adapter filtered the series before aggregating them",
                    if labels.is_empty() {
                        "no labels".to_string()
                    } else {
                        format!("the label(s) {}", labels.join(", "))
                    }
                ),
            );
        }
        let record = format!("{EXTERNAL_PREFIX}{metric}");
        conversion.documents.push(document(
            origin,
            DefinitionKind::CustomPrometheusRules,
            &metric,
            series,
            // Always explicit, so the server's --external-metrics-namespaced changes nothing.
            json!({
                "externalMetricsNamespaced": pinned,
                "groups": [{
                    "name": metric,
                    "rules": [{"record": record, "expr": expr.to_string()}],
                }]
            }),
        ));
    }
}

/// One converted external metric, named after it, saying which series it was found as.
fn document(
    origin: &str,
    kind: DefinitionKind,
    metric: &str,
    series: Option<String>,
    spec: serde_json::Value,
) -> Document {
    Document {
        origin: origin.to_string(),
        kind,
        namespace: None,
        name: object_name(metric),
        comment: format!(
            "external metric {metric}{}",
            series
                .map(|s| format!(" of series {s}"))
                .unwrap_or_default()
        ),
        spec,
    }
}

/// How a namespaced rule's recording carries the HPA's namespace.
enum Pinned {
    /// The namespace label is `namespace`, kept through the query's aggregations.
    Namespace,
    /// Kept and copied to `namespace` with `label_replace`.
    Copied,
    /// Kept under its own name only: the result may already hold a `namespace` label,
    /// which a copy would overwrite (and could make two results one).
    KeptOnly,
}

/// Makes the recording carry the namespace the adapter would have matched `label`
/// against in a `namespace` label, which `externalMetricsNamespaced` matches against the
/// HPA's namespace. A series without `label` gets no `namespace` (the copy of an empty
/// value removes it), so no namespace reads it, as in the adapter.
fn pin_to_namespace(expr: &mut Expr, label: &str) -> Result<Pinned, String> {
    promql::keep_label(expr, label)?;
    if label == "namespace" {
        return Ok(Pinned::Namespace);
    }
    match promql::result_labels(expr) {
        Some(labels) if !labels.iter().any(|l| l == "namespace") => {
            let copied = format!(r#"label_replace({expr}, "namespace", "$1", "{label}", "(.*)")"#);
            *expr = promql_parser::parser::parse(&copied)?;
            Ok(Pinned::Copied)
        }
        _ => Ok(Pinned::KeptOnly),
    }
}
