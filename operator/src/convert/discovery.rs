//! What a rule discovers: with the series Prometheus listed for its `seriesQuery` (the
//! adapter's discovery), or — without a Prometheus — what the rule itself says, with the
//! assumption spelled out.

use super::config::DiscoveryRule;
use super::naming::{self, Naming};
use super::resources::ResourceLabels;
use std::collections::{BTreeMap, BTreeSet};

/// One series as `/api/v1/series` lists it; label values do not matter here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Series {
    pub name: String,
    pub labels: BTreeSet<String>,
}

/// Where series come from.
#[derive(Clone, Copy, Debug)]
pub enum Discovery<'a> {
    /// No Prometheus: one metric per rule, from the rule alone.
    Assumed,
    /// The series each distinct `seriesQuery` matched, in Prometheus' order.
    Listed(&'a BTreeMap<String, Vec<Series>>),
}

/// A metric name a rule serves and the series behind it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub metric: String,
    /// The series name `<<.Series>>` stands for, when known.
    pub series: Option<String>,
    /// Labels the series carry (or are assumed to carry).
    pub labels: BTreeSet<String>,
}

#[derive(Debug, Default)]
pub struct Discovered {
    pub found: Vec<Found>,
    /// Set when nothing was listed: what was taken for granted.
    pub assumption: Option<String>,
}

/// `needs_series`: the metricsQuery uses `<<.Series>>`.
pub fn discover(
    rule: &DiscoveryRule,
    naming: &Naming,
    resources: &ResourceLabels,
    needs_series: bool,
    discovery: Discovery<'_>,
) -> Result<Discovered, String> {
    match discovery {
        Discovery::Listed(listed) => {
            let series = listed
                .get(&rule.series_query)
                .ok_or_else(|| format!("no series list for seriesQuery {:?}", rule.series_query))?;
            let found = series
                .iter()
                .filter(|s| naming.accepts(&s.name))
                .filter_map(|s| {
                    Some(Found {
                        metric: naming.metric_name(&s.name)?,
                        series: Some(s.name.clone()),
                        labels: s.labels.clone(),
                    })
                })
                .collect();
            Ok(Discovered {
                found,
                assumption: None,
            })
        }
        Discovery::Assumed => assume(rule, naming, resources, needs_series),
    }
}

fn assume(
    rule: &DiscoveryRule,
    naming: &Naming,
    resources: &ResourceLabels,
    needs_series: bool,
) -> Result<Discovered, String> {
    let facts = naming::facts(&rule.series_query)?;
    let list_hint = "give --prometheus-url to list the series as the adapter does";
    if let Some(series) = &facts.name
        && !naming.accepts(series)
    {
        return Err(format!(
            "series {series} does not pass seriesFilters/name.matches, so the adapter would serve nothing for this rule"
        ));
    }
    let metric = match (naming.fixed_name(), &facts.name) {
        (Some(fixed), _) => fixed.to_string(),
        (None, Some(series)) => naming
            .metric_name(series)
            .ok_or_else(|| format!("series {series} does not match name.matches"))?,
        (None, None) => {
            return Err(format!(
                "metric names come from the names of the series {:?} matches, which only Prometheus knows; {list_hint}",
                rule.series_query.trim()
            ));
        }
    };
    if needs_series && facts.name.is_none() {
        return Err(format!(
            "metricsQuery uses <<.Series>> and {:?} may match several series names; {list_hint}",
            rule.series_query.trim()
        ));
    }
    let mut labels: BTreeSet<String> = facts.required_labels.into_iter().collect();
    labels.extend(resources.override_labels(&rule.resources));
    let described: Vec<String> = labels
        .iter()
        .filter(|label| resources.resource_for(label).is_some())
        .cloned()
        .collect();
    let assumption = format!(
        "without --prometheus-url, assumed {}series carrying {} (the adapter would list the metric only where such series exist)",
        facts
            .name
            .as_ref()
            .map(|s| format!("the series name {s} and "))
            .unwrap_or_default(),
        if described.is_empty() {
            "no resource label".to_string()
        } else {
            format!("the label(s) {}", described.join(", "))
        }
    );
    Ok(Discovered {
        found: vec![Found {
            metric,
            series: facts.name,
            labels,
        }],
        assumption: Some(assumption),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::config::{GroupResource, NameMapping, ResourceMapping};

    fn rule(series_query: &str, matches: &str, as_: &str) -> DiscoveryRule {
        DiscoveryRule {
            series_query: series_query.into(),
            resources: ResourceMapping {
                overrides: [("namespace", "namespace"), ("pod", "pod")]
                    .into_iter()
                    .map(|(l, r)| {
                        (
                            l.to_string(),
                            GroupResource {
                                group: String::new(),
                                resource: r.to_string(),
                            },
                        )
                    })
                    .collect(),
                ..ResourceMapping::default()
            },
            name: NameMapping {
                matches: matches.into(),
                as_: as_.into(),
            },
            ..DiscoveryRule::default()
        }
    }

    fn run(
        rule: &DiscoveryRule,
        needs_series: bool,
        discovery: Discovery<'_>,
    ) -> Result<Discovered, String> {
        let naming = Naming::new(rule).unwrap();
        let resources = ResourceLabels::new(&rule.resources).unwrap();
        discover(rule, &naming, &resources, needs_series, discovery)
    }

    #[test]
    fn listed_series_are_filtered_and_named() {
        let rule = rule(r#"{__name__=~".+_total",pod!=""}"#, "^(.*)_total$", "");
        let listed = BTreeMap::from([(
            rule.series_query.clone(),
            vec![
                Series {
                    name: "a_total".into(),
                    labels: ["pod".to_string(), "namespace".to_string()].into(),
                },
                Series {
                    name: "b_count".into(),
                    labels: ["pod".to_string()].into(),
                },
            ],
        )]);
        let discovered = run(&rule, true, Discovery::Listed(&listed)).unwrap();
        assert_eq!(discovered.found.len(), 1);
        assert_eq!(discovered.found[0].metric, "a");
        assert_eq!(discovered.found[0].series.as_deref(), Some("a_total"));
        assert!(discovered.assumption.is_none());
    }

    #[test]
    fn assumptions_are_stated_or_refused() {
        let named = rule(
            r#"nginx_total{namespace!="",pod!=""}"#,
            "^(.*)_total",
            "${1}_rate",
        );
        let discovered = run(&named, true, Discovery::Assumed).unwrap();
        assert_eq!(discovered.found[0].metric, "nginx_rate");
        let assumption = discovered.assumption.unwrap();
        assert!(assumption.contains("nginx_total"), "{assumption}");
        assert!(assumption.contains("namespace, pod"), "{assumption}");

        let regex = rule(r#"{__name__=~"^container_.*"}"#, "^container_(.*)$", "");
        let err = run(&regex, true, Discovery::Assumed).unwrap_err();
        assert!(err.contains("--prometheus-url"), "{err}");

        let fixed = rule(r#"{__name__=~"^kong_(sum|count)"}"#, "", "kong_avg");
        assert_eq!(
            run(&fixed, false, Discovery::Assumed).unwrap().found[0].metric,
            "kong_avg"
        );
        assert!(run(&fixed, true, Discovery::Assumed).is_err());

        let filtered = rule("other_metric", "^(.*)_total$", "");
        assert!(
            run(&filtered, false, Discovery::Assumed)
                .unwrap_err()
                .contains("serve nothing")
        );
    }
}
