//! Random PromQL templates, typed so that most of them parse: every expression form
//! (selectors with offset and `@`, subqueries, unary, parentheses, binary operators with
//! every matching modifier, function calls, every aggregation and those with a
//! parameter), and series selectors in every position, some with `<<.LabelMatchers>>`,
//! some naming other namespaces. The product's isolation must pin or refuse whatever comes
//! out; the oracle in [`crate::pinning`] says which.

use proptest::prelude::*;
use proptest::strategy::BoxedStrategy;

/// Which PromQL the templates are written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// Everything the parser accepts, also what only newer Prometheus servers run
    /// (`limitk`, `limit_ratio`, `info`, `or` between matchers).
    Parser,
    /// What Prometheus 2.x evaluates, for tests against a real server.
    Prometheus2,
}

/// The namespace templates escape to, or `None` for templates that name none.
type Secret = Option<&'static str>;

/// Metric names the templates read; tests give the series these names.
pub const METRICS: [&str; 3] = ["tenant_metric", "secret_metric", "shared_metric"];

fn metric_name() -> BoxedStrategy<String> {
    prop::sample::select(METRICS.to_vec())
        .prop_map(str::to_string)
        .boxed()
}

/// Matchers a selector may carry; the ones naming a namespace are escapes to refuse.
fn matcher(secret: Secret) -> BoxedStrategy<String> {
    let Some(secret) = secret else {
        return prop_oneof![
            3 => Just("<<.LabelMatchers>>".to_string()),
            1 => Just("job=\"exporter\"".to_string()),
        ]
        .boxed();
    };
    prop_oneof![
        Just("<<.LabelMatchers>>".to_string()),
        Just("job=\"exporter\"".to_string()),
        Just(format!("namespace=\"{secret}\"")),
        Just("namespace=~\".+\"".to_string()),
        Just("namespace!=\"\"".to_string()),
        Just(format!("kubernetes_namespace=\"{secret}\"")),
    ]
    .boxed()
}

fn matchers(dialect: Dialect, secret: Secret) -> BoxedStrategy<String> {
    let plain = prop::collection::vec(matcher(secret), 0..3).prop_map(|m| m.join(","));
    match dialect {
        Dialect::Prometheus2 => plain.boxed(),
        Dialect::Parser => prop_oneof![
            4 => plain,
            1 => (matcher(secret), matcher(secret)).prop_map(|(a, b)| format!("{a} or {b}")),
        ]
        .boxed(),
    }
}

fn modifiers() -> BoxedStrategy<String> {
    prop_oneof![
        4 => Just(String::new()),
        1 => Just(" offset 1m".to_string()),
        1 => Just(" @ end()".to_string()),
        1 => Just(" offset -30s".to_string()),
    ]
    .boxed()
}

fn vector_selector(dialect: Dialect, secret: Secret) -> BoxedStrategy<String> {
    (metric_name(), matchers(dialect, secret), modifiers())
        .prop_map(|(name, matchers, modifier)| {
            if matchers.is_empty() {
                format!("{name}{modifier}")
            } else {
                format!("{name}{{{matchers}}}{modifier}")
            }
        })
        .boxed()
}

fn matrix_selector(dialect: Dialect, secret: Secret) -> BoxedStrategy<String> {
    (metric_name(), matchers(dialect, secret), modifiers())
        .prop_map(|(name, matchers, modifier)| format!("{name}{{{matchers}}}[5m]{modifier}"))
        .boxed()
}

/// Grouping clauses, with the placeholder the request fills with the object label.
fn grouping(secret: Secret) -> BoxedStrategy<String> {
    if secret.is_none() {
        return prop_oneof![
            4 => Just(" by (<<.GroupBy>>)".to_string()),
            1 => Just(String::new()),
            1 => Just(" by (<<.GroupBy>>, job)".to_string()),
            1 => Just(" without (job)".to_string()),
            1 => Just(" by (namespace)".to_string()),
        ]
        .boxed();
    }
    prop_oneof![
        Just(String::new()),
        Just(" by (<<.GroupBy>>)".to_string()),
        Just(" by (<<.GroupBy>>, job)".to_string()),
        Just(" by (namespace)".to_string()),
        Just(" without (job)".to_string()),
        Just(" by ()".to_string()),
    ]
    .boxed()
}

fn vector_matching() -> BoxedStrategy<String> {
    prop_oneof![
        3 => Just(String::new()),
        1 => Just(" on () group_left () ".to_string()),
        1 => Just(" on (<<.GroupBy>>) ".to_string()),
        1 => Just(" ignoring (job) ".to_string()),
        1 => Just(" on (namespace) group_right () ".to_string()),
    ]
    .boxed()
}

/// A scalar-typed expression.
pub fn scalar(dialect: Dialect, secret: Secret, depth: u32) -> BoxedStrategy<String> {
    let leaf = prop_oneof![
        (0u32..10_000).prop_map(|n| n.to_string()),
        Just("time()".to_string()),
        Just("1e4".to_string()),
    ];
    if depth == 0 {
        return leaf.boxed();
    }
    let vector = vector(dialect, secret, depth - 1);
    let inner = scalar(dialect, secret, depth - 1);
    prop_oneof![
        2 => leaf,
        2 => vector.prop_map(|v| format!("scalar({v})")),
        1 => (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("{a} / {b}")),
        1 => inner.clone().prop_map(|a| format!("({a})")),
        1 => inner.prop_map(|a| format!("-{a}")),
    ]
    .boxed()
}

fn matrix(dialect: Dialect, secret: Secret, depth: u32) -> BoxedStrategy<String> {
    let selector = matrix_selector(dialect, secret);
    if depth == 0 {
        return selector.boxed();
    }
    let subquery = (vector(dialect, secret, depth - 1), modifiers())
        .prop_map(|(v, modifier)| format!("({v})[5m:1m]{modifier}"));
    prop_oneof![3 => selector, 1 => subquery].boxed()
}

/// A vector-typed expression: the type of every template.
pub fn vector(dialect: Dialect, secret: Secret, depth: u32) -> BoxedStrategy<String> {
    let selector = vector_selector(dialect, secret);
    if depth == 0 {
        return selector.boxed();
    }
    let inner = vector(dialect, secret, depth - 1);
    let number = scalar(dialect, secret, depth - 1);
    let range = matrix(dialect, secret, depth - 1);
    let aggregation = (
        prop::sample::select(vec![
            "sum", "avg", "min", "max", "count", "group", "stddev", "stdvar",
        ]),
        grouping(secret),
        inner.clone(),
    )
        .prop_map(|(op, grouping, v)| format!("{op}{grouping} ({v})"));
    let mut parametric_ops = vec!["topk", "bottomk", "quantile"];
    if dialect == Dialect::Parser {
        parametric_ops.extend(["limitk", "limit_ratio"]);
    }
    let parametric = (
        prop::sample::select(parametric_ops),
        grouping(secret),
        number.clone(),
        inner.clone(),
    )
        .prop_map(|(op, grouping, k, v)| format!("{op}{grouping} ({k}, {v})"));
    let count_values = (grouping(secret), inner.clone())
        .prop_map(|(grouping, v)| format!("count_values{grouping} (\"value\", {v})"));
    let arithmetic = (
        inner.clone(),
        prop::sample::select(vec!["+", "-", "*", "/", "%", "^", "> bool", "<"]),
        vector_matching(),
        inner.clone(),
    )
        .prop_map(|(a, op, matching, b)| format!("{a} {op}{matching} {b}"));
    let set = (
        inner.clone(),
        prop::sample::select(vec!["or", "and", "unless"]),
        prop_oneof![
            Just(String::new()),
            Just(" on () ".to_string()),
            Just(" on (<<.GroupBy>>) ".to_string())
        ],
        inner.clone(),
    )
        .prop_map(|(a, op, matching, b)| format!("{a} {op}{matching} {b}"));
    let with_scalar = (inner.clone(), number.clone())
        .prop_map(|(v, s)| format!("{v} * {s}"))
        .boxed();
    let call_on_matrix = (
        prop::sample::select(vec![
            "rate",
            "increase",
            "max_over_time",
            "absent_over_time",
            "quantile_over_time(0.5,",
        ]),
        range,
    )
        .prop_map(|(f, m)| match f.strip_suffix(',') {
            Some(f) => format!("{f} {m})"),
            None => format!("{f}({m})"),
        });
    let call_on_vector = (
        prop::sample::select(vec!["abs", "absent", "sort", "timestamp", "ceil"]),
        inner.clone(),
    )
        .prop_map(|(f, v)| format!("{f}({v})"));
    let call_with_scalar = prop_oneof![
        number.clone().prop_map(|s| format!("vector({s})")),
        (number.clone(), inner.clone()).prop_map(|(s, v)| format!("clamp_max({v}, {s})")),
        (number.clone(), inner.clone()).prop_map(|(s, v)| format!("histogram_quantile({s}, {v})")),
        (number.clone(), inner.clone()).prop_map(|(s, v)| format!("round({v}, {s})")),
    ];
    let label_call = inner
        .clone()
        .prop_map(|v| format!("label_replace({v}, \"namespace\", \"$1\", \"job\", \"(.*)\")"));
    let mut forms: Vec<(u32, BoxedStrategy<String>)> = vec![
        (4, selector.boxed()),
        (2, aggregation.boxed()),
        (2, parametric.boxed()),
        (1, count_values.boxed()),
        (2, arithmetic.boxed()),
        (1, set.boxed()),
        (1, with_scalar),
        (2, call_on_matrix.boxed()),
        (1, call_on_vector.boxed()),
        (2, call_with_scalar.boxed()),
        (1, label_call.boxed()),
        (1, inner.clone().prop_map(|v| format!("({v})")).boxed()),
        (1, inner.clone().prop_map(|v| format!("-{v}")).boxed()),
    ];
    if secret.is_none() {
        // The idle-object default and the share of a total.
        forms.push((
            2,
            inner
                .clone()
                .prop_map(|v| format!("{v} or on () vector(0)"))
                .boxed(),
        ));
        forms.push((
            1,
            inner
                .clone()
                .prop_map(|v| format!("{v} / on () group_left () sum({v})"))
                .boxed(),
        ));
    }
    if dialect == Dialect::Parser {
        forms.push((
            1,
            (inner.clone(), vector_selector(dialect, secret))
                .prop_map(|(v, s)| format!("info({v}, {s})"))
                .boxed(),
        ));
    }
    prop::strategy::Union::new_weighted(forms).boxed()
}

/// A whole template: a vector expression that names the request's objects somewhere.
pub fn template(dialect: Dialect, secret: &'static str) -> BoxedStrategy<String> {
    whole(vector(dialect, Some(secret), 3))
}

/// A whole template that names no namespace, with more grouping by the object label and
/// more of the joins that tie objects together (`or on () vector(0)`, a share of a
/// total): what batching must be careful with.
pub fn object_template(dialect: Dialect) -> BoxedStrategy<String> {
    whole(vector(dialect, None, 3))
}

fn whole(vector: BoxedStrategy<String>) -> BoxedStrategy<String> {
    vector
        .prop_map(|t| {
            if t.contains("<<.LabelMatchers>>") {
                t
            } else {
                format!("{t} + tenant_metric{{<<.LabelMatchers>>}}")
            }
        })
        .boxed()
}

/// `count` values of `strategy`, the same for every run with the same `seed`.
pub fn sample(strategy: &BoxedStrategy<String>, count: usize, seed: u8) -> Vec<String> {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &[seed; 32]);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    (0..count)
        .map(|_| {
            strategy
                .new_tree(&mut runner)
                .expect("a template")
                .current()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::test_runner::{Config, TestRunner};

    /// Most templates must parse once filled, or the isolation tests would mostly test
    /// the parser's error path.
    #[test]
    fn most_templates_parse() {
        for dialect in [Dialect::Parser, Dialect::Prometheus2] {
            let mut runner = TestRunner::new(Config::default());
            let strategy = template(dialect, "secret");
            let (mut parsed, total) = (0, 500);
            for _ in 0..total {
                let t = strategy.new_tree(&mut runner).unwrap().current();
                let filled = t
                    .replace("<<.LabelMatchers>>", "namespace=\"a\",pod=\"p\"")
                    .replace("<<.GroupBy>>", "pod");
                parsed += usize::from(promql_parser::parser::parse(&filled).is_ok());
            }
            assert!(
                parsed * 10 >= total * 6,
                "{dialect:?}: {parsed} of {total} parse"
            );
        }
    }
}
