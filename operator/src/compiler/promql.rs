//! PromQL checks with promql-parser: the template must parse once its placeholders are
//! filled, and a namespaced definition must only read its own namespace's series.
//!
//! Every sentence in this file is a message users see: docs/troubleshooting.md lists them.

use super::selectors::{SelectorVisitor, visit_selectors};
use metrics_registry_apiserver::table::{NO_SELECTOR_MATCHER, Segment};
use promql_parser::label::{MatchOp, Matcher, Matchers};
use promql_parser::parser::{self, Expr, Function, VectorSelector};

/// The label every isolated selector is pinned to.
pub const ISOLATION_LABEL: &str = "namespace";

// Stand-ins that parse as PromQL wherever the placeholders may appear, and that no
// real query contains, so they can be found again after printing.
pub(super) const MATCHERS_SENTINEL_LABEL: &str = "__metrics_registry_label_matchers__";
const MATCHERS_SENTINEL: &str = "__metrics_registry_label_matchers__=\"\"";
pub(super) const GROUP_BY_SENTINEL: &str = "__metrics_registry_group_by__";

/// promql-parser panics on some inputs (durations too large for `std::time::Duration`,
/// found by fuzzing); a tenant's query must never take the compiler down with it.
pub(super) fn parse(query: &str) -> Result<Expr, String> {
    std::panic::catch_unwind(|| parser::parse(query)).unwrap_or_else(|_| {
        Err("the PromQL parser cannot handle this query (e.g. a duration too large)".to_string())
    })
}

fn fill(segments: &[Segment], matchers: &str, group_by: &str) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Literal(text) => out.push_str(text),
            Segment::LabelMatchers => out.push_str(matchers),
            Segment::GroupBy => out.push_str(group_by),
        }
    }
    out
}

/// The template with stand-ins where its placeholders are, to be found in the tree.
pub(super) fn fill_with_sentinels(segments: &[Segment]) -> String {
    fill(segments, MATCHERS_SENTINEL, GROUP_BY_SENTINEL)
}

/// Parses the template filled with matchers like a real request would get.
pub fn validate(
    segments: &[Segment],
    namespace_label: &str,
    object_label: &str,
) -> Result<(), String> {
    let sample =
        format!("{namespace_label}=\"example-namespace\",{object_label}=\"example-object\"");
    let query = fill(segments, &sample, object_label);
    parse(&query)
        .map(|_| ())
        .map_err(|message| format!("{message} (in {query})"))
}

/// Parses an external metric's template filled as requests fill it: with a selector's
/// matchers, and with the matcher that stands for no selector.
pub fn validate_external(segments: &[Segment]) -> Result<(), String> {
    for matchers in ["example_label=\"example-value\"", NO_SELECTOR_MATCHER] {
        let query = fill(segments, matchers, "");
        parse(&query).map_err(|message| format!("{message} (in {query})"))?;
    }
    Ok(())
}

/// Pins every selector of the template to `namespace`: rejects selectors that name any
/// other namespace and adds `namespace="<namespace>"` to the rest. Returns new segments.
pub fn isolate(segments: &[Segment], namespace: &str) -> Result<Vec<Segment>, String> {
    // The sentinel matcher is a plain `=""` so that the printer emits it verbatim.
    let mut expr = parse(&fill_with_sentinels(segments))?;
    visit_selectors(&mut expr, &mut Pin { namespace })?;
    // The printer can emit what the parser refuses (`offset 0s` for `offset 00m`, found by
    // fuzzing); what is served must parse.
    let printed = expr.to_string();
    parse(&printed).map_err(|error| {
        format!(
            "pinned to namespace {namespace:?}, the query is printed as PromQL that does not parse ({error}); write it without that construct"
        )
    })?;
    Ok(resplit(&printed))
}

fn resplit(printed: &str) -> Vec<Segment> {
    let mut segments = Vec::new();
    let mut rest = printed;
    loop {
        let next_matchers = rest
            .find(MATCHERS_SENTINEL)
            .map(|i| (i, MATCHERS_SENTINEL.len(), Segment::LabelMatchers));
        let next_group = rest
            .find(GROUP_BY_SENTINEL)
            .map(|i| (i, GROUP_BY_SENTINEL.len(), Segment::GroupBy));
        let next = match (next_matchers, next_group) {
            (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
            (a, b) => a.or(b),
        };
        let Some((at, len, segment)) = next else {
            break;
        };
        if at > 0 {
            segments.push(Segment::Literal(rest[..at].to_string()));
        }
        segments.push(segment);
        rest = &rest[at + len..];
    }
    if !rest.is_empty() {
        segments.push(Segment::Literal(rest.to_string()));
    }
    segments
}

/// Pins every selector the walk reaches; refuses what cannot be pinned.
struct Pin<'a> {
    namespace: &'a str,
}

impl SelectorVisitor for Pin<'_> {
    type Error = String;

    fn selector(&mut self, selector: &mut VectorSelector) -> Result<(), String> {
        pin_selector(selector, self.namespace)
    }

    fn call(&mut self, function: &Function) -> Result<(), String> {
        if IMPLICIT_READS.contains(&function.name) {
            return Err(format!(
                "{}() reads series that no selector of the query names, so it cannot be pinned to namespace {:?}; a namespaced definition may only read series of its own namespace",
                function.name, self.namespace
            ));
        }
        Ok(())
    }

    fn extension(&mut self) -> Result<(), String> {
        Err(format!(
            "the query holds an expression the compiler cannot inspect, so it cannot be pinned to namespace {:?}",
            self.namespace
        ))
    }
}

/// Functions that read series besides those of their arguments' selectors.
const IMPLICIT_READS: [&str; 1] = [
    // Joins its argument with `target_info` series found by Prometheus itself.
    "info",
];

/// Adds `namespace="<namespace>"` to each matcher group of `selector` (every `or`
/// alternative is a group of its own), or refuses a matcher naming anything else.
fn pin_selector(selector: &mut VectorSelector, namespace: &str) -> Result<(), String> {
    let VectorSelector {
        name: _,
        matchers,
        offset: _,
        at: _,
    } = selector;
    let Matchers {
        matchers,
        or_matchers,
    } = matchers;
    // The parser moves the plain list into the alternatives when there are any; a list
    // left beside them would still be printed, so it is pinned too.
    let plain_is_a_group = !matchers.is_empty() || or_matchers.is_empty();
    let groups = std::iter::once(matchers)
        .filter(|_| plain_is_a_group)
        .chain(or_matchers.iter_mut());
    for group in groups {
        let mut pinned = false;
        for matcher in group.iter() {
            if matcher.name != ISOLATION_LABEL {
                continue;
            }
            match matcher.op {
                MatchOp::Equal if matcher.value == namespace => pinned = true,
                _ => {
                    return Err(format!(
                        "the selector matcher {}{}{:?} reads beyond namespace {namespace:?}; a namespaced definition may only read series of its own namespace",
                        matcher.name, matcher.op, matcher.value
                    ));
                }
            }
        }
        // Selectors carrying the request's matchers get the namespace from the
        // request too; pinning them as well keeps the printed query safe on its own.
        if !pinned {
            group.push(Matcher::new(MatchOp::Equal, ISOLATION_LABEL, namespace));
        }
    }
    Ok(())
}

/// Checks a standalone PromQL expression (recording and alerting rules).
pub fn parse_expression(expr: &str) -> Result<(), String> {
    parse(expr).map(|_| ())
}

/// A Prometheus duration such as `30s` or `1m30s`.
pub fn parse_duration(text: &str) -> Result<(), String> {
    std::panic::catch_unwind(|| promql_parser::util::parse_duration(text))
        .unwrap_or_else(|_| Err("duration too large".to_string()))
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::template::split_placeholders;
    use metrics_registry_apiserver::table::QueryTemplate;

    fn isolated(query: &str, namespace: &str) -> Result<String, String> {
        let segments = split_placeholders(query).unwrap();
        isolate(&segments, namespace)
            .map(|s| QueryTemplate::new(s).render(r#"namespace="team-a",service="rmq""#, "service"))
    }

    #[test]
    fn every_selector_is_pinned() {
        let query =
            "sum(rate(a{<<.LabelMatchers>>}[5m])) by (<<.GroupBy>>) / sum(b) by (<<.GroupBy>>)";
        let rendered = isolated(query, "team-a").unwrap();
        assert!(rendered.contains(r#"b{namespace="team-a"}"#), "{rendered}");
        assert!(
            rendered.contains(r#"namespace="team-a",service="rmq""#),
            "{rendered}"
        );
        assert!(rendered.contains("by (service)"), "{rendered}");
        parser::parse(&rendered).unwrap();
    }

    #[test]
    fn subqueries_and_function_arguments_are_pinned() {
        let rendered = isolated(
            "max_over_time(rate(c{<<.LabelMatchers>>}[1m])[5m:30s]) + on() group_left() absent(d)",
            "team-a",
        )
        .unwrap();
        assert!(rendered.contains(r#"d{namespace="team-a"}"#), "{rendered}");
        assert!(!rendered.contains("__metrics_registry"), "{rendered}");
    }

    #[test]
    fn other_namespaces_are_refused() {
        for query in [
            r#"x{<<.LabelMatchers>>} + y{namespace="kube-system"}"#,
            r#"x{<<.LabelMatchers>>} + y{namespace=~".+"}"#,
            r#"x{<<.LabelMatchers>>} + y{namespace!="team-a"}"#,
        ] {
            let err = isolated(query, "team-a").unwrap_err();
            assert!(err.contains("own namespace"), "{query}: {err}");
        }
        assert!(isolated(r#"x{<<.LabelMatchers>>} + y{namespace="team-a"}"#, "team-a").is_ok());
    }

    #[test]
    fn queries_the_parser_panics_on_are_invalid_not_fatal() {
        // Found by fuzzing: promql-parser turns these durations into a panic.
        for query in [
            "max_over_time(c{<<.LabelMatchers>>}[5m:3000000000000000000000000003])",
            "max_over_time(c{<<.LabelMatchers>>}[5m:40s]) offset 10E111/11m",
        ] {
            let segments = split_placeholders(query).unwrap();
            let err = validate(&segments, "namespace", "pod").unwrap_err();
            assert!(err.contains("cannot handle"), "{query}: {err}");
            assert!(isolate(&segments, "team-a").is_err(), "{query}");
        }
        assert!(parse_duration("3000000000000000000000000003s").is_err());
    }

    #[test]
    fn a_pinned_query_that_would_not_parse_is_refused() {
        // Found by fuzzing: `offset 00000` is printed as `offset 0s`, which does not parse.
        let segments = split_placeholders("max + y offset 00000 + x{<<.LabelMatchers>>}").unwrap();
        assert!(validate(&segments, "namespace", "pod").is_ok());
        let err = isolate(&segments, "team-a").unwrap_err();
        assert!(err.contains("does not parse"), "{err}");
    }

    #[test]
    fn validation_reports_the_parser_message() {
        let segments = split_placeholders("sum(x{<<.LabelMatchers>>}").unwrap();
        let err = validate(&segments, "namespace", "pod").unwrap_err();
        assert!(
            err.contains("unclosed") || err.contains("expected") || err.contains("unexpected"),
            "{err}"
        );
        assert!(
            validate(
                &split_placeholders("x{<<.LabelMatchers>>}").unwrap(),
                "namespace",
                "pod"
            )
            .is_ok()
        );
    }
}
