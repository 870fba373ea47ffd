//! Properties of what reaches PromQL, for any request: the selector parser, the renderer
//! and the namespace-isolation rewrite, checked by parsing the result with promql-parser.

use metrics_registry::compiler::{CompileOptions, compile};
use metrics_registry::definitions::{Definition, DefinitionBody, DefinitionId, DefinitionKind};
use metrics_registry_apiserver::render::{ObjectSelection, RenderRequest, render_query};
use metrics_registry_apiserver::selector::{LabelSelector, quote_regex};
use metrics_registry_apiserver::table::ObjectKind;
use metrics_registry_crds::MetricSpec;
use metrics_registry_oracle::{grammar, pinning::unpinned_selectors};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr};
use promql_parser::util::visitor::{ExprVisitor, walk_expr};
use proptest::prelude::*;

/// Templates as users write them: aggregations, binary operators with other series,
/// subqueries, functions, offsets.
const TEMPLATES: [&str; 6] = [
    "sum(a{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
    "max(rate(a{<<.LabelMatchers>>}[5m])) by (<<.GroupBy>>) / on() group_left() sum(b)",
    "max_over_time(rate(a{<<.LabelMatchers>>,job=\"x\"}[1m])[5m:30s])",
    "avg by (<<.GroupBy>>) (a{<<.LabelMatchers>>} offset 1m) + absent(c{d=\"e\"})",
    "sum(a{<<.LabelMatchers>>}) by (<<.GroupBy>>) * on() group_left() sum(b{namespace=\"team-a\"})",
    "histogram_quantile(0.9, sum by (le, <<.GroupBy>>) (rate(a_bucket{<<.LabelMatchers>>}[5m])))",
];

/// Characters that break out of strings, selectors and regexes if not escaped.
const HOSTILE: &[char] = &[
    'a', 'z', '0', '-', '.', '"', '\'', '`', '\\', '{', '}', ',', '=', '~', '!', '|', '(', ')',
    '[', ']', '*', '+', '?', '^', '$', ' ', '\n', '\t', '\u{0}', '\u{7f}', 'é', '\u{2028}',
    '\u{fffd}', '#',
];

fn hostile_string() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(HOSTILE), 0..24).prop_map(String::from_iter)
}

/// Values Kubernetes accepts in label selectors.
fn label_value() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(&['a', 'b', 'Z', '0', '9', '-', '_', '.'][..]),
        1..12,
    )
    .prop_map(String::from_iter)
    .prop_filter("starts and ends alphanumeric", |v| {
        v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric())
    })
}

fn metric_selector() -> impl Strategy<Value = String> {
    prop::collection::vec(
        (
            prop::sample::select(&["app", "tier", "queue"][..]),
            prop::sample::select(&["=", "!=", " in ", " notin ", "exists"][..]),
            prop::collection::vec(label_value(), 1..3),
        ),
        0..3,
    )
    .prop_map(|requirements| {
        requirements
            .into_iter()
            .map(|(key, op, values)| match op {
                " in " | " notin " => format!("{key}{op}({})", values.join(",")),
                "exists" => key.to_string(),
                _ => format!("{key}{op}{}", values[0]),
            })
            .collect::<Vec<_>>()
            .join(",")
    })
}

#[derive(Debug, Clone)]
enum Objects {
    One(String),
    Many(Vec<String>),
    All,
}

fn objects() -> impl Strategy<Value = Objects> {
    prop_oneof![
        hostile_string().prop_map(Objects::One),
        prop::collection::vec(hostile_string(), 2..5).prop_map(Objects::Many),
        Just(Objects::All),
    ]
}

/// Every selector's matchers (each `or` alternative separately).
#[derive(Default)]
struct Selectors(Vec<Vec<Matcher>>);

impl ExprVisitor for Selectors {
    type Error = ();
    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
        let selector = match expr {
            Expr::VectorSelector(selector) => Some(selector),
            Expr::MatrixSelector(matrix) => Some(&matrix.vs),
            _ => None,
        };
        if let Some(selector) = selector {
            if selector.matchers.or_matchers.is_empty() {
                self.0.push(selector.matchers.matchers.clone());
            } else {
                self.0.extend(selector.matchers.or_matchers.iter().cloned());
            }
        }
        Ok(true)
    }
}

fn selectors(query: &str) -> Result<Vec<Vec<Matcher>>, String> {
    let expr = parser::parse(query).map_err(|e| format!("{e} in {query}"))?;
    let mut found = Selectors::default();
    let _ = walk_expr(&mut found, &expr);
    Ok(found.0)
}

fn definition(kind: DefinitionKind, namespace: Option<&str>, template: &str) -> Definition {
    Definition {
        id: DefinitionId {
            kind,
            namespace: namespace.map(str::to_string),
            name: "m".into(),
        },
        generation: None,
        created: None,
        body: DefinitionBody::Metric(MetricSpec {
            query: template.into(),
            ..MetricSpec::default()
        }),
    }
}

/// Renders `template` (compiled as `kind`) for one request.
fn render(
    kind: DefinitionKind,
    namespace: Option<&str>,
    template: &str,
    request_namespace: &str,
    objects: &Objects,
    metric_selector: &str,
) -> (String, usize) {
    let (query, matchers) = try_render(
        kind,
        namespace,
        template,
        request_namespace,
        objects,
        metric_selector,
    );
    (
        query.unwrap_or_else(|| panic!("{template} is not served")),
        matchers,
    )
}

/// [`render`], or `None` with the query when the compiler refuses the template.
fn try_render(
    kind: DefinitionKind,
    namespace: Option<&str>,
    template: &str,
    request_namespace: &str,
    objects: &Objects,
    metric_selector: &str,
) -> (Option<String>, usize) {
    let compiled = compile(
        &[definition(kind, namespace, template)],
        CompileOptions::default(),
    );
    let selector = LabelSelector::parse(metric_selector).expect("generated selectors parse");
    let matchers = selector.to_promql_matchers().expect("renders");
    let Some(rule) = compiled
        .table
        .lookup(ObjectKind::Service, "m", namespace.unwrap_or("any"))
    else {
        return (None, matchers.len());
    };
    let selection = match objects {
        Objects::One(name) => ObjectSelection::One(name),
        Objects::Many(names) => ObjectSelection::Many(names),
        Objects::All => ObjectSelection::All,
    };
    let query = render_query(
        rule,
        &RenderRequest {
            namespace: request_namespace,
            objects: selection,
            metric_matchers: &matchers,
        },
    );
    (Some(query), matchers.len())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Whatever the namespace and object names hold, the rendered query parses and the
    /// request's values arrive as exactly one matcher each, with exactly their value.
    #[test]
    fn request_values_reach_promql_only_as_escaped_literals(
        template in prop::sample::select(&TEMPLATES[..]),
        namespace in hostile_string(),
        objects in objects(),
        metric_selector in metric_selector(),
    ) {
        let (query, metric_matchers) = render(
            DefinitionKind::ClusterServiceMetric, None, template, &namespace, &objects, &metric_selector,
        );
        let selectors = selectors(&query).map_err(TestCaseError::fail)?;
        let with_request: Vec<&Vec<Matcher>> = selectors
            .iter()
            .filter(|m| m.iter().any(|m| m.name == "service"))
            .collect();
        prop_assert_eq!(with_request.len(), 1, "{}", query);
        let matchers = with_request[0];
        let template_matchers = usize::from(template.contains("job=\"x\""));
        // The template's own matchers plus the request's, nothing smuggled in.
        let labels = matchers.iter().filter(|m| m.name != "__name__").count();
        prop_assert_eq!(labels, template_matchers + metric_matchers + 2, "{}", query);
        let namespace_matchers: Vec<&Matcher> =
            matchers.iter().filter(|m| m.name == "namespace").collect();
        prop_assert_eq!(namespace_matchers.len(), 1);
        prop_assert_eq!(&namespace_matchers[0].op, &MatchOp::Equal);
        prop_assert_eq!(&namespace_matchers[0].value, &namespace);
        let object = matchers.iter().find(|m| m.name == "service").unwrap();
        match &objects {
            Objects::One(name) => {
                prop_assert_eq!(&object.op, &MatchOp::Equal);
                prop_assert_eq!(&object.value, name);
            }
            Objects::Many(names) => {
                prop_assert!(matches!(object.op, MatchOp::Re(_)));
                let quoted: Vec<String> = names.iter().map(|n| quote_regex(n)).collect();
                prop_assert_eq!(&object.value, &format!("^(?:{})$", quoted.join("|")));
            }
            Objects::All => {
                prop_assert_eq!(&object.op, &MatchOp::NotEqual);
                prop_assert_eq!(object.value.as_str(), "");
            }
        }
    }

    /// A namespaced definition reads its own namespace only, whatever is asked and
    /// whatever the template (the grammar's, besides the hand-written ones), as the
    /// oracle that walks the parsed query as JSON judges it.
    #[test]
    fn isolated_queries_keep_their_namespace_for_any_request(
        template in prop_oneof![
            prop::sample::select(&TEMPLATES[..]).prop_map(str::to_string),
            grammar::template(grammar::Dialect::Parser, "team-b"),
        ],
        namespace in hostile_string(),
        objects in objects(),
        metric_selector in metric_selector(),
    ) {
        let (query, _) = try_render(
            DefinitionKind::ServiceMetric, Some("team-a"), &template, &namespace, &objects, &metric_selector,
        );
        let Some(query) = query else {
            // Refused at compile time: nothing is served.
            return Ok(());
        };
        let unpinned = unpinned_selectors(&query, "team-a").map_err(TestCaseError::fail)?;
        prop_assert!(unpinned.is_empty(), "{} has selectors without namespace=\"team-a\": {:?}", query, unpinned);
        for matchers in selectors(&query).map_err(TestCaseError::fail)? {
            prop_assert!(
                matchers.iter().any(|m| m.name == "namespace" && m.op == MatchOp::Equal && m.value == "team-a"),
                "a selector without namespace=\"team-a\": {}", query
            );
            prop_assert!(
                matchers.iter().filter(|m| m.name == "namespace").all(|m| m.op == MatchOp::Equal),
                "{}", query
            );
        }
    }

    /// Any text as a selector: an error or matchers that parse, never a panic, and the
    /// matchers carry the selector's values verbatim.
    #[test]
    fn selector_parser_never_lets_text_through_unescaped(text in hostile_string()) {
        if let Ok(selector) = LabelSelector::parse(&text)
            && let Ok(matchers) = selector.to_promql_matchers()
            && !matchers.is_empty()
        {
            let query = format!("x{{{}}}", matchers.join(","));
            let parsed = selectors(&query).map_err(TestCaseError::fail)?;
            let labels = parsed[0].iter().filter(|m| m.name != "__name__").count();
            prop_assert_eq!(labels, matchers.len(), "{}", query);
        }
    }

    #[test]
    fn generated_selectors_become_matchers_with_their_values(text in metric_selector()) {
        let selector = LabelSelector::parse(&text).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let matchers = selector.to_promql_matchers().map_err(|e| TestCaseError::fail(e.to_string()))?;
        if matchers.is_empty() {
            return Ok(());
        }
        let parsed = selectors(&format!("x{{{}}}", matchers.join(","))).map_err(TestCaseError::fail)?;
        // One matcher per requirement, in order, with the value verbatim.
        let labels: Vec<&Matcher> = parsed[0].iter().filter(|m| m.name != "__name__").collect();
        prop_assert_eq!(labels.len(), selector.requirements.len(), "{:?}", matchers);
        for (requirement, matcher) in selector.requirements.iter().zip(labels) {
            prop_assert_eq!(&matcher.name, &requirement.key);
            if requirement.values.len() == 1 && matches!(matcher.op, MatchOp::Equal | MatchOp::NotEqual) {
                prop_assert_eq!(&matcher.value, &requirement.values[0]);
            }
        }
    }
}
