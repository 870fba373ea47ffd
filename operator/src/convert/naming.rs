//! Series → metric names as the adapter derives them (`pkg/naming/metric_namer.go`):
//! `seriesFilters` and `name.matches` select series names, `name.as` rewrites them with
//! the regex's capture groups. Go's RE2 syntax and `$1`/`${1}` expansion are what the
//! `regex` crate implements too.

use super::config::DiscoveryRule;
use promql_parser::label::MatchOp;
use promql_parser::parser::{self, Expr};
use regex::Regex;

#[derive(Debug)]
pub struct Naming {
    /// (regex, whether it must match): `seriesFilters`, then `name.matches` as `is`.
    filters: Vec<(Regex, bool)>,
    matches: Regex,
    as_: String,
}

impl Naming {
    pub fn new(rule: &DiscoveryRule) -> Result<Naming, String> {
        let compile = |pattern: &str, what: &str| {
            Regex::new(pattern)
                .map_err(|e| format!("{what} {pattern:?} is not a regular expression: {e}"))
        };
        let mut filters = Vec::new();
        for filter in &rule.series_filters {
            let (pattern, positive) = match (filter.is.as_str(), filter.is_not.as_str()) {
                (is, "") if !is.is_empty() => (is, true),
                ("", is_not) if !is_not.is_empty() => (is_not, false),
                _ => {
                    return Err(
                        "a seriesFilters entry needs exactly one of `is` and `isNot`".into(),
                    );
                }
            };
            filters.push((compile(pattern, "seriesFilters")?, positive));
        }
        let matches = if rule.name.matches.is_empty() {
            compile(".*", "name.matches")?
        } else {
            let regex = compile(&rule.name.matches, "name.matches")?;
            filters.push((regex.clone(), true));
            regex
        };
        let as_ = if rule.name.as_.is_empty() {
            match matches.captures_len() {
                1 => "$0".to_string(),
                2 => "$1".to_string(),
                _ => {
                    return Err(format!(
                        "name.matches {:?} has several capture groups, so name.as is required",
                        rule.name.matches
                    ));
                }
            }
        } else {
            rule.name.as_.clone()
        };
        Ok(Naming {
            filters,
            matches,
            as_,
        })
    }

    /// Whether the rule keeps a series of this name.
    pub fn accepts(&self, series: &str) -> bool {
        self.filters
            .iter()
            .all(|(regex, positive)| regex.is_match(series) == *positive)
    }

    /// The API name of a series the rule accepts.
    pub fn metric_name(&self, series: &str) -> Option<String> {
        let captures = self.matches.captures(series)?;
        let mut name = String::new();
        captures.expand(&self.as_, &mut name);
        Some(name)
    }

    /// `name.as` uses no capture group: every series gets this one name.
    pub fn fixed_name(&self) -> Option<&str> {
        (!self.as_.contains('$')).then_some(self.as_.as_str())
    }
}

/// What a `seriesQuery` says by itself: the one series name it selects, if any, and the
/// labels every selected series must carry.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SeriesQueryFacts {
    pub name: Option<String>,
    pub required_labels: Vec<String>,
}

pub fn facts(series_query: &str) -> Result<SeriesQueryFacts, String> {
    let expr = parser::parse(series_query)
        .map_err(|e| format!("seriesQuery {series_query:?} is not a series selector: {e}"))?;
    let Expr::VectorSelector(selector) = expr else {
        return Err(format!(
            "seriesQuery {series_query:?} is not a series selector"
        ));
    };
    let mut facts = SeriesQueryFacts {
        name: selector.name.clone(),
        ..SeriesQueryFacts::default()
    };
    // `a or b` alternatives cannot promise a label or a name.
    if !selector.matchers.or_matchers.is_empty() {
        return Ok(facts);
    }
    for matcher in &selector.matchers.matchers {
        if matcher.name == "__name__" {
            if matches!(matcher.op, MatchOp::Equal) {
                facts.name = Some(matcher.value.clone());
            }
            continue;
        }
        if !matcher.is_match("") && !facts.required_labels.contains(&matcher.name) {
            facts.required_labels.push(matcher.name.clone());
        }
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::config::{NameMapping, RegexFilter};

    fn rule(matches: &str, as_: &str, filters: &[(&str, &str)]) -> DiscoveryRule {
        DiscoveryRule {
            name: NameMapping {
                matches: matches.into(),
                as_: as_.into(),
            },
            series_filters: filters
                .iter()
                .map(|(is, is_not)| RegexFilter {
                    is: is.to_string(),
                    is_not: is_not.to_string(),
                })
                .collect(),
            ..DiscoveryRule::default()
        }
    }

    #[test]
    fn names_follow_matches_and_as() {
        let naming = Naming::new(&rule("^(.*)_total", "${1}_per_second", &[])).unwrap();
        assert_eq!(
            naming.metric_name("http_requests_total").as_deref(),
            Some("http_requests_per_second")
        );
        assert!(!naming.accepts("http_requests"));
        let one_group = Naming::new(&rule("^container_(.*)_seconds_total$", "", &[])).unwrap();
        assert_eq!(
            one_group
                .metric_name("container_cpu_usage_seconds_total")
                .as_deref(),
            Some("cpu_usage")
        );
        let default = Naming::new(&rule("", "", &[])).unwrap();
        assert_eq!(default.metric_name("up").as_deref(), Some("up"));
        assert_eq!(default.fixed_name(), None);
        let fixed = Naming::new(&rule("", "kong_latency", &[])).unwrap();
        assert_eq!(fixed.fixed_name(), Some("kong_latency"));
        assert!(Naming::new(&rule("(a)(b)", "", &[])).is_err());
    }

    #[test]
    fn filters_apply_before_naming() {
        let naming = Naming::new(&rule(
            "^container_(.*)_total$",
            "",
            &[("", "^container_.*_seconds_total$")],
        ))
        .unwrap();
        assert!(naming.accepts("container_network_receive_bytes_total"));
        assert!(!naming.accepts("container_cpu_usage_seconds_total"));
        assert!(Naming::new(&rule("", "", &[("a", "b")])).is_err());
    }

    #[test]
    fn series_query_facts() {
        assert_eq!(
            facts(r#"nginx_http_requests_total{namespace!="", pod!=""}"#).unwrap(),
            SeriesQueryFacts {
                name: Some("nginx_http_requests_total".into()),
                required_labels: vec!["namespace".into(), "pod".into()],
            }
        );
        let kong = facts(r#"{__name__=~"^kong_upstream_latency_ms_(sum|count)",kubernetes_namespace!="",kubernetes_name!="",kubernetes_kind!=""}"#).unwrap();
        assert_eq!(kong.name, None);
        assert_eq!(kong.required_labels.len(), 3);
        let exact = facts(r#"{__name__="queue_depth",topic!="",x=~".*"}"#).unwrap();
        assert_eq!(exact.name.as_deref(), Some("queue_depth"));
        assert_eq!(exact.required_labels, vec!["topic".to_string()]);
        assert!(facts("sum(x)").is_err());
    }
}
