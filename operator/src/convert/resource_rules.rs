//! `resourceRules` → one `ResourceMetrics`: the same container and node queries (their
//! placeholders mean the same here), the labels the rules' `resources` and
//! `containerLabel` name, and the window.

use super::config::ResourceMapping;
use super::output::Document;
use super::resources::{Resource, ResourceLabels};
use super::{Conversion, NoteKind};
use crate::definitions::DefinitionKind;
use metrics_registry_apiserver::table::ObjectKind;
use serde::Deserialize;
use serde_json::{Value, json};

const ORIGIN: &str = "resourceRules";

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdapterResourceRules {
    cpu: Option<AdapterResourceRule>,
    memory: Option<AdapterResourceRule>,
    #[serde(default)]
    window: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AdapterResourceRule {
    container_query: String,
    node_query: String,
    #[serde(default)]
    resources: ResourceMapping,
    #[serde(default)]
    container_label: String,
}

/// The labels one resource's rule names, in `ResourceMetrics`' field names.
fn labels(rule: &AdapterResourceRule) -> Result<Vec<(&'static str, String)>, String> {
    let labels = ResourceLabels::new(&rule.resources)?;
    let mut named = Vec::new();
    for (field, resource) in [
        ("podLabel", Resource::Object(ObjectKind::Pod)),
        ("namespaceLabel", Resource::Object(ObjectKind::Namespace)),
        ("nodeLabel", Resource::Other("nodes".into())),
    ] {
        if let Some(label) = labels.label_for(&resource) {
            named.push((field, label.to_string()));
        }
    }
    if !rule.container_label.is_empty() {
        named.push(("containerLabel", rule.container_label.clone()));
    }
    Ok(named)
}

pub(super) fn convert(rules: &Value, conversion: &mut Conversion) {
    let rules: AdapterResourceRules = match serde_json::from_value(rules.clone()) {
        Ok(rules) => rules,
        Err(e) => {
            conversion.note(
                ORIGIN,
                NoteKind::NotConverted,
                format!("cannot be read: {e}"),
            );
            return;
        }
    };
    let (Some(cpu), Some(memory)) = (&rules.cpu, &rules.memory) else {
        conversion.note(
            ORIGIN,
            NoteKind::NotConverted,
            "needs both cpu and memory (the adapter refuses to start with one of them missing)",
        );
        return;
    };
    let (cpu_labels, memory_labels) = match (labels(cpu), labels(memory)) {
        (Ok(cpu), Ok(memory)) => (cpu, memory),
        (Err(e), _) | (_, Err(e)) => {
            conversion.note(ORIGIN, NoteKind::NotConverted, e);
            return;
        }
    };
    if cpu_labels != memory_labels {
        conversion.note(
            ORIGIN,
            NoteKind::Differs,
            "memory's resources name other labels than cpu's; a ResourceMetrics has one set, so cpu's are used for both",
        );
    }
    let mut spec = json!({
        "cpu": {"containerQuery": cpu.container_query, "nodeQuery": cpu.node_query},
        "memory": {"containerQuery": memory.container_query, "nodeQuery": memory.node_query},
    });
    for (field, label) in cpu_labels {
        spec[field] = json!(label);
    }
    if let Some(window) = &rules.window {
        match promql_parser::util::parse_duration(window) {
            Ok(window) if window.as_secs() > 0 => spec["windowSeconds"] = json!(window.as_secs()),
            _ => conversion.note(
                ORIGIN,
                NoteKind::Differs,
                format!("window {window:?} is not a duration of whole seconds; the default (180 s) is reported"),
            ),
        }
    }
    conversion.documents.push(Document {
        origin: ORIGIN.to_string(),
        kind: DefinitionKind::ResourceMetrics,
        namespace: None,
        name: "default".to_string(),
        comment: "metrics.k8s.io (kubectl top, Resource HPAs)".to_string(),
        spec,
    });
}
