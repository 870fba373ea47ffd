//! Validation of `CustomPrometheusRules` groups before they reach Prometheus.

use super::promql;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use metrics_registry_apiserver::external::{
    EXTERNAL_PREFIX, ExternalNamespacing, ExternalScope, is_valid_external_name,
};
use metrics_registry_apiserver::selector::is_prometheus_label_name;
use metrics_registry_crds::RuleGroup;
use std::collections::BTreeSet;

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// A duration as Prometheus rule files and prometheus-operator's `PrometheusRule` take it:
/// units required (`30s`, `1m30s`). PromQL also reads a bare number as seconds, which
/// both of those refuse, so such a group would never reach Prometheus.
fn check_rule_duration(text: &str) -> Result<(), String> {
    if text.parse::<f64>().is_ok() {
        return Err("needs a unit, as in 30s or 1m30s".to_string());
    }
    promql::parse_duration(text)
}

/// Every problem in one message; on success, the external metrics the groups record.
pub fn validate(groups: &[RuleGroup]) -> Result<Vec<String>, String> {
    let mut problems = Vec::new();
    let mut external = BTreeSet::new();
    let mut names = BTreeSet::new();
    if groups.is_empty() {
        problems.push("spec.groups is empty".to_string());
    }
    for group in groups {
        let at = format!("group {:?}", group.name);
        if group.name.is_empty() {
            problems.push("a group has no name".to_string());
        } else if !names.insert(group.name.as_str()) {
            problems.push(format!("{at} appears twice"));
        }
        if let Some(interval) = &group.interval
            && let Err(e) = check_rule_duration(interval)
        {
            problems.push(format!("{at}: interval {interval:?}: {e}"));
        }
        for (index, rule) in group.rules.iter().enumerate() {
            let at = format!("{at} rule {}", index + 1);
            let expr = match &rule.expr {
                IntOrString::String(s) => s.clone(),
                IntOrString::Int(i) => i.to_string(),
            };
            match (&rule.record, &rule.alert) {
                (Some(record), None) => {
                    if !is_metric_name(record) {
                        problems.push(format!(
                            "{at}: record {record:?} is not a valid metric name"
                        ));
                    } else if let Some(name) = record.strip_prefix(EXTERNAL_PREFIX)
                        && is_valid_external_name(name)
                    {
                        external.insert(name.to_string());
                    }
                    if rule.for_.is_some() || rule.annotations.is_some() {
                        problems.push(format!(
                            "{at}: recording rule {record:?} cannot have `for` or annotations"
                        ));
                    }
                }
                (None, Some(alert)) => {
                    if alert.is_empty() {
                        problems.push(format!("{at}: alert name is empty"));
                    }
                    if let Some(duration) = &rule.for_
                        && let Err(e) = check_rule_duration(duration)
                    {
                        problems.push(format!("{at}: for {duration:?}: {e}"));
                    }
                }
                _ => problems.push(format!("{at}: set exactly one of record and alert")),
            }
            if let Err(e) = promql::parse_expression(&expr) {
                problems.push(format!("{at}: invalid expr: {e}"));
            }
            for key in rule.labels.iter().flatten().map(|(k, _)| k) {
                if !is_prometheus_label_name(key) {
                    problems.push(format!("{at}: label {key:?} is not a valid label name"));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(external.into_iter().collect())
    } else {
        Err(problems.join("; "))
    }
}

/// Which external metrics requests read only in their own namespace, from each valid
/// `CustomPrometheusRules`' external metrics and its `externalMetricsNamespaced`. Where
/// objects disagree about a metric, pinning wins: opening a metric to every namespace
/// takes every object that declares it.
pub fn external_namespacing<'a>(
    default: ExternalScope,
    declared: impl IntoIterator<Item = (&'a [String], Option<bool>)>,
) -> ExternalNamespacing {
    let mut namespacing = ExternalNamespacing {
        default,
        ..ExternalNamespacing::default()
    };
    for (names, namespaced) in declared {
        match namespaced {
            Some(true) => namespacing.namespaced.extend(names.iter().cloned()),
            Some(false) => namespacing.cluster_wide.extend(names.iter().cloned()),
            None => {}
        }
    }
    let pinned = &namespacing.namespaced;
    namespacing
        .cluster_wide
        .retain(|name| !pinned.contains(name));
    namespacing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(interval: &str, for_: &str) -> RuleGroup {
        serde_json::from_value(serde_json::json!({
            "name": "g", "interval": interval,
            "rules": [{"alert": "A", "expr": "up == 0", "for": for_}],
        }))
        .unwrap()
    }

    #[test]
    fn pinning_wins_where_objects_disagree() {
        let both = vec!["shared".to_string()];
        let open = vec!["open".to_string()];
        let inherit = vec!["inherited".to_string()];
        use ExternalScope::*;
        let namespacing = external_namespacing(
            NamespaceOrUnlabelled,
            [
                (both.as_slice(), Some(false)),
                (both.as_slice(), Some(true)),
                (open.as_slice(), Some(false)),
                (inherit.as_slice(), None),
            ],
        );
        assert_eq!(namespacing.scope("shared"), Namespace);
        assert_eq!(namespacing.scope("open"), Cluster);
        assert_eq!(namespacing.scope("inherited"), NamespaceOrUnlabelled);
        assert!(!namespacing.cluster_wide.contains("shared"));
        let namespacing = external_namespacing(Namespace, [(open.as_slice(), Some(false))]);
        assert_eq!(namespacing.scope("open"), Cluster);
        assert_eq!(namespacing.scope("inherited"), Namespace);
    }

    #[test]
    fn rule_durations_need_units() {
        assert_eq!(validate(&[group("30s", "1m30s")]), Ok(vec![]));
        let problems = validate(&[group("30", "1.5")]).unwrap_err();
        assert!(
            problems.contains(r#"interval "30": needs a unit, as in 30s or 1m30s"#),
            "{problems}"
        );
        assert!(
            problems.contains(r#"for "1.5": needs a unit, as in 30s or 1m30s"#),
            "{problems}"
        );
    }
}
