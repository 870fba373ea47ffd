//! What `kubectl explain` and `kubectl get` show comes from the CRDs: every field has a
//! description, and the table has a column with the Ready condition's message.

use metrics_registry::definitions::DefinitionKind;
use serde_json::Value;

/// Paths (`spec.groups[].rules[].expr`) of every schema node below `path` that has
/// properties without a description, and of array items that are objects without one.
fn undescribed(schema: &Value, path: &str, missing: &mut Vec<String>) {
    if let Some(properties) = schema["properties"].as_object() {
        for (name, property) in properties {
            let at = if path.is_empty() {
                name.clone()
            } else {
                format!("{path}.{name}")
            };
            if !has_description(property) {
                missing.push(at.clone());
            }
            undescribed(property, &at, missing);
        }
    }
    let items = &schema["items"];
    if items.is_object() {
        let at = format!("{path}[]");
        if items["properties"].is_object() && !has_description(items) {
            missing.push(at.clone());
        }
        undescribed(items, &at, missing);
    }
    if schema["additionalProperties"].is_object() {
        undescribed(
            &schema["additionalProperties"],
            &format!("{path}.*"),
            missing,
        );
    }
}

fn has_description(schema: &Value) -> bool {
    schema["description"]
        .as_str()
        .is_some_and(|d| !d.trim().is_empty())
}

#[test]
fn every_field_of_every_crd_has_a_description() {
    let mut missing = Vec::new();
    let mut fields = 0;
    for crd in DefinitionKind::crds() {
        let kind = crd.spec.names.kind.clone();
        for version in &crd.spec.versions {
            let schema = serde_json::to_value(&version.schema).unwrap();
            let root = &schema["openAPIV3Schema"];
            if !has_description(root) {
                missing.push(format!("{kind}: the kind itself"));
            }
            let mut here = Vec::new();
            undescribed(root, "", &mut here);
            fields += root.to_string().matches("\"type\"").count();
            missing.extend(here.into_iter().map(|path| format!("{kind}: {path}")));
        }
    }
    assert!(fields > 100, "walked {fields} typed nodes");
    assert!(
        missing.is_empty(),
        "fields without a description (add a doc comment in crds/src): {missing:#?}"
    );
}

#[test]
fn the_walk_finds_a_field_without_a_description() {
    let schema = serde_json::json!({"properties": {"spec": {"description": "s", "properties": {
        "groups": {"description": "g", "items": {"properties": {"name": {"type": "string"}}}}
    }}}});
    let mut missing = Vec::new();
    undescribed(&schema, "", &mut missing);
    assert_eq!(missing, ["spec.groups[]", "spec.groups[].name"]);
}

#[test]
fn every_kind_shows_the_ready_message_in_kubectl_get() {
    for crd in DefinitionKind::crds() {
        let kind = &crd.spec.names.kind;
        let columns = crd.spec.versions[0]
            .additional_printer_columns
            .clone()
            .unwrap_or_default();
        let names: Vec<&str> = columns.iter().map(|c| c.name.as_str()).collect();
        let expected: &[&str] = match kind.as_str() {
            "CustomPrometheusRules" | "ResourceMetrics" => &["Ready", "Reason", "Age", "Message"],
            // What it points at, and when it was last asked whether it answers.
            "MetricsBackend" => &["URL", "Ready", "Reason", "LastProbe", "Age", "Message"],
            _ => &["Metric", "Ready", "Reason", "Age", "Message"],
        };
        assert_eq!(names, expected, "{kind}");
        let message = columns.iter().find(|c| c.name == "Message").unwrap();
        assert_eq!(
            message.json_path, r#".status.conditions[?(@.type=="Ready")].message"#,
            "{kind}"
        );
        assert_eq!(message.type_, "string");
        // Shown by plain `kubectl get`, not only with `-o wide`.
        assert_eq!(message.priority.unwrap_or(0), 0, "{kind}");
        assert!(
            message
                .description
                .as_deref()
                .is_some_and(|d| !d.is_empty()),
            "{kind}"
        );
    }
}
