//! `rules` → `*Metric` definitions: one per metric name and resource the rule discovers,
//! cluster-wide or in the chosen namespaces.

use super::discovery::Discovery;
use super::output::{Document, object_name};
use super::promql::{MATCHERS_SENTINEL, selectors_without_sentinel};
use super::resources::Resource;
use super::template;
use super::{Conversion, NoteKind, Options, Prepared, Scope};
use crate::compiler::ISOLATION_LABEL;
use crate::definitions::DefinitionKind;
use metrics_registry_apiserver::table::ObjectKind;
use serde_json::{Map, Value};
use std::collections::BTreeSet;

/// One metric on one kind, before it is placed cluster-wide or in namespaces.
struct Metric {
    object: ObjectKind,
    name: String,
    series: Option<String>,
    object_label: String,
}

pub(super) fn convert_rule(
    prepared: &Prepared<'_>,
    discovery: Discovery<'_>,
    options: &Options,
    conversion: &mut Conversion,
) {
    let origin = prepared.origin.as_str();
    if !prepared.uses("LabelMatchers") {
        conversion.note(
            origin,
            NoteKind::NotConverted,
            "metricsQuery has no <<.LabelMatchers>>: the adapter sends one query for every object and picks the answer by label, but a definition must narrow its query to the objects asked for",
        );
        return;
    }
    let Some(discovered) = prepared.discover(discovery, conversion) else {
        return;
    };

    let mut metrics: Vec<Metric> = Vec::new();
    let mut elsewhere: BTreeSet<String> = BTreeSet::new();
    for found in &discovered.found {
        for label in &found.labels {
            match prepared.resources.resource_for(label) {
                Some(Resource::Object(object)) => {
                    let metric = Metric {
                        object: *object,
                        name: found.metric.clone(),
                        series: found.series.clone(),
                        object_label: label.clone(),
                    };
                    // The adapter keeps the last series listed for a name; so does this.
                    match metrics
                        .iter_mut()
                        .find(|m| m.object == metric.object && m.name == metric.name)
                    {
                        Some(existing) => {
                            if prepared.uses("Series") && existing.series != metric.series {
                                let earlier = existing.series.as_deref().unwrap_or_default();
                                let later = metric.series.as_deref().unwrap_or_default();
                                conversion.note(
                                    origin,
                                    NoteKind::Overlap,
                                    format!(
                                        "{}/{}: series {earlier} and {later} both map to this name; like the adapter, the last one listed ({later}) is used for <<.Series>>",
                                        object.resource(),
                                        metric.name,
                                    ),
                                );
                            }
                            *existing = metric;
                        }
                        None => metrics.push(metric),
                    }
                }
                Some(Resource::Other(resource)) => {
                    elsewhere.insert(resource.clone());
                }
                None => {}
            }
        }
    }
    for resource in &elsewhere {
        conversion.note(
            origin,
            NoteKind::NotConverted,
            format!("the adapter also serves these metrics on {resource}, which metrics-registry has no definition kind for"),
        );
    }
    if metrics.is_empty() {
        conversion.note(
            origin,
            NoteKind::NotConverted,
            "no series carries a label that names a resource metrics-registry serves",
        );
        return;
    }

    let namespace_label = match prepared
        .resources
        .label_for(&Resource::Object(ObjectKind::Namespace))
    {
        Some(label) => label.to_string(),
        None => {
            if metrics.iter().any(|m| m.object.is_namespaced()) {
                conversion.note(
                    origin,
                    NoteKind::Differs,
                    "no label maps to namespaces, so the adapter fails requests for namespaced objects with this rule; converted with namespaceLabel: namespace",
                );
            }
            ISOLATION_LABEL.to_string()
        }
    };
    for metric in &metrics {
        let query = template::render(&prepared.query, |field| {
            (field == "Series").then(|| metric.series.clone().unwrap_or_default())
        });
        let placements = match placements(metric.object, options) {
            Ok(placements) => placements,
            Err(message) => {
                conversion.note(
                    origin,
                    NoteKind::NotConverted,
                    format!("{}/{}: {message}", metric.object.resource(), metric.name),
                );
                continue;
            }
        };
        // Namespace isolation pins every namespaced definition, NamespaceMetrics included.
        if options.scope == Scope::Namespaced || metric.object == ObjectKind::Namespace {
            note_isolation(origin, &metric.name, &query, &namespace_label, conversion);
        }
        let spec = spec(metric, &query, &namespace_label);
        let comment = match &metric.series {
            Some(series) => format!("{} of series {series}", metric.object.resource()),
            None => metric.object.resource().to_string(),
        };
        for (kind, namespace) in placements {
            conversion.documents.push(Document {
                origin: origin.to_string(),
                kind,
                namespace,
                name: object_name(&metric.name),
                comment: comment.clone(),
                spec: spec.clone(),
            });
        }
    }
}

fn spec(metric: &Metric, query: &str, namespace_label: &str) -> Value {
    let mut spec = Map::new();
    spec.insert("query".into(), query.into());
    if object_name(&metric.name) != metric.name {
        spec.insert("metricName".into(), metric.name.clone().into());
    }
    let object_label = if metric.object == ObjectKind::Namespace {
        namespace_label
    } else {
        metric.object_label.as_str()
    };
    if object_label != metric.object.default_label() {
        spec.insert("objectLabel".into(), object_label.into());
    }
    if namespace_label != ISOLATION_LABEL {
        spec.insert("namespaceLabel".into(), namespace_label.into());
    }
    Value::Object(spec)
}

/// The definition kinds and namespaces a metric of `object` is written as.
fn placements(
    object: ObjectKind,
    options: &Options,
) -> Result<Vec<(DefinitionKind, Option<String>)>, String> {
    let namespaced_kind = |namespaced: bool| {
        DefinitionKind::ALL
            .into_iter()
            .find(|k| k.object() == Some(object) && k.is_namespaced() == namespaced)
    };
    if object == ObjectKind::Namespace || options.scope == Scope::Namespaced {
        let kind = namespaced_kind(true).expect("every object kind has a namespaced definition");
        if options.namespaces.is_empty() {
            return Err(
                "metrics-registry has no cluster-wide NamespaceMetric; pass --namespace NS (repeatable) to write one per namespace"
                    .into(),
            );
        }
        return Ok(options
            .namespaces
            .iter()
            .map(|ns| (kind, Some(ns.clone())))
            .collect());
    }
    let kind = namespaced_kind(false).expect("namespaced objects have a cluster definition");
    Ok(vec![(kind, None)])
}

/// Namespaced definitions have every selector pinned to `namespace="<their namespace>"`.
fn note_isolation(
    origin: &str,
    metric: &str,
    query: &str,
    namespace_label: &str,
    conversion: &mut Conversion,
) {
    if namespace_label != ISOLATION_LABEL {
        conversion.note(
            origin,
            NoteKind::Differs,
            format!(
                "{metric}: namespaced definitions (NamespaceMetrics always) are pinned to {ISOLATION_LABEL}=\"<their namespace>\", but these series keep the namespace in {namespace_label}, so they answer only when metrics-registry runs with --disable-namespace-isolation (or, but for NamespaceMetrics, with --scope cluster)"
            ),
        );
    }
    let filled = query
        .replace("<<.LabelMatchers>>", MATCHERS_SENTINEL)
        .replace("<<.GroupBy>>", "x");
    if let Ok(count) = selectors_without_sentinel(&filled)
        && count > 0
    {
        conversion.note(
            origin,
            NoteKind::Differs,
            format!(
                "{count} selector(s) of the query read series beyond <<.LabelMatchers>>; in a namespaced definition they are pinned to its namespace, where the adapter read every namespace (use --scope cluster to keep that)"
            ),
        );
    }
}
