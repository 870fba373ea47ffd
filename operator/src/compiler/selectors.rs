//! The one walk over a PromQL syntax tree that reaches every series selector, used by
//! namespace pinning and by `convert`'s rewrites alike.
//!
//! Written as an exhaustive `match` over every `Expr` variant, destructuring every field,
//! with no wildcard arm: a promql-parser release that adds a variant or a field that can
//! hold an expression does not build until this walk decides about it. (The parser's own
//! visitor skips aggregation parameters, so `topk(scalar(x{namespace="other"}), …)` once
//! went through unpinned.)

use promql_parser::parser::{
    AggregateExpr, BinaryExpr, Call, Expr, Extension, Function, FunctionArgs, MatrixSelector,
    NumberLiteral, ParenExpr, StringLiteral, SubqueryExpr, UnaryExpr, VectorSelector,
};

/// What a walk does at the nodes that matter.
pub trait SelectorVisitor {
    type Error;
    /// Every vector selector, and the selector of every matrix selector.
    fn selector(&mut self, selector: &mut VectorSelector) -> Result<(), Self::Error>;
    /// Every function call, before its arguments are walked.
    fn call(&mut self, _function: &Function) -> Result<(), Self::Error> {
        Ok(())
    }
    /// A node the parser never makes and nobody can look into.
    fn extension(&mut self) -> Result<(), Self::Error>;
}

/// Walks all of `expr`, stopping at the first error.
pub fn visit_selectors<V: SelectorVisitor>(
    expr: &mut Expr,
    visitor: &mut V,
) -> Result<(), V::Error> {
    match expr {
        Expr::Aggregate(AggregateExpr {
            op: _,
            expr,
            param,
            modifier: _,
        }) => {
            if let Some(param) = param {
                visit_selectors(param, visitor)?;
            }
            visit_selectors(expr, visitor)
        }
        Expr::Unary(UnaryExpr { expr }) => visit_selectors(expr, visitor),
        Expr::Binary(BinaryExpr {
            op: _,
            lhs,
            rhs,
            modifier: _,
        }) => {
            visit_selectors(lhs, visitor)?;
            visit_selectors(rhs, visitor)
        }
        Expr::Paren(ParenExpr { expr }) => visit_selectors(expr, visitor),
        // `offset` and `@` hold durations and times, not expressions.
        Expr::Subquery(SubqueryExpr {
            expr,
            offset: _,
            at: _,
            range: _,
            step: _,
        }) => visit_selectors(expr, visitor),
        Expr::NumberLiteral(NumberLiteral { val: _ })
        | Expr::StringLiteral(StringLiteral { val: _ }) => Ok(()),
        Expr::VectorSelector(selector) => visitor.selector(selector),
        Expr::MatrixSelector(MatrixSelector { vs, range: _ }) => visitor.selector(vs),
        Expr::Call(Call { func, args }) => {
            visitor.call(func)?;
            let FunctionArgs { args } = args;
            args.iter_mut()
                .try_for_each(|arg| visit_selectors(arg, visitor))
        }
        Expr::Extension(Extension { expr: _ }) => visitor.extension(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Names(Vec<String>);

    impl SelectorVisitor for Names {
        type Error = ();
        fn selector(&mut self, selector: &mut VectorSelector) -> Result<(), ()> {
            self.0.push(selector.name.clone().unwrap_or_default());
            Ok(())
        }
        fn extension(&mut self) -> Result<(), ()> {
            Err(())
        }
    }

    #[test]
    fn reaches_selectors_in_every_position() {
        let mut expr = promql_parser::parser::parse(
            "topk(scalar(a), quantile(scalar(b), c)) + -(d offset 1m) \
             + max_over_time(e[5m:1m] @ end()) * on() group_left() (rate(f[5m]))",
        )
        .unwrap();
        let mut names = Names(Vec::new());
        visit_selectors(&mut expr, &mut names).unwrap();
        assert_eq!(names.0, ["a", "b", "c", "d", "e", "f"]);
    }
}
