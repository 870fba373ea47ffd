//! Turns a rule and one request into PromQL. Every value that comes from a request
//! (namespace, object names, metric label selector) is escaped here or by the selector
//! module; templates are split at placeholders ahead of time, so this is concatenation.

use crate::selector::{promql_string, quote_regex};
use crate::table::{MetricRule, ObjectKind};

/// Which objects a request is about.
#[derive(Clone, Copy, Debug)]
pub enum ObjectSelection<'a> {
    /// One named object.
    One(&'a str),
    /// Several named objects (matched with one anchored regex).
    Many(&'a [String]),
    /// Every object in the namespace that has the object label; callers filter locally.
    All,
}

/// Above this many objects a query matches the namespace and results are filtered
/// locally, instead of one long regex.
pub const MAX_REGEX_OBJECTS: usize = 100;

impl<'a> ObjectSelection<'a> {
    /// How named objects go into a query (`None`: every object): one matcher, one
    /// anchored regex, or past [`MAX_REGEX_OBJECTS`] the namespace with local filtering.
    pub fn of(names: Option<&'a [String]>) -> Self {
        match names {
            Some([one]) => ObjectSelection::One(one),
            Some(names) if names.len() <= MAX_REGEX_OBJECTS => ObjectSelection::Many(names),
            _ => ObjectSelection::All,
        }
    }
}

/// The parts of a request that reach PromQL.
#[derive(Clone, Copy, Debug)]
pub struct RenderRequest<'a> {
    pub namespace: &'a str,
    pub objects: ObjectSelection<'a>,
    /// Already-escaped matchers from `metricLabelSelector`.
    pub metric_matchers: &'a [String],
}

/// The `<<.LabelMatchers>>` value: metric label matchers, then the namespace, then the object(s).
pub fn label_matchers(rule: &MetricRule, request: &RenderRequest<'_>) -> String {
    let mut matchers: Vec<String> = request.metric_matchers.to_vec();
    matchers.push(format!(
        "{}={}",
        rule.namespace_label,
        promql_string(request.namespace)
    ));
    // A namespace's own metric is identified by the namespace matcher already.
    let object_is_namespace =
        rule.object == ObjectKind::Namespace && rule.object_label == rule.namespace_label;
    if !object_is_namespace {
        let label = &rule.object_label;
        matchers.push(match request.objects {
            ObjectSelection::One(name) => format!("{label}={}", promql_string(name)),
            ObjectSelection::Many(names) => {
                let alternatives: Vec<String> = names.iter().map(|n| quote_regex(n)).collect();
                format!(
                    "{label}=~{}",
                    promql_string(&format!("^(?:{})$", alternatives.join("|")))
                )
            }
            ObjectSelection::All => format!("{label}!=\"\""),
        });
    }
    matchers.join(",")
}

/// The PromQL sent to Prometheus for one request.
pub fn render_query(rule: &MetricRule, request: &RenderRequest<'_>) -> String {
    rule.template
        .render(&label_matchers(rule, request), &rule.object_label)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::table::{QueryTemplate, Segment};

    fn rule(object: ObjectKind, object_label: &str, namespace_label: &str) -> MetricRule {
        MetricRule {
            object,
            metric: "m".into(),
            template: QueryTemplate::new(vec![
                Segment::Literal("sum(x{".into()),
                Segment::LabelMatchers,
                Segment::Literal("}) by (".into()),
                Segment::GroupBy,
                Segment::Literal(")".into()),
            ]),
            object_label: object_label.into(),
            namespace_label: namespace_label.into(),
            window_seconds: None,
            separable: true,
            backend: "default".into(),
            bounds: Default::default(),
            source: "test".into(),
        }
    }

    #[test]
    fn one_object_with_metric_matchers_first() {
        let rule = rule(ObjectKind::Service, "service", "namespace");
        let matchers = vec![r#"queue="orders""#.to_string()];
        let query = render_query(
            &rule,
            &RenderRequest {
                namespace: "default",
                objects: ObjectSelection::One("echo"),
                metric_matchers: &matchers,
            },
        );
        assert_eq!(
            query,
            r#"sum(x{queue="orders",namespace="default",service="echo"}) by (service)"#
        );
    }

    #[test]
    fn custom_labels_are_used() {
        let rule = rule(
            ObjectKind::Service,
            "exported_service",
            "exported_namespace",
        );
        let query = render_query(
            &rule,
            &RenderRequest {
                namespace: "kong",
                objects: ObjectSelection::One("command"),
                metric_matchers: &[],
            },
        );
        assert_eq!(
            query,
            r#"sum(x{exported_namespace="kong",exported_service="command"}) by (exported_service)"#
        );
    }

    #[test]
    fn several_objects_become_one_anchored_escaped_regex() {
        let rule = rule(ObjectKind::Pod, "pod", "namespace");
        let names = vec!["web-1".to_string(), "a.b".to_string()];
        let query = render_query(
            &rule,
            &RenderRequest {
                namespace: "ns",
                objects: ObjectSelection::Many(&names),
                metric_matchers: &[],
            },
        );
        assert_eq!(
            query,
            r#"sum(x{namespace="ns",pod=~"^(?:web-1|a\\.b)$"}) by (pod)"#
        );
    }

    #[test]
    fn all_objects_match_on_label_presence() {
        let rule = rule(ObjectKind::Pod, "pod", "namespace");
        let query = render_query(
            &rule,
            &RenderRequest {
                namespace: "ns",
                objects: ObjectSelection::All,
                metric_matchers: &[],
            },
        );
        assert_eq!(query, r#"sum(x{namespace="ns",pod!=""}) by (pod)"#);
    }

    #[test]
    fn namespace_metric_matches_namespace_once() {
        let rule = rule(ObjectKind::Namespace, "namespace", "namespace");
        let query = render_query(
            &rule,
            &RenderRequest {
                namespace: "team-a",
                objects: ObjectSelection::One("team-a"),
                metric_matchers: &[],
            },
        );
        assert_eq!(query, r#"sum(x{namespace="team-a"}) by (namespace)"#);
    }

    #[test]
    fn hostile_values_stay_inside_their_strings() {
        let rule = rule(ObjectKind::Service, "service", "namespace");
        let evil = r#"x"} or vector(1) or x{a=""#;
        let query = render_query(
            &rule,
            &RenderRequest {
                namespace: evil,
                objects: ObjectSelection::One(evil),
                metric_matchers: &[],
            },
        );
        // Every quote from the request is escaped, so each value stays one string literal.
        assert_eq!(
            query,
            r#"sum(x{namespace="x\"} or vector(1) or x{a=\"",service="x\"} or vector(1) or x{a=\""}) by (service)"#
        );
    }
}
