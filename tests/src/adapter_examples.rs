//! The example configurations in prometheus-adapter's own documentation and deploy
//! manifests, read from its module source at test time (never copied into this repository).

use std::path::Path;

use anyhow::Context as _;
use serde_json::{Value, json};

/// One example configuration and where it is.
#[derive(Clone, Debug)]
pub struct Example {
    /// `docs/config.md yaml block 1`, `docs/sample-config.yaml`, …
    pub origin: String,
    pub text: String,
}

const MARKDOWN: [&str; 5] = [
    "README.md",
    "docs/config.md",
    "docs/config-walkthrough.md",
    "docs/externalmetrics.md",
    "docs/walkthrough.md",
];
const FILES: [&str; 2] = [
    "docs/sample-config.yaml",
    "deploy/manifests/config-map.yaml",
];

/// Every YAML block of the docs that is a whole configuration (or a ConfigMap holding one),
/// then the two configuration files. Fragments of a rule are not configurations.
pub fn examples(source: &Path) -> anyhow::Result<Vec<Example>> {
    let mut found = Vec::new();
    for file in MARKDOWN {
        let text = std::fs::read_to_string(source.join(file))
            .with_context(|| format!("reading {file} of the adapter's module"))?;
        for (index, block) in yaml_blocks(&text).into_iter().enumerate() {
            if is_configuration(&block) {
                found.push(Example {
                    origin: format!("{file} yaml block {}", index + 1),
                    text: block,
                });
            }
        }
    }
    for file in FILES {
        found.push(Example {
            origin: file.to_string(),
            text: std::fs::read_to_string(source.join(file))
                .with_context(|| format!("reading {file} of the adapter's module"))?,
        });
    }
    Ok(found)
}

fn yaml_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start()) {
            (None, fence) if fence.starts_with("```yaml") => current = Some(String::new()),
            (Some(_), "```") => blocks.extend(current.take()),
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

fn is_configuration(block: &str) -> bool {
    let top_level = |key: &str| {
        block
            .lines()
            .any(|l| l.starts_with(&format!("{key}:")) || l.starts_with(&format!("\"{key}\":")))
    };
    let config_map = block.contains("kind: ConfigMap") && block.contains("config.yaml");
    config_map
        || ["rules", "externalRules", "resourceRules"]
            .into_iter()
            .any(top_level)
}

/// docs/sample-config.yaml and docs/config.md write
/// `metricsQuery: "…{…,container!="POD"}…"`, a double-quoted scalar with bare double
/// quotes inside, which YAML (and so the adapter) rejects. Single quotes are what the
/// authors meant.
pub fn repair_quoting(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let indent = line.len() - line.trim_start().len();
        let repaired = line
            .trim_start()
            .strip_prefix("metricsQuery: \"")
            .and_then(|rest| rest.strip_suffix('"'))
            .filter(|inner| inner.contains('"') && !inner.contains('\''))
            .map(|inner| format!("{}metricsQuery: '{inner}'", &line[..indent]));
        out.push_str(repaired.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// The adapter's own configuration file for a text in any shape `convert` reads: a
/// ConfigMap's `config.yaml`, or what the Helm chart renders from its values
/// (`rules.custom` → `rules`, `rules.external` → `externalRules`).
pub fn adapter_config_file(text: &str) -> anyhow::Result<String> {
    let document: Value = serde_saphyr::from_str(text).context("reading the YAML")?;
    if document["kind"] == "ConfigMap" {
        return document["data"]["config.yaml"]
            .as_str()
            .map(str::to_string)
            .context("the ConfigMap has no config.yaml");
    }
    if document["rules"].is_object() {
        let rules = &document["rules"];
        let mut config = json!({
            "rules": rules.get("custom").cloned().unwrap_or(json!([])),
            "externalRules": rules.get("external").cloned().unwrap_or(json!([])),
        });
        if let Some(resource) = rules.get("resource").filter(|r| !r.is_null()) {
            config["resourceRules"] = resource.clone();
        }
        return Ok(serde_json::to_string_pretty(&config)?);
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_configurations() {
        let markdown =
            "text\n```yaml\nrules:\n- {}\n```\n```yaml\nseriesQuery: x\n```\n```json\n{}\n```\n";
        let blocks = yaml_blocks(markdown);
        assert_eq!(blocks, vec!["rules:\n- {}\n", "seriesQuery: x\n"]);
        assert!(is_configuration(&blocks[0]));
        assert!(!is_configuration(&blocks[1]));
        assert!(is_configuration(
            "# rules: ...\n\nexternalRules:\n- seriesQuery: x\n"
        ));
    }

    #[test]
    fn quoting_is_repaired_only_where_broken() {
        let broken = "  metricsQuery: \"sum(x{a!=\"b\"})\"\n  metricsQuery: \"fine\"\n";
        assert_eq!(
            repair_quoting(broken),
            "  metricsQuery: 'sum(x{a!=\"b\"})'\n  metricsQuery: \"fine\"\n"
        );
    }

    #[test]
    fn chart_values_become_the_adapter_file() {
        let file = adapter_config_file(
            "prometheus: {url: x}\nrules:\n  default: false\n  custom: [{seriesQuery: a}]\n",
        )
        .unwrap();
        let back: Value = serde_json::from_str(&file).unwrap();
        assert_eq!(back["rules"][0]["seriesQuery"], "a");
        assert_eq!(back["externalRules"], json!([]));
    }
}
