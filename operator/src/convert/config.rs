//! prometheus-adapter's configuration file (`pkg/config/config.go` of v0.12.0), read in the
//! three shapes people keep it in: the file itself, the ConfigMap that mounts it, and the
//! `rules` section of the prometheus-community Helm chart's values.

use serde::Deserialize;
use std::collections::BTreeMap;

/// `MetricsDiscoveryConfig`. Unknown fields are refused, as the adapter's strict YAML
/// reading refuses them.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AdapterConfig {
    #[serde(default)]
    pub rules: Vec<DiscoveryRule>,
    #[serde(default, rename = "externalRules")]
    pub external_rules: Vec<DiscoveryRule>,
    /// metrics.k8s.io (CPU and memory); kept opaque because nothing of it converts.
    #[serde(default, rename = "resourceRules")]
    pub resource_rules: Option<serde_json::Value>,
}

/// One entry of `rules` or `externalRules`.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DiscoveryRule {
    #[serde(default)]
    pub series_query: String,
    #[serde(default)]
    pub series_filters: Vec<RegexFilter>,
    #[serde(default)]
    pub resources: ResourceMapping,
    #[serde(default)]
    pub name: NameMapping,
    #[serde(default)]
    pub metrics_query: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegexFilter {
    #[serde(default)]
    pub is: String,
    #[serde(default)]
    pub is_not: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResourceMapping {
    #[serde(default)]
    pub template: String,
    /// Prometheus label → group-resource.
    #[serde(default)]
    pub overrides: BTreeMap<String, GroupResource>,
    /// External rules only; `None` means namespaced.
    #[serde(default)]
    pub namespaced: Option<bool>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupResource {
    #[serde(default)]
    pub group: String,
    pub resource: String,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NameMapping {
    #[serde(default)]
    pub matches: String,
    #[serde(default, rename = "as")]
    pub as_: String,
}

/// Which shape the file had, with what that shape leaves out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    ConfigFile,
    ConfigMap {
        key: String,
    },
    /// Helm chart values; `default_rules` is `rules.default` (the chart adds its own rules
    /// when true, and those are not in the file).
    HelmValues {
        default_rules: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("not a prometheus-adapter configuration: {0}")]
    Shape(String),
}

/// Reads a configuration in any of the three shapes.
pub fn parse(text: &str) -> Result<(AdapterConfig, Source), ConfigError> {
    let documents: Vec<serde_json::Value> =
        serde_saphyr::from_multiple(text).map_err(|e| ConfigError::Yaml(e.to_string()))?;
    let documents: Vec<&serde_json::Value> = documents.iter().filter(|d| !d.is_null()).collect();
    if let Some(config_map) = documents
        .iter()
        .find(|d| d.get("kind").and_then(|k| k.as_str()) == Some("ConfigMap"))
    {
        return from_config_map(config_map);
    }
    let [document] = documents.as_slice() else {
        return Err(ConfigError::Shape(format!(
            "expected one YAML document (or a ConfigMap among several), found {}",
            documents.len()
        )));
    };
    if document.get("rules").is_some_and(|r| r.is_object()) {
        return from_helm_values(document);
    }
    let config = from_value(document)?;
    Ok((config, Source::ConfigFile))
}

fn from_value(value: &serde_json::Value) -> Result<AdapterConfig, ConfigError> {
    if !value.is_object() {
        return Err(ConfigError::Shape("the top level is not a mapping".into()));
    }
    serde_json::from_value(value.clone()).map_err(|e| ConfigError::Shape(e.to_string()))
}

fn from_config_map(config_map: &serde_json::Value) -> Result<(AdapterConfig, Source), ConfigError> {
    let data = config_map
        .get("data")
        .and_then(|d| d.as_object())
        .ok_or_else(|| ConfigError::Shape("the ConfigMap has no data".into()))?;
    // The adapter reads whatever file --config names; the manifests call it config.yaml.
    let (key, text) = data
        .iter()
        .find(|(key, _)| key.as_str() == "config.yaml")
        .or_else(|| data.iter().next())
        .ok_or_else(|| ConfigError::Shape("the ConfigMap's data is empty".into()))?;
    let text = text
        .as_str()
        .ok_or_else(|| ConfigError::Shape(format!("ConfigMap key {key} is not text")))?;
    let document: serde_json::Value =
        serde_saphyr::from_str(text).map_err(|e| ConfigError::Yaml(format!("{key}: {e}")))?;
    let config = if document.is_null() {
        AdapterConfig::default()
    } else {
        from_value(&document).map_err(|e| ConfigError::Shape(format!("{key}: {e}")))?
    };
    Ok((config, Source::ConfigMap { key: key.clone() }))
}

fn from_helm_values(values: &serde_json::Value) -> Result<(AdapterConfig, Source), ConfigError> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct ChartRules {
        // The chart's own default is true.
        #[serde(default = "yes")]
        default: bool,
        #[serde(default)]
        custom: Vec<DiscoveryRule>,
        #[serde(default)]
        external: Vec<DiscoveryRule>,
        #[serde(default)]
        resource: Option<serde_json::Value>,
        #[serde(default)]
        existing: Option<serde_json::Value>,
    }
    fn yes() -> bool {
        true
    }
    let rules: ChartRules = serde_json::from_value(values["rules"].clone())
        .map_err(|e| ConfigError::Shape(format!("Helm values rules: {e}")))?;
    if rules.existing.as_ref().is_some_and(|e| !e.is_null()) {
        return Err(ConfigError::Shape(
            "Helm values rules.existing names a ConfigMap kept elsewhere: convert that ConfigMap"
                .into(),
        ));
    }
    let config = AdapterConfig {
        rules: rules.custom,
        external_rules: rules.external,
        resource_rules: rules.resource.filter(|r| !r.is_null()),
    };
    Ok((
        config,
        Source::HelmValues {
            default_rules: rules.default,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_file_with_every_field() {
        let (config, source) = parse(
            r#"
rules:
- seriesQuery: 'x_total{namespace!=""}'
  seriesFilters: [{isNot: "^y"}]
  resources: {overrides: {namespace: {resource: namespace}, svc: {group: "", resource: service}}, template: "<<.Resource>>"}
  name: {matches: "^(.*)_total$", as: "${1}_rate"}
  metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)
externalRules:
- seriesQuery: q
  resources: {namespaced: false}
resourceRules: {window: 5m}
"#,
        )
        .unwrap();
        assert_eq!(source, Source::ConfigFile);
        let rule = &config.rules[0];
        assert_eq!(rule.series_filters[0].is_not, "^y");
        assert_eq!(rule.resources.overrides["svc"].resource, "service");
        assert_eq!(rule.name.as_, "${1}_rate");
        assert_eq!(config.external_rules[0].resources.namespaced, Some(false));
        assert!(config.resource_rules.is_some());
    }

    #[test]
    fn config_map_and_helm_values() {
        let (config, source) = parse(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: adapter-config}\ndata:\n  config.yaml: |-\n    \"rules\":\n    - \"seriesQuery\": x\n",
        )
        .unwrap();
        assert_eq!(
            source,
            Source::ConfigMap {
                key: "config.yaml".into()
            }
        );
        assert_eq!(config.rules[0].series_query, "x");

        let (config, source) = parse(
            "prometheus: {url: http://p, port: 80}\nrules:\n  default: false\n  custom:\n  - seriesQuery: a\n  external:\n  - seriesQuery: b\n",
        )
        .unwrap();
        assert_eq!(
            source,
            Source::HelmValues {
                default_rules: false
            }
        );
        assert_eq!((config.rules.len(), config.external_rules.len()), (1, 1));
        let (_, source) = parse("rules: {custom: []}").unwrap();
        assert_eq!(
            source,
            Source::HelmValues {
                default_rules: true
            }
        );
    }

    #[test]
    fn unknown_fields_and_other_files_are_refused() {
        let err = parse("rules:\n- seriesQuery: x\n  metricQuery: typo\n").unwrap_err();
        assert!(err.to_string().contains("metricQuery"), "{err}");
        assert!(matches!(
            parse("kind: [").unwrap_err(),
            ConfigError::Yaml(_)
        ));
        assert!(parse("- a\n- b\n").is_err());
        assert!(
            parse("rules: {existing: my-config}")
                .unwrap_err()
                .to_string()
                .contains("existing")
        );
    }
}
