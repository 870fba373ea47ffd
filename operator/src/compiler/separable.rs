//! Whether a template is *separable by object*: its value for one object provably depends
//! only on that object's series, so a query that names several objects at once answers
//! each of them exactly as a query for it alone would. Only such rules are batched.
//!
//! The proof is a bottom-up classification of the parsed template, written as an
//! exhaustive `match` over every `Expr` variant (no wildcard arm, like
//! [`super::selectors`]): a node is
//!
//! - **constant** when it holds no series selector at all and is a scalar or a string, so
//!   it is the same whichever objects are asked;
//! - **per object** when every series it yields carries the object label and is computed
//!   from series of that one object: a selector with `<<.LabelMatchers>>`, and what
//!   per-series functions, aggregations that keep the object label, and binary operations
//!   whose matching keeps it make of such nodes and constants;
//! - **mixed** otherwise — and so is anything this file does not know to be safe: `on()`,
//!   `ignoring(<object label>)`, aggregations across objects (`topk`, `quantile`, `sum`
//!   without the label), label-free vectors such as `vector(0)` or `absent(…)`, scalars
//!   computed from series, selectors without the placeholder, unknown functions.
//!
//! A template is separable when its root is per object. Being wrong towards "mixed" costs
//! a query per object; being wrong the other way changes answers, so every doubt is mixed.

use super::promql::{GROUP_BY_SENTINEL, MATCHERS_SENTINEL_LABEL, fill_with_sentinels, parse};
use metrics_registry_apiserver::table::Segment;
use promql_parser::label::{Labels, Matchers};
use promql_parser::parser::token::T_COUNT_VALUES;
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{
    AggregateExpr, BinModifier, BinaryExpr, Call, Expr, Extension, FunctionArgs, LabelModifier,
    MatrixSelector, NumberLiteral, ParenExpr, StringLiteral, SubqueryExpr, UnaryExpr,
    VectorSelector,
};

/// Whether `segments`, asked for several objects at once, answers each as if asked alone.
/// A template that does not parse is not separable (it is refused elsewhere).
pub fn separable(segments: &[Segment], object_label: &str) -> bool {
    match parse(&fill_with_sentinels(segments)) {
        Ok(expr) => classify(&expr, object_label) == Class::PerObject,
        Err(_) => false,
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Constant,
    PerObject,
    Mixed,
}

/// Functions whose output series are their input series, one for one, with labels kept
/// (the `__name__` aside) and values computed from that series alone. Their other
/// arguments must be constants.
const PER_SERIES_FUNCTIONS: &[&str] = &[
    "abs",
    "acos",
    "acosh",
    "asin",
    "asinh",
    "atan",
    "atanh",
    "avg_over_time",
    "ceil",
    "changes",
    "clamp",
    "clamp_max",
    "clamp_min",
    "cos",
    "cosh",
    "count_over_time",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "days_in_month",
    "deg",
    "delta",
    "deriv",
    "double_exponential_smoothing",
    "exp",
    "floor",
    "histogram_avg",
    "histogram_count",
    "histogram_fraction",
    "histogram_stddev",
    "histogram_stdvar",
    "histogram_sum",
    "holt_winters",
    "hour",
    "idelta",
    "increase",
    "irate",
    "last_over_time",
    "ln",
    "log10",
    "log2",
    "mad_over_time",
    "max_over_time",
    "min_over_time",
    "minute",
    "month",
    "predict_linear",
    "present_over_time",
    "quantile_over_time",
    "rad",
    "rate",
    "resets",
    "round",
    "sgn",
    "sin",
    "sinh",
    "sort",
    "sort_by_label",
    "sort_by_label_desc",
    "sort_desc",
    "sqrt",
    "stddev_over_time",
    "stdvar_over_time",
    "sum_over_time",
    "tan",
    "tanh",
    "timestamp",
    "year",
];

/// Functions that group series by every label but `le`, which is never the object label
/// of a separable rule (checked at the call).
const PER_HISTOGRAM_FUNCTIONS: &[&str] = &["histogram_quantile"];

/// Functions that rewrite one label named by their second argument.
const LABEL_WRITING_FUNCTIONS: &[&str] = &["label_replace", "label_join"];

/// Functions of constants only, which yield a scalar.
const CONSTANT_FUNCTIONS: &[&str] = &["time", "pi"];

fn is_object_label(label: &str, object_label: &str) -> bool {
    label == object_label || label == GROUP_BY_SENTINEL
}

fn names_object_label(labels: &Labels, object_label: &str) -> bool {
    labels
        .labels
        .iter()
        .any(|label| is_object_label(label, object_label))
}

/// A grouping or matching clause that keeps series of different objects apart.
fn keeps_objects_apart(modifier: &LabelModifier, object_label: &str) -> bool {
    match modifier {
        LabelModifier::Include(labels) => names_object_label(labels, object_label),
        LabelModifier::Exclude(labels) => !names_object_label(labels, object_label),
    }
}

fn classify(expr: &Expr, object_label: &str) -> Class {
    let class = |e: &Expr| classify(e, object_label);
    match expr {
        Expr::NumberLiteral(NumberLiteral { val: _ })
        | Expr::StringLiteral(StringLiteral { val: _ }) => Class::Constant,
        Expr::VectorSelector(selector) => selector_class(selector),
        Expr::MatrixSelector(MatrixSelector { vs, range: _ }) => selector_class(vs),
        Expr::Paren(ParenExpr { expr }) | Expr::Unary(UnaryExpr { expr }) => class(expr),
        // `offset` and `@` move the evaluation time, equally for every object.
        Expr::Subquery(SubqueryExpr {
            expr,
            offset: _,
            at: _,
            range: _,
            step: _,
        }) => match class(expr) {
            Class::PerObject => Class::PerObject,
            Class::Constant | Class::Mixed => Class::Mixed,
        },
        Expr::Aggregate(AggregateExpr {
            op,
            expr,
            param,
            modifier,
        }) => {
            let param_is_constant = match param.as_deref() {
                None => true,
                // `count_values("pod", …) by (pod)` would overwrite the object label.
                Some(Expr::StringLiteral(StringLiteral { val }))
                    if op.id() == T_COUNT_VALUES && is_object_label(val, object_label) =>
                {
                    false
                }
                Some(param) => class(param) == Class::Constant,
            };
            let grouped_by_object = modifier
                .as_ref()
                .is_some_and(|m| keeps_objects_apart(m, object_label));
            if param_is_constant && grouped_by_object && class(expr) == Class::PerObject {
                Class::PerObject
            } else {
                Class::Mixed
            }
        }
        Expr::Binary(BinaryExpr {
            op: _,
            lhs,
            rhs,
            modifier,
        }) => binary_class(lhs, rhs, modifier.as_ref(), object_label),
        Expr::Call(Call { func, args }) => {
            let FunctionArgs { args } = args;
            let classes: Vec<Class> = args.iter().map(|arg| class(arg)).collect();
            let name = func.name;
            if CONSTANT_FUNCTIONS.contains(&name) {
                return if classes.iter().all(|c| *c == Class::Constant) {
                    Class::Constant
                } else {
                    Class::Mixed
                };
            }
            let per_series = PER_SERIES_FUNCTIONS.contains(&name)
                || (PER_HISTOGRAM_FUNCTIONS.contains(&name)
                    && !is_object_label("le", object_label))
                || (LABEL_WRITING_FUNCTIONS.contains(&name)
                    && writes_other_label(args, object_label));
            let one_series_argument =
                classes.iter().filter(|c| **c == Class::PerObject).count() == 1;
            let rest_constant = classes.iter().all(|c| *c != Class::Mixed);
            if per_series && one_series_argument && rest_constant {
                Class::PerObject
            } else {
                Class::Mixed
            }
        }
        Expr::Extension(Extension { expr: _ }) => Class::Mixed,
    }
}

/// `label_replace(v, dst, …)` / `label_join(v, dst, …)` with `dst` not the object label.
fn writes_other_label(args: &[Box<Expr>], object_label: &str) -> bool {
    matches!(
        args.get(1).map(|a| a.as_ref()),
        Some(Expr::StringLiteral(StringLiteral { val })) if !is_object_label(val, object_label)
    )
}

/// A selector is per object when `<<.LabelMatchers>>` restricts it (and so its series
/// carry the object label); without it, it reads the same series whichever objects are
/// asked, which a one-to-one match with several objects' series can turn into an error.
fn selector_class(selector: &VectorSelector) -> Class {
    let VectorSelector {
        name: _,
        matchers: Matchers {
            matchers,
            or_matchers,
        },
        offset: _,
        at: _,
    } = selector;
    let placeholder = matchers.iter().any(|m| m.name == MATCHERS_SENTINEL_LABEL);
    // An alternative without the placeholder reads other objects; be strict about all.
    if placeholder && or_matchers.is_empty() {
        Class::PerObject
    } else {
        Class::Mixed
    }
}

fn binary_class(
    lhs_expr: &Expr,
    rhs_expr: &Expr,
    modifier: Option<&BinModifier>,
    object_label: &str,
) -> Class {
    let scalar = |e: &Expr| e.value_type() == ValueType::Scalar;
    match (
        classify(lhs_expr, object_label),
        classify(rhs_expr, object_label),
    ) {
        (Class::Constant, Class::Constant) => Class::Constant,
        // A series and a constant scalar: each series on its own.
        (Class::PerObject, Class::Constant) if scalar(rhs_expr) => Class::PerObject,
        (Class::Constant, Class::PerObject) if scalar(lhs_expr) => Class::PerObject,
        (Class::PerObject, Class::PerObject) => {
            // Without `on`/`ignoring`, series match on all their labels, the object
            // label among them; `group_*` and `fill` only widen within a match, and the
            // set operators match the same way.
            let matching = modifier.and_then(|m| m.matching.as_ref());
            match matching {
                None => Class::PerObject,
                Some(matching) if keeps_objects_apart(matching, object_label) => Class::PerObject,
                Some(_) => Class::Mixed,
            }
        }
        _ => Class::Mixed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compiler::template::split_placeholders;

    fn is_separable(template: &str) -> bool {
        separable(&split_placeholders(template).unwrap(), "pod")
    }

    #[test]
    fn per_object_templates_are_separable() {
        for template in [
            "sum by (<<.GroupBy>>) (rate(x{<<.LabelMatchers>>}[2m]))",
            "sum(rate(x{<<.LabelMatchers>>}[2m])) by (<<.GroupBy>>)",
            "sum by (pod) (x{<<.LabelMatchers>>})",
            "sum without (container) (x{<<.LabelMatchers>>})",
            "sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}) / sum by (<<.GroupBy>>) (y{<<.LabelMatchers>>})",
            "sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}) / on (<<.GroupBy>>) group_left () sum by (<<.GroupBy>>, job) (y{<<.LabelMatchers>>})",
            "sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}) * 100 / 2 + time() * 0",
            "-(sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}))",
            "histogram_quantile(0.9, sum by (<<.GroupBy>>, le) (rate(x_bucket{<<.LabelMatchers>>}[5m])))",
            "max_over_time(sum by (<<.GroupBy>>) (rate(x{<<.LabelMatchers>>}[1m]))[5m:30s])",
            "topk by (<<.GroupBy>>) (1, x{<<.LabelMatchers>>})",
            "quantile by (<<.GroupBy>>) (0.5, x{<<.LabelMatchers>>})",
            "label_replace(sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}), \"team\", \"$1\", \"job\", \"(.*)\")",
            "sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}) or sum by (<<.GroupBy>>) (y{<<.LabelMatchers>>})",
            "sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}) > bool 3",
            "clamp_max(sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}), 10)",
        ] {
            assert!(is_separable(template), "{template}");
        }
    }

    #[test]
    fn templates_that_join_across_objects_are_not() {
        for template in [
            // The idle-object idiom: the lone answer is 0, the batched one has no series.
            "sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}) or on () vector(0)",
            "sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}) or vector(0)",
            // A share of the total of the objects asked.
            "sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}) / on () group_left () sum(x{<<.LabelMatchers>>})",
            "sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}) / ignoring (pod) group_left () sum(x{<<.LabelMatchers>>})",
            "sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}) * scalar(sum(x{<<.LabelMatchers>>}))",
            "sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}) * scalar(y)",
            "sum(x{<<.LabelMatchers>>})",
            "sum by (namespace) (x{<<.LabelMatchers>>})",
            "sum without (pod) (x{<<.LabelMatchers>>})",
            "topk(1, sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}))",
            "quantile(0.5, x{<<.LabelMatchers>>})",
            "topk by (<<.GroupBy>>) (scalar(y{<<.LabelMatchers>>}), x{<<.LabelMatchers>>})",
            "count_values by (<<.GroupBy>>) (\"pod\", x{<<.LabelMatchers>>})",
            "absent(x{<<.LabelMatchers>>})",
            "sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}) + y{job=\"a\"}",
            "sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}) unless on () y{<<.LabelMatchers>>}",
            "label_replace(sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}), \"pod\", \"one\", \"\", \"\")",
            "sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}) + unknown_function(y{<<.LabelMatchers>>})",
            "sum by (<<.GroupBy>>) (x{<<.LabelMatchers>>}",
        ] {
            assert!(!is_separable(template), "{template}");
        }
    }
}
