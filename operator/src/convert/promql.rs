//! PromQL rewrites for converted queries, on promql-parser's syntax tree: dropping the
//! request's label matchers from a recording rule, keeping a label through aggregations,
//! and finding selectors a request's matchers never reach.

use crate::compiler::selectors::{SelectorVisitor, visit_selectors};
use promql_parser::label::{Labels, Matcher};
use promql_parser::parser::value::ValueType;
use promql_parser::parser::{self, Expr, LabelModifier, VectorSelector};

/// Stands in for `<<.LabelMatchers>>` so the template parses; no real query has it.
pub const MATCHERS_SENTINEL: &str = "__metrics_registry_convert__=\"\"";
const SENTINEL_LABEL: &str = "__metrics_registry_convert__";

/// Removes the sentinel matcher from every selector of `query` and prints the result.
pub fn without_sentinel(query: &str) -> Result<Expr, String> {
    let mut expr = parser::parse(query).map_err(|e| e.to_string())?;
    visit_selectors(&mut expr, &mut StripSentinel)?;
    Ok(expr)
}

struct StripSentinel;

impl SelectorVisitor for StripSentinel {
    type Error = String;
    fn selector(&mut self, selector: &mut VectorSelector) -> Result<(), String> {
        let strip = |matchers: &mut Vec<Matcher>| matchers.retain(|m| m.name != SENTINEL_LABEL);
        strip(&mut selector.matchers.matchers);
        selector.matchers.or_matchers.iter_mut().for_each(strip);
        Ok(())
    }
    fn extension(&mut self) -> Result<(), String> {
        Err(UNKNOWN_EXPRESSION.into())
    }
}

const UNKNOWN_EXPRESSION: &str = "the query holds an expression convert cannot inspect";

/// How many selectors of `query` (filled with [`MATCHERS_SENTINEL`]) lack the sentinel,
/// i.e. read series no request narrows down.
pub fn selectors_without_sentinel(query: &str) -> Result<usize, String> {
    struct Count(usize);
    impl SelectorVisitor for Count {
        type Error = String;
        fn selector(&mut self, selector: &mut VectorSelector) -> Result<(), String> {
            let has = |group: &Vec<Matcher>| group.iter().any(|m| m.name == SENTINEL_LABEL);
            let reached = if selector.matchers.or_matchers.is_empty() {
                has(&selector.matchers.matchers)
            } else {
                selector.matchers.or_matchers.iter().all(has)
            };
            self.0 += usize::from(!reached);
            Ok(())
        }
        fn extension(&mut self) -> Result<(), String> {
            Err(UNKNOWN_EXPRESSION.into())
        }
    }
    let mut expr = parser::parse(query).map_err(|e| e.to_string())?;
    let mut count = Count(0);
    visit_selectors(&mut expr, &mut count)?;
    Ok(count.0)
}

/// Makes `label` survive to the result: added to every `by (…)` and `on (…)` and removed
/// from every `without (…)` and `ignoring (…)` on the path from the top of the expression
/// down to its selectors. Fails where a part produces series without it (`vector(…)`,
/// `absent(…)`, `time()`, …).
pub fn keep_label(expr: &mut Expr, label: &str) -> Result<(), String> {
    match expr {
        Expr::VectorSelector(_) | Expr::MatrixSelector(_) => Ok(()),
        Expr::NumberLiteral(_) | Expr::StringLiteral(_) => Ok(()),
        Expr::Paren(paren) => keep_label(&mut paren.expr, label),
        Expr::Unary(unary) => keep_label(&mut unary.expr, label),
        Expr::Subquery(subquery) => keep_label(&mut subquery.expr, label),
        Expr::Aggregate(aggregate) => {
            match &mut aggregate.modifier {
                Some(LabelModifier::Include(labels)) => include(labels, label),
                Some(LabelModifier::Exclude(labels)) => exclude(labels, label),
                None => aggregate.modifier = Some(LabelModifier::Include(Labels::new(vec![label]))),
            }
            keep_label(&mut aggregate.expr, label)
        }
        Expr::Binary(binary) => {
            if let Some(modifier) = &mut binary.modifier
                && let Some(matching) = &mut modifier.matching
            {
                match matching {
                    LabelModifier::Include(labels) => include(labels, label),
                    LabelModifier::Exclude(labels) => exclude(labels, label),
                }
            }
            keep_label(&mut binary.lhs, label)?;
            keep_label(&mut binary.rhs, label)
        }
        Expr::Call(call) => {
            let name = call.func.name;
            if matches!(
                name,
                "vector" | "absent" | "absent_over_time" | "time" | "scalar" | "pi"
            ) || (call.func.return_type == ValueType::Vector
                && !call
                    .args
                    .args
                    .iter()
                    .any(|arg| matches!(arg.value_type(), ValueType::Vector | ValueType::Matrix)))
            {
                return Err(format!(
                    "{name}(…) returns series without the label {label}"
                ));
            }
            for arg in &mut call.args.args {
                if matches!(arg.value_type(), ValueType::Vector | ValueType::Matrix) {
                    keep_label(arg, label)?;
                }
            }
            Ok(())
        }
        Expr::Extension(_) => Err("unknown expression".into()),
    }
}

fn include(labels: &mut Labels, label: &str) {
    if !labels.labels.iter().any(|l| l == label) {
        labels.labels.push(label.to_string());
    }
}

fn exclude(labels: &mut Labels, label: &str) {
    labels.labels.retain(|l| l != label);
}

/// The labels a query's result keeps when its top is an aggregation with `by (…)`, also
/// under a `label_replace` that adds one.
pub fn result_labels(expr: &Expr) -> Option<Vec<String>> {
    match expr {
        Expr::Paren(paren) => result_labels(&paren.expr),
        Expr::Call(call) if call.func.name == "label_replace" => {
            let mut labels = result_labels(call.args.args.first()?)?;
            if let Some(Expr::StringLiteral(added)) = call.args.args.get(1).map(|a| &**a)
                && !labels.contains(&added.val)
            {
                labels.push(added.val.clone());
            }
            Some(labels)
        }
        Expr::Aggregate(aggregate) => match &aggregate.modifier {
            Some(LabelModifier::Include(labels)) => Some(labels.labels.clone()),
            None => Some(Vec::new()),
            Some(LabelModifier::Exclude(_)) => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(query: &str) -> Result<String, String> {
        let mut expr = parser::parse(query).unwrap();
        keep_label(&mut expr, "namespace")?;
        let printed = expr.to_string();
        parser::parse(&printed).map_err(|e| format!("{printed}: {e}"))?;
        Ok(printed)
    }

    #[test]
    fn the_sentinel_goes_and_the_rest_stays() {
        let query = format!("sum(rate(x{{{MATCHERS_SENTINEL},a=\"b\"}}[2m])) by (name)");
        let printed = without_sentinel(&query).unwrap().to_string();
        assert_eq!(printed, r#"sum by (name) (rate(x{a="b"}[2m]))"#);
        let bare =
            format!("label_replace(y{{{MATCHERS_SENTINEL}}}, \"a\", \"$1\", \"b\", \"(.*)\")");
        assert_eq!(
            without_sentinel(&bare).unwrap().to_string(),
            r#"label_replace(y, "a", "$1", "b", "(.*)")"#
        );
    }

    #[test]
    fn labels_are_kept_through_aggregations_and_matching() {
        assert_eq!(
            kept("sum(x) by (name)").unwrap(),
            "sum by (name, namespace) (x)"
        );
        assert_eq!(kept("sum(x)").unwrap(), "sum by (namespace) (x)");
        assert_eq!(
            kept("max without (namespace, pod) (x)").unwrap(),
            "max without (pod) (x)"
        );
        assert_eq!(
            kept("sum by (a) (x) / on (a) sum by (a) (y)").unwrap(),
            "sum by (a, namespace) (x) / on (a, namespace) sum by (a, namespace) (y)"
        );
        assert_eq!(
            kept("round(sum(rate(x[1m])) by (q), 1)").unwrap(),
            "round(sum by (q, namespace) (rate(x[1m])), 1)"
        );
        assert!(kept("sum(x) by (a) or on () vector(0)").is_err());
    }

    #[test]
    fn selectors_outside_the_request_are_counted() {
        let query = format!("sum(a{{{MATCHERS_SENTINEL}}}) / sum(b)");
        assert_eq!(selectors_without_sentinel(&query).unwrap(), 1);
        let query = format!("rate(a{{{MATCHERS_SENTINEL}}}[1m])");
        assert_eq!(selectors_without_sentinel(&query).unwrap(), 0);
        // Also where the parser's own visitor never looks: an aggregation's parameter.
        let query = format!("topk(scalar(sum(b)), a{{{MATCHERS_SENTINEL}}})");
        assert_eq!(selectors_without_sentinel(&query).unwrap(), 1);
    }

    #[test]
    fn result_labels_of_top_aggregations() {
        let expr = parser::parse("(sum by (name) (x))").unwrap();
        assert_eq!(result_labels(&expr), Some(vec!["name".to_string()]));
        assert_eq!(result_labels(&parser::parse("x").unwrap()), None);
        let copied =
            parser::parse(r#"label_replace(sum by (a) (x), "namespace", "$1", "a", "(.*)")"#)
                .unwrap();
        assert_eq!(
            result_labels(&copied),
            Some(vec!["a".to_string(), "namespace".to_string()])
        );
    }
}
