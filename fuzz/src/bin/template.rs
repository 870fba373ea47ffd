//! Any text as the query of a namespaced definition: when the compiler accepts it, the
//! query rendered for a hostile request parses and every selector keeps the namespace.

use metrics_registry::compiler::{CompileOptions, compile};
use metrics_registry::definitions::{Definition, DefinitionBody, DefinitionId, DefinitionKind};
use metrics_registry_apiserver::render::{ObjectSelection, RenderRequest, render_query};
use metrics_registry_apiserver::rules::ObjectKind;
use metrics_registry_crds::MetricSpec;
use promql_parser::parser::Expr;
use promql_parser::util::visitor::{ExprVisitor, walk_expr};

struct Pinned(bool);

impl ExprVisitor for Pinned {
    type Error = ();
    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, ()> {
        let selector = match expr {
            Expr::VectorSelector(selector) => selector,
            Expr::MatrixSelector(matrix) => &matrix.vs,
            _ => return Ok(true),
        };
        let groups: Vec<&Vec<promql_parser::label::Matcher>> =
            if selector.matchers.or_matchers.is_empty() {
                vec![&selector.matchers.matchers]
            } else {
                selector.matchers.or_matchers.iter().collect()
            };
        for matchers in groups {
            self.0 &= matchers
                .iter()
                .any(|m| m.name == "namespace" && m.value == "team-a");
        }
        Ok(true)
    }
}

fn main() {
    afl::fuzz_nohook!(|data: &[u8]| {
        let Ok(query) = std::str::from_utf8(data) else {
            return;
        };
        let definition = Definition {
            id: DefinitionId {
                kind: DefinitionKind::ServiceMetric,
                namespace: Some("team-a".into()),
                name: "m".into(),
            },
            generation: None,
            created: None,
            body: DefinitionBody::Metric(MetricSpec {
                query: query.into(),
                ..MetricSpec::default()
            }),
        };
        let compiled = compile(&[definition], CompileOptions::default());
        let Some(rule) = compiled.table.lookup(ObjectKind::Service, "m", "team-a") else {
            return;
        };
        let rendered = render_query(
            rule,
            &RenderRequest {
                namespace: "team-a\"} or vector(1) or x{a=\"",
                objects: ObjectSelection::One("svc\\\"}"),
                metric_matchers: &[],
            },
        );
        let expr = match promql_parser::parser::parse(&rendered) {
            Ok(expr) => expr,
            Err(error) => panic!("accepted {query:?} renders unparseable {rendered}: {error}"),
        };
        let mut pinned = Pinned(true);
        let _ = walk_expr(&mut pinned, &expr);
        assert!(
            pinned.0,
            "accepted {query:?} renders a selector without its namespace: {rendered}"
        );
    });
}
