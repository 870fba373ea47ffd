//! The converted objects: Kubernetes names for them, and the YAML text they are written as.

use crate::definitions::DefinitionKind;
use metrics_registry_crds::API_VERSION;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// One object to write, with a comment saying where it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct Document {
    /// The part of the configuration it comes from: `rules[2]`, `externalRules[0]`.
    pub origin: String,
    pub kind: DefinitionKind,
    pub namespace: Option<String>,
    pub name: String,
    pub comment: String,
    pub spec: Value,
}

impl Document {
    pub fn object(&self) -> Value {
        let mut metadata = json!({ "name": self.name });
        if let Some(namespace) = &self.namespace {
            metadata["namespace"] = namespace.clone().into();
        }
        json!({
            "apiVersion": API_VERSION,
            "kind": self.kind.name(),
            "metadata": metadata,
            "spec": self.spec,
        })
    }

    /// `<kind>-[<namespace>-]<name>.yaml`, lower case.
    pub fn file_name(&self) -> PathBuf {
        let kind = self.kind.name().to_ascii_lowercase();
        PathBuf::from(match &self.namespace {
            Some(namespace) => format!("{kind}-{namespace}-{}.yaml", self.name),
            None => format!("{kind}-{}.yaml", self.name),
        })
    }

    pub fn to_yaml(&self) -> String {
        // Queries stay on their own lines as written instead of being folded at 80 columns.
        let mut options = serde_saphyr::SerializerOptions::default();
        options.folded_wrap_chars = usize::MAX;
        let body = serde_saphyr::to_string_with_options(&self.object(), options)
            .expect("objects serialise");
        let comment: String = format!("{}: {}", self.origin, self.comment)
            .lines()
            .map(|line| format!("# {line}\n"))
            .collect();
        format!("{comment}{body}")
    }
}

/// A Kubernetes object name (DNS-1123 subdomain) for a metric name: lower case, `_` and
/// other characters as `-`.
pub fn object_name(metric: &str) -> String {
    let mut name: String = metric
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '.' | '-') => c,
            _ => '-',
        })
        .collect();
    name = name
        .trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_string();
    name.truncate(240);
    if name.is_empty() {
        "metric".to_string()
    } else {
        name
    }
}

/// Gives each document a name no other document of its kind and namespace has
/// (`a_b` and `a-b` would both become `a-b`).
pub fn make_names_unique(documents: &mut [Document]) {
    let mut taken: BTreeSet<(DefinitionKind, Option<String>, String)> = BTreeSet::new();
    for document in documents {
        let key = |name: &str| (document.kind, document.namespace.clone(), name.to_string());
        let mut candidate = document.name.clone();
        let mut suffix = 2;
        while taken.contains(&key(&candidate)) {
            candidate = format!("{}-{suffix}", document.name);
            suffix += 1;
        }
        taken.insert(key(&candidate));
        document.name = candidate;
    }
}

/// Every document as one multi-document YAML text.
pub fn to_yaml(header: &str, documents: &[Document]) -> String {
    let mut out: String = header.lines().map(|line| format!("# {line}\n")).collect();
    for document in documents {
        out.push_str("---\n");
        out.push_str(&document.to_yaml());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kubernetes_names() {
        assert_eq!(
            object_name("kong_upstream_latency_ms_60s_average"),
            "kong-upstream-latency-ms-60s-average"
        );
        assert_eq!(object_name("HTTP:requests_"), "http-requests");
        assert_eq!(object_name("__"), "metric");
    }

    #[test]
    fn clashing_names_get_a_suffix_per_kind_and_namespace() {
        let document = |kind, name: &str| Document {
            origin: "rules[0]".into(),
            kind,
            namespace: None,
            name: name.into(),
            comment: String::new(),
            spec: json!({}),
        };
        let mut documents = vec![
            document(DefinitionKind::ClusterPodMetric, "a-b"),
            document(DefinitionKind::ClusterPodMetric, "a-b"),
            document(DefinitionKind::ClusterServiceMetric, "a-b"),
        ];
        make_names_unique(&mut documents);
        let names: Vec<_> = documents.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, vec!["a-b", "a-b-2", "a-b"]);
    }

    #[test]
    fn yaml_has_comments_and_reads_back() {
        let document = Document {
            origin: "rules[0]".into(),
            kind: DefinitionKind::PodMetric,
            namespace: Some("team".into()),
            name: "rps".into(),
            comment: "series x".into(),
            spec: json!({"query": "sum(x{<<.LabelMatchers>>})\n  by (<<.GroupBy>>)", "long": "x".repeat(60) + &" y".repeat(40)}),
        };
        let text = to_yaml("converted", std::slice::from_ref(&document));
        assert!(
            text.starts_with("# converted\n---\n# rules[0]: series x\n"),
            "{text}"
        );
        let back: Vec<Value> = serde_saphyr::from_multiple(&text).unwrap();
        assert_eq!(back.last().unwrap(), &document.object());
        assert!(text.contains("long: xxx"), "{text}");
        assert_eq!(
            document.file_name(),
            PathBuf::from("podmetric-team-rps.yaml")
        );
    }
}
